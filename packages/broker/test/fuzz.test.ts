// Bad input: thousands of connections sending random and mutated packets while a well-behaved
// MQTT.js client publishes and receives QoS 1. The broker stays up, the good client loses
// nothing, and memory stays bounded.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import mqtt from 'mqtt'
import fc from 'fast-check'
import { encode, type Packet, type ProtocolVersion } from '@petrel/wire'
import { createBroker } from '@petrel/broker'
import { waitFor } from '@petrel/test-utils'
import { duplexPair, sleep } from './helpers.js'

/** Valid packets to start from; mutations of them reach deeper into the decoder than random bytes. */
function seeds (v: ProtocolVersion, n: number): Buffer[] {
  const packets: Packet[] = [
    { type: 'connect', protocolVersion: v, clientId: `fz-${n}`, cleanStart: n % 2 === 0, keepAlive: 30, username: 'u', password: Buffer.from('p'), will: { topicName: 'fz/will', payload: Buffer.from('w'), qos: 1, retain: false } },
    { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'fz/+/x', qos: 2 }, { topicFilter: '$share/g/fz/#', qos: 1 }] },
    { type: 'publish', topicName: 'fz/a/x', payload: Buffer.from('hello'), qos: 1, retain: n % 3 === 0, dup: false, packetId: 2, properties: v === 5 ? { topicAlias: 1, messageExpiryInterval: 5, userProperties: [['k', 'v']] } : undefined },
    { type: 'publish', topicName: 'fz/b', payload: Buffer.alloc(40), qos: 2, retain: false, dup: false, packetId: 3 },
    { type: 'pubrel', packetId: 3 },
    { type: 'unsubscribe', packetId: 4, topicFilters: ['fz/+/x'] },
    { type: 'pingreq' },
    { type: 'puback', packetId: 1 },
    { type: 'disconnect', reasonCode: v === 5 ? 0x04 : undefined }
  ]
  return packets.map((p) => encode(p, v))
}

const caseArb = fc.record({
  version: fc.constantFrom<ProtocolVersion>(3, 4, 5),
  keep: fc.integer({ min: 1, max: 9 }),
  mode: fc.constantFrom('random', 'flip', 'truncate', 'splice', 'header'),
  bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
  positions: fc.array(fc.nat(), { minLength: 1, maxLength: 6 }),
  n: fc.nat(1000)
})
type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never

function input (c: Case): Buffer {
  const packets = seeds(c.version, c.n).slice(0, c.keep)
  const valid = Buffer.concat(packets)
  switch (c.mode) {
    case 'random': return Buffer.from(c.bytes)
    case 'flip': {
      const b = Buffer.from(valid)
      c.positions.forEach((p, i) => { b[p % b.length] = c.bytes[i % c.bytes.length] as number })
      return b
    }
    case 'truncate': return valid.subarray(0, (c.positions[0] as number) % valid.length)
    case 'splice': {
      const at = (c.positions[0] as number) % valid.length
      return Buffer.concat([valid.subarray(0, at), Buffer.from(c.bytes), valid.subarray(at)])
    }
    default: {
      // valid CONNECT, then a packet whose header claims a huge or odd length
      const head = packets[0] as Buffer
      return Buffer.concat([head, Buffer.from([c.bytes[0] as number, 0xff, 0xff, 0xff, 0x7f]), Buffer.from(c.bytes)])
    }
  }
}

test('fuzz: random and mutated packets on thousands of connections; a good client loses nothing', async (t) => {
  const broker = createBroker({ sysInterval: 0, sweepIntervalMs: 50, limits: { connectTimeoutMs: 500 } })
  const { port } = await broker.listen({ port: 0 })
  try {
    await storm(broker, port, (m) => { t.diagnostic(m) })
  } finally {
    await broker.close()
  }
})

async function storm (broker: ReturnType<typeof createBroker>, port: number, note: (m: string) => void): Promise<void> {
  const t0 = Date.now()
  const good = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, clientId: 'good-client', reconnectPeriod: 0 })
  // MQTT.js leaves Nagle on: awaiting each QoS 1 publish while also receiving it back costs a
  // delayed-ACK round (~40 ms) per message on any broker that answers in one segment.
  ;(good.stream as import('node:net').Socket).setNoDelay(true)
  const received = new Set<string>()
  good.on('message', (_t, p) => { received.add(p.toString()) })
  await good.subscribeAsync('good/#', { qos: 1 })
  let published = 0
  let stop = false
  const publisher = (async () => {
    while (!stop) {
      await good.publishAsync('good/ping', String(published++), { qos: 1 })
      await sleep(2)
    }
  })()
  const heap0 = process.memoryUsage().heapUsed
  const cases = fc.sample(caseArb, { numRuns: 5000, seed: 4242 })
  let i = 0
  // in-memory connections (most cases) ...
  for (; i < 4000; i++) {
    const [a, b] = duplexPair()
    broker.handle(a)
    b.on('data', () => {})
    b.on('error', () => {})
    b.write(input(cases[i] as Case))
    if (i % 3 === 0) b.end()
    else setTimeout(() => { b.destroy() }, 5)
    if (i % 50 === 0) await sleep(10) // let the good client interleave with the storm
  }
  note(`in-memory cases done at ${Date.now() - t0} ms`)
  // ... and real TCP sockets, 25 at a time
  for (; i < cases.length; i += 25) {
    await Promise.all(cases.slice(i, i + 25).map(async (c) => {
      const s = connect({ host: '127.0.0.1', port })
      s.on('error', () => {})
      s.on('data', () => {})
      await new Promise<void>((resolve) => s.once('connect', resolve))
      s.write(input(c))
      await sleep(5)
      s.destroy()
    }))
  }
  note(`tcp cases done at ${Date.now() - t0} ms; good client published ${published}`)
  // keep the good client going for a while after the storm too
  await waitFor(() => published >= 300, { timeoutMs: 20_000, message: 'good client publishing' })
  stop = true
  await publisher
  await waitFor(() => received.size === published, { timeoutMs: 10_000, message: `good client got ${received.size} of ${published}` })
  for (let k = 0; k < published; k++) assert.ok(received.has(String(k)), `message ${k} lost`)
  note(`good client verified at ${Date.now() - t0} ms: ${published} sent, ${received.size} received`)
  await good.endAsync()
  await waitFor(() => broker.connections.size === 0, { timeoutMs: 5000, message: `${broker.connections.size} connections left open` })
  assert.ok(broker.stats.protocolErrors > 500, `protocol errors ${broker.stats.protocolErrors}`)
  const growth = process.memoryUsage().heapUsed - heap0
  assert.ok(growth < 96 * 1024 * 1024, `heap grew by ${(growth / 1048576).toFixed(1)} MiB`)
}
