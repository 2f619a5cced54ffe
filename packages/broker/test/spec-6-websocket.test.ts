// Chapter 6: MQTT over WebSocket, against a real ws/wss listener with a raw `ws` client.
import type { Socket } from 'node:net'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Decoder, encode, type Packet } from '@petrel/wire'
import { createBroker, type Broker } from '@petrel/broker'
import { makeTestCertificates, waitFor, withTimeout } from '@petrel/test-utils'
import { WebSocket } from 'ws'

async function withWsBroker (fn: (broker: Broker, url: string) => Promise<void>): Promise<void> {
  const broker = createBroker({ sysInterval: 0 })
  const { url } = await broker.listen({ type: 'ws', port: 0, path: '/mqtt' })
  try {
    await fn(broker, url)
  } finally {
    await broker.close()
  }
}

interface Peer {
  ws: WebSocket
  /** Packets received so far, whatever frames they came in. */
  packets: Packet[]
  /** The size of each WebSocket message received so far. */
  frames: number[]
  /** Resolves with the close code. */
  closed: Promise<number>
  next (): Promise<Packet>
}

async function open (url: string, protocols: string[] | undefined, ca?: string): Promise<Peer> {
  const ws = new WebSocket(url, protocols, ca === undefined ? {} : { ca })
  const decoder = new Decoder({ protocolVersion: 4 })
  const packets: Packet[] = []
  const frames: number[] = []
  let wake: (() => void) | undefined
  ws.on('message', (data: Buffer) => {
    frames.push(data.length)
    packets.push(...decoder.push(data))
    wake?.()
  })
  ws.on('error', () => {})
  const closed = new Promise<number>((resolve) => { ws.once('close', (code: number) => { resolve(code) }) })
  await new Promise<void>((resolve, reject) => { ws.once('open', () => { resolve() }); ws.once('error', reject) })
  let read = 0
  return {
    ws,
    packets,
    frames,
    closed,
    next: async () => {
      while (packets.length <= read) await withTimeout(new Promise<void>((resolve) => { wake = resolve }), 3000, 'a packet')
      return packets[read++] as Packet
    }
  }
}

const connect = (clientId: string): Buffer => encode({ type: 'connect', protocolVersion: 4, clientId, cleanStart: true, keepAlive: 0 }, 4)
const PINGREQ = encode({ type: 'pingreq' }, 4)

test('[MQTT-6.0.0-4] subprotocol: "mqtt" chosen, "mqttv3.1" (old clients) echoed, none offered still served', async () => {
  await withWsBroker(async (_broker, url) => {
    for (const [offered, chosen] of [[['mqtt'], 'mqtt'], [['mqttv3.1', 'mqtt'], 'mqtt'], [['mqttv3.1'], 'mqttv3.1'], [undefined, '']] as const) {
      const p = await open(url, offered === undefined ? undefined : [...offered])
      assert.equal(p.ws.protocol, chosen, `offered ${JSON.stringify(offered)}`)
      p.ws.send(connect('sp'))
      assert.equal((await p.next()).type, 'connack')
      p.ws.close()
    }
  })
})

test('[MQTT-6.0.0-3] an upgrade offering subprotocols but neither "mqtt" nor "mqttv3.1" is refused with 400 (was upgraded with none, then served MQTT)', async () => {
  await withWsBroker(async (broker, url) => {
    for (const offered of [['foo'], ['wamp', 'mqttx'], ['MQTT']]) {
      const ws = new WebSocket(url, offered)
      const outcome = await withTimeout(new Promise<string>((resolve) => {
        ws.once('unexpected-response', (_req, res) => {
          let body = ''
          res.setEncoding('utf8').on('data', (d: string) => { body += d }).on('end', () => { resolve(`${res.statusCode ?? 0} ${body}`) })
        })
        ws.once('open', () => { resolve(`open with ${JSON.stringify(ws.protocol)}`) })
        ws.once('error', (err) => { resolve(`error ${err.message}`) })
      }), 3000, 'the answer')
      assert.match(outcome, /^400 .*subprotocol "mqtt"/, `offered ${JSON.stringify(offered)}`)
      ws.terminate()
    }
    await waitFor(() => broker.connections.size + broker.handshakes.size === 0, { timeoutMs: 2000, message: 'nothing held' })
    // "mqtt" among others is still chosen
    const p = await open(url, ['foo', 'mqtt'])
    assert.equal(p.ws.protocol, 'mqtt')
    p.ws.close()
  })
})

