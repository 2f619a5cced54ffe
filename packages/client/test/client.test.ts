import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { connect as netConnect, createServer, type AddressInfo, type Socket } from 'node:net'
import { hasProgram, requirePeer, startMosquitto, waitFor, withTimeout, type Mosquitto } from '@petrel/test-utils'
import { connect, createClient, type ClientOptions, type ConnectEvent, type Message, type MqttClient, type PublishOptions } from '../src/index.js'
import { encode, PetrelError } from '@petrel/wire'

// Against a real mosquitto 2.x, both protocol versions.

let broker: Mosquitto | undefined
before(async () => {
  if (hasProgram('mosquitto')) broker = await startMosquitto()
})
after(async () => { await broker?.stop() })

const clients: MqttClient[] = []
async function open (v: 4 | 5, opts: Parameters<typeof connect>[1] = {}): Promise<MqttClient> {
  const c = await connect((broker as Mosquitto).url, { protocolVersion: v, ...opts })
  clients.push(c)
  return c
}
after(async () => { await Promise.all(clients.map(async (c) => { await c.end({ force: true }) })) })

/** `n` messages through next(), without ending the iteration (a `break` out of `for await` unsubscribes). */
async function take (sub: AsyncIterator<Message>, n: number, ms = 5000): Promise<Message[]> {
  const out: Message[] = []
  await withTimeout((async () => {
    while (out.length < n) {
      const r = await sub.next()
      if (r.done === true) break
      out.push(r.value)
    }
  })(), ms, `${n} messages`)
  return out
}

async function collect (it: AsyncIterable<Message>, n: number, ms = 5000): Promise<Message[]> {
  const out: Message[] = []
  await withTimeout((async () => {
    for await (const m of it) {
      out.push(m)
      if (out.length === n) break
    }
  })(), ms, `${n} messages`)
  return out
}

let seq = 0
const uniq = (s: string): string => `${s}/${process.pid}/${++seq}`

