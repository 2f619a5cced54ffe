import type { Duplex } from 'node:stream'
import { joinWrites } from '@petrel/wire'
import type { WebSocket } from 'ws'

type Callback = (error?: Error | null) => void
interface Chunk { chunk: Buffer }

/**
 * `ws`'s stream over an open WebSocket, with two changes that make it write as a TCP socket
 * does (the broker's listeners wrap theirs the same way):
 *
 * - Writes buffered together (corked, or made while one was on its way) leave as one binary
 *   frame, as a socket's leave in one writev [MQTT-6.0.0-2]. ws's stream has no `_writev`: each
 *   write of a corked batch (a packet over 4 KiB is a write of its own) left as a frame and a
 *   syscall of its own, one a tick, so 8 KiB publishes went out at a third of their TCP rate.
 * - A write is done once the socket has taken its frame (nothing left in `bufferedAmount`), not
 *   a tick later when the socket calls back, so the next one goes out in the same tick. A frame
 *   the socket could not take at once still holds the stream until it is written (backpressure).
 *
 * Both replace the Writable's own `_write` and `_writev` hooks of `stream`, made by ws's
 * `createWebSocketStream(ws)`; reading, ending and closing stay ws's. Exported for other shells
 * (petrel bench) that open their own WebSocket; it takes ws's stream rather than loading ws, which
 * the client loads only for a ws:// or wss:// connect.
 */
export function joinWebSocketWrites (ws: WebSocket, stream: Duplex): Duplex {
  stream._write = (chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void => {
    send(ws, chunk, callback)
  }
  stream._writev = (chunks: Chunk[], callback: Callback): void => {
    // frames go out in order: the last one taken means all were
    const frames = joinWrites(chunks)
    const last = frames.length - 1
    for (let i = 0; i < last; i++) ws.send(frames[i] as Buffer)
    send(ws, frames[last] as Buffer, callback)
  }
  return stream
}

function send (ws: WebSocket, data: Buffer, callback: Callback): void {
  // Not open (closing): ws reports the failure to the callback.
  if (ws.readyState !== ws.OPEN) {
    ws.send(data, callback)
    return
  }
  let done = false
  ws.send(data, (error) => {
    if (done) return // a later failure closes the WebSocket, and the stream with it
    done = true
    callback(error)
  })
  if (!done && ws.bufferedAmount === 0) {
    done = true
    callback()
  }
}