test('[MQTT-6.0.0-2] packets split across frames, across continuation frames, and several in one frame are all decoded', async () => {
  await withWsBroker(async (_broker, url) => {
    const c = connect('frames')
    const split = await open(url, ['mqtt'])
    for (const byte of c) split.ws.send(Buffer.from([byte]))
    assert.equal((await split.next()).type, 'connack')
    split.ws.close()
    // one message in three frames (FIN only on the last)
    const fragmented = await open(url, ['mqtt'])
    fragmented.ws.send(c.subarray(0, 2), { fin: false })
    fragmented.ws.send(c.subarray(2, 5), { fin: false })
    fragmented.ws.send(c.subarray(5), { fin: true })
    assert.equal((await fragmented.next()).type, 'connack')
    fragmented.ws.close()
    // CONNECT, two PINGREQs and the first byte of a third in one frame; its second byte alone
    const batched = await open(url, ['mqtt'])
    batched.ws.send(Buffer.concat([c, PINGREQ, PINGREQ, PINGREQ.subarray(0, 1)]))
    batched.ws.send(PINGREQ.subarray(1))
    assert.deepEqual([(await batched.next()).type, (await batched.next()).type, (await batched.next()).type, (await batched.next()).type],
      ['connack', 'pingresp', 'pingresp', 'pingresp'])
    batched.ws.close()
  })
})

test('[MQTT-6.0.0-1] a text frame closes the connection (1003) and is not decoded: a CONNECT in one gets no CONNACK; a wss client too', async () => {
  await withWsBroker(async (broker, url) => {
    const p = await open(url, ['mqtt'])
    p.ws.send(connect('texter').toString('latin1'), { binary: false })
    assert.equal(await withTimeout(p.closed, 3000, 'the close'), 1003)
    assert.deepEqual(p.packets, [])
    assert.equal(broker.online.size, 0)
    // After CONNECT in a binary frame, a PINGREQ in a text frame: closed, no PINGRESP.
    const q = await open(url, ['mqtt'])
    q.ws.send(connect('later'))
    assert.equal((await q.next()).type, 'connack')
    q.ws.send(PINGREQ.toString('latin1'), { binary: false })
    assert.equal(await withTimeout(q.closed, 3000, 'the close'), 1003)
    assert.deepEqual(q.packets.map((x) => x.type), ['connack'])
  })
  const certs = await makeTestCertificates()
  const broker = createBroker({ sysInterval: 0 })
  try {
    const { port } = await broker.listen({ type: 'wss', port: 0, cert: certs.cert, key: certs.key })
    const p = await open(`wss://localhost:${port}`, ['mqtt'], certs.ca)
    p.ws.send(connect('texter').toString('latin1'), { binary: false })
    assert.equal(await withTimeout(p.closed, 3000, 'the close'), 1003)
    assert.deepEqual(p.packets, [])
  } finally {
    await broker.close()
  }
})

const burstPublish = (topicName: string, size: number, fill: number): Buffer =>
  encode({ type: 'publish', topicName, qos: 0, retain: false, dup: false, payload: Buffer.alloc(size, fill) }, 4)

/** A subscriber to burst/# and a publisher, both connected. */
async function burstPair (url: string, ca?: string): Promise<{ sub: Peer, pub: Peer }> {
  const sub = await open(url, ['mqtt'], ca)
  sub.ws.send(connect('burst-sub'))
  assert.equal((await sub.next()).type, 'connack')
  sub.ws.send(encode({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'burst/#', qos: 0 }] }, 4))
  assert.equal((await sub.next()).type, 'suback')
  const pub = await open(url, ['mqtt'], ca)
  pub.ws.send(connect('burst-pub'))
  assert.equal((await pub.next()).type, 'connack')
  return { sub, pub }
}