for (const v of [4, 5] as const) {
  test(`v${v}: QoS 0/1/2 both directions, granted QoS downgrades`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const c = await open(v)
    const other = await open(v)
    const topic = uniq('qos')
    // Two clients: overlapping filters of one 3.1.1 client get one copy per subscription from mosquitto.
    const sub2 = await c.subscribe(`${topic}/#`, { qos: 2 })
    const sub1 = await other.subscribe(`${topic}/+`, { qos: 1 })
    assert.deepEqual(sub2.reasonCodes, [2])
    assert.deepEqual(sub1.reasonCodes, [1])
    for (const q of [0, 1, 2] as const) {
      const r = await c.publish(`${topic}/x`, `m${q}`, { qos: q })
      assert.ok(r.reasonCode < 0x80)
    }
    const got2 = await collect(sub2, 3)
    const got1 = await collect(sub1, 3)
    assert.deepEqual(got2.map((m) => [m.payload.toString(), m.qos]), [['m0', 0], ['m1', 1], ['m2', 2]])
    assert.deepEqual(got1.map((m) => [m.payload.toString(), m.qos]), [['m0', 0], ['m1', 1], ['m2', 1]])
    assert.equal(c.stats().inflight, 0)
  })

  test(`v${v}: many QoS 1 and 2 publishes in flight at once all complete`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const c = await open(v, { inflightWindow: 50 })
    const topic = uniq('burst')
    const received: string[] = []
    await c.subscribe(topic, { qos: 2 }, (m) => { received.push(m.payload.toString()) })
    const ps: Array<Promise<unknown>> = []
    for (let i = 0; i < 2000; i++) ps.push(c.publish(topic, String(i), { qos: (i % 2 + 1) as 1 | 2 }))
    await withTimeout(Promise.all(ps), 20_000, 'publishes')
    await waitFor(() => received.length === 2000, { timeoutMs: 10_000, message: `received ${received.length}` })
    assert.equal(new Set(received).size, 2000)
    // Order holds per QoS level [MQTT-4.6.0-5]; mosquitto forwards QoS 2 only after PUBREL.
    const odd = received.map(Number).filter((n) => n % 2 === 1)
    assert.deepEqual(odd, [...odd].sort((a, b) => a - b))
  })

  test(`v${v}: retained messages and a clean retained clear`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const c = await open(v)
    const topic = uniq('retain')
    await c.publish(topic, 'kept', { qos: 1, retain: true })
    const sub = await c.subscribe(topic, { qos: 1 })
    const [m] = await collect(sub, 1)
    assert.equal(m?.payload.toString(), 'kept')
    assert.equal(m?.retain, true)
    await c.publish(topic, '', { qos: 1, retain: true })
  })

  test(`v${v}: the will is published when the link dies without DISCONNECT`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const watcher = await open(v)
    const topic = uniq('will')
    const sub = await watcher.subscribe(topic, { qos: 1 })
    let socket: Socket | undefined
    const b = broker as Mosquitto
    const dying = await connect(undefined, {
      protocolVersion: v,
      reconnect: false,
      will: { topic, payload: 'gone', qos: 1 },
      transport: async () => await new Promise<Socket>((resolve) => { const s = netConnect(b.port, b.host, () => { resolve(s) }); socket = s })
    })
    socket?.destroy()
    const [m] = await collect(sub, 1)
    assert.equal(m?.payload.toString(), 'gone')
    await dying.end({ force: true })
  })

  test(`v${v}: persistent session queues QoS 1 while offline and resumes (session present)`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const id = `persist-${v}-${process.pid}-${++seq}`
    const topic = uniq('offline')
    const first = await open(v, { clientId: id, clean: false })
    await first.subscribe(topic, { qos: 1 })
    await first.end()
    const pub = await open(v)
    for (let i = 0; i < 5; i++) await pub.publish(topic, `o${i}`, { qos: 1 })
    // createClient: the local subscription exists before the broker starts replaying the session.
    const again = createClient((broker as Mosquitto).url, { protocolVersion: v, clientId: id, clean: false })
    clients.push(again)
    let present: boolean | undefined
    again.on('connect', (e) => { present = e.sessionPresent })
    const sub = await again.subscribe(topic, { qos: 1 })
    const got = await collect(sub, 5)
    assert.equal(present, true)
    assert.deepEqual(got.map((m) => m.payload.toString()), ['o0', 'o1', 'o2', 'o3', 'o4'])
  })

  test(`v${v}: end() called from a message handler acks that message first: on a persistent session it is not sent again`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const id = `end-in-handler-${v}-${process.pid}-${++seq}`
    const topic = uniq('end-in-handler')
    const first = await open(v, { clientId: id, clean: false })
    let ending: Promise<void> | undefined
    await first.subscribe(topic, { qos: 1 }, () => { ending ??= first.end() })
    const pub = await open(v)
    await pub.publish(topic, 'once', { qos: 1 })
    await waitFor(() => ending !== undefined, { timeoutMs: 5000, message: 'delivered' })
    await withTimeout(ending as Promise<void>, 5000, 'end()')
    const again = createClient((broker as Mosquitto).url, { protocolVersion: v, clientId: id, clean: false })
    clients.push(again)
    const got: string[] = []
    again.on('unrouted', (m) => { got.push(m.payload.toString()) })
    await again.subscribe(topic, { qos: 1 }, (m) => { got.push(m.payload.toString()) })
    await pub.publish(topic, 'next', { qos: 1 })
    await waitFor(() => got.length > 0, { timeoutMs: 5000, message: 'the next message' })
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.deepEqual(got, ['next'])
  })

  test(`v${v}: session present: messages the broker sends before the app subscribes again reach the subscriptions made after connect()`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const id = `resume-${v}-${process.pid}-${++seq}`
    const [a, b, c] = [uniq('resume-a'), uniq('resume-b'), uniq('resume-c')]
    const first = await open(v, { clientId: id, clean: false, sessionExpiryInterval: 60 })
    // Under v5 these get subscription identifiers 1, 2, 3; the next client's first one is 1 again.
    for (const f of [a, b, c]) await first.subscribe(f, { qos: 1 })
    await first.end()
    const pub = await open(v)
    for (let i = 0; i < 3; i++) for (const [f, name] of [[a, 'a'], [b, 'b'], [c, 'c']] as const) await pub.publish(f, `${name}${i}`, { qos: 1 })
    // The plain way: connect(), then subscribe, one after the other. The broker delivers the
    // queued messages right after CONNACK, before either SUBSCRIBE.
    const again = await open(v, { clientId: id, clean: false, sessionExpiryInterval: 60, unroutedHoldMs: 800 })
    const subB = await again.subscribe(b, { qos: 1 })
    await new Promise((resolve) => setTimeout(resolve, 100))
    const subA = await again.subscribe(a, { qos: 1 })
    const unrouted: string[] = []
    again.on('unrouted', (m) => { unrouted.push(m.payload.toString()) })
    const [gotA, gotB] = await Promise.all([take(subA[Symbol.asyncIterator](), 3), take(subB[Symbol.asyncIterator](), 3)])
    assert.deepEqual(gotB.map((m) => m.payload.toString()), ['b0', 'b1', 'b2'], 'not misrouted by a subscription identifier of the old session')
    assert.deepEqual(gotA.map((m) => m.payload.toString()), ['a0', 'a1', 'a2'])
    // Nobody subscribed to c again: after the hold its messages go to the unrouted listener.
    await waitFor(() => unrouted.length === 3, { timeoutMs: 3000, message: `unrouted ${unrouted.join(',')}` })
    assert.deepEqual(unrouted, ['c0', 'c1', 'c2'])
    assert.equal(again.stats().messagesUnrouted, 0)
    // All acked: a later client with the session gets nothing again. end() resolves once
    // mosquitto has closed the link after DISCONNECT, so it has read the acks before it: the
    // next CONNECT can take the session over at once.
    await again.end()
    const last = await open(v, { clientId: id, clean: false, sessionExpiryInterval: 60, unroutedHoldMs: 300 })
    await last.subscribe([a, b, c], { qos: 1 })
    await new Promise((resolve) => setTimeout(resolve, 500))
    assert.equal(last.stats().messagesReceived, 0, 'nothing redelivered')
  })

  test(`v${v}: client.unsubscribe() removes a subscription the session kept from an earlier client`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const id = `unsub-${v}-${process.pid}-${++seq}`
    const [kept, gone] = [uniq('kept'), uniq('gone')]
    const first = await open(v, { clientId: id, clean: false, sessionExpiryInterval: 60 })
    await first.subscribe([kept, gone], { qos: 1 })
    await first.end()
    const again = await open(v, { clientId: id, clean: false, sessionExpiryInterval: 60 })
    const codes = await again.unsubscribe(gone)
    assert.deepEqual(codes, v === 5 ? [0] : [])
    const local = await again.subscribe(kept, { qos: 1 })
    await assert.rejects(again.unsubscribe(kept), { code: 'PETREL_ERR_INVALID_ARGUMENT' }, 'a filter a local subscription uses')
    await assert.rejects(again.unsubscribe('a/#/b'), { code: 'PETREL_ERR_INVALID_TOPIC_FILTER' })
    const pub = await open(v)
    await pub.publish(gone, 'no', { qos: 1 })
    await pub.publish(kept, 'yes', { qos: 1 })
    const [m] = await take(local[Symbol.asyncIterator](), 1)
    assert.equal(m?.payload.toString(), 'yes')
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal(again.stats().messagesReceived, 1, 'nothing for the filter unsubscribed')
  })

  test(`v${v}: keepalive pings keep an idle connection alive`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const c = await open(v, { keepalive: 1 })
    const before = c.stats().bytesOut
    await new Promise((resolve) => setTimeout(resolve, 2600))
    const s = c.stats()
    assert.equal(s.disconnects, 0, 'mosquitto drops a client silent for 1.5 x keepalive')
    assert.ok(s.bytesOut >= before + 4, 'PINGREQs went out')
    assert.equal(c.connected, true)
  })

  test(`v${v}: shared subscriptions split the messages`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const a = await open(v)
    const b = await open(v)
    const topic = uniq('shared')
    let na = 0
    let nb = 0
    await a.subscribe(`$share/g/${topic}`, { qos: 1 }, () => { na++ })
    await b.subscribe(`$share/g/${topic}`, { qos: 1 }, () => { nb++ })
    const p = await open(v)
    for (let i = 0; i < 20; i++) await p.publish(topic, String(i), { qos: 1 })
    await waitFor(() => na + nb === 20, { timeoutMs: 5000, message: `${na}+${nb}` })
    assert.ok(na > 0 && nb > 0, `${na}/${nb}`)
  })

  test(`v${v}: invalid arguments reject at once`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const c = await open(v)
    await assert.rejects(c.publish('a/+', 'x'), { code: 'PETREL_ERR_INVALID_TOPIC_NAME' })
    await assert.rejects(c.publish('a', 'x', { qos: 3 as 0 }), { code: 'PETREL_ERR_QOS_NOT_SUPPORTED' })
    await assert.rejects(c.subscribe('a/#/b'), { code: 'PETREL_ERR_INVALID_TOPIC_FILTER' })
    // Arguments of the wrong type, from JavaScript callers: typed errors too.
    await assert.rejects(c.publish('a', 42 as unknown as string), { code: 'PETREL_ERR_INVALID_ARGUMENT' })
    await assert.rejects(c.publish('a', { a: 1 } as unknown as string), { code: 'PETREL_ERR_INVALID_ARGUMENT' })
    await assert.rejects(c.publish(undefined as unknown as string, 'x'), { code: 'PETREL_ERR_INVALID_TOPIC_NAME' })
    await assert.rejects(c.subscribe(5 as unknown as string), { code: 'PETREL_ERR_INVALID_TOPIC_FILTER' })
    if (v === 5) await assert.rejects(c.publish('a', 'x', { properties: { contentType: 5 as unknown as string } }), { code: 'PETREL_ERR_INVALID_ARGUMENT' })
    assert.equal(c.stats().publishesSent, 0)
    // A refused SUBSCRIBE leaves the client as it was: it still reconnects.
    if (v === 5) await assert.rejects(c.subscribe('a/b', { userProperties: [['k', 'a\u0000b']] }), { code: 'PETREL_ERR_INVALID_PACKET' })
    c.reconnect()
    await waitFor(() => c.connected && c.stats().connects === 2, { timeoutMs: 5000, message: 'reconnected' })
  })

  test(`v${v}: unsubscribe stops delivery and ends the iterator`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const c = await open(v)
    const topic = uniq('unsub')
    const sub = await c.subscribe(topic, { qos: 1 })
    await c.publish(topic, 'one', { qos: 1 })
    const [m] = await collect(sub, 1)
    assert.equal(m?.payload.toString(), 'one')
    await sub.unsubscribe()
    await c.publish(topic, 'two', { qos: 1 })
    const rest = await collect(sub, 1)
    assert.deepEqual(rest, [], 'iterator ended')
  })
}

