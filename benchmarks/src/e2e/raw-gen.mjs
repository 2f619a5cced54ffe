#!/usr/bin/env node
// The reference load generator: raw node:net sockets writing pre-encoded packets, and
// subscribers that only walk fixed headers to count PUBLISH packets (and ack them at QoS 1).
// No codec, no stamps, no histograms: the ceiling `petrel bench` is measured against.
//
//   node benchmarks/src/e2e/raw-gen.mjs --port 1883 --pubs 4 --subs 1 --qos 0 --size 256 --duration 5
//
// Prints one JSON line: { sent, received, seconds, perSecond, connectMs, cpu }.
import { connect } from 'node:net'
import { parseArgs } from 'node:util'

const { values: v } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '1883' },
    pubs: { type: 'string', default: '1' },
    subs: { type: 'string', default: '1' },
    qos: { type: 'string', default: '0' },
    size: { type: 'string', default: '256' },
    duration: { type: 'string', default: '5' },
    inflight: { type: 'string', default: '100' },
    rate: { type: 'string', default: '0' },
    topic: { type: 'string', default: 'bench/%i' },
    'sub-topic': { type: 'string', default: 'bench/#' },
    'drain-timeout': { type: 'string', default: '5' }
  }
})
const host = v.host
const port = Number(v.port)
const pubs = Number(v.pubs)
const subs = Number(v.subs)
const qos = Number(v.qos)
const size = Number(v.size)
const durationMs = Number(v.duration) * 1000
const inflight = Number(v.inflight)
const rate = Number(v.rate)

// --- encoding (by hand, once) ------------------------------------------------------------------

function varint (n) {
  const out = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return out
}

function packet (first, body) {
  return Buffer.concat([Buffer.from([first, ...varint(body.length)]), body])
}

function str (s) {
  const b = Buffer.from(s)
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b])
}

function connectPacket (clientId) {
  // MQTT 3.1.1, clean session, keepalive 60
  return packet(0x10, Buffer.concat([str('MQTT'), Buffer.from([4, 2, 0, 60]), str(clientId)]))
}

function publishPacket (topic, packetId) {
  const head = qos > 0 ? Buffer.concat([str(topic), Buffer.from([packetId >> 8, packetId & 0xff])]) : str(topic)
  return packet(0x30 | (qos << 1), Buffer.concat([head, Buffer.alloc(size, 0x61)]))
}

const subscribePacket = (filter) => packet(0x82, Buffer.concat([Buffer.from([0, 1]), str(filter), Buffer.from([qos])]))

// --- a header walker: calls onPacket(buf, start, headerLen, total) per complete packet ---------

function walker (onPacket) {
  let rest = null
  return (chunk) => {
    let buf = chunk
    if (rest !== null) {
      buf = Buffer.concat([rest, chunk])
      rest = null
    }
    let off = 0
    const len = buf.length
    while (off < len) {
      let i = off + 1
      let value = 0
      let mult = 1
      let complete = false
      while (i < len) {
        const b = buf[i++]
        value += (b & 0x7f) * mult
        mult *= 128
        if (b < 0x80) {
          complete = true
          break
        }
      }
      if (!complete || i + value > len) break
      onPacket(buf, off, i - off, i - off + value)
      off = i + value
    }
    if (off < len) rest = buf.subarray(off)
  }
}

// --- clients ------------------------------------------------------------------------------------

const startedAt = performance.now()
const startCpu = process.cpuUsage()
const connTimes = []
let sent = 0
let received = 0
let firstAt = 0
let lastAt = 0
let stopping = false

function open (clientId) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const socket = connect({ host, port, noDelay: true })
    socket.once('error', reject)
    socket.once('connect', () => socket.write(connectPacket(clientId)))
    socket.once('data', (d) => {
      // CONNACK: 0x20 0x02 flags rc
      if (d[0] !== 0x20 || d[3] !== 0) reject(new Error(`connack refused: ${d.toString('hex')}`))
      connTimes.push(performance.now() - t0)
      socket.off('error', reject)
      socket.on('error', () => {})
      resolve(socket)
    })
  })
}

