import { encode } from '@petrel/wire'

/**
 * First bytes of the 4-byte acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP with reason 0x00
 * and no properties: the same bytes in 3.1.1 and 5.0 [MQTT-3.4.2.1]). Taken from @petrel/wire's
 * encoder once, so that acks for a whole chunk can be written into one buffer.
 */
function firstByte (type: 'puback' | 'pubrec' | 'pubrel' | 'pubcomp'): number {
  const b = encode({ type, packetId: 1 }, 5)
  if (b.length !== 4) throw new Error(`unexpected ${type} length ${b.length}`)
  return b[0] as number
}

export const PUBACK = firstByte('puback')
export const PUBREC = firstByte('pubrec')
export const PUBREL = firstByte('pubrel')
export const PUBCOMP = firstByte('pubcomp')
export const ACK_BYTES = 4

/** Collects the acks one chunk of input calls for, and writes them as one buffer. */
export class AckWriter {
  private buf = Buffer.allocUnsafe(0)
  private len = 0

  add (first: number, packetId: number): void {
    if (this.len + ACK_BYTES > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(256, this.buf.length * 2))
      this.buf.copy(grown, 0, 0, this.len)
      this.buf = grown
    }
    const b = this.buf
    const o = this.len
    b[o] = first
    b[o + 1] = 2
    b[o + 2] = packetId >> 8
    b[o + 3] = packetId & 0xff
    this.len = o + ACK_BYTES
  }

  /** The acks collected since the last take (a fresh buffer: the socket may keep it), or undefined. */
  take (): Buffer | undefined {
    if (this.len === 0) return undefined
    const out = Buffer.from(this.buf.subarray(0, this.len))
    this.len = 0
    return out
  }
}
