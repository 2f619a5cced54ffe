#!/usr/bin/env node
// The least a Node.js MQTT broker can do: a reference for the latency scenario, not a broker.
// It answers CONNECT, SUBSCRIBE and PINGREQ, and writes every PUBLISH it reads, byte for byte,
// to every connection that subscribed (no topic matching, no QoS above 0, no sessions). Its
// latency is the floor of a Node.js process on the stream 'data' path on this machine: what is
// left of a broker's latency after subtracting it is the broker's own work.
//
//   node node-relay.mjs PORT
import { createServer } from 'node:net'

const CONNACK = Buffer.from([0x20, 2, 0, 0])
const PINGRESP = Buffer.from([0xd0, 0])
const subscribers = new Set()

/** Remaining length of the packet at `i`: [value, header size], or undefined when incomplete. */
function header (buf, i) {
  let value = 0
  for (let k = 1, shift = 0; k <= 4; k++, shift += 7) {
    if (i + k >= buf.length) return undefined
    const b = buf[i + k]
    value += (b & 0x7f) * 2 ** shift
    if ((b & 0x80) === 0) return [value, k + 1]
  }
  throw new Error('malformed remaining length')
}

const server = createServer({ noDelay: true }, (socket) => {
  let rest
  socket.on('error', () => socket.destroy())
  socket.on('close', () => subscribers.delete(socket))
  socket.on('data', (chunk) => {
    const buf = rest === undefined ? chunk : Buffer.concat([rest, chunk])
    rest = undefined
    let i = 0
    while (i < buf.length) {
      const h = header(buf, i)
      if (h === undefined || i + h[1] + h[0] > buf.length) break
      const end = i + h[1] + h[0]
      switch (buf[i] >> 4) {
        case 1: socket.write(CONNACK); break
        case 3: for (const s of subscribers) s.write(buf.subarray(i, end)); break
        case 8: socket.write(Buffer.from([0x90, 3, buf[i + h[1]], buf[i + h[1] + 1], 0])); subscribers.add(socket); break
        case 12: socket.write(PINGRESP); break
        case 14: socket.end(); break
      }
      i = end
    }
    if (i < buf.length) rest = buf.subarray(i)
  })
})
server.listen(Number(process.argv[2]), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