test('[MQTT-6.0.0-2] what a turn routes to a subscriber leaves in few binary frames of at most 64 KiB (a bigger packet alone), in order', async () => {
  await withWsBroker(async (_broker, url) => {
    const { sub, pub } = await burstPair(url)
    // 900 small PUBLISHes with one of 100 KiB in their middle, in one frame: routed in one go,
    // past the 64 KiB at which the subscriber's batch is written (corked) before the turn ends
    const big = burstPublish('burst/big', 100 * 1024, 7)
    const packets: Buffer[] = []
    for (let i = 0; i < 900; i++) packets.push(...(i === 450 ? [big, burstPublish('burst/a', 64, i % 256)] : [burstPublish('burst/a', 64, i % 256)]))
    const before = sub.frames.length
    pub.ws.send(Buffer.concat(packets))
    const got: Packet[] = []
    while (got.length < 901) got.push(await sub.next())
    assert.deepEqual(got.map((p) => p.type === 'publish' ? p.payload[0] : p.type),
      [...Array.from({ length: 450 }, (_, i) => i % 256), 7, ...Array.from({ length: 450 }, (_, i) => (i + 450) % 256)])
    const frames = sub.frames.slice(before)
    // ws's own stream made each write of a corked batch a frame: one per PUBLISH (~450)
    assert.ok(frames.length <= 10, `${frames.length} frames for 901 PUBLISHes`)
    for (const size of frames) assert.ok(size <= 64 * 1024 || size === big.length, `a frame of ${size} B`)
    pub.ws.close()
    sub.ws.close()
  })
})

test('[MQTT-6.0.0-2] the acks of PUBLISHes that arrive in one socket read, one per WebSocket message, leave in one frame (were one frame and syscall each)', async () => {
  await withWsBroker(async (_broker, url) => {
    const p = await open(url, ['mqtt'])
    p.ws.send(connect('acker'))
    assert.equal((await p.next()).type, 'connack')
    const before = p.frames.length
    // 100 messages of one QoS 1 PUBLISH each, in one write of the client's socket
    const socket = (p.ws as unknown as { _socket: Socket })._socket
    socket.cork()
    for (let i = 1; i <= 100; i++) p.ws.send(encode({ type: 'publish', topicName: 'acks/a', qos: 1, retain: false, dup: false, packetId: i, payload: Buffer.from([i]) }, 4))
    socket.uncork()
    const acks: number[] = []
    while (acks.length < 100) {
      const a = await p.next()
      assert.equal(a.type, 'puback')
      if (a.type === 'puback') acks.push(a.packetId)
    }
    assert.deepEqual(acks, Array.from({ length: 100 }, (_, i) => i + 1), 'in order')
    const frames = p.frames.length - before
    // loopback may split the client's write across reads; 100 without the batching
    assert.ok(frames <= 5, `${frames} frames for 100 PUBACKs`)
    p.ws.close()
  })
})

test('a subscriber that reads everything loses nothing to a burst of QoS 0 PUBLISHes routed in one go: ~700 KB over ws and wss', async () => {
  const certs = await makeTestCertificates()
  // Past write_high_water_mark (256 KiB) plus the session queue (1,000). The socket takes a ws
  // frame at once; TLS completes every write a tick later, taken or not (see heldBytes).
  for (const type of ['ws', 'wss'] as const) {
    const count = 8000
    const broker = createBroker({ sysInterval: 0 })
    try {
      const { port } = await broker.listen({ type, port: 0, ...(type === 'wss' ? { cert: certs.cert, key: certs.key } : {}) })
      const { sub, pub } = await burstPair(`${type}://localhost:${port}`, certs.ca)
      const packets: Buffer[] = []
      for (let i = 0; i < count; i++) packets.push(burstPublish('burst/a', 64, i % 256))
      packets.splice(count / 2, 0, burstPublish('burst/big', 100 * 1024, 7))
      const before = sub.packets.length
      pub.ws.send(Buffer.concat(packets))
      await waitFor(() => sub.packets.length === before + count + 1 || broker.stats.dropsTotal > 0, { timeoutMs: 5000, message: `the burst (${type})` })
      // Before: any write past the stream's own 16 KiB mark counted as refused until the
      // socket's callback, and ws's stream called back a tick later, so the rest of the burst
      // went to the session queue and overflowed it. Over wss the same held until the TLS
      // socket's callback, always a tick later (2,000 PUBLISHes passed, 4,000 did not).
      assert.equal(broker.stats.dropsTotal, 0, `${type}: dropped for a subscriber that reads: ${JSON.stringify(broker.stats.drops)}`)
      assert.ok(sub.packets.slice(before).every((p) => p.type === 'publish'))
      pub.ws.close()
      sub.ws.close()
    } finally {
      await broker.close()
    }
  }
})

