// Delivery guarantees through faults: persistent sessions at QoS 1 / 2 whose links are cut
// again and again while a publisher sends, with real clients (Petrel's and MQTT.js) through
// the TCP fault proxy. Every message arrives (QoS 1: at least once, QoS 2: exactly once), in
// the order published [MQTT-4.6.0-6]; nothing is dropped by the broker.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import mqtt from 'mqtt'
import { connect, type MqttClient } from '@petrel/client'
import { createBroker } from '@petrel/broker'
import { FaultProxy, progressCutter, waitFor, withTimeout } from '@petrel/test-utils'
import { sleep } from './helpers.js'

const N_PETREL = 10_000
const CUTS = 20
const fast = { backoff: { initialDelayMs: 20, maxDelayMs: 200 }, connectTimeoutMs: 3000 }

/** What a subscriber saw: every payload in arrival order. */
interface Received { order: number[], counts: Map<number, number> }

function record (r: Received, payload: Uint8Array): number {
  const k = Number(Buffer.from(payload).toString())
  r.order.push(k)
  r.counts.set(k, (r.counts.get(k) ?? 0) + 1)
  return r.counts.size
}

/** Each message's first arrival comes after every earlier message's first arrival. */
function firstArrivalsInOrder (r: Received): void {
  const seen = new Set<number>()
  let last = -1
  for (const k of r.order) {
    if (seen.has(k)) continue
    seen.add(k)
    assert.ok(k > last, `message ${k} first arrived after ${last} [MQTT-4.6.0-6]`)
    last = k
  }
}

type Kind = 'petrel' | 'mqttjs'

for (const [qos, subKind, subV, pubKind, pubV] of [
  [1, 'petrel', 5, 'petrel', 4], [2, 'petrel', 4, 'petrel', 5], [2, 'petrel', 5, 'petrel', 5], [1, 'mqttjs', 4, 'petrel', 5],
  [2, 'mqttjs', 5, 'petrel', 4], [2, 'petrel', 5, 'mqttjs', 4]
] as Array<[1 | 2, Kind, 4 | 5, Kind, 4 | 5]>) {
  // MQTT.js replays what is unacknowledged one at a time after each reconnect (DESIGN.md): 10,000
  // across 20 cuts take ~30 s, 2,000 ~13 s, 1,000 a few.
  const N = pubKind === 'mqttjs' ? 1000 : N_PETREL
  test(`${N} QoS ${qos} messages to a persistent ${subKind} v${subV} subscriber (${pubKind} v${pubV} publisher) across ${CUTS} cuts of both links`, { timeout: 60_000 }, async () => {
    // Within the queue bound (the default 1,000 drops QoS 1/2 for a subscriber offline that long).
    const broker = createBroker({ sysInterval: 0, sweepIntervalMs: 50, limits: { maxQueuedMessages: N, maxQueuedBytes: 64 * 1024 * 1024 } })
    const { port } = await broker.listen({ port: 0 })
    const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port }, delayMs: 1 })
    const closers: Array<() => Promise<void>> = []
    try {
      const topic = `faults/${qos}`
      const got: Received = { order: [], counts: new Map() }
      const cutter = progressCutter(proxy, N, CUTS)
      if (subKind === 'petrel') {
        const sub = await connect(proxy.url, { ...fast, clientId: 'sub', clean: false, protocolVersion: subV })
        closers.push(async () => { await sub.end({ force: true }) })
        await sub.subscribe(topic, { qos }, (m) => { cutter.check(record(got, m.payload)) })
      } else {
        const sub = mqtt.connect(proxy.url, {
          clientId: 'sub', clean: false, protocolVersion: subV, reconnectPeriod: 50, connectTimeout: 3000,
          ...(subV === 5 ? { properties: { sessionExpiryInterval: 300 } } : {})
        })
        closers.push(async () => { await sub.endAsync(true) })
        sub.on('error', () => {})
        sub.on('message', (_t, payload) => { cutter.check(record(got, payload)) })
        await withTimeout(new Promise<void>((resolve) => sub.once('connect', () => { resolve() })), 5000, 'MQTT.js connect')
        await sub.subscribeAsync(topic, { qos })
      }
      let all: Promise<unknown>
      if (pubKind === 'petrel') {
        const pub: MqttClient = await connect(proxy.url, { ...fast, clientId: 'pub', clean: false, protocolVersion: pubV })
        closers.push(async () => { await pub.end({ force: true }) })
        all = Promise.all(Array.from({ length: N }, async (_, i) => { await pub.publish(topic, String(i), { qos }) }))
      } else {
        // MQTT.js keeps its unacknowledged publishes (and PUBRELs) in memory and resends them on reconnect
        const pub = mqtt.connect(proxy.url, { clientId: 'pub', clean: false, protocolVersion: pubV, reconnectPeriod: 50, connectTimeout: 3000 })
        closers.push(async () => { await pub.endAsync(true) })
        pub.on('error', () => {})
        await withTimeout(new Promise<void>((resolve) => pub.once('connect', () => { resolve() })), 5000, 'MQTT.js connect')
        all = Promise.all(Array.from({ length: N }, async (_, i) => { await pub.publishAsync(topic, String(i), { qos }) }))
      }
      await withTimeout(all, 40_000, 'publishes')
      await waitFor(() => got.counts.size === N, { timeoutMs: 15_000, message: `received ${got.counts.size} of ${N}; broker drops ${JSON.stringify(broker.stats.drops)}` })
      assert.equal(cutter.made(), CUTS, 'every cut fell inside the transfer')
      firstArrivalsInOrder(got)
      if (qos === 2) {
        await sleep(300) // late duplicates, if any, would arrive now
        const dupes = [...got.counts.entries()].filter(([, n]) => n !== 1)
        assert.deepEqual(dupes.slice(0, 5), [], 'each QoS 2 message arrives exactly once')
      }
      assert.equal(broker.stats.dropsTotal, 0, `broker drops ${JSON.stringify(broker.stats.drops)}`)
    } finally {
      for (const c of closers) await c()
      await proxy.close()
      await broker.close()
    }
  })
}

