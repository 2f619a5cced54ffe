/**
 * Largest WebSocket frame made by joining writes. A peer bounds a WebSocket message too (ws's
 * `maxPayload`; Petrel's broker and client take twice their Maximum Packet Size plus 64 KiB): a
 * frame is never bigger than this or than the largest single write, which is one packet.
 */
export const JOINED_FRAME_BYTES = 64 * 1024

/**
 * The writes of a batch (a Writable's `_writev` chunks), in order, joined into buffers of at most
 * `maxBytes` each; a single write larger than that stays alone. For transports whose unit is a
 * message (a WebSocket frame per buffer) rather than a byte stream: MQTT packets may span frames
 * [MQTT-6.0.0-2], so a batch that a socket would send in one writev goes out as few frames.
 */
export function joinWrites (chunks: ReadonlyArray<{ chunk: Buffer }>, maxBytes = JOINED_FRAME_BYTES): Buffer[] {
  const out: Buffer[] = []
  const n = chunks.length
  let start = 0
  let bytes = 0
  for (let i = 0; i < n; i++) {
    const length = (chunks[i] as { chunk: Buffer }).chunk.length
    if (bytes > 0 && bytes + length > maxBytes) {
      out.push(join(chunks, start, i, bytes))
      start = i
      bytes = 0
    }
    bytes += length
  }
  if (n > start) out.push(join(chunks, start, n, bytes))
  return out
}

function join (chunks: ReadonlyArray<{ chunk: Buffer }>, from: number, to: number, bytes: number): Buffer {
  if (to - from === 1) return (chunks[from] as { chunk: Buffer }).chunk
  const out = Buffer.allocUnsafe(bytes)
  let at = 0
  for (let i = from; i < to; i++) {
    const b = (chunks[i] as { chunk: Buffer }).chunk
    out.set(b, at)
    at += b.length
  }
  return out
}