test('a subscriber that reads everything loses nothing to ~1.8 MB routed in one turn (one WebSocket message) over ws and wss, as over TCP', async () => {
  const certs = await makeTestCertificates()
  for (const type of ['ws', 'wss'] as const) {
    const count = 24_000
    const broker = createBroker({ sysInterval: 0 })
    try {
      const { port } = await broker.listen({ type, port: 0, ...(type === 'wss' ? { cert: certs.cert, key: certs.key } : {}) })
      const { sub, pub } = await burstPair(`${type}://localhost:${port}`, certs.ca)
      const before = sub.packets.length
      pub.ws.send(Buffer.concat(Array.from({ length: count }, (_, i) => burstPublish('burst/a', 64, i % 256))))
      await waitFor(() => sub.packets.length === before + count || broker.stats.dropsTotal > 0, { timeoutMs: 10_000, message: `the burst (${type})` })
      // Before: over wss what waited for the TLS socket's next write counted past 768 KiB
      // (3 × write_high_water_mark) with the kernel refusing nothing, so past ~1 MiB plus the
      // session queue (1,000) the turn's PUBLISHes were dropped (queue_full) for a subscriber
      // that read them all; over ws the kernel took the same bytes at once and none was dropped.
      assert.equal(broker.stats.dropsTotal, 0, `${type}: dropped for a subscriber that reads: ${JSON.stringify(broker.stats.drops)}`)
      pub.ws.close()
      sub.ws.close()
    } finally {
      await broker.close()
    }
  }
})

test('a WebSocket subscriber that stops reading gets backpressure (ws and wss): the broker stops writing to it, and its QoS 0 overflow is dropped and counted', async () => {
  const certs = await makeTestCertificates()
  for (const type of ['ws', 'wss'] as const) {
    const broker = createBroker({ sysInterval: 0 })
    try {
      const { port } = await broker.listen({ type, port: 0, ...(type === 'wss' ? { cert: certs.cert, key: certs.key } : {}) })
      const url = `${type}://localhost:${port}`
      const sub = await open(url, ['mqtt'], certs.ca)
      sub.ws.send(connect('stalled'))
      assert.equal((await sub.next()).type, 'connack')
      sub.ws.send(encode({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'stall/#', qos: 0 }] }, 4))
      assert.equal((await sub.next()).type, 'suback')
      sub.ws.pause() // reads nothing more: its socket's buffers fill, then the broker's
      const pub = await open(url, ['mqtt'], certs.ca)
      pub.ws.send(connect('flooder'))
      assert.equal((await pub.next()).type, 'connack')
      // 32 MB, far more than loopback socket buffers hold
      const batch = Buffer.concat(new Array<Buffer>(256).fill(encode({ type: 'publish', topicName: 'stall/a', qos: 0, retain: false, dup: false, payload: Buffer.alloc(4096, 1) }, 4)))
      for (let i = 0; i < 32; i++) pub.ws.send(batch)
      await waitFor(() => broker.stats.messagesIn[0] === 32 * 256, { timeoutMs: 20_000, message: `all published (${type})` })
      const written = broker.stats.messagesOut[0] as number
      assert.ok(written < 32 * 256 / 2, `${type}: ${written} of ${32 * 256} written to a socket that reads nothing`)
      assert.ok(broker.stats.drops.queue_full + broker.stats.drops.filter_limit > 0, JSON.stringify(broker.stats.drops))
      const session = broker.sessions.get('stalled')
      assert.ok(session !== undefined && session.queueBytes <= 4 * 1024 * 1024, `${type}: queued ${session?.queueBytes} B`)
      pub.ws.terminate()
      sub.ws.terminate()
    } finally {
      await broker.close()
    }
  }
})
