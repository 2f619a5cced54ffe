import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { joinWebSocketWrites, type WebSocketSink } from '@petrel/wire'
import { createWebSocketStream, type WebSocket } from 'ws'
import { heldBytes } from './socket-backlog.js'

/**
 * `ws`'s stream over an open WebSocket, with four changes that make it write as a TCP socket does:
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
 * - Once the client has closed the WebSocket, writes are dropped rather than failed (see below).
 *
 * `socket` is the one under `ws`, and `allowance` what may wait above it over TLS (`heldBytes`).
 * The first two are `joinWebSocketWrites` (from @petrel/wire, shared with the client), the third
 * corks the stream around the socket's 'data'; reading, ending and closing are ws's.
 */
export function webSocketStream (ws: WebSocket, socket: Socket, allowance: number): Duplex {
  // Once the client has closed the WebSocket (its close frame read, ours sent), what we write
  // cannot reach it and is dropped, as bytes sent to a TCP peer that has gone. ws fails such a
  // write instead, and its error destroyed the stream with what the client sent before its
  // close still unread behind a pending hook or a pause: its last PUBLISHes and its DISCONNECT
  // were lost, and its will went out. Its close ends the input once that is read ('end').
  const sink: WebSocketSink = {
    get readyState () { return ws.readyState },
    OPEN: ws.OPEN,
    get bufferedAmount () { return ws.bufferedAmount },
    send (data, callback) {
      if (ws.readyState === ws.OPEN) ws.send(data, callback)
      else if (callback !== undefined) process.nextTick(callback)
    }
  }
  // taken: nothing held by ws itself, and nothing the peer has not taken below it
  const stream = joinWebSocketWrites(sink, createWebSocketStream(ws),
    () => ws.bufferedAmount === socket.writableLength && heldBytes(socket, allowance) === 0)
  // ws reads the socket with its own 'data' listener, added before this one: everything its
  // messages make us write in between is corked (one read is bounded: 64 KiB, a TLS record).
  socket.prependListener('data', () => { stream.cork() })
  socket.on('data', () => { stream.uncork() })
  return stream
}