test('v5: subscription options (noLocal, retainAsPublished, retainHandling) and identifiers', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const c = await open(5)
  const topic = uniq('opts')
  await c.publish(topic, 'r', { qos: 1, retain: true })
  const noRetained = await c.subscribe(topic, { qos: 1, retainHandling: 2, noLocal: true })
  const rap = await c.subscribe(`${topic}/#`, { qos: 1, retainAsPublished: true })
  const other = await open(5)
  await other.publish(topic, 'live', { qos: 1, retain: true })
  await c.publish(topic, 'own', { qos: 1 })
  const [first] = await collect(noRetained, 1)
  assert.equal(first?.payload.toString(), 'live', 'no retained at subscribe time, and not our own publish')
  assert.deepEqual(first?.properties?.subscriptionIdentifiers?.length, 1)
  const got = await collect(rap, 3)
  assert.deepEqual(got.map((m) => [m.payload.toString(), m.retain]), [['r', true], ['live', true], ['own', false]])
  await c.publish(topic, '', { qos: 1, retain: true })
})

/** A v5 client answering each request on `svc` with `answer(request)`, as a responder does (correlation data copied). */
async function responder (svc: string, answer: (m: Message) => { payload: string, properties?: PublishOptions['properties'] }): Promise<void> {
  const server = await open(5)
  await server.subscribe(svc, { qos: 1 }, async (m) => {
    const rt = m.properties?.responseTopic
    if (rt === undefined) return
    const a = answer(m)
    await server.publish(rt, a.payload, { qos: 1, properties: { ...a.properties, correlationData: m.properties?.correlationData } })
  })
}

test('v5: properties round trip and request/response', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const svc = uniq('svc')
  await responder(svc, (m) => ({ payload: `echo:${m.payload.toString()}`, properties: { userProperties: [['k', 'v']], contentType: 'text/plain' } }))
  const c = await open(5)
  const answers = await Promise.all([c.request(svc, 'a'), c.request(svc, 'b')])
  assert.deepEqual(answers.map((m) => m.payload.toString()), ['echo:a', 'echo:b'])
  assert.deepEqual(answers[0]?.properties?.userProperties, [['k', 'v']])
  assert.equal(answers[0]?.properties?.contentType, 'text/plain')
  // No answer: the signal and end() cancel the wait (not only the timeout).
  const ac = new AbortController()
  const silent = uniq('silent')
  const aborted = c.request(silent, 'x', { signal: ac.signal, timeoutMs: 30_000 })
  setTimeout(() => { ac.abort(new Error('user abort')) }, 100)
  await assert.rejects(aborted, /user abort/)
  const pending = assert.rejects(c.request(silent, 'y', { timeoutMs: 30_000 }), { code: 'PETREL_ERR_CLIENT_CLOSED' })
  await new Promise((resolve) => setTimeout(resolve, 100))
  // It rejects when end() sends DISCONNECT, before end() resolves (on the broker's close).
  await c.end()
  await pending
})

test('v5: request() works for a client id holding + or # (the response topic stays a valid topic name)', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const svc = uniq('svc-id')
  await responder(svc, () => ({ payload: 'pong' }))
  for (const clientId of [`dev+${process.pid}`, `sensor#${process.pid}`]) {
    const c = await open(5, { clientId })
    const answer = await c.request(svc, 'ping', { timeoutMs: 3000 })
    assert.equal(answer.payload.toString(), 'pong', clientId)
  }
})