for (const qos of [1, 2] as const) {
  test(`QoS ${qos} to a persistent subscriber whose link goes dead silently (blackhole): it reconnects after its keepalive, takes its session over from the half-open one, and gets every message`, { timeout: 30_000 }, async () => {
    const broker = createBroker({ sysInterval: 0, sweepIntervalMs: 50 })
    const { port } = await broker.listen({ port: 0 })
    const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port } })
    const closers: Array<() => Promise<void>> = []
    try {
      const topic = `blackhole/${qos}`
      const got: Received = { order: [], counts: new Map() }
      const sub = await connect(proxy.url, { ...fast, clientId: 'sub', clean: false, protocolVersion: 5, keepalive: 1, pingTimeoutMs: 500 })
      closers.push(async () => { await sub.end({ force: true }) })
      await sub.subscribe(topic, { qos }, (m) => { record(got, m.payload) })
      // the publisher connects directly: only the subscriber's link dies
      const pub = await connect(`mqtt://127.0.0.1:${port}`, { clientId: 'pub', protocolVersion: 5 })
      closers.push(async () => { await pub.end({ force: true }) })
      const n = 600
      const sends: Array<Promise<unknown>> = []
      for (let i = 0; i < n; i++) {
        if (i === 200) proxy.blackhole(true) // the broker keeps writing into a link that is gone
        if (i === 400) proxy.blackhole(false)
        sends.push(pub.publish(topic, String(i), { qos }))
        await sleep(5)
      }
      await withTimeout(Promise.all(sends), 10_000, 'publishes')
      await waitFor(() => got.counts.size === n, { timeoutMs: 10_000, message: `received ${got.counts.size} of ${n}` })
      assert.ok(sub.stats().connects >= 2, 'the subscriber reconnected')
      firstArrivalsInOrder(got)
      if (qos === 2) {
        await sleep(200)
        assert.deepEqual([...got.counts.entries()].filter(([, c]) => c !== 1).slice(0, 5), [], 'exactly once')
      }
      assert.equal(broker.stats.dropsTotal, 0, JSON.stringify(broker.stats.drops))
    } finally {
      for (const c of closers) await c()
      await proxy.close()
      await broker.close()
    }
  })
}

test('a Petrel client with topicAliasMaximum 65,535 keeps at most 16 MiB of the topic names this broker aliases first come, first served (any publisher picks them: 4 GB of 64 KiB names): all delivered, and the use of an alias it did not keep closes the link (0x97) and the message comes again', { timeout: 60_000 }, async () => {
  // the broker's own bounds on outbound aliases lifted, so that the client's is the one reached
  const broker = createBroker({ sysInterval: 0, limits: { maxOutboundTopicAliases: 65535, maxOutboundTopicAliasBytes: 64 * 1024 * 1024 } })
  const { port } = await broker.listen({ port: 0 })
  const url = `mqtt://127.0.0.1:${port}`
  const sub = await connect(url, { ...fast, protocolVersion: 5, topicAliasMaximum: 65535, clean: false, clientId: 'alias-sub', sessionExpiryInterval: 60 })
  const pub = await connect(url, { ...fast, protocolVersion: 5 })
  const disconnects: Array<string | undefined> = []
  sub.on('disconnect', ({ error }) => { disconnects.push(`${error?.code ?? ''} ${error?.reasonCode ?? ''}`) })
  const got: string[] = []
  try {
    await sub.subscribe('big/#', { qos: 1 }, (m) => { got.push(`${m.topic.slice(0, m.topic.indexOf('/', 4))} ${m.payload.toString()}`) })
    const name = (i: number): string => `big/${i}/`.padEnd(65_000, 'x')
    for (let i = 1; i <= 150; i++) await pub.publish(name(i), 'first', { qos: 1 })
    await waitFor(() => got.length === 150, { timeoutMs: 20_000, message: '150 messages' })
    // Alias 1's name was kept: the broker sends it without the name, and it still resolves.
    await pub.publish(name(1), 'again', { qos: 1 })
    await waitFor(() => got.length === 151, { timeoutMs: 5000, message: 'again' })
    assert.equal(got[150], 'big/1 again')
    assert.deepEqual(disconnects, [])
    // Alias 140's was not (past 16 MiB): the link is closed, and the resumed session resends it whole.
    await pub.publish(name(140), 'later', { qos: 1 })
    await waitFor(() => got.length === 152, { timeoutMs: 10_000, message: 'the message after the reconnect' })
    assert.equal(got[151], 'big/140 later')
    assert.deepEqual(disconnects, ['PETREL_ERR_QUOTA_EXCEEDED 151'])
    assert.equal(sub.stats().connects, 2)
  } finally {
    await sub.end({ force: true })
    await pub.end({ force: true })
    await broker.close()
  }
})