async function subscriber (i) {
  const socket = await open(`raw-sub-${process.pid}-${i}`)
  await new Promise((resolve) => {
    socket.once('data', resolve) // SUBACK
    socket.write(subscribePacket(v['sub-topic']))
  })
  socket.on('data', walker((buf, off, hl) => {
    if (buf[off] >> 4 !== 3) return
    received++
    if (qos === 1) {
      const topicLen = buf.readUInt16BE(off + hl)
      const idAt = off + hl + 2 + topicLen
      socket.write(Buffer.from([0x40, 2, buf[idAt], buf[idAt + 1]]))
    }
    if (firstAt === 0) firstAt = performance.now()
    lastAt = performance.now()
  }))
  return socket
}

async function publisher (i) {
  const socket = await open(`raw-pub-${process.pid}-${i}`)
  const topic = v.topic.replaceAll('%i', String(i))
  const one = publishPacket(topic, 1)
  if (qos === 0) {
    // One pre-encoded 64 KiB batch, written again and again.
    const batch = Buffer.concat(Array.from({ length: Math.max(1, Math.floor(65536 / one.length)) }, () => one))
    const perBatch = batch.length / one.length
    const t0 = performance.now()
    const loop = () => {
      if (stopping) return
      if (rate > 0) {
        const due = Math.floor((performance.now() - t0) * rate / 1000) + 1 - sentBy[i]
        if (due <= 0) return setTimeout(loop, 1)
        const n = Math.min(due, perBatch)
        socket.write(n === perBatch ? batch : batch.subarray(0, n * one.length))
        sentBy[i] += n
        sent += n
        return setTimeout(loop, 1)
      }
      socket.write(batch)
      sent += perBatch
      sentBy[i] += perBatch
      if (socket.writableNeedDrain) socket.once('drain', loop)
      else setImmediate(loop)
    }
    loop()
  } else {
    // A pre-encoded ring of 4 x window packets with ids 1..4W; acks come back in order.
    const ringSize = inflight * 4
    const ring = Buffer.concat(Array.from({ length: ringSize }, (_, k) => publishPacket(topic, k + 1)))
    const len = one.length
    let pos = 0
    let free = inflight
    const send = () => {
      if (stopping || free === 0) return
      let n = free
      free = 0
      sent += n
      while (n > 0) {
        const k = Math.min(n, ringSize - pos)
        socket.write(ring.subarray(pos * len, (pos + k) * len))
        pos = (pos + k) % ringSize
        n -= k
      }
    }
    socket.on('data', walker((buf, off) => {
      if (buf[off] >> 4 === 4) free++
    }))
    socket.on('data', () => send())
    send()
  }
  return socket
}

const sentBy = new Array(pubs).fill(0)
const subSockets = await Promise.all(Array.from({ length: subs }, (_, i) => subscriber(i)))
const pubSockets = await Promise.all(Array.from({ length: pubs }, (_, i) => publisher(i)))
await new Promise((resolve) => setTimeout(resolve, durationMs))
stopping = true
// Wait for what is on its way: until nothing has arrived for a second, at most the drain timeout.
const deadline = performance.now() + Number(v['drain-timeout']) * 1000
while (performance.now() < deadline && received < sent * subs && performance.now() - lastAt < 1000) {
  await new Promise((resolve) => setTimeout(resolve, 20))
}
for (const s of [...pubSockets, ...subSockets]) s.destroy()
const seconds = (lastAt - firstAt) / 1000
connTimes.sort((a, b) => a - b)
const cpuUsed = process.cpuUsage(startCpu)
const elapsedMs = performance.now() - startedAt
console.log(JSON.stringify({
  // The same measure as `petrel bench --json`'s cpu: this process's share of one core.
  cpu: { userSeconds: cpuUsed.user / 1e6, systemSeconds: cpuUsed.system / 1e6, percentOfCore: Math.round((cpuUsed.user + cpuUsed.system) / 10 / elapsedMs) },
  sent,
  received,
  seconds: Math.round(seconds * 1000) / 1000,
  perSecond: seconds > 0 ? Math.round(received / seconds) : 0,
  connectMs: { p50: connTimes[Math.floor(connTimes.length / 2)] ?? 0, max: connTimes.at(-1) ?? 0 }
}))