test('v5: a message declared UTF-8 (Payload Format Indicator) that is not arrives as received, and the link stays up', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const b = broker as Mosquitto
  // Persistent: a client failing the link for it would get it again on every reconnect.
  const c = await open(5, { clientId: 'pfi-sub', clean: false, sessionExpiryInterval: 60 })
  let reconnects = 0
  c.on('reconnect', () => { reconnects++ })
  const sub = await c.subscribe('pfi/x', { qos: 1 })
  // The client refuses to send such a payload itself: a raw publisher does.
  const raw = netConnect(b.port, b.host)
  try {
    await new Promise((resolve) => raw.once('connect', resolve))
    raw.write(encode({ type: 'connect', protocolVersion: 5, clientId: 'pfi-pub', cleanStart: true, keepAlive: 0 }, 5))
    raw.write(encode({ type: 'publish', topicName: 'pfi/x', payload: Buffer.from([0xff, 0xfe]), qos: 1, retain: false, dup: false, packetId: 1, properties: { payloadFormatIndicator: true } }, 5))
    raw.write(encode({ type: 'publish', topicName: 'pfi/x', payload: Buffer.from('after'), qos: 1, retain: false, dup: false, packetId: 2 }, 5))
    const [bad, after] = await take(sub[Symbol.asyncIterator](), 2)
    assert.deepEqual([...(bad?.payload ?? [])], [0xff, 0xfe])
    assert.equal(bad?.properties?.payloadFormatIndicator, true)
    assert.equal(after?.payload.toString(), 'after')
    assert.equal(reconnects, 0)
  } finally {
    raw.destroy()
  }
})

test('v5: outbound topic aliases (QoS 0) are resolved by the broker', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const c = await open(5)
  const topic = uniq('alias/a/rather/long/topic/name')
  const sub = await (await open(5)).subscribe(topic, { qos: 0 })
  for (let i = 0; i < 5; i++) await c.publish(topic, String(i))
  const got = await collect(sub, 5)
  assert.deepEqual(got.map((m) => [m.topic, m.payload.toString()]), [0, 1, 2, 3, 4].map((i) => [topic, String(i)]))
})

test('connection errors are typed: refused port, bad credentials', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const closed = await startMosquitto()
  const port = closed.port
  await closed.stop()
  await assert.rejects(connect(`mqtt://127.0.0.1:${port}`, { connectTimeoutMs: 2000 }), { code: 'PETREL_ERR_CONNECTION_FAILED' })
  const locked = await startMosquitto({ allowAnonymous: false })
  try {
    for (const v of [4, 5] as const) {
      await assert.rejects(connect(locked.url, { protocolVersion: v, username: 'nobody', password: 'x' }), { code: 'PETREL_ERR_NOT_AUTHORIZED' })
    }
  } finally {
    await locked.stop()
  }
})

test('requests made before the first connection queue and go out on connect', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const c = createClient((broker as Mosquitto).url, { protocolVersion: 5 })
  clients.push(c)
  const topic = uniq('early')
  const sub = c.subscribe(topic, { qos: 1 })
  const pub = c.publish(topic, 'early', { qos: 1 })
  const [m] = await collect(await sub, 1)
  await pub
  assert.equal(m?.payload.toString(), 'early')
})

test('end() is graceful: queued publishes complete, later calls reject with PETREL_ERR_CLIENT_CLOSED', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const c = await open(5)
  const ps = Array.from({ length: 100 }, async (_, i) => await c.publish(uniq('end'), String(i), { qos: 1 }))
  await c.end()
  const results = await Promise.allSettled(ps)
  assert.ok(results.every((r) => r.status === 'fulfilled'))
  await assert.rejects(c.publish('x', 'y'), { code: 'PETREL_ERR_CLIENT_CLOSED' })
})

test('stats and Prometheus metrics', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const c = await open(4)
  await c.publish('m/x', 'y', { qos: 1 })
  const s = c.stats()
  assert.equal(s.connects, 1)
  assert.equal(s.publishesAcked, 1)
  assert.ok(s.bytesOut > 0 && s.bytesIn > 0)
  const text = c.metrics()
  assert.match(text, /# TYPE petrel_client_connects_total counter/)
  assert.match(text, new RegExp(`petrel_client_publishes_acked_total\\{client_id="${c.clientId}"\\} 1`))
  assert.equal(s.protocolErrors, 0)
  assert.match(text, /# TYPE petrel_client_protocol_errors_total counter/)
})

test('v5: will properties and will delay: published after the delay, with its properties', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const watcher = await open(5)
  const topic = uniq('will5')
  const sub = await watcher.subscribe(topic, { qos: 1 })
  let socket: Socket | undefined
  const b = broker as Mosquitto
  const dying = await connect(undefined, {
    protocolVersion: 5,
    reconnect: false,
    // The will delay only runs while the session lives: give the session longer than the delay.
    sessionExpiryInterval: 10,
    will: { topic, payload: 'late', qos: 1, properties: { willDelayInterval: 1, contentType: 'text/plain', userProperties: [['why', 'test']] } },
    transport: async () => await new Promise<Socket>((resolve) => { const s = netConnect(b.port, b.host, () => { resolve(s) }); socket = s })
  })
  const cut = performance.now()
  socket?.destroy()
  const [m] = await collect(sub, 1, 8000)
  const took = performance.now() - cut
  assert.equal(m?.payload.toString(), 'late')
  assert.equal(m?.properties?.contentType, 'text/plain')
  assert.deepEqual(m?.properties?.userProperties, [['why', 'test']])
  assert.ok(took >= 900, `published ${Math.round(took)} ms after the link died, before the 1 s delay`)
  await dying.end({ force: true })
})

test('v5: a clean end() does not publish the will', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const watcher = await open(5)
  const topic = uniq('nowill')
  const got: string[] = []
  await watcher.subscribe(topic, { qos: 1 }, (m) => { got.push(m.payload.toString()) })
  const c = await connect((broker as Mosquitto).url, { protocolVersion: 5, will: { topic, payload: 'should not', qos: 1 } })
  await c.end()
  await (await open(5)).publish(topic, 'marker', { qos: 1 })
  await waitFor(() => got.includes('marker'), { timeoutMs: 3000, message: 'marker' })
  assert.deepEqual(got, ['marker'])
})

