// The raw baseline and the benchmark's own load: pre-encoded MQTT 3.1.1 packets written straight
// to a TCP socket, and a minimal framer that counts inbound packets (and answers QoS 1 with a
// pre-built PUBACK). No client library on this path, so it shows what the broker and the loopback
// link allow; a client that gets close to it is not the bottleneck.
//
// Reads are moderated the way @petrel/client moderates them (ReadModeration: after a run of small
// back-to-back reads, pause ~1 ms so the next read takes many packets). An eager reader spends
// ~8 µs of kernel and event-loop time per read, one or two packets each, which on two shared cores
// slows the broker and every other process in the run: the baseline, and the suite's own
// subscriber, must not be that bottleneck.
import { once } from 'node:events'
import { encode } from '@petrel/wire'
import { connectDirect, directReaderOf } from '@petrel/client'

/** A TCP socket read the client's way, moderated unless `moderate` is false; chunks are emitted as usual `data` events. */
function moderatedSocket (host, port, moderate) {
  const socket = connectDirect(host, port, moderate ? {} : false)
  directReaderOf(socket).attach((chunk) => { socket.emit('data', chunk) })
  return socket
}

/** Opens a 3.1.1 connection and resolves after CONNACK 0 (`moderate: false`: eager reads). */
export async function rawConnect (port, { clientId = `raw-${process.pid}-${Math.random().toString(16).slice(2, 8)}`, clean = true, host = '127.0.0.1', moderate = true } = {}) {
  const socket = moderatedSocket(host, port, moderate)
  await once(socket, 'connect')
  socket.write(encode({ type: 'connect', protocolVersion: 4, clientId, cleanStart: clean, keepAlive: 0 }, 4))
  const [chunk] = await once(socket, 'data')
  if (chunk[0] !== 0x20 || chunk[3] !== 0) throw new Error(`raw: CONNACK refused: ${chunk.toString('hex')}`)
  return socket
}

/**
 * Calls `onPacket(type, qos, packetId)` for every complete packet in the stream (type = first
 * byte >> 4; packetId only for QoS 1/2 PUBLISH and for acks). Keeps partial packets across chunks.
 */
export function frame (socket, onPacket) {
  let rest
  socket.on('data', (chunk) => {
    let b = rest === undefined ? chunk : Buffer.concat([rest, chunk])
    rest = undefined
    let off = 0
    const n = b.length
    while (off + 2 <= n) {
      let len = 0
      let mul = 1
      let h = off + 1
      let byte
      do {
        if (h >= n) { byte = -1; break }
        byte = b[h++]
        len += (byte & 0x7f) * mul
        mul *= 128
      } while ((byte & 0x80) !== 0)
      if (byte === -1 || h + len > n) break
      const b0 = b[off]
      const type = b0 >> 4
      if (type === 3) {
        const qos = (b0 >> 1) & 3
        if (qos > 0) {
          const tl = (b[h] << 8) | b[h + 1]
          onPacket(3, qos, (b[h + 2 + tl] << 8) | b[h + 3 + tl])
        } else onPacket(3, 0, 0)
      } else if (type >= 4 && type <= 7) {
        onPacket(type, 0, (b[h] << 8) | b[h + 1])
      } else onPacket(type, 0, 0)
      off = h + len
    }
    if (off < n) rest = b.subarray(off)
    b = undefined
  })
}

/** Pre-encoded PUBLISH packets, `count` of them, packet ids 1.. for QoS 1 (wrapping at 65535). */
export function encodePublishes (topic, payload, qos, count) {
  if (qos === 0) {
    const one = encode({ type: 'publish', topicName: topic, payload, qos: 0, retain: false, dup: false }, 4)
    return { one, count }
  }
  const packets = []
  for (let i = 0; i < count; i++) {
    packets.push(encode({ type: 'publish', topicName: topic, payload, qos, retain: false, dup: false, packetId: (i % 65535) + 1 }, 4))
  }
  return { packets, count }
}

/** Writes the packets in chunks of about 64 KiB, honouring backpressure. */
export async function writeAll (socket, pre) {
  const chunk = []
  let size = 0
  const flush = async () => {
    if (chunk.length === 0) return
    const ok = socket.write(Buffer.concat(chunk, size))
    chunk.length = 0
    size = 0
    if (!ok) await once(socket, 'drain')
  }
  for (let i = 0; i < pre.count; i++) {
    const p = pre.one ?? pre.packets[i]
    chunk.push(p)
    size += p.length
    if (size >= 65536) await flush()
  }
  await flush()
}

/** A 3.1.1 SUBSCRIBE on `socket`; resolves on SUBACK (the caller's framer must call `onSuback`). */
export function subscribePacket (topicFilter, qos) {
  return encode({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter, qos }] }, 4)
}

export const PUBACK_TYPE = 4
export const SUBACK_TYPE = 9

/** PUBACK for `packetId`, 4 bytes. */
export function puback (packetId) {
  return Buffer.from([0x40, 2, packetId >> 8, packetId & 0xff])
}
