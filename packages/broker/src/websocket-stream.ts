import type { Duplex } from 'node:stream'
import { createWebSocketStream, type WebSocket } from 'ws'

/**
 * Writes joined into one frame up to this size. A peer bounds a WebSocket message too (ws's
 * `maxPayload`; Petrel's client takes twice its Maximum Packet Size plus 64 KiB): a frame is
 * never bigger than this or than the largest single write, which is one packet.
 */
const FRAME_BYTES = 64 * 1024

type Callback = (error?: Error | null) => void
interface Chunk { chunk: Buffer }

/**
 * `ws`'s stream over an open WebSocket, but writes buffered together (corked, or made while one
 * was on its way) leave as one binary frame, as a socket's leave in one writev [MQTT-6.0.0-2].
 * ws's stream has no `_writev`: a corked batch of a thousand PUBLISHes left as a thousand frames
 * and syscalls, a tick apart. This replaces the Writable's `_writev` hook; the rest is ws's.
 */
export function webSocketStream (ws: WebSocket): Duplex {
  const stream = createWebSocketStream(ws)
  stream._writev = (chunks: Chunk[], callback: Callback): void => {
    const n = chunks.length
    let start = 0
    let bytes = 0
    for (let i = 0; i < n; i++) {
      const length = (chunks[i] as Chunk).chunk.length
      if (bytes > 0 && bytes + length > FRAME_BYTES) {
        ws.send(join(chunks, start, i, bytes))
        start = i
        bytes = 0
      }
      bytes += length
    }
    // frames go out in order: the last one written means all were
    ws.send(join(chunks, start, n, bytes), callback)
  }
  return stream
}

function join (chunks: Chunk[], from: number, to: number, bytes: number): Buffer {
  if (to - from === 1) return (chunks[from] as Chunk).chunk
  const out = Buffer.allocUnsafe(bytes)
  let at = 0
  for (let i = from; i < to; i++) {
    const b = (chunks[i] as Chunk).chunk
    out.set(b, at)
    at += b.length
  }
  return out
}