test('trace: every packet both ways, decoded, in wire order', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const seen: string[] = []
  const c = await open(5, { trace: (direction, p) => { seen.push(`${direction}:${p.type}${p.type === 'publish' ? `:q${p.qos}` : ''}`) } })
  const topic = uniq('trace')
  const sub = await c.subscribe(topic, { qos: 1 })
  await c.publish(topic, 'x', { qos: 1 })
  await take(sub[Symbol.asyncIterator](), 1)
  await c.end()
  assert.deepEqual(seen.slice(0, 4), ['out:connect', 'in:connack', 'out:subscribe', 'in:suback'])
  // Our PUBLISH, its PUBACK, the copy routed back and our PUBACK for it (the broker may order the two inbound ones either way).
  assert.deepEqual(seen.slice(4, -1).sort(), ['in:puback', 'in:publish:q1', 'out:puback', 'out:publish:q1'])
  assert.equal(seen.at(-1), 'out:disconnect')
})

test('v5: session expiry: a session outliving its interval is gone (session present false)', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const id = `expiry-${process.pid}-${++seq}`
  const url = (broker as Mosquitto).url
  const a = await connect(url, { protocolVersion: 5, clientId: id, clean: false, sessionExpiryInterval: 1 })
  await a.subscribe(uniq('exp'), { qos: 1 })
  await a.end()
  const b = await connect(url, { protocolVersion: 5, clientId: id, clean: false, sessionExpiryInterval: 1 })
  const kept = await new Promise<boolean>((resolve) => { b.once('connect', (e) => { resolve(e.sessionPresent) }); b.reconnect() })
  assert.equal(kept, true, 'within the interval the session is resumed')
  await b.end()
  await new Promise((resolve) => setTimeout(resolve, 2200))
  const c = createClient(url, { protocolVersion: 5, clientId: id, clean: false, sessionExpiryInterval: 1 })
  clients.push(c)
  const present = await new Promise<boolean>((resolve) => { c.once('connect', (e) => { resolve(e.sessionPresent) }) })
  assert.equal(present, false, 'after the interval the broker forgot the session')
})

test('v5: CONNACK limits of a restricted mosquitto are enforced before anything is sent', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const m = await startMosquitto({ extraConfig: 'max_qos 1\nretain_available false\nmax_packet_size 1000\nmax_inflight_messages 5' })
  const c = createClient(m.url, { protocolVersion: 5, reconnect: false })
  try {
    const { connack } = await new Promise<ConnectEvent>((resolve) => { c.once('connect', resolve) })
    assert.deepEqual([connack.properties?.receiveMaximum, connack.properties?.maximumQoS], [5, 1])
    const before = c.stats().bytesOut
    await assert.rejects(c.publish('lim/t', 'x', { qos: 2 }), { code: 'PETREL_ERR_QOS_NOT_SUPPORTED', reasonCode: 0x9b })
    await assert.rejects(c.publish('lim/t', 'x', { retain: true }), { code: 'PETREL_ERR_RETAIN_NOT_SUPPORTED' })
    await assert.rejects(c.publish('lim/t', Buffer.alloc(2000)), { code: 'PETREL_ERR_PACKET_TOO_LARGE' })
    assert.equal(c.stats().bytesOut, before, 'nothing written')
    assert.equal(c.stats().publishesSent, 0)
    // Receive Maximum 5 caps the window of 100: 50 QoS 1 publishes still all complete.
    const rs = await Promise.all(Array.from({ length: 50 }, async (_, i) => await c.publish('lim/t', String(i), { qos: 1 })))
    assert.equal(rs.length, 50)
    assert.equal(c.connected, true, 'mosquitto did not disconnect us for exceeding its Receive Maximum')
  } finally {
    await c.end({ force: true })
    await m.stop()
  }
})

test('v5: a CONNECT refused for its content (retained will, 0x9A) or that cannot be encoded is not retried; a beforeConnect that can change it still is', { timeout: 20_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const m = await startMosquitto({ extraConfig: 'retain_available false' })
  const fast = { protocolVersion: 5 as const, backoff: { initialDelayMs: 20, maxDelayMs: 50, jitter: 0 } }
  /** The client's attempts until it closes (at most 3 s), and why it closed. */
  async function untilClosed (c: MqttClient): Promise<{ error: PetrelError | undefined, attempts: number }> {
    clients.push(c)
    c.on('error', () => {})
    const error = await withTimeout(new Promise<PetrelError | undefined>((resolve) => { c.once('close', resolve) }), 3000, 'the client stopping')
    return { error, attempts: c.stats().connectFailures }
  }
  try {
    // createClient() never gives up on its own: only the refusal being final stops it. Before, it
    // dialled again every backoff step (~50 attempts in the 3 s).
    const refused = await untilClosed(createClient(m.url, { ...fast, will: { topic: 'w', payload: 'gone', retain: true } }))
    assert.equal(refused.error?.code, 'PETREL_ERR_CONNECTION_REFUSED')
    assert.equal(refused.error?.reasonCode, 0x9a)
    assert.match(refused.error?.message ?? '', /not retried/)
    assert.equal(refused.attempts, 1)
    // A will payload over 65,535 bytes: no CONNECT can carry it, the client is not even made.
    assert.throws(() => createClient(m.url, { ...fast, will: { topic: 'w', payload: Buffer.alloc(70_000) } }), { code: 'PETREL_ERR_INVALID_ARGUMENT' })
    // Another server may take it: each URL in turn refuses before the client stops.
    const both = await untilClosed(createClient([m.url, m.url], { ...fast, will: { topic: 'w', payload: 'gone', retain: true } }))
    assert.equal(both.error?.reasonCode, 0x9a)
    assert.equal(both.attempts, 2)
    const other = createClient([m.url, (broker as Mosquitto).url], { ...fast, will: { topic: 'w', payload: 'gone', retain: true } })
    clients.push(other)
    other.on('error', () => {})
    await withTimeout(new Promise((resolve) => { other.once('connect', resolve) }), 3000, 'connecting to the second server')
    assert.equal(other.stats().connectFailures, 1)
    // A beforeConnect may send another CONNECT next time: the same refusal is then retried.
    const c = await connect(m.url, {
      ...fast,
      retryInitialConnect: true,
      will: { topic: 'w', payload: 'gone', retain: true },
      beforeConnect: (packet, { attempt }) => attempt < 3 ? packet : { ...packet, will: packet.will === undefined ? undefined : { ...packet.will, retain: false } }
    })
    clients.push(c)
    assert.equal(c.stats().connectFailures, 2)
  } finally {
    await m.stop()
  }
})

