import { encode, type ProtocolVersion, type QoS } from '@petrel/wire'
import { MAGIC_OFFSET, PUBLISHER_OFFSET, RUN_OFFSET, SENT_AT_OFFSET, SEQUENCE_OFFSET, STAMP_BYTES, STAMP_MAGIC } from './stamp.js'

const PROBE_PACKET_ID = 0xa55a

/** Who a publisher is in its stamps: its run id and client index (see stamp.ts). */
export interface StampIdentity {
  run: number
  publisher: number
}

/**
 * One publisher's PUBLISH, encoded once by @petrel/wire, with the offsets of the fields that
 * change per message. The stamp's constant part (magic, run id, publisher) is written here once;
 * batches hold copies, and only the send time, the sequence and the packet id are patched:
 *
 * ```
 *  | hdr | len | topic len | topic ... | packet id | props (5.0) | stamp (24) | padding |
 *                                        ^ packetIdOffset          ^ payloadOffset
 * ```
 */
export class PublishTemplate {
  readonly bytes: Buffer
  readonly payloadOffset: number
  /** -1 at QoS 0. */
  readonly packetIdOffset: number
  /** Whether the payload is large enough to carry the stamp. */
  readonly stamped: boolean

  constructor (topicName: string, payloadSize: number, readonly qos: QoS, protocolVersion: ProtocolVersion, identity: StampIdentity) {
    this.bytes = encode({
      type: 'publish', topicName, payload: new Uint8Array(payloadSize), qos, retain: false, dup: false,
      packetId: qos > 0 ? PROBE_PACKET_ID : undefined
    }, protocolVersion)
    this.payloadOffset = this.bytes.length - payloadSize
    this.stamped = payloadSize >= STAMP_BYTES
    if (this.stamped) {
      const o = this.payloadOffset
      this.bytes.writeUInt32BE(STAMP_MAGIC, o + MAGIC_OFFSET)
      this.bytes.writeUInt32BE(identity.run, o + RUN_OFFSET)
      this.bytes.writeUInt32BE(identity.publisher, o + PUBLISHER_OFFSET)
    }
    if (qos === 0) {
      this.packetIdOffset = -1
    } else {
      let p = 1
      while (((this.bytes[p++] as number) & 0x80) !== 0);
      this.packetIdOffset = p + 2 + this.bytes.readUInt16BE(p)
      if (this.bytes.readUInt16BE(this.packetIdOffset) !== PROBE_PACKET_ID) throw new Error('PUBLISH layout not understood')
    }
  }

  get length (): number {
    return this.bytes.length
  }

  /** A buffer holding `count` copies of the packet. */
  batch (count: number): Buffer {
    const n = this.bytes.length
    const b = Buffer.allocUnsafeSlow(n * count)
    for (let i = 0; i < count; i++) this.bytes.copy(b, i * n)
    return b
  }

  /** Patches message `i` of a batch: send time (µs), sequence, and the packet id (QoS > 0). */
  patch (batch: Buffer, i: number, sentAt: number, seq: number, packetId: number): void {
    const base = i * this.bytes.length
    if (this.stamped) {
      const o = base + this.payloadOffset
      batch.writeDoubleBE(sentAt, o + SENT_AT_OFFSET)
      batch.writeUInt32BE(seq >>> 0, o + SEQUENCE_OFFSET)
    }
    if (this.packetIdOffset >= 0) batch.writeUInt16BE(packetId, base + this.packetIdOffset)
  }
}
