import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { joinWrites } from '@petrel/wire'
import { createWebSocketStream, WebSocket } from 'ws'
import { heldBytes } from './socket-backlog.js'

type Callback = (error?: Error | null) => void
interface Chunk { chunk: Buffer }

/**
 * `ws`'s stream over an open WebSocket, with three changes that make it write as a TCP socket does:
 *
 * - Writes buffered together (corked, or made while one was on its way) leave as one binary
 *   frame, as a socket's leave in one writev [MQTT-6.0.0-2]. ws's stream has no `_writev`: a
 *   corked batch of a thousand PUBLISHes left as a thousand frames and syscalls, a tick apart.
 * - A write is done once the socket has taken its frame (nothing left in `bufferedAmount`), not
 *   a tick later when the socket calls back. Until then ws's stream counted every frame in its
 *   `writableLength`, so one WebSocket message routing more than write_high_water_mark to a
 *   subscriber made it look like one that does not read: its session queue took over and,
 *   full, dropped QoS 0 messages it would have read. A frame the socket could not take at once
 *   still holds the stream until it is written (the subscriber is slow: backpressure). Over TLS
 *   (wss) "taken" is as `heldBytes` tells: a TLSSocket holds every write until a later tick,
 *   taken or not, and a burst routed to a reading wss subscriber was dropped as over a slow one.
 * - What is written while the packets of one socket read are handled (their acks: one per
 *   WebSocket message, as the stream hands each message on as it is decoded) leaves as one
 *   frame once the read is done, as the acks of one read leave a TCP connection in one write.
 *   Written as they came, PUBLISHes sent a message each got a frame and a writev per PUBACK.
 *
 * `socket` is the one under `ws`, and `allowance` what may wait above it over TLS (`heldBytes`).
 * The first two replace the Writable's own `_write` and `_writev` hooks, the third corks it
 * around the socket's 'data'; reading, ending and closing are ws's.
 */
export function webSocketStream (ws: WebSocket, socket: Socket, allowance: number): Duplex {
  const stream = createWebSocketStream(ws)
  // nothing held by ws itself, and nothing the peer has not taken below it
  const taken = (): boolean => ws.bufferedAmount === socket.writableLength && heldBytes(socket, allowance) === 0
  const send = (data: Buffer, callback: Callback): void => {
    // Not open (closing): ws reports the failure to the callback.
    if (ws.readyState !== WebSocket.OPEN) {
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
  // ws reads the socket with its own 'data' listener, added before this one: everything its
  // messages make us write in between is corked (one read is bounded: 64 KiB, a TLS record).
  socket.prependListener('data', () => { stream.cork() })
  socket.on('data', () => { stream.uncork() })
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