test('options no CONNECT can carry (a field over 65,535 bytes) throw from createClient() and reject connect() before any dial', { timeout: 20_000 }, async () => {
  // A listener, not a broker: it only counts the dials.
  let dials = 0
  const server = createServer((s) => { dials++; s.destroy() })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`
  const big = 'x'.repeat(65_536)
  const cases: Array<[string, ClientOptions, RegExp]> = [
    ['will payload', { will: { topic: 'w', payload: Buffer.alloc(70_000) } }, /will\.payload is 70000 bytes/],
    ['will payload (string)', { will: { topic: 'w', payload: big } }, /will\.payload/],
    ['will topic', { will: { topic: big } }, /will\.topic/],
    ['clientId', { clientId: big }, /clientId/],
    ['clientId (multi-byte)', { clientId: '\u00e9'.repeat(40_000) }, /clientId is 80000 bytes/],
    ['username', { username: big }, /username/],
    ['password', { username: 'u', password: Buffer.alloc(65_536) }, /password/],
    ['user property', { properties: { userProperties: [['k', big]] } }, /65,535 bytes/],
    ['will user property', { will: { topic: 'w', properties: { userProperties: [[big, 'v']] } } }, /65,535 bytes/],
    ['will topic wildcard', { will: { topic: 'w/#' } }, /wildcard/],
    ['keepalive', { keepalive: 70_000 }, /keepAlive/]
  ]
  try {
    for (const v of [4, 5] as const) {
      for (const [what, options, message] of cases) {
        if (v === 4 && (what.includes('user property'))) continue
        const o: ClientOptions = { ...options, protocolVersion: v, retryInitialConnect: true, backoff: { initialDelayMs: 10, maxDelayMs: 10 } }
        assert.throws(() => createClient(url, o), { code: 'PETREL_ERR_INVALID_ARGUMENT', message }, `v${v} ${what}: createClient()`)
        await assert.rejects(connect(url, o), { code: 'PETREL_ERR_INVALID_ARGUMENT', message }, `v${v} ${what}: connect()`)
      }
    }
    // The credentials of a URL go into every CONNECT too.
    const longUser = `mqtt://${'u'.repeat(65_536)}:p@127.0.0.1:${(server.address() as AddressInfo).port}`
    assert.throws(() => createClient([url, longUser]), { code: 'PETREL_ERR_INVALID_ARGUMENT', message: /username/ })
    assert.throws(() => createClient(`mqtt://%E0%A4%A:p@127.0.0.1:${(server.address() as AddressInfo).port}`), { code: 'PETREL_ERR_INVALID_ARGUMENT', message: /percent-encoding/ })
    // The largest of each still goes.
    const fits = createClient(url, { clientId: 'x'.repeat(65_535), will: { topic: 't'.repeat(65_535), payload: Buffer.alloc(65_535) }, reconnect: false })
    fits.on('error', () => {})
    await fits.end({ force: true })
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.ok(dials <= 1, `only the valid client may have dialled, saw ${dials}`)
    // A beforeConnect may rewrite the CONNECT: the options are then left to it.
    const hooked = createClient(url, { will: { topic: 'w', payload: Buffer.alloc(70_000) }, reconnect: false, beforeConnect: (p) => ({ ...p, will: undefined }) })
    hooked.on('error', () => {})
    await hooked.end({ force: true })
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
})

test('v4: a PUBLISH over mosquitto\'s max_packet_size (3.1.1 cannot announce it) fails after 3 dropped links instead of ending every link for ever; brokerMaximumPacketSize refuses it unsent', { timeout: 30_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const m = await startMosquitto({ extraConfig: 'max_packet_size 1000' })
  const started: MqttClient[] = []
  try {
    const sub = await connect(m.url, { protocolVersion: 4 })
    started.push(sub)
    const topic = uniq('oversize')
    const got = await sub.subscribe(topic, { qos: 2 })
    for (const qos of [1, 2] as const) {
      // Before, the client replayed the big one on each reconnect, mosquitto closed the link each
      // time, and small-2 (behind it) never went either: 30 links in 3 s with this backoff.
      // QoS 1 republished on new sessions; QoS 2 replayed (DUP) on a kept one, where a PUBREL sent
      // again completes what the broker took (mosquitto delivers QoS 2 on PUBREL: a new session
      // drops a message past PUBREC whose PUBREL was lost with the link).
      const c = await connect(m.url, { protocolVersion: 4, clean: qos === 1, backoff: { initialDelayMs: 20, maxDelayMs: 50, jitter: 0 } })
      started.push(c)
      c.on('error', () => {})
      const results = await withTimeout(Promise.allSettled([
        c.publish(topic, `small-1 q${qos}`, { qos }),
        c.publish(topic, Buffer.alloc(2000), { qos }),
        c.publish(topic, `small-2 q${qos}`, { qos })
      ]), 10_000, 'the three publishes settling')
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled'])
      const err = (results[1] as PromiseRejectedResult).reason as PetrelError
      assert.equal(err.code, 'PETREL_ERR_PACKET_TOO_LARGE')
      assert.match(err.message, /3 times in a row/)
      assert.equal(c.stats().disconnects, 3)
      assert.equal(c.connected, true)
      assert.deepEqual((await take(got, 2)).map((msg) => msg.payload.toString()), [`small-1 q${qos}`, `small-2 q${qos}`])
    }
    // Told the broker's limit, the client refuses it before the wire, and the link stays up.
    const told = await connect(m.url, { protocolVersion: 4, brokerMaximumPacketSize: 1000 })
    started.push(told)
    const before = told.stats().bytesOut
    await assert.rejects(told.publish(topic, Buffer.alloc(2000), { qos: 1 }), { code: 'PETREL_ERR_PACKET_TOO_LARGE', reasonCode: 0x95 })
    await assert.rejects(told.publish(topic, Buffer.alloc(2000)), { code: 'PETREL_ERR_PACKET_TOO_LARGE' })
    assert.equal(told.stats().bytesOut, before, 'nothing written')
    await told.publish(topic, 'fits', { qos: 1 })
    assert.equal((await take(got, 1))[0]?.payload.toString(), 'fits')
    assert.equal(told.stats().disconnects, 0)
  } finally {
    await Promise.all(started.map(async (c) => { await c.end({ force: true }) }))
    await m.stop()
  }
})

