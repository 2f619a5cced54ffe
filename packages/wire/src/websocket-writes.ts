import type { Duplex } from 'node:stream'
import { joinWrites } from './join-writes.js'

/** What `joinWebSocketWrites` uses of a `ws` WebSocket (the codec does not load ws). */
export interface WebSocketSink {
  readonly readyState: number
  readonly OPEN: number
  readonly bufferedAmount: number
  send: (data: Buffer, callback?: (error?: Error) => void) => void
}

type Callback = (error?: Error | null) => void
interface Chunk { chunk: Buffer }

/**
 * `ws`'s stream (`createWebSocketStream(ws)`) made to write as a TCP socket does, for the
 * client, petrel bench and the broker's listeners alike:
 *
 * - Writes buffered together (corked, or made while one was on its way) leave as one binary
 *   frame of up to 64 KiB (`joinWrites`), as a socket's leave in one writev [MQTT-6.0.0-2].
 *   ws's stream has no `_writev`: each write of a corked batch left as a frame and a syscall of
 *   its own, one a tick (a thousand PUBLISHes routed at once, a thousand frames; 8 KiB
 *   publishes went out at a third of their TCP rate).
 * - A write is done once the socket has taken its frame (`taken`, by default nothing left in
 *   `bufferedAmount`), not a tick later when the socket calls back, so the next one goes out in
 *   the same tick and the stream's `writableLength` does not make a reader look slow. A frame
 *   the socket could not take at once still holds the stream until it is written (backpressure).
 *
 * Both replace the Writable's own `_write` and `_writev` hooks; reading, ending and closing stay
 * ws's. It takes ws's stream rather than loading ws, which the client loads only for a ws:// or
 * wss:// connect.
 */
export function joinWebSocketWrites (ws: WebSocketSink, stream: Duplex, taken: () => boolean = () => ws.bufferedAmount === 0): Duplex {
  const send = (data: Buffer, callback: Callback): void => {
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
    if (!done && taken()) {
      done = true
      callback()
    }
  }
  stream._write = (chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void => {
    send(chunk, callback)
  }
  stream._writev = (chunks: Chunk[], callback: Callback): void => {
    // frames go out in order: the last one taken means all were
    const frames = joinWrites(chunks)
    const last = frames.length - 1
    for (let i = 0; i < last; i++) ws.send(frames[i] as Buffer)
    send(frames[last] as Buffer, callback)
  }
  return stream
}