test('v5: QoS 0 messages held for a subscription still to come are bounded by bytes (unroutedHoldBytes), not only by count', { timeout: 20_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const id = `holdbytes-${process.pid}-${++seq}`
  const topic = uniq('holdbytes')
  const first = await open(5, { clientId: id, clean: false, sessionExpiryInterval: 60 })
  await first.subscribe(topic, { qos: 0 })
  await first.end()
  // The session's subscription delivers at once; nobody has subscribed again yet: held.
  const again = await open(5, { clientId: id, clean: false, sessionExpiryInterval: 60, unroutedHoldMs: 10_000, unroutedHoldBytes: 1024 * 1024 })
  const pub = await open(5)
  const payload = Buffer.alloc(100 * 1024, 7)
  for (let i = 0; i < 40; i++) await pub.publish(topic, payload)
  await waitFor(() => again.stats().messagesReceived === 40, { timeoutMs: 5000, message: `40 messages received, got ${again.stats().messagesReceived}` })
  // Before, all 40 (4 MB) were held: the count bound is 1,000 messages.
  const unrouted = again.stats().messagesUnrouted
  assert.ok(unrouted >= 30 && unrouted < 40, `at most 1 MiB held: ${40 - unrouted} messages`)
  const sub = await again.subscribe(topic, { qos: 0 })
  const held = await take(sub, 40 - unrouted)
  assert.ok(held.every((m) => m.payload.equals(payload)))
  assert.equal(sub.queued, 0)
})

test('a slow consumer: its bounded queue drops (counted, acked) while other subscriptions and keepalive go on', { timeout: 20_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const c = await open(5, { keepalive: 1 })
  const topic = uniq('slow')
  // Never read: a queue of 10, dropping the newest; QoS 1, so the drops must still be acked.
  const stuck = await c.subscribe(topic, { qos: 1, queueSize: 10, overflow: 'dropNewest' })
  const oldest = await c.subscribe(topic, { qos: 1, queueSize: 10, overflow: 'dropOldest' })
  let fast = 0
  await c.subscribe(topic, { qos: 1 }, () => { fast++ })
  const p = await open(5)
  for (let i = 0; i < 200; i++) await p.publish(topic, String(i), { qos: 1 })
  await waitFor(() => fast === 200, { timeoutMs: 5000, message: `fast subscriber got ${fast}` })
  assert.equal(stuck.queued, 10)
  assert.equal(stuck.dropped, 190)
  assert.equal(oldest.dropped, 190)
  assert.equal(c.stats().messagesDropped, 380)
  // Every inbound PUBLISH was acked (the broker holds nothing in flight for us): nothing is redelivered.
  await new Promise((resolve) => setTimeout(resolve, 2500))
  assert.equal(c.connected, true, 'keepalive kept the link through the stuck subscriptions')
  assert.equal(c.stats().disconnects, 0)
  const first = await collect(stuck, 10)
  assert.deepEqual(first.map((m) => m.payload.toString()), Array.from({ length: 10 }, (_, i) => String(i)), 'dropNewest keeps the first')
  const last = await collect(oldest, 10)
  assert.deepEqual(last.map((m) => m.payload.toString()), Array.from({ length: 10 }, (_, i) => String(190 + i)), 'dropOldest keeps the last')
})

test('manual ack: PUBACK held until msg.ack(); unacked messages come back after a reconnect', { timeout: 20_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const id = `manual-${process.pid}-${++seq}`
  const topic = uniq('manual')
  const c = await open(5, { clientId: id, clean: false, backoff: { initialDelayMs: 50 } })
  const sub = await c.subscribe(topic, { qos: 1, manualAck: true })
  const p = await open(5)
  for (let i = 0; i < 3; i++) await p.publish(topic, `m${i}`, { qos: 1 })
  const got = await take(sub, 3)
  got[0]?.ack() // only the first
  await new Promise((resolve) => setTimeout(resolve, 200))
  c.reconnect() // drops the link: the two unacked messages are redelivered on the resumed session
  const again = await take(sub, 2, 8000)
  assert.deepEqual(again.map((m) => [m.payload.toString(), m.dup]), [['m1', true], ['m2', true]])
  for (const m of again) m.ack()
})

test('throttle against a real broker: 60 QoS 1 publishes at 200 msg/s (burst 10) arrive complete, in order, spread over >= 0.25 s', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const topic = uniq('throttle')
  const receiver = await open(5)
  const arrivals: Array<{ n: number, at: number }> = []
  await receiver.subscribe(topic, { qos: 1 }, (m) => { arrivals.push({ n: Number(m.payload.toString()), at: performance.now() }) })
  const sender = await open(5, { throttle: { messagesPerSecond: 200, burstSeconds: 0.05 } })
  const t0 = performance.now()
  await Promise.all(Array.from({ length: 60 }, async (_, i) => await sender.publish(topic, String(i), { qos: 1 })))
  const acked = performance.now() - t0
  await waitFor(() => arrivals.length === 60, { timeoutMs: 5000 })
  assert.deepEqual(arrivals.map((a) => a.n), Array.from({ length: 60 }, (_, i) => i))
  // 10 pass at once (the burst); the other 50 at 200/s take 250 ms at the least.
  assert.ok(acked >= 240, `acked after ${acked.toFixed(0)} ms`)
  const span = (arrivals[59]?.at ?? 0) - (arrivals[0]?.at ?? 0)
  assert.ok(span >= 200, `arrivals spread over ${span.toFixed(0)} ms`)
  assert.equal(sender.stats().publishesSent, 60)
})

test('supervisor: reconnect() right after connect dials at once; reconnect events number the attempts 1, 2, 3', { timeout: 20_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const m = await startMosquitto()
  const c = await connect(m.url, { backoff: { initialDelayMs: 5000, maxDelayMs: 5000 } })
  let d: MqttClient | undefined
  try {
    const started = Date.now()
    c.reconnect()
    await waitFor(() => c.connected && c.stats().connects === 2, { timeoutMs: 3000, message: 'reconnected without the 5 s backoff' })
    assert.ok(Date.now() - started < 3000)
    await c.end()
    const attempts: number[] = []
    d = await connect(m.url, { backoff: { initialDelayMs: 50, maxDelayMs: 100 } })
    d.on('error', () => {})
    d.on('reconnect', (e) => { attempts.push(e.attempt) })
    await m.kill()
    await waitFor(() => attempts.length >= 3, { timeoutMs: 5000, message: 'three reconnect events' })
    assert.deepEqual(attempts.slice(0, 3), [1, 2, 3])
  } finally {
    await d?.end({ force: true })
    await c.end({ force: true })
    await m.stop()
  }
})

test('iterators: a break out of a manual-ack loop drops (acks) what is queued, so other subscriptions go on; concurrent next() calls are all answered', { timeout: 20_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  // mosquitto's default: 20 QoS 1 messages in flight to a client; unacked ones stop the rest.
  const m = await startMosquitto({ extraConfig: 'max_inflight_messages 20' })
  const c = await connect(m.url, {})
  try {
    const jobs = uniq('jobs')
    const other = uniq('other')
    const sub = await c.subscribe(jobs, { qos: 1, manualAck: true })
    let got = 0
    await c.subscribe(other, { qos: 1 }, () => { got++ })
    for (let i = 0; i < 3; i++) await c.publish(jobs, String(i), { qos: 1 })
    await waitFor(() => sub.queued >= 2, { timeoutMs: 5000, message: 'jobs queued' })
    for await (const job of sub) {
      job.ack()
      break
    }
    assert.equal(sub.queued, 0)
    assert.ok(sub.dropped >= 2, `dropped ${sub.dropped}`)
    assert.equal(c.stats().messagesDropped, sub.dropped, 'counted in the client\'s stats too')
    for (let i = 0; i < 100; i++) await c.publish(other, String(i), { qos: 1 })
    await waitFor(() => got === 100, { timeoutMs: 5000, message: `${got} of 100 on the other subscription` })
    // Two readers of one subscription: each next() gets its own message; end() finishes both.
    const shared = await c.subscribe(uniq('shared'), { qos: 0 })
    const topic = shared.topicFilters[0] as string
    const a = shared.next()
    const b = shared.next()
    await c.publish(topic, 'one')
    await c.publish(topic, 'two')
    const [ra, rb] = await withTimeout(Promise.all([a, b]), 5000, 'both readers')
    assert.deepEqual([ra.value?.payload.toString(), rb.value?.payload.toString()], ['one', 'two'])
    const c1 = shared.next()
    const c2 = shared.next()
    await shared.unsubscribe()
    assert.deepEqual((await withTimeout(Promise.all([c1, c2]), 5000, 'ended readers')).map((r) => r.done), [true, true])
    // A break while the broker is gone neither waits for it nor throws.
    const late = await c.subscribe(uniq('late'), { qos: 1 })
    await m.kill()
    const started = Date.now()
    await late.return()
    assert.ok(Date.now() - started < 500, 'return() does not wait for an UNSUBACK')
  } finally {
    await c.end({ force: true })
    await m.stop()
  }
})

test('a message handler that throws or rejects is reported as an error event with PETREL_ERR_HANDLER_FAILED, its throw as the cause', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const c = await open(5)
  const errors: PetrelError[] = []
  c.on('error', (e) => { errors.push(e) })
  const topic = uniq('handler')
  const thrown = new Error('sync boom')
  // A PetrelError from the app's own call (a publish it awaited) is the handler's failure, not the client's.
  const rejected = new PetrelError('PETREL_ERR_QUEUE_FULL', 'from the app')
  await c.subscribe(`${topic}/sync`, { qos: 1 }, () => { throw thrown })
  await c.subscribe(`${topic}/async`, { qos: 1 }, async () => { throw rejected })
  await c.publish(`${topic}/sync`, 'x', { qos: 1 })
  await c.publish(`${topic}/async`, 'y', { qos: 1 })
  await waitFor(() => errors.length === 2, { timeoutMs: 5000 })
  assert.deepEqual(errors.map((e) => e.code), ['PETREL_ERR_HANDLER_FAILED', 'PETREL_ERR_HANDLER_FAILED'])
  assert.deepEqual(errors.map((e) => e.cause), [thrown, rejected])
})

test('manual ack: an unacked message holds back the PUBACK of a later message of another, auto-ack subscription, as the README says [MQTT-4.6.0-2]', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const pubacks: number[] = []
  const c = await open(4, { trace: (direction, p) => { if (direction === 'out' && p.type === 'puback') pubacks.push(p.packetId) } })
  const topic = uniq('hold')
  const manual = await c.subscribe(`${topic}/manual`, { qos: 1, manualAck: true })
  const auto: Message[] = []
  await c.subscribe(`${topic}/auto`, { qos: 1 }, (m) => { auto.push(m) })
  const p = await open(4)
  await p.publish(`${topic}/manual`, 'held', { qos: 1 })
  const [held] = await take(manual, 1)
  await p.publish(`${topic}/auto`, 'later', { qos: 1 })
  await waitFor(() => auto.length === 1, { timeoutMs: 5000 })
  await new Promise((resolve) => setTimeout(resolve, 100))
  assert.deepEqual(pubacks, [], 'the auto-ack message waits behind the held one')
  held?.ack()
  await waitFor(() => pubacks.length === 2, { timeoutMs: 5000 })
  assert.deepEqual(pubacks, [held?.packetId, auto[0]?.packetId])
})
