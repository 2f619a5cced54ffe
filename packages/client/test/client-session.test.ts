import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Decoder, encode, type ConnackPacket, type ConnectPacket, type ConnectProperties, type Packet, type ProtocolVersion, type PetrelError, type PublishPacket, type QoS, type SubscribePacket } from '@petrel/wire'
import { ClientSession, type ClientSessionOptions, type ControlRequest, type PublishRequest, type PublishResult, type SessionOutput } from '../src/client-session.js'
import type { Message } from '../src/message.js'

// Table tests of the sans-I/O session: inputs are method calls, outputs are recorded packets.

interface Tracked { state: 'pending' | 'ok' | 'err', value: PublishResult | undefined, error: unknown, payload: string }

/** `connect`: the properties of the CONNECT each connection is opened with (Receive Maximum, Topic Alias Maximum...). */
function harness ({ connect: advertised, ...opts }: Partial<ClientSessionOptions> & { connect?: ConnectProperties } = {}) {
  const version = opts.protocolVersion ?? 5
  let decoder = new Decoder({ protocolVersion: version })
  const h = {
    written: [] as Packet[],
    delivered: [] as Message[],
    violations: [] as Error[],
    wakes: [] as number[],
    unrouted: [] as Message[],
    /** Payloads of delivered and unrouted messages, in the order the app saw them. */
    seen: [] as string[],
    /** Whether the app takes unrouted messages (an `unrouted` listener). */
    takesUnrouted: false,
    writable: true,
    now: 0,
    session: undefined as unknown as ClientSession
  }
  const inPlace = Buffer.alloc(8192)
  const out: SessionOutput = {
    write (b) { decoder.pushInto(b, h.written); return h.writable },
    // In-place writes land at an odd offset of one reused buffer: what is decoded is a copy.
    reserve () { return 3 },
    buffer: inPlace,
    commit (size) { decoder.pushInto(Buffer.from(inPlace.subarray(3, 3 + size)), h.written); return h.writable },
    deliver (m) { h.delivered.push(m); h.seen.push(m.payload.toString()) },
    protocolViolation (e) { h.violations.push(e) },
    unrouted (m) {
      if (!h.takesUnrouted) return false
      h.unrouted.push(m)
      h.seen.push(m.payload.toString())
      return true
    },
    wakeAt (t) { h.wakes.push(t) },
    resubscribeFailed () {}
  }
  h.session = new ClientSession({ protocolVersion: version, now: () => h.now, ...opts }, out)
  return {
    ...h,
    get h () { return h },
    /** The session's output port: a test may wrap one of its methods. */
    out,
    up (connack: Partial<ConnackPacket> = {}, connect: ConnectProperties | undefined = advertised) {
      decoder = new Decoder({ protocolVersion: version })
      h.session.connectionUp({ type: 'connack', sessionPresent: false, reasonCode: 0, ...connack }, connectPacket(version, connect))
    },
    take (): Packet[] { return h.written.splice(0) },
    pub (payload: string, qos: QoS = 1, topic = 't'): Tracked {
      const t: Tracked = { state: 'pending', value: undefined, error: undefined, payload }
      const req = h.session.publish(topic, Buffer.from(payload), qos, false, undefined)
      if (req === null) t.state = 'ok'
      else attach(req, t)
      return t
    }
  }
}

function connectPacket (protocolVersion: ProtocolVersion, properties?: ConnectProperties): ConnectPacket {
  return { type: 'connect', protocolVersion, clientId: 'c', cleanStart: false, keepAlive: 0, properties }
}

function attach (req: PublishRequest, t: Tracked): void {
  req.resolve = (v) => { t.state = 'ok'; t.value = v }
  req.reject = (e) => { t.state = 'err'; t.error = e }
}

const publishes = (ps: Packet[]): PublishPacket[] => ps.filter((p): p is PublishPacket => p.type === 'publish')
const ids = (ps: Packet[]): number[] => publishes(ps).map((p) => p.packetId ?? 0)
/** `[code, reasonCode]` of each protocol violation the session reported. */
const violations = (es: Error[]): Array<[string, number | undefined]> => es.map((e) => [(e as PetrelError).code, (e as PetrelError).reasonCode])

test('QoS 1 window: only `inflightWindow` PUBLISH on the wire; out-of-order PUBACK frees a slot', () => {
  const x = harness({ inflightWindow: 3 })
  x.up()
  const reqs = ['a', 'b', 'c', 'd', 'e'].map((p) => x.pub(p))
  let w = x.take()
  assert.deepEqual(publishes(w).map((p) => p.payload.toString()), ['a', 'b', 'c'])
  const [i1, i2, i3] = ids(w) as [number, number, number]
  assert.equal(new Set([i1, i2, i3]).size, 3)
  x.session.handlePacket({ type: 'puback', packetId: i2 })
  assert.equal(reqs[1]?.state, 'ok')
  assert.equal(reqs[0]?.state, 'pending')
  w = x.take()
  assert.deepEqual(publishes(w).map((p) => p.payload.toString()), ['d'])
  assert.ok(![i1, i3].includes(ids(w)[0] as number), 'an id in flight is never reused')
  x.session.handlePacket({ type: 'puback', packetId: i1 })
  x.session.handlePacket({ type: 'puback', packetId: i3 })
  assert.deepEqual(publishes(x.take()).map((p) => p.payload.toString()), ['e'])
  assert.equal(x.session.inflightCount, 2)
})

test('QoS 1/2 window: a place freed in a full window is refilled at once, without waiting for more acks or a timer (a broker with Nagle on holds its other acks until we write)', () => {
  for (const qos of [1, 2] as const) {
    const x = harness({ inflightWindow: 20 })
    x.up()
    for (let i = 0; i < 40; i++) x.pub(String(i), qos)
    const first = ids(x.take())
    assert.equal(first.length, 20)
    const complete = (packetId: number): void => {
      if (qos === 1) x.session.handlePacket({ type: 'puback', packetId })
      else {
        x.session.handlePacket({ type: 'pubrec', packetId })
        x.session.handlePacket({ type: 'pubcomp', packetId })
      }
    }
    x.h.now = 100
    complete(first[0] as number)
    assert.deepEqual(publishes(x.take()).map((p) => p.payload.toString()), ['20'], `QoS ${qos}: one free place of 20 goes out now`)
    assert.deepEqual(x.h.wakes, [], `QoS ${qos}: no timer asked for`)
    for (let i = 1; i < 4; i++) complete(first[i] as number)
    assert.deepEqual(publishes(x.take()).map((p) => p.payload.toString()), ['21', '22', '23'])
    assert.equal(x.session.inflightCount, 20)
    assert.deepEqual(x.violations, [])
  }
})

test('a window of 1 still sends the next publish on each PUBACK', () => {
  const x = harness({ inflightWindow: 1 })
  x.up()
  for (let i = 0; i < 3; i++) x.pub(String(i))
  for (let i = 0; i < 3; i++) {
    const w = publishes(x.take())
    assert.deepEqual(w.map((p) => p.payload.toString()), [String(i)])
    x.session.handlePacket({ type: 'puback', packetId: w[0]?.packetId as number })
  }
})

test('auto-ack QoS 1: PUBACK right after delivery, in arrival order, also behind a held manual ack', () => {
  const x = harness()
  x.up()
  x.session.subscribe([{ topicFilter: 'a/#', qos: 1 }], {})
  x.session.subscribe([{ topicFilter: 'm/#', qos: 1 }], { manualAck: true })
  x.take()
  const pub = (topic: string, id: number): void => { x.session.handlePacket({ type: 'publish', topicName: topic, payload: Buffer.from(String(id)), qos: 1, retain: false, dup: false, packetId: id }) }
  const acks = (): number[] => x.take().map((p) => p.type === 'puback' ? p.packetId : -1)
  pub('a/1', 1)
  assert.deepEqual(acks(), [1])
  assert.equal(x.h.delivered[0]?.needsAck, false, 'nothing for the app to ack on an auto-ack subscription')
  pub('none', 2)
  assert.deepEqual(acks(), [2], 'an unmatched message is acked at once')
  pub('m/1', 3)
  pub('a/2', 4)
  assert.deepEqual(acks(), [], 'held behind the manual-ack message before it [MQTT-4.6.0-2]')
  x.h.delivered[1]?.ack() // m/1 (the unmatched message was not delivered)
  assert.deepEqual(acks(), [3, 4])
})

test('v5: the window is min(inflightWindow, broker Receive Maximum)', () => {
  const x = harness({ inflightWindow: 100 })
  x.up({ properties: { receiveMaximum: 2 } })
  for (let i = 0; i < 5; i++) x.pub(String(i))
  assert.equal(publishes(x.take()).length, 2)
})

test('3.1.1: at most 20 QoS 2 publishes in flight by default (mosquitto drops past its max_inflight_messages 20), in order, QoS 1 not held; 5.0 leaves it to Receive Maximum', () => {
  const x = harness({ protocolVersion: 4 })
  x.up()
  for (let i = 0; i < 25; i++) x.pub(`q2-${i}`, 2)
  x.pub('q1', 1)
  let w = publishes(x.take())
  assert.deepEqual(w.map((p) => p.payload.toString()), Array.from({ length: 20 }, (_, i) => `q2-${i}`))
  // PUBREC leaves the message in flight: the broker holds it until PUBREL
  x.session.handlePacket({ type: 'pubrec', packetId: w[0]?.packetId as number })
  assert.equal(publishes(x.take()).length, 0)
  x.session.handlePacket({ type: 'pubcomp', packetId: w[0]?.packetId as number })
  assert.deepEqual(publishes(x.take()).map((p) => p.payload.toString()), ['q2-20'])
  for (const p of w.slice(1)) {
    x.session.handlePacket({ type: 'pubrec', packetId: p.packetId as number })
    x.session.handlePacket({ type: 'pubcomp', packetId: p.packetId as number })
  }
  w = publishes(x.take())
  assert.deepEqual(w.map((p) => p.payload.toString()), ['q2-21', 'q2-22', 'q2-23', 'q2-24', 'q1'])
  const v5 = harness({ protocolVersion: 5 })
  v5.up()
  for (let i = 0; i < 25; i++) v5.pub(String(i), 2)
  assert.equal(publishes(v5.take()).length, 25)
  const set = harness({ protocolVersion: 4, inflightWindowQos2: 3 })
  set.up()
  for (let i = 0; i < 5; i++) set.pub(String(i), 2)
  assert.equal(publishes(set.take()).length, 3)
})

test('replay with session present: same ids, DUP=1, windowed (not one at a time), PUBREL past PUBREC', () => {
  const x = harness({ inflightWindow: 3 })
  x.up()
  const a = x.pub('a', 2)
  x.pub('b', 1)
  x.pub('c', 1)
  x.pub('d', 1)
  const first = x.take()
  const [ia, ib, ic] = ids(first) as [number, number, number]
  x.session.handlePacket({ type: 'pubrec', packetId: ia })
  assert.deepEqual(x.take(), [{ type: 'pubrel', packetId: ia, reasonCode: 0, properties: undefined }])
  x.session.connectionDown()
  x.up({ sessionPresent: true })
  const replay = x.take()
  // All three slots refilled at once: PUBREL for a, PUBLISH b and c with DUP; d waits for a slot.
  assert.deepEqual(replay.map((p) => p.type), ['pubrel', 'publish', 'publish'])
  assert.deepEqual(publishes(replay).map((p) => [p.packetId, p.dup, p.payload.toString()]), [[ib, true, 'b'], [ic, true, 'c']])
  // A subscribe during replay is not held behind it.
  x.session.subscribe([{ topicFilter: 's/#', qos: 1 }], {})
  assert.deepEqual(x.take().map((p) => p.type), ['subscribe'])
  x.session.handlePacket({ type: 'pubcomp', packetId: ia })
  assert.equal(a.state, 'ok')
  const next = publishes(x.take())
  assert.deepEqual(next.map((p) => [p.payload.toString(), p.dup]), [['d', false]])
  assert.equal(x.session.counters.publishesReplayed, 3)
})

test('QoS 2: the result carries the PUBREC\'s reason code (0x10 No matching subscribers), not the PUBCOMP\'s', () => {
  const x = harness()
  x.up()
  const a = x.pub('a', 2)
  const b = x.pub('b', 2)
  const [ia, ib] = ids(x.take()) as [number, number]
  x.session.handlePacket({ type: 'pubrec', packetId: ia, reasonCode: 0x10 })
  x.session.handlePacket({ type: 'pubrec', packetId: ib })
  assert.deepEqual(x.take().map((p) => p.type), ['pubrel', 'pubrel'])
  x.session.handlePacket({ type: 'pubcomp', packetId: ia, reasonCode: 0 })
  x.session.handlePacket({ type: 'pubcomp', packetId: ib, reasonCode: 0 })
  assert.equal(a.state, 'ok')
  assert.equal(a.value?.reasonCode, 0x10)
  assert.equal(b.value?.reasonCode, 0)
})

test('an ack of the wrong kind for a publish in flight (PUBACK for QoS 2, PUBREC for QoS 1, PUBCOMP for QoS 1 or before PUBREC) is a Protocol Error: nothing settles, the publish is replayed and completes on the next link', () => {
  const cases: Array<{ qos: 1 | 2, ack: 'puback' | 'pubrec' | 'pubcomp' }> = [
    { qos: 2, ack: 'puback' }, { qos: 1, ack: 'pubrec' }, { qos: 1, ack: 'pubcomp' }, { qos: 2, ack: 'pubcomp' }]
  for (const { qos, ack } of cases) {
    const what = `${ack} for QoS ${qos}`
    const x = harness()
    x.up()
    const a = x.pub('a', qos)
    const [id] = ids(x.take()) as [number]
    x.session.handlePacket({ type: ack, packetId: id })
    assert.deepEqual(violations(x.h.violations), [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x82]], what)
    assert.equal(a.state, 'pending', what)
    assert.deepEqual(x.take(), [], `${what}: nothing answered (no PUBREL for a QoS 1 publish)`)
    // An ack for an id not in flight is still let pass (nothing of ours to settle).
    x.session.handlePacket({ type: ack === 'pubrec' ? 'puback' : ack, packetId: id + 1 })
    assert.equal(x.h.violations.length, 1, what)
    x.session.connectionDown()
    x.up({ sessionPresent: true })
    const replay = publishes(x.take())
    assert.deepEqual(replay.map((p) => [p.packetId, p.dup, p.qos]), [[id, true, qos]], what)
    if (qos === 1) x.session.handlePacket({ type: 'puback', packetId: id })
    else {
      x.session.handlePacket({ type: 'pubrec', packetId: id })
      x.session.handlePacket({ type: 'pubcomp', packetId: id })
    }
    assert.equal(a.state, 'ok', what)
  }
})

test('the broker\'s Maximum Packet Size bounds SUBSCRIBE and UNSUBSCRIBE too [MQTT-3.2.2-15]: over it they reject with PETREL_ERR_PACKET_TOO_LARGE, nothing sent', () => {
  const x = harness()
  x.up({ properties: { maximumPacketSize: 64 } })
  const long = `f/${'x'.repeat(100)}`
  assert.throws(() => x.session.subscribe([{ topicFilter: long, qos: 1 }], {}), { code: 'PETREL_ERR_PACKET_TOO_LARGE', reasonCode: 0x95 })
  assert.throws(() => x.session.unsubscribeFilters([long]), { code: 'PETREL_ERR_PACKET_TOO_LARGE', reasonCode: 0x95 })
  assert.deepEqual(x.take(), [])
  // Nothing left behind: a small one goes out, and the next connection resends nothing.
  const { request } = x.session.subscribe([{ topicFilter: 'f/1', qos: 1 }], {})
  assert.deepEqual(x.take().map((p) => p.type), ['subscribe'])
  assert.ok(request !== null)
  x.session.connectionDown()
  x.up({ sessionPresent: true, properties: { maximumPacketSize: 64 } })
  const resent = x.take()
  assert.deepEqual(resent.map((p) => p.type === 'subscribe' ? p.subscriptions.map((s) => s.topicFilter) : p.type), [['f/1']])
  // A resubscribe (session lost) over a limit lowered since: reported as a failed resubscribe.
  const failed: string[] = []
  x.out.resubscribeFailed = (entry, err) => { failed.push(`${entry.subscriptions[0]?.topicFilter ?? ''} ${err.code}`) }
  x.session.handlePacket({ type: 'suback', packetId: resent[0]?.type === 'subscribe' ? resent[0].packetId : 0, reasonCodes: [1] })
  x.session.connectionDown()
  x.up({ sessionPresent: false, properties: { maximumPacketSize: 5 } })
  assert.deepEqual(x.take(), [])
  assert.deepEqual(failed, ['f/1 PETREL_ERR_PACKET_TOO_LARGE'])
})

test('a replay over a Maximum Packet Size lowered since it was sent fails alone [MQTT-3.2.2-15]; a QoS 2 one keeps its id until the session ends', () => {
  const x = harness({ protocolVersion: 5 })
  x.up()
  const big1 = x.session.publish('t', Buffer.alloc(200), 1, false, undefined) as PublishRequest
  const big2 = x.session.publish('t', Buffer.alloc(200), 2, false, undefined) as PublishRequest
  const t1: Tracked = { state: 'pending', value: undefined, error: undefined, payload: '' }
  const t2: Tracked = { state: 'pending', value: undefined, error: undefined, payload: '' }
  attach(big1, t1)
  attach(big2, t2)
  const small = x.pub('s', 1)
  const [i1, i2, i3] = ids(x.take()) as [number, number, number]
  x.session.connectionDown()
  x.up({ sessionPresent: true, properties: { maximumPacketSize: 100 } })
  // Only the small one is resent (DUP); the big ones reject, nothing of them on the wire.
  assert.deepEqual(publishes(x.take()).map((p) => [p.packetId, p.dup]), [[i3, true]])
  assert.deepEqual([t1.state, t2.state], ['err', 'err'])
  assert.equal((t1.error as PetrelError).code, 'PETREL_ERR_PACKET_TOO_LARGE')
  x.session.handlePacket({ type: 'puback', packetId: i3 })
  assert.equal(small.state, 'ok')
  assert.equal(x.session.inflightCount, 0)
  // The QoS 1 id is free again; the QoS 2 one is not, until a session that is not present.
  const taken = (): number[] => {
    const seen: number[] = []
    for (let i = 0; i < 65534; i++) {
      x.session.publish('t', Buffer.alloc(0), 1, false, undefined)
      const got = ids(x.take())
      seen.push(...got)
      for (const id of got) x.session.handlePacket({ type: 'puback', packetId: id })
    }
    return seen
  }
  const used = new Set(taken())
  assert.ok(used.has(i1), 'the QoS 1 id is reused')
  assert.ok(!used.has(i2), 'the QoS 2 id is not')
  x.session.connectionDown()
  x.up({ sessionPresent: false })
  assert.ok(new Set(taken()).has(i2), 'freed with the session')
})

test('a replay the broker\'s new Maximum QoS or Retain Available refuses fails alone [MQTT-3.2.2-11] [MQTT-3.2.2-14]; one past PUBREC still gets its PUBREL', () => {
  const x = harness({ protocolVersion: 5 })
  x.up()
  const track = (req: PublishRequest | null): Tracked => {
    const t: Tracked = { state: 'pending', value: undefined, error: undefined, payload: '' }
    attach(req as PublishRequest, t)
    return t
  }
  const q2 = track(x.session.publish('t', Buffer.from('a'), 2, false, undefined))
  const kept = track(x.session.publish('t', Buffer.from('b'), 1, true, undefined))
  const released = track(x.session.publish('t', Buffer.from('c'), 2, false, undefined))
  const [, , i3] = ids(x.take()) as [number, number, number]
  x.session.handlePacket({ type: 'pubrec', packetId: i3 })
  x.take()
  x.session.connectionDown()
  x.up({ sessionPresent: true, properties: { maximumQoS: 1, retainAvailable: false } })
  assert.deepEqual(x.take().map((p) => p.type), ['pubrel'])
  assert.deepEqual([(q2.error as PetrelError).code, (kept.error as PetrelError).code], ['PETREL_ERR_QOS_NOT_SUPPORTED', 'PETREL_ERR_RETAIN_NOT_SUPPORTED'])
  x.session.handlePacket({ type: 'pubcomp', packetId: i3 })
  assert.equal(released.state, 'ok')
})

test('QoS 2 past PUBREC when the broker lost the session: the publish resolves with the PUBREC\'s reason code', () => {
  const x = harness()
  x.up()
  const a = x.pub('a', 2)
  const [id] = ids(x.take()) as [number]
  x.session.handlePacket({ type: 'pubrec', packetId: id, reasonCode: 0x10 })
  x.session.connectionDown()
  x.up({ sessionPresent: false })
  assert.equal(a.state, 'ok')
  assert.equal(a.value?.reasonCode, 0x10)
})

test('QoS 2 replay: PUBCOMP 0x92 to a resent PUBREL completes the publish (the broker had finished it) and frees the id', () => {
  const x = harness()
  x.up()
  const a = x.pub('a', 2)
  const [id] = ids(x.take()) as [number]
  x.session.handlePacket({ type: 'pubrec', packetId: id })
  assert.deepEqual(x.take().map((p) => p.type), ['pubrel'])
  // The PUBCOMP is lost with the link; the broker completed the flow and forgot the id.
  x.session.connectionDown()
  x.up({ sessionPresent: true })
  assert.deepEqual(x.take(), [{ type: 'pubrel', packetId: id, reasonCode: 0, properties: undefined }])
  x.session.handlePacket({ type: 'pubcomp', packetId: id, reasonCode: 0x92 })
  assert.equal(a.state, 'ok', `rejected: ${String(a.error)}`)
  assert.equal(a.value?.reasonCode, 0, 'the PUBREC\'s code: the broker took it')
  assert.equal(x.session.inflightCount, 0)
  assert.equal(x.session.idle, true)
  // The id is free: a window of one takes the next QoS 2 publish at once.
  const y = harness({ inflightWindow: 1 })
  y.up()
  const first = y.pub('first', 2)
  const [fid] = ids(y.take()) as [number]
  y.session.handlePacket({ type: 'pubrec', packetId: fid })
  y.session.connectionDown()
  y.up({ sessionPresent: true })
  y.take()
  y.pub('second', 2)
  assert.deepEqual(y.take(), [], 'waits for the window')
  y.session.handlePacket({ type: 'pubcomp', packetId: fid, reasonCode: 0x92 })
  assert.equal(first.state, 'ok')
  assert.deepEqual(publishes(y.take()).map((p) => p.payload.toString()), ['second'])
})

test('more than 65,535 queued QoS 1 publishes are all sent and completed (the queue is not keyed by packet id)', () => {
  const x = harness({ inflightWindow: 100, maxQueuedMessages: 100_000 })
  const N = 70_000
  const tracked: Tracked[] = []
  for (let i = 0; i < N; i++) tracked.push(x.pub(String(i)))
  assert.equal(x.session.queuedCount, N)
  x.up()
  const seen: string[] = []
  for (let guard = 0; guard < N; guard++) {
    const w = publishes(x.take())
    if (w.length === 0) break
    for (const p of w) {
      seen.push(p.payload.toString())
      x.session.handlePacket({ type: 'puback', packetId: p.packetId as number })
    }
  }
  assert.equal(seen.length, N)
  assert.equal(seen[0], '0')
  assert.equal(seen[N - 1], String(N - 1))
  assert.ok(seen.every((s, i) => s === String(i)), 'in order')
  assert.ok(tracked.every((t) => t.state === 'ok'))
})

test('manual ack: PUBACKs go out in arrival order [MQTT-4.6.0-2]; ack() is idempotent', () => {
  const x = harness()
  x.up()
  x.session.subscribe([{ topicFilter: 'm/#', qos: 1 }], { manualAck: true })
  x.take()
  for (const id of [10, 11, 12]) x.session.handlePacket({ type: 'publish', topicName: 'm/x', payload: Buffer.from(String(id)), qos: 1, retain: false, dup: false, packetId: id })
  const [m10, m11, m12] = x.h.delivered as [Message, Message, Message]
  assert.deepEqual(x.take(), [])
  m12.ack()
  m10.ack()
  assert.deepEqual(x.take().map((p) => p.type === 'puback' ? p.packetId : -1), [10])
  m10.ack()
  assert.deepEqual(x.take(), [], 'idempotent')
  m11.ack()
  assert.deepEqual(x.take().map((p) => p.type === 'puback' ? p.packetId : -1), [11, 12])
})

test('a message matched by several manual-ack subscriptions is acked after the last', () => {
  const x = harness({ protocolVersion: 4 })
  x.up()
  x.session.subscribe([{ topicFilter: 'a/+', qos: 1 }], { manualAck: true })
  x.session.subscribe([{ topicFilter: 'a/#', qos: 1 }], { manualAck: true })
  x.take()
  x.session.handlePacket({ type: 'publish', topicName: 'a/b', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 7 })
  assert.equal(x.h.delivered.length, 2)
  x.h.delivered[0]?.ack()
  assert.deepEqual(x.take(), [])
  x.h.delivered[1]?.ack()
  assert.deepEqual(x.take().map((p) => p.type), ['puback'])
})

test('an unmatched QoS 1 message is still acked', () => {
  const x = harness()
  x.up()
  x.session.handlePacket({ type: 'publish', topicName: 'nobody', payload: Buffer.alloc(0), qos: 1, retain: false, dup: false, packetId: 3 })
  assert.deepEqual(x.take().map((p) => p.type), ['puback'])
})

test('v5: more unanswered QoS 1/2 PUBLISHes than the Receive Maximum we advertised is DISCONNECT 0x93 [MQTT-3.3.4-9]; one counts until its PUBACK / PUBCOMP is sent', () => {
  const RM_EXCEEDED: Array<[string, number]> = [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x93]]
  const setup = (opts: Parameters<typeof harness>[0], manualAck: boolean) => {
    const x = harness(opts)
    x.up()
    x.session.subscribe([{ topicFilter: 'm/#', qos: 2 }], { manualAck })
    x.take()
    const pub = (id: number, qos: QoS, dup = false): void => {
      x.session.handlePacket({ type: 'publish', topicName: 'm/x', payload: Buffer.from(String(id)), qos, retain: false, dup, packetId: id })
    }
    return { x, pub }
  }

  // QoS 1, manual ack: a message counts until its PUBACK goes out (in arrival order).
  {
    const { x, pub } = setup({ connect: { receiveMaximum: 2 } }, true)
    pub(1, 1)
    pub(2, 1)
    x.h.delivered[1]?.ack() // acked by the app, but its PUBACK waits behind message 1: still counts
    assert.deepEqual(x.take(), [])
    assert.deepEqual(x.h.violations, [])
    x.h.delivered[0]?.ack() // PUBACK 1 and 2
    assert.deepEqual(x.take().map((p) => p.type), ['puback', 'puback'])
    pub(3, 1)
    pub(4, 1)
    assert.deepEqual(x.h.violations, [])
    pub(5, 1)
    assert.deepEqual(violations(x.h.violations), RM_EXCEEDED)
    assert.deepEqual(x.h.delivered.map((m) => m.packetId), [1, 2, 3, 4], 'the PUBLISH over the quota is not delivered')
  }
  // QoS 2: PUBREC does not end the flow, our PUBCOMP (the answer to PUBREL) does; a resend on the
  // same connection is the same PUBLISH.
  {
    const { x, pub } = setup({ connect: { receiveMaximum: 2 } }, false)
    pub(1, 2)
    pub(2, 2)
    pub(2, 2, true)
    assert.deepEqual(x.take().map((p) => p.type), ['pubrec', 'pubrec', 'pubrec'])
    assert.deepEqual(x.h.violations, [])
    x.session.handlePacket({ type: 'pubrel', packetId: 1 })
    assert.deepEqual(x.take().map((p) => p.type), ['pubcomp'])
    pub(3, 2)
    assert.deepEqual(x.h.violations, [])
    pub(4, 2)
    assert.deepEqual(violations(x.h.violations), RM_EXCEEDED)
  }
  // The quota starts again on each connection: the broker resends what was unanswered.
  {
    const { x, pub } = setup({ connect: { receiveMaximum: 2 } }, true)
    pub(1, 1)
    pub(2, 2)
    x.session.connectionDown()
    x.up({ sessionPresent: true })
    pub(1, 1, true)
    pub(2, 2, true)
    assert.deepEqual(x.h.violations, [])
    pub(3, 1)
    assert.deepEqual(violations(x.h.violations), RM_EXCEEDED)
  }
  // Auto-ack QoS 1 is answered at once, however many come.
  {
    const { x, pub } = setup({ connect: { receiveMaximum: 1 } }, false)
    for (let i = 1; i <= 50; i++) pub(i, 1)
    assert.deepEqual(x.h.violations, [])
  }
  // Held (manual ack): the default quota is 65,535, every packet id; 3.1.1 has no Receive Maximum.
  for (const [opts, n] of [[{}, 65_535], [{ protocolVersion: 4, connect: { receiveMaximum: 1 } }, 3]] as const) {
    const { x, pub } = setup(opts, true)
    for (let i = 1; i <= n; i++) pub(i, 1)
    assert.deepEqual(x.h.violations, [], JSON.stringify(opts))
  }
})

test('v5: a PUBLISH the decoder marked (past maxUserProperties) is refused alone: PUBACK / PUBREC 0x97 in arrival order, never delivered, counted; a failure PUBREC ends the QoS 2 flow (no Receive Maximum slot held, the packet id free for a new message [MQTT-4.3.3-9])', () => {
  const x = harness({ connect: { receiveMaximum: 1 } })
  const refused: PetrelError[] = []
  x.out.messageRefused = (e) => { refused.push(e) }
  x.up()
  x.session.subscribe([{ topicFilter: 'a/#', qos: 2 }], {})
  x.session.subscribe([{ topicFilter: 'm/#', qos: 1 }], { manualAck: true })
  x.take()
  const pub = (topic: string, id: number, qos: QoS, marked: boolean): void => {
    x.session.handlePacket({ type: 'publish', topicName: topic, payload: Buffer.from(String(id)), qos, retain: false, dup: false, packetId: qos === 0 ? undefined : id, ...(marked ? { userPropertiesExceeded: true } : {}) })
  }
  const acks = (): string[] => x.take().map((p) => p.type === 'puback' || p.type === 'pubrec' ? `${p.type} ${p.packetId} 0x${(p.reasonCode ?? 0).toString(16)}` : p.type)
  pub('a/1', 1, 1, true)
  pub('a/2', 2, 2, true)
  pub('a/3', 0, 0, true)
  assert.deepEqual(acks(), ['puback 1 0x97', 'pubrec 2 0x97'])
  assert.deepEqual(x.h.violations, [], 'Receive Maximum 1: refused ones hold no slot')
  // The same packet id again is a new message, delivered.
  pub('a/4', 2, 2, false)
  assert.deepEqual(acks(), ['pubrec 2 0x0'])
  assert.deepEqual(x.h.delivered.map((m) => m.topic), ['a/4'])
  x.session.handlePacket({ type: 'pubrel', packetId: 2 })
  assert.deepEqual(acks(), ['pubcomp'])
  // Behind a held manual ack, the refusal waits its turn [MQTT-4.6.0-2].
  const y = harness()
  y.up()
  y.session.subscribe([{ topicFilter: 'm/#', qos: 1 }], { manualAck: true })
  y.take()
  y.session.handlePacket({ type: 'publish', topicName: 'm/1', payload: Buffer.from('1'), qos: 1, retain: false, dup: false, packetId: 1 })
  y.session.handlePacket({ type: 'publish', topicName: 'm/2', payload: Buffer.from('2'), qos: 1, retain: false, dup: false, packetId: 2, userPropertiesExceeded: true })
  assert.deepEqual(y.take(), [])
  y.h.delivered[0]?.ack()
  assert.deepEqual(y.take().map((p) => p.type === 'puback' ? [p.packetId, p.reasonCode ?? 0] : []), [[1, 0], [2, 0x97]])
  assert.equal(x.session.counters.messagesRefused, 3)
  assert.deepEqual(refused.map((e) => [(e as PetrelError).code, (e as PetrelError).reasonCode]), Array(3).fill(['PETREL_ERR_MESSAGE_REFUSED', 0x97]))
})

test('QoS 2 inbound: delivered once until PUBREL, duplicates answered with PUBREC', () => {
  const x = harness()
  x.up()
  x.session.subscribe([{ topicFilter: '#', qos: 2 }], {})
  x.take()
  const publish = (dup: boolean): PublishPacket => ({ type: 'publish', topicName: 'q', payload: Buffer.from('2'), qos: 2, retain: false, dup, packetId: 5 })
  x.session.handlePacket(publish(false))
  assert.deepEqual(x.take().map((p) => p.type), ['pubrec'])
  x.session.handlePacket(publish(true))
  assert.deepEqual(x.take().map((p) => p.type), ['pubrec'])
  assert.equal(x.h.delivered.length, 1, 'the duplicate is not delivered')
  x.session.handlePacket({ type: 'pubrel', packetId: 5 })
  assert.deepEqual(x.take().map((p) => p.type), ['pubcomp'])
  x.session.handlePacket(publish(false))
  assert.equal(x.h.delivered.length, 2, 'after PUBREL the id starts a new message')
})

test('QoS 2 inbound: a PUBREL for an id we hold no state for is answered PUBCOMP 0x92 Packet Identifier not found under v5 (§3.7.2.1), plain PUBCOMP under 3.1.1', () => {
  for (const v of [5, 4] as const) {
    const x = harness({ protocolVersion: v })
    x.up()
    x.session.subscribe([{ topicFilter: '#', qos: 2 }], {})
    x.take()
    x.session.handlePacket({ type: 'publish', topicName: 'q', payload: Buffer.from('2'), qos: 2, retain: false, dup: false, packetId: 5 })
    x.session.handlePacket({ type: 'pubrel', packetId: 5 })
    // The same PUBREL again (resent after a reconnect that lost our PUBCOMP), then one never seen.
    x.session.connectionDown()
    x.up({ sessionPresent: true })
    x.session.handlePacket({ type: 'pubrel', packetId: 5 })
    x.session.handlePacket({ type: 'pubrel', packetId: 77 })
    const codes = x.take().filter((p) => p.type === 'pubcomp').map((p) => [p.packetId, p.type === 'pubcomp' ? p.reasonCode : -1])
    assert.deepEqual(codes, v === 5 ? [[5, 0], [5, 0x92], [77, 0x92]] : [[5, undefined], [5, undefined], [77, undefined]])
    assert.deepEqual(x.h.violations, [])
    assert.equal(x.h.delivered.length, 1)
  }
})

test('QoS 2 inbound: a PUBREL before our PUBREC (the app still holds the message) is a Protocol Error; the message keeps its state and its ack', () => {
  const x = harness()
  x.up()
  x.session.subscribe([{ topicFilter: '#', qos: 2 }], { manualAck: true })
  x.take()
  x.session.handlePacket({ type: 'publish', topicName: 'q', payload: Buffer.from('2'), qos: 2, retain: false, dup: false, packetId: 5 })
  x.session.handlePacket({ type: 'pubrel', packetId: 5 })
  assert.deepEqual(violations(x.h.violations), [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x82]])
  assert.deepEqual(x.take(), [], 'no PUBCOMP')
  // The link goes; the broker resends the message: it is not delivered again, and is answered once acked.
  x.session.connectionDown()
  x.up({ sessionPresent: true })
  x.session.handlePacket({ type: 'publish', topicName: 'q', payload: Buffer.from('2'), qos: 2, retain: false, dup: true, packetId: 5 })
  assert.equal(x.h.delivered.length, 1)
  x.h.delivered[0]?.ack()
  assert.deepEqual(x.take().filter((p) => p.type !== 'subscribe').map((p) => p.type), ['pubrec'])
  x.session.handlePacket({ type: 'pubrel', packetId: 5 })
  assert.deepEqual(x.take().map((p) => [p.type, p.type === 'pubcomp' ? p.reasonCode : -1]), [['pubcomp', 0]])
  assert.equal(x.h.violations.length, 1)
})

test('QoS 2 inbound: a resend after reconnect while the app still holds the message is not delivered again', () => {
  const x = harness()
  x.up()
  x.session.subscribe([{ topicFilter: '#', qos: 2 }], { manualAck: true })
  x.take()
  const p: PublishPacket = { type: 'publish', topicName: 'q', payload: Buffer.from('2'), qos: 2, retain: false, dup: false, packetId: 9 }
  x.session.handlePacket(p)
  x.session.connectionDown()
  x.up({ sessionPresent: true })
  x.take()
  x.session.handlePacket({ ...p, dup: true })
  assert.equal(x.h.delivered.length, 1)
  assert.deepEqual(x.take(), [])
  x.h.delivered[0]?.ack()
  assert.deepEqual(x.take().map((q) => q.type), ['pubrec'], 'the PUBREC goes out on the new connection once acked')
})

test('QoS 2 inbound, manual ack: a resend on the same connection is answered once the first is acked, and later acks still flow', () => {
  const x = harness({ protocolVersion: 4 })
  x.up()
  x.session.subscribe([{ topicFilter: '#', qos: 2 }], { manualAck: true })
  x.take()
  const p7: PublishPacket = { type: 'publish', topicName: 'q', payload: Buffer.from('7'), qos: 2, retain: false, dup: false, packetId: 7 }
  x.session.handlePacket(p7)
  x.session.handlePacket({ ...p7, dup: true }) // a broker retrying on the same connection
  assert.equal(x.h.delivered.length, 1)
  x.h.delivered[0]?.ack()
  assert.deepEqual(x.take().map((q) => [q.type, (q as { packetId: number }).packetId]), [['pubrec', 7], ['pubrec', 7]])
  x.session.handlePacket({ type: 'pubrel', packetId: 7 })
  x.session.handlePacket({ type: 'publish', topicName: 'q', payload: Buffer.from('8'), qos: 1, retain: false, dup: false, packetId: 8 })
  x.h.delivered[1]?.ack()
  assert.deepEqual(x.take().map((q) => [q.type, (q as { packetId: number }).packetId]), [['pubcomp', 7], ['puback', 8]])
})

test('QoS 2 inbound, manual ack: one acked behind an unacked one when the link drops is answered at once when resent', () => {
  const x = harness()
  x.up()
  x.session.subscribe([{ topicFilter: '#', qos: 2 }], { manualAck: true })
  x.take()
  const pub = (id: number, dup = false): void => {
    x.session.handlePacket({ type: 'publish', topicName: 'q', payload: Buffer.from(String(id)), qos: 2, retain: false, dup, packetId: id })
  }
  pub(1)
  pub(2)
  x.h.delivered[1]?.ack() // waits behind 1
  assert.deepEqual(x.take(), [])
  x.session.connectionDown()
  x.up({ sessionPresent: true })
  x.take() // the SUBSCRIBE never acked on the old link goes again
  pub(1, true)
  pub(2, true)
  assert.equal(x.h.delivered.length, 2, 'never delivered twice')
  x.h.delivered[0]?.ack()
  pub(3)
  x.h.delivered[2]?.ack()
  assert.deepEqual(x.take().map((q) => [q.type, (q as { packetId: number }).packetId]), [['pubrec', 2], ['pubrec', 1], ['pubrec', 3]])
})

test('session lost: republish (default) resends with new ids and DUP=0; `fail` rejects with PETREL_ERR_SESSION_LOST', () => {
  for (const policy of ['republish', 'fail'] as const) {
    const x = harness({ sessionLostPolicy: policy })
    x.up()
    const a = x.pub('a')
    const b = x.pub('b')
    const order: string[] = []
    for (const [name, req] of [['a', a], ['b', b]] as const) {
      const r = req as unknown as { state: string }
      let last = r.state
      Object.defineProperty(req, 'state', { get: () => last, set: (v: string) => { if (v !== 'pending') order.push(name); last = v as typeof last } })
    }
    x.take()
    x.session.connectionDown()
    x.up({ sessionPresent: false })
    const w = publishes(x.take())
    if (policy === 'republish') {
      assert.deepEqual(w.map((p) => [p.payload.toString(), p.dup]), [['a', false], ['b', false]])
      for (const p of w) x.session.handlePacket({ type: 'puback', packetId: p.packetId as number })
      assert.deepEqual([a.state, b.state], ['ok', 'ok'])
    } else {
      assert.equal(w.length, 0)
      assert.deepEqual([a.state, b.state], ['err', 'err'])
      assert.deepEqual(order, ['a', 'b'], 'rejected in the order they were sent')
      assert.equal((a.error as { code: string }).code, 'PETREL_ERR_SESSION_LOST')
    }
  }
})

test('stats: a publish republished after a lost session counts once in publishesSent and each resend in publishesReplayed, as one resent with the session present does', () => {
  const x = harness()
  x.up()
  const a = x.pub('a')
  x.pub('b', 0)
  x.take()
  assert.deepEqual([x.session.counters.publishesSent, x.session.counters.publishesReplayed], [2, 0])
  // Lost twice, then resumed: three resends of the one unacknowledged message, no new publish.
  x.session.connectionDown()
  x.up({ sessionPresent: false })
  x.session.connectionDown()
  x.up({ sessionPresent: false })
  x.session.connectionDown()
  x.up({ sessionPresent: true })
  const w = publishes(x.take())
  assert.deepEqual(w.map((p) => [p.payload.toString(), p.dup]), [['a', false], ['a', false], ['a', true]])
  assert.deepEqual([x.session.counters.publishesSent, x.session.counters.publishesReplayed], [2, 3])
  x.session.handlePacket({ type: 'puback', packetId: w[2]?.packetId as number })
  assert.equal(a.state, 'ok')
  // A new publish after all that is a first send again.
  x.pub('c')
  assert.deepEqual([x.session.counters.publishesSent, x.session.counters.publishesReplayed], [3, 3])
})

test('stats: a QoS 2 publish past its PUBREC when the session is lost resolves and counts as acked', () => {
  const x = harness()
  x.up()
  const a = x.pub('a', 2)
  const [p] = publishes(x.take())
  x.session.handlePacket({ type: 'pubrec', packetId: p?.packetId as number })
  x.session.connectionDown()
  x.up({ sessionPresent: false })
  assert.equal(a.state, 'ok')
  assert.deepEqual([x.session.counters.publishesSent, x.session.counters.publishesAcked, x.session.inflightCount], [1, 1, 0])
})

test('resubscribe after a connection whose session was not present', () => {
  const x = harness()
  x.up()
  const { request } = x.session.subscribe([{ topicFilter: 'r/#', qos: 1 }], {})
  let codes: number[] = []
  if (request !== null) request.resolve = (c) => { codes = c }
  const sub = x.take()[0]
  assert.equal(sub?.type, 'subscribe')
  x.session.handlePacket({ type: 'suback', packetId: sub.type === 'subscribe' ? sub.packetId : 0, reasonCodes: [1] })
  assert.deepEqual(codes, [1])
  x.session.connectionDown()
  x.up({ sessionPresent: true })
  assert.deepEqual(x.take(), [], 'session present: nothing to resubscribe')
  x.session.connectionDown()
  x.up({ sessionPresent: false })
  const again = x.take()
  assert.equal(again.length, 1)
  assert.equal(again[0]?.type === 'subscribe' ? again[0].subscriptions[0]?.topicFilter : '', 'r/#')
})

test('a SUBACK / UNSUBACK whose reason-code count differs from the request\'s topic filters is a Protocol Error (0x82) [MQTT-3.9.3-1] [MQTT-3.11.3-1]; the request stays pending and is resent after the reconnect', () => {
  for (const v of [5, 4] as const) {
    const x = harness({ protocolVersion: v })
    x.up()
    const track = (req: ControlRequest | null): { settled: unknown } => {
      const t: { settled: unknown } = { settled: undefined }
      assert.ok(req !== null)
      req.resolve = (codes) => { t.settled = codes }
      req.reject = (err) => { t.settled = err }
      return t
    }
    const { entry, request } = x.session.subscribe([{ topicFilter: 'a', qos: 1 }, { topicFilter: 'b', qos: 0 }], {})
    const sub = track(request)
    for (const wrong of [[1], [1, 0, 0]]) {
      const [p] = x.take()
      assert.equal(p?.type, 'subscribe', `v${v}`)
      x.session.handlePacket({ type: 'suback', packetId: p?.type === 'subscribe' ? p.packetId : 0, reasonCodes: wrong })
      assert.deepEqual(violations(x.h.violations.splice(0)), [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x82]], `v${v}: SUBACK with ${wrong.length} codes for 2 filters`)
      assert.equal(sub.settled, undefined, `v${v}: neither resolved with the wrong codes nor rejected`)
      x.session.connectionDown()
      x.up({ sessionPresent: v === 5 })
    }
    const [again] = x.take()
    assert.deepEqual(again?.type === 'subscribe' ? again.subscriptions.map((s) => s.topicFilter) : [], ['a', 'b'], `v${v}: resent after the reconnect`)
    x.session.handlePacket({ type: 'suback', packetId: again?.type === 'subscribe' ? again.packetId : 0, reasonCodes: [1, 0] })
    assert.deepEqual(sub.settled, [1, 0])

    const unsub = track(x.session.unsubscribe(entry))
    const [u] = x.take()
    assert.equal(u?.type, 'unsubscribe')
    const uid = u?.type === 'unsubscribe' ? u.packetId : 0
    if (v === 5) {
      x.session.handlePacket({ type: 'unsuback', packetId: uid, reasonCodes: [0] })
      assert.deepEqual(violations(x.h.violations.splice(0)), [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x82]], 'UNSUBACK with 1 code for 2 filters')
      assert.equal(unsub.settled, undefined)
      x.session.connectionDown()
      x.up({ sessionPresent: true })
      const [u2] = x.take()
      assert.deepEqual(u2?.type === 'unsubscribe' ? u2.topicFilters : [], ['a', 'b'], 'UNSUBSCRIBE resent after the reconnect')
      x.session.handlePacket({ type: 'unsuback', packetId: u2?.type === 'unsubscribe' ? u2.packetId : 0, reasonCodes: [0, 0x11] })
      assert.deepEqual(unsub.settled, [0, 0x11])
    } else {
      // A 3.1.1 UNSUBACK carries no codes: nothing to count.
      x.session.handlePacket({ type: 'unsuback', packetId: uid })
      assert.deepEqual(unsub.settled, [])
    }
    assert.deepEqual(x.h.violations, [])
  }
})

test('queue policies: reject throws PETREL_ERR_QUEUE_FULL, dropOldest rejects the oldest, block waits for room', () => {
  const r = harness({ maxQueuedMessages: 2, queuePolicy: 'reject' })
  r.pub('1'); r.pub('2')
  assert.throws(() => r.pub('3'), { code: 'PETREL_ERR_QUEUE_FULL' })

  const d = harness({ maxQueuedMessages: 2, queuePolicy: 'dropOldest' })
  const d1 = d.pub('1'); d.pub('2'); d.pub('3')
  assert.equal(d1.state, 'err')
  assert.equal((d1.error as { code: string }).code, 'PETREL_ERR_DROPPED')
  d.up()
  assert.deepEqual(publishes(d.take()).map((p) => p.payload.toString()), ['2', '3'])

  const b = harness({ maxQueuedMessages: 2, inflightWindow: 1 })
  b.pub('1'); b.pub('2')
  const b3 = b.pub('3')
  assert.equal(b.session.blockedCount, 1)
  b.up()
  const w = publishes(b.take())
  assert.deepEqual(w.map((p) => p.payload.toString()), ['1'])
  assert.equal(b.session.blockedCount, 0, 'room freed: the blocked one is admitted')
  assert.equal(b3.state, 'pending')
})

test('maxQueuedBytes bounds the encoded packets queued: a publish that waited for room (block) is admitted by its whole size, properties included, not by payload and topic', () => {
  const x = harness({ maxQueuedBytes: 1000 })
  const first = x.session.publish('t', Buffer.alloc(900), 1, false, undefined) as PublishRequest
  first.resolve = () => {}
  first.reject = () => {}
  x.pub('b'.repeat(950)) // no room: waits
  // A one-byte payload with 1.4 KB of User Properties, behind it.
  const userProperties = Array.from({ length: 200 }, () => ['k', 'v'] as [string, string])
  const heavy = x.session.publish('t', Buffer.from('c'), 1, false, { userProperties }) as PublishRequest
  heavy.resolve = () => {}
  assert.equal(x.session.blockedCount, 2)
  // Room for the 950 bytes (alone in the queue); the heavy one no longer fits beside them.
  x.session.abort(first, new Error('gone'))
  assert.equal(x.session.queuedCount, 1)
  assert.equal(x.session.blockedCount, 1)
  assert.ok(x.session.queuedByteCount <= 1000, `queued ${x.session.queuedByteCount} bytes`)
  x.up()
  assert.deepEqual(publishes(x.take()).map((p) => p.payload.length), [950, 1])
})

test('writes stop while the transport is full and resume on drained()', () => {
  const x = harness()
  x.up()
  x.h.writable = false
  x.pub('a', 0)
  assert.equal(x.take().length, 1)
  const b = x.pub('b', 0)
  assert.equal(b.state, 'pending')
  assert.equal(x.take().length, 0)
  x.h.writable = true
  x.session.drained()
  assert.equal(publishes(x.take())[0]?.payload.toString(), 'b')
  assert.equal(b.state, 'ok')
})

test('abort removes a queued request; nothing is written', () => {
  const x = harness()
  const t = x.pub('a')
  const req = (x.session as unknown as { pending: { peek (): PublishRequest } }).pending.peek()
  assert.equal(x.session.abort(req, new Error('stop')), true)
  assert.equal(t.state, 'err')
  x.up()
  assert.deepEqual(x.take(), [])
  assert.equal(x.session.queuedCount, 0)
})

test('abort of a SUBSCRIBE or UNSUBSCRIBE queued offline leaves the session idle (a graceful end() waited for a link to send nothing); the others keep their order', () => {
  const x = harness()
  const kept = x.session.subscribe([{ topicFilter: 'k/#', qos: 1 }], {}).request as ControlRequest
  const sub = x.session.subscribe([{ topicFilter: 'a/#', qos: 1 }], {}).request as ControlRequest
  const unsub = x.session.unsubscribeFilters(['old/#'])
  for (const r of [kept, sub, unsub]) { r.resolve = () => {}; r.reject = () => {} }
  assert.equal(x.session.abort(sub, new Error('stop')), true)
  assert.equal(x.session.abort(unsub, new Error('stop')), true)
  assert.equal(x.session.idle, false, 'one still queued')
  assert.equal(x.session.abort(kept, new Error('stop')), true)
  assert.equal(x.session.idle, true)
  const again = x.session.subscribe([{ topicFilter: 'b/#', qos: 1 }], {}).request as ControlRequest
  again.resolve = () => {}
  x.up()
  assert.deepEqual(x.take().map((p) => p.type === 'subscribe' ? p.subscriptions.map((s) => s.topicFilter) : p.type), [['b/#']], 'only the one not aborted')
})

test('abort of a blocked publish behind another blocked one: blockedCount drops at once (stats().blocked), the rest keep their order', () => {
  const x = harness({ maxQueuedMessages: 1, inflightWindow: 1 })
  x.pub('1')
  const b1 = x.pub('2')
  const b2 = x.pub('3')
  const b3 = x.pub('4')
  assert.equal(x.session.blockedCount, 3)
  const blocked = (x.session as unknown as { blocked: { drain (): PublishRequest[], push (r: PublishRequest): void } }).blocked
  const reqs = blocked.drain()
  for (const r of reqs) blocked.push(r)
  // The middle one: the one ahead of it has no room yet, so it cannot simply leave the head.
  assert.equal(x.session.abort(reqs[1] as PublishRequest, new Error('stop')), true)
  assert.equal(b2.state, 'err')
  assert.equal(x.session.blockedCount, 2, 'the aborted one no longer counts as blocked')
  x.up()
  assert.deepEqual(publishes(x.take()).map((p) => p.payload.toString()), ['1'])
  assert.equal(x.session.blockedCount, 1)
  assert.deepEqual([b1.state, b3.state], ['pending', 'pending'])
  assert.equal(x.session.abort(reqs[2] as PublishRequest, new Error('stop')), true)
  assert.equal(x.session.blockedCount, 0)
})

test('aborted blocked publishes let go of their payload at once, and a waiting list mostly made of them is compacted: bounded by the publishes still waiting, which keep their order', () => {
  const x = harness({ maxQueuedMessages: 1, inflightWindow: 1 })
  x.pub('head')
  const blocked = (): PublishRequest[] => {
    const list = (x.session as unknown as { blocked: { drain (): PublishRequest[], push (r: PublishRequest): void } }).blocked
    const reqs = list.drain()
    for (const r of reqs) list.push(r)
    return reqs
  }
  // An abort-and-retry loop through an outage: 1,000 tries, each aborted, behind one that waits.
  const keeper = x.pub('keeper')
  for (let i = 0; i < 1000; i++) {
    x.pub(`try ${i}`)
    const reqs = blocked()
    const last = reqs[reqs.length - 1] as PublishRequest
    assert.equal(x.session.abort(last, new Error('timeout')), true)
    assert.equal(last.payload, undefined, 'the aborted one holds no payload')
  }
  assert.ok(blocked().length <= 130, `waiting list compacted (holds ${blocked().length})`)
  assert.equal(x.session.blockedCount, 1)
  const last = x.pub('last')
  x.up()
  assert.deepEqual(publishes(x.take()).map((p) => p.payload.toString()), ['head'])
  assert.deepEqual([keeper.state, last.state], ['pending', 'pending'])
})

test('invalid arguments and broker limits reject at once and send nothing', () => {
  const x = harness()
  x.up({ properties: { maximumQoS: 1, retainAvailable: false, maximumPacketSize: 100 } })
  assert.throws(() => x.pub('a', 2), { code: 'PETREL_ERR_QOS_NOT_SUPPORTED' })
  assert.throws(() => x.pub('a', 3 as QoS), { code: 'PETREL_ERR_QOS_NOT_SUPPORTED' })
  assert.throws(() => x.pub('a', 1, 'bad/#'), { code: 'PETREL_ERR_INVALID_TOPIC_NAME' })
  assert.throws(() => x.session.publish('t', Buffer.alloc(1), 0, true, undefined), { code: 'PETREL_ERR_RETAIN_NOT_SUPPORTED' })
  assert.throws(() => x.pub('x'.repeat(200), 1), { code: 'PETREL_ERR_PACKET_TOO_LARGE' })
  assert.throws(() => x.session.subscribe([{ topicFilter: 'a/#/b', qos: 0 }], {}), { code: 'PETREL_ERR_INVALID_TOPIC_FILTER' })
  // Past the protocol's 268 MB: too large for any broker (checked before encoding anything).
  const y = harness()
  y.up()
  assert.throws(() => y.session.publish('t', { length: 300_000_000 } as unknown as Uint8Array, 1, false, undefined), { code: 'PETREL_ERR_PACKET_TOO_LARGE' })
  assert.deepEqual(x.take(), [])
})

test('a SUBSCRIBE queued before CONNACK (or a resubscribe) that the broker\'s limits forbid rejects and is never sent', () => {
  const x = harness()
  const outcome: string[] = []
  const make = (filter: string): void => {
    const { request } = x.session.subscribe([{ topicFilter: filter, qos: 1 }], {})
    if (request === null) return
    request.resolve = () => { outcome.push(`${filter}: ok`) }
    request.reject = (e) => { outcome.push(`${filter}: ${(e as { code: string }).code}`) }
  }
  make('w/#')
  make('$share/g/s')
  make('plain')
  x.up({ properties: { wildcardSubscriptionAvailable: false, sharedSubscriptionAvailable: false } })
  const sent = x.take()
  assert.deepEqual(sent.map((p) => p.type === 'subscribe' ? p.subscriptions.map((s) => s.topicFilter) : p.type), [['plain']])
  assert.deepEqual(outcome, ['w/#: PETREL_ERR_WILDCARD_NOT_SUPPORTED', '$share/g/s: PETREL_ERR_SHARED_NOT_SUPPORTED'])
  // A subscription made on a broker with wildcards, resubscribed (session lost) on one without.
  const y = harness()
  const failed: string[] = []
  y.out.resubscribeFailed = (_, e) => { failed.push(e.code) }
  y.up()
  y.session.subscribe([{ topicFilter: 'r/#', qos: 1 }], {})
  const sub = y.take()[0]
  y.session.handlePacket({ type: 'suback', packetId: sub?.type === 'subscribe' ? sub.packetId : 0, reasonCodes: [1] })
  y.session.connectionDown()
  y.up({ sessionPresent: false, properties: { wildcardSubscriptionAvailable: false } })
  assert.deepEqual(y.take(), [])
  assert.deepEqual(failed, ['PETREL_ERR_WILDCARD_NOT_SUPPORTED'])
})

test('v5: a payload declared UTF-8 (payloadFormatIndicator) that is not rejects at once and sends nothing', () => {
  const x = harness()
  x.up()
  for (const qos of [0, 1, 2] as const) {
    assert.throws(() => x.session.publish('t', Buffer.from([0xff, 0xfe]), qos, false, { payloadFormatIndicator: true }),
      { code: 'PETREL_ERR_PAYLOAD_FORMAT_INVALID', reasonCode: 0x99 })
  }
  assert.deepEqual(x.take(), [])
  x.session.publish('t', Buffer.from('héllo'), 0, false, { payloadFormatIndicator: true })
  x.session.publish('t', Buffer.from([0xff]), 0, false, { payloadFormatIndicator: false })
  assert.equal(x.take().length, 2)
})

test('v5: a response topic that is no valid topic name (wildcard, empty) rejects at once and sends nothing', () => {
  const x = harness()
  x.up()
  for (const responseTopic of ['replies/#', 'replies/+/x', '']) {
    for (const qos of [0, 1] as const) {
      assert.throws(() => x.session.publish('t', Buffer.from('q'), qos, false, { responseTopic }), { code: 'PETREL_ERR_INVALID_TOPIC_NAME' }, JSON.stringify(responseTopic))
    }
  }
  assert.deepEqual(x.take(), [])
  x.session.publish('t', Buffer.from('q'), 0, false, { responseTopic: 'replies/me' })
  assert.equal(x.take().length, 1)
})

test('topic names are checked on every publish, also right after a valid one (the check remembers only what passed)', () => {
  const x = harness()
  x.up()
  assert.throws(() => x.pub('a', 0, ''), { code: 'PETREL_ERR_INVALID_TOPIC_NAME' }) // [MQTT-4.7.3-1]
  x.pub('a', 0, 'ok/1')
  assert.throws(() => x.pub('a', 0, 'ok/+'), { code: 'PETREL_ERR_INVALID_TOPIC_NAME' })
  x.pub('b', 0, 'ok/1')
  assert.throws(() => x.pub('a', 0, 'bad/#'), { code: 'PETREL_ERR_INVALID_TOPIC_NAME' })
  assert.throws(() => x.pub('a', 0, 'bad/#'), { code: 'PETREL_ERR_INVALID_TOPIC_NAME' })
  assert.deepEqual(publishes(x.take()).map((p) => `${p.topicName}:${p.payload.toString()}`), ['ok/1:a', 'ok/1:b'])
})

test('inbound topic aliases: learnt, resolved, and an empty topic name with an alias never mapped is a Protocol Error (0x82) (§3.3.2.3.4)', () => {
  const x = harness({ connect: { topicAliasMaximum: 5 } })
  x.up()
  x.session.subscribe([{ topicFilter: '#', qos: 0 }], {})
  x.take()
  x.session.handlePacket({ type: 'publish', topicName: 'long/topic', payload: Buffer.from('1'), qos: 0, retain: false, dup: false, properties: { topicAlias: 2 } })
  x.session.handlePacket({ type: 'publish', topicName: '', payload: Buffer.from('2'), qos: 0, retain: false, dup: false, properties: { topicAlias: 2 } })
  assert.deepEqual(x.h.delivered.map((m) => m.topic), ['long/topic', 'long/topic'])
  x.session.handlePacket({ type: 'publish', topicName: '', payload: Buffer.from('3'), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } })
  assert.deepEqual(violations(x.h.violations), [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x82]])
  assert.equal(x.h.delivered.length, 2, 'not delivered')
  // Mappings die with the connection: alias 2 is unknown on the next one.
  x.session.connectionDown()
  x.up()
  x.session.handlePacket({ type: 'publish', topicName: '', payload: Buffer.from('4'), qos: 0, retain: false, dup: false, properties: { topicAlias: 2 } })
  assert.deepEqual(violations(x.h.violations).slice(1), [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x82]])
})

test('inbound topic aliases keep at most 16 MiB of topic names: past it a message is delivered but its name not kept, and only a later use of that alias closes the link (0x97 Quota exceeded, PETREL_ERR_QUOTA_EXCEEDED); remapping frees a name', () => {
  const x = harness({ connect: { topicAliasMaximum: 65535 } })
  x.up()
  x.session.subscribe([{ topicFilter: '#', qos: 0 }], {})
  x.take()
  const aliases = (x.session as unknown as { inboundAliases: Map<number, string> }).inboundAliases
  const held = (): number => [...aliases.values()].reduce((n, t) => n + t.length, 0)
  const send = (alias: number, topicName: string, payload: string): void => {
    x.session.handlePacket({ type: 'publish', topicName, payload: Buffer.from(payload), qos: 0, retain: false, dup: false, properties: { topicAlias: alias } })
  }
  // 65,535-character topic names, each under an alias of its own: a broker could map 65,535 of them (4 GB).
  const name = (i: number): string => `${i}/`.padEnd(65_535, 'x')
  for (let i = 1; i <= 200; i++) send(i, name(i), String(i))
  assert.equal(x.h.delivered.length, 200, 'every message delivered')
  assert.ok(held() <= 8 * 1024 * 1024, `${held()} characters kept`)
  const kept = aliases.size
  assert.ok(kept >= 120 && kept < 200, `${kept} names kept`)
  // A kept alias still resolves.
  send(1, '', 'again')
  assert.equal(x.h.delivered.at(-1)?.topic, name(1))
  assert.equal(x.h.violations.length, 0)
  // Remapping a kept alias to a short name frees room: a later one is kept.
  send(2, 'short', 'r')
  send(200, name(200), 'kept now')
  send(200, '', 'resolved')
  assert.equal(x.h.delivered.at(-1)?.topic, name(200))
  // Using an alias whose name was not kept: the message cannot be routed, the link is closed with 0x97.
  send(199, '', 'lost')
  assert.deepEqual(violations(x.h.violations), [['PETREL_ERR_QUOTA_EXCEEDED', 0x97]])
  assert.match(x.h.violations[0]?.message ?? '', /topic alias 199 .* passed 16,777,216 bytes/)
  assert.notEqual(x.h.delivered.at(-1)?.payload.toString(), 'lost')
  // A new connection starts with nothing held.
  x.session.connectionDown()
  x.up()
  assert.equal(aliases.size, 0)
  send(199, name(199), 'fresh')
  send(199, '', 'fresh again')
  assert.equal(x.h.delivered.at(-1)?.topic, name(199))
})

test('v5: an inbound topic alias above the Topic Alias Maximum we advertised (any alias, when we advertised none) is Topic Alias invalid (0x94) [MQTT-3.3.2-11]', () => {
  for (const [max, alias] of [[5, 6], [0, 1]] as const) {
    const x = harness({ connect: { topicAliasMaximum: max } })
    x.up()
    x.session.subscribe([{ topicFilter: '#', qos: 0 }], {})
    x.take()
    x.session.handlePacket({ type: 'publish', topicName: 'a/b', payload: Buffer.from('1'), qos: 0, retain: false, dup: false, properties: { topicAlias: alias } })
    assert.deepEqual(violations(x.h.violations), [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x94]], `maximum ${max}, alias ${alias}`)
    assert.equal(x.h.delivered.length, 0, 'not delivered')
  }
})

test('v5: the Receive Maximum and Topic Alias Maximum enforced are those of the CONNECT each connection was opened with', () => {
  const x = harness()
  x.session.subscribe([{ topicFilter: '#', qos: 1 }], { manualAck: true })
  const pub = (id: number, alias?: number): void => {
    x.session.handlePacket({ type: 'publish', topicName: 'a/b', payload: Buffer.from(String(id)), qos: 1, retain: false, dup: false, packetId: id, properties: alias === undefined ? undefined : { topicAlias: alias } })
  }
  // First CONNECT: Receive Maximum 1, no topic aliases.
  x.up({}, { receiveMaximum: 1 })
  pub(1)
  pub(2)
  assert.deepEqual(violations(x.h.violations), [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x93]])
  x.session.connectionDown()
  x.up({}, { receiveMaximum: 1 })
  pub(3, 1)
  assert.deepEqual(violations(x.h.violations).slice(1), [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x94]])
  // Next CONNECT: Receive Maximum 3, 2 topic aliases.
  x.session.connectionDown()
  x.h.violations.length = 0
  x.up({}, { receiveMaximum: 3, topicAliasMaximum: 2 })
  pub(4, 2)
  pub(5)
  pub(6)
  assert.equal(x.h.violations.length, 0)
  assert.deepEqual(x.h.delivered.slice(-3).map((m) => `${m.packetId}:${m.topic}`), ['4:a/b', '5:a/b', '6:a/b'])
  pub(7)
  assert.deepEqual(violations(x.h.violations), [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x93]])
  // And back: a CONNECT without them (defaults: 65,535, no aliases).
  x.session.connectionDown()
  x.h.violations.length = 0
  x.up()
  pub(8, 1)
  assert.deepEqual(violations(x.h.violations), [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x94]])
  for (let id = 9; id < 9 + 100; id++) pub(id)
  assert.equal(x.h.violations.length, 1)
})

test('outbound topic aliases for QoS 0 only, within the broker maximum', () => {
  const x = harness()
  x.up({ properties: { topicAliasMaximum: 1 } })
  x.pub('1', 0, 'sensors/one')
  x.pub('2', 0, 'sensors/one')
  x.pub('3', 0, 'sensors/two')
  x.pub('4', 1, 'sensors/one')
  const w = publishes(x.take())
  assert.deepEqual(w.map((p) => [p.topicName, p.properties?.topicAlias]), [
    ['sensors/one', 1], ['', 1], ['sensors/two', undefined], ['sensors/one', undefined]
  ])
})

test('the QoS 0 fast path: every publish keeps its own bytes though the scratch is reused; too large sends nothing and spends no alias', () => {
  const x = harness()
  x.up({ properties: { topicAliasMaximum: 2, maximumPacketSize: 3000 } })
  x.pub('first', 0, 'a/b')
  x.pub('2', 0, 'a/b') // alias now, no topic name
  x.session.publish('a/b', Buffer.from('retained'), 0, true, undefined)
  assert.throws(() => x.pub('x'.repeat(2990), 0, 'too/big'), { code: 'PETREL_ERR_PACKET_TOO_LARGE' })
  x.pub('y'.repeat(2100), 0, 'big/one') // over the scratch size: the encoder's path
  x.pub('z', 0, 'c/d') // the second alias is still free
  const w = publishes(x.take())
  assert.deepEqual(w.map((p) => [p.topicName, p.properties?.topicAlias, p.retain, p.payload.length > 20 ? p.payload.length : p.payload.toString()]), [
    ['a/b', 1, false, 'first'], ['', 1, false, '2'], ['', 1, true, 'retained'], ['big/one', 2, false, 2100], ['c/d', undefined, false, 'z']
  ])
  assert.equal(x.session.counters.publishesSent, 5)
})

test('a SUBSCRIBE/UNSUBSCRIBE the encoder refuses rejects at once and leaves nothing behind for later connections', () => {
  const x = harness()
  x.up()
  const bad: Array<[string, string]> = [['k', 'a\u0000b']] // [MQTT-1.5.4-2] no U+0000 in a UTF-8 string
  assert.throws(() => x.session.subscribe([{ topicFilter: 'bs/a', qos: 1 }], { userProperties: bad }), { code: 'PETREL_ERR_INVALID_PACKET' })
  assert.throws(() => x.session.subscribe([{ topicFilter: 'bs/a', qos: 1, retainHandling: 3 as 0 }], {}))
  assert.throws(() => x.session.unsubscribeFilters(['bs/old'], bad), { code: 'PETREL_ERR_INVALID_PACKET' })
  assert.deepEqual(x.take(), [])
  const ok = x.session.subscribe([{ topicFilter: 'bs/b', qos: 1 }], {})
  assert.deepEqual(x.take().map((p) => p.type), ['subscribe'])
  // A new connection: only the good subscription is (re)sent, and nothing throws.
  x.session.connectionDown()
  x.up()
  const again = x.take()
  assert.deepEqual(again.map((p) => p.type), ['subscribe'])
  assert.deepEqual(again[0]?.type === 'subscribe' ? again[0].subscriptions.map((t) => t.topicFilter) : [], ['bs/b'])
  assert.equal(ok.entry.removed, false)
})

test('a publish waiting for room (block policy) with a bad property rejects at once; the others go on', () => {
  const x = harness({ inflightWindow: 1, maxQueuedMessages: 1 })
  x.up()
  const a = x.pub('a')
  const b = x.pub('b') // queued
  const c = x.pub('c') // blocked
  assert.throws(() => x.session.publish('t', Buffer.from('d'), 1, false, { messageExpiryInterval: -1 }), { code: 'PETREL_ERR_INVALID_PACKET' })
  const e = x.pub('e') // blocked behind c
  for (const expected of ['a', 'b', 'c', 'e']) {
    const w = publishes(x.take())
    assert.deepEqual(w.map((p) => p.payload.toString()), [expected])
    x.session.handlePacket({ type: 'puback', packetId: w[0]?.packetId as number })
  }
  assert.deepEqual([a, b, c, e].map((t) => t.state), ['ok', 'ok', 'ok', 'ok'])
})

test('outbound topic aliases: never spent on a PUBLISH that waits (throttle) or is refused, and a client PUBLISH carries no subscription identifier', () => {
  const x = harness({ throttle: { messagesPerSecond: 10, burstSeconds: 0.1 } })
  x.up({ properties: { topicAliasMaximum: 10 } })
  for (const t of ['ta/a', 'ta/b', 'ta/c']) x.pub('1', 0, t)
  for (let now = 100; now <= 300; now += 100) {
    x.h.now = now
    x.session.pump()
  }
  // [MQTT-3.3.2-12] each alias first goes out with its topic name
  assert.deepEqual(publishes(x.take()).map((p) => [p.topicName, p.properties?.topicAlias]), [['ta/a', 1], ['ta/b', 2], ['ta/c', 3]])
  const y = harness()
  y.up({ properties: { topicAliasMaximum: 10 } })
  assert.throws(() => y.session.publish('t/x', Buffer.from('bad'), 0, false, { messageExpiryInterval: -1 }), { code: 'PETREL_ERR_INVALID_PACKET' })
  y.pub('hello', 0, 't/x')
  assert.deepEqual(publishes(y.take()).map((p) => [p.topicName, p.properties?.topicAlias]), [['t/x', 1]])
  assert.throws(() => y.session.publish('t/x', Buffer.from('x'), 1, false, { subscriptionIdentifiers: [7] }), { code: 'PETREL_ERR_INVALID_ARGUMENT' }) // [MQTT-3.3.4-6]
})

test('v5: a retained message sent for one SUBSCRIBE reaches only that subscription, not a twin on the same filter', () => {
  const x = harness()
  x.up()
  const a = x.session.subscribe([{ topicFilter: 'twr/state', qos: 1, retainHandling: 2 }], { sink: 'A' }).entry
  const b = x.session.subscribe([{ topicFilter: 'twr/state', qos: 1 }], { sink: 'B' }).entry
  x.take()
  const sidB = b.subscriptionIdentifier as number
  const pub = (retain: boolean, payload: string): void => {
    x.session.handlePacket({ type: 'publish', topicName: 'twr/state', payload: Buffer.from(payload), qos: 0, retain, dup: false, properties: { subscriptionIdentifiers: [sidB] } })
  }
  pub(true, 'retained')
  pub(false, 'live')
  const sinks = (payload: string): unknown[] => x.h.delivered.filter((m) => m.payload.toString() === payload).map(() => 0)
  assert.equal(sinks('retained').length, 1, 'only B, whose SUBSCRIBE brought it')
  assert.equal(sinks('live').length, 2, 'a live message is both twins\'')
  assert.notEqual(a.subscriptionIdentifier, sidB)
})

test('outbound topic aliases: a PUBLISH that fits the Maximum Packet Size only without a new alias goes without one [MQTT-3.2.2-15]', () => {
  const payload = Buffer.alloc(3000, 1)
  const exact = encode({ type: 'publish', topicName: 'big', payload, qos: 0, retain: false, dup: false }, 5).length
  for (const whenQueued of [false, true]) {
    for (const props of [undefined, { contentType: 'x' }]) {
      const x = harness()
      const size = props === undefined ? exact : encode({ type: 'publish', topicName: 'big', payload, qos: 0, retain: false, dup: false, properties: props }, 5).length
      if (whenQueued) x.session.publish('big', payload, 0, false, props) // before the CONNACK: sent by the pump
      x.up({ properties: { topicAliasMaximum: 5, maximumPacketSize: size } })
      if (!whenQueued) x.session.publish('big', payload, 0, false, props)
      x.session.publish('small', Buffer.from('x'), 0, false, undefined)
      const w = publishes(x.take())
      assert.deepEqual(w.map((p) => [p.topicName, p.properties?.topicAlias]), [['big', undefined], ['small', 1]], `queued ${String(whenQueued)}, properties ${JSON.stringify(props)}`)
    }
  }
})

test('two subscriptions to one filter: the one subscription at the broker gets the options both need, and what is left when one goes [MQTT-3.8.4-3]', () => {
  for (const version of [4, 5] as const) {
    const x = harness({ protocolVersion: version })
    x.up()
    const subs = (): Array<[string, number, boolean | undefined]> => x.take().flatMap((p) => p.type === 'subscribe' ? p.subscriptions.map((t) => [t.topicFilter, t.qos, t.noLocal] as [string, number, boolean | undefined]) : [])
    const a = x.session.subscribe([{ topicFilter: 'tw/x', qos: 2 }], {}).entry
    assert.deepEqual(subs(), [['tw/x', 2, version === 5 ? false : undefined]])
    const b = x.session.subscribe([{ topicFilter: 'tw/x', qos: 0, noLocal: version === 5 }], {}).entry
    assert.deepEqual(subs(), [['tw/x', 2, version === 5 ? false : undefined]], 'B asks for QoS 0, but A still needs 2 (and local messages)')
    x.session.unsubscribe(b)
    assert.deepEqual(x.take(), [], 'nothing to change: A needed all of it')
    const c = x.session.subscribe([{ topicFilter: 'tw/x', qos: 1 }], {}).entry
    subs()
    x.session.unsubscribe(a)
    const refresh = x.take()
    assert.deepEqual(refresh.map((p) => p.type), ['subscribe'], 'A left: QoS back to what C needs, not an UNSUBSCRIBE')
    const sp = refresh[0] as SubscribePacket
    assert.deepEqual(sp.subscriptions.map((t) => [t.topicFilter, t.qos]), [['tw/x', 1]])
    if (version === 5) assert.equal(sp.subscriptions[0]?.retainHandling, 2, 'no retained messages again')
    assert.equal(c.removed, false)
  }
})

test('subscription identifiers route inbound messages; otherwise the local trie matches', () => {
  const x = harness()
  x.up()
  const a = x.session.subscribe([{ topicFilter: 'x/#', qos: 0 }], {}).entry
  const b = x.session.subscribe([{ topicFilter: 'x/+', qos: 0 }], {}).entry
  x.take()
  x.session.handlePacket({ type: 'publish', topicName: 'x/y', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false, properties: { subscriptionIdentifiers: [b.subscriptionIdentifier as number] } })
  assert.equal(x.h.delivered.length, 1)
  x.session.handlePacket({ type: 'publish', topicName: 'x/y', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false })
  assert.equal(x.h.delivered.length, 3, 'no identifiers: both filters match locally')
  assert.notEqual(a.subscriptionIdentifier, b.subscriptionIdentifier)
})

test('a copy sent for a subscription that has ended is not matched to another one (which gets its own copy); a twin on its filter still takes it', () => {
  const x = harness()
  x.up()
  x.h.takesUnrouted = true
  const wide = x.session.subscribe([{ topicFilter: 'x/#', qos: 0 }], {}).entry
  const narrow = x.session.subscribe([{ topicFilter: 'x/y', qos: 0 }], {}).entry
  x.take()
  const copy = (sid: number | undefined, payload: string, topicName = 'x/y'): void => {
    x.session.handlePacket({ type: 'publish', topicName, payload: Buffer.from(payload), qos: 0, retain: false, dup: false, properties: { subscriptionIdentifiers: [sid as number] } })
  }
  x.session.unsubscribe(narrow)
  // One message, one copy per matching subscription (as mosquitto sends them); the UNSUBSCRIBE is still on its way.
  copy(wide.subscriptionIdentifier, 'm1')
  copy(narrow.subscriptionIdentifier, 'm1')
  assert.deepEqual(x.h.delivered.map((m) => m.payload.toString()), ['m1'], 'the wide subscription gets its own copy only')
  assert.deepEqual(x.h.unrouted.map((m) => m.payload.toString()), ['m1'])
  // Twins: the broker holds one subscription for 'z/q' with the last SUBSCRIBE's identifier; that one ends.
  const first = x.session.subscribe([{ topicFilter: 'z/q', qos: 0 }], {}).entry
  const last = x.session.subscribe([{ topicFilter: 'z/q', qos: 0 }], {}).entry
  x.take()
  x.session.unsubscribe(last)
  assert.deepEqual(x.take(), [], 'the filter is still used: no UNSUBSCRIBE')
  const seen = x.h.delivered.length
  copy(last.subscriptionIdentifier, 'm2', 'z/q')
  assert.equal(x.h.delivered.length, seen + 1)
  assert.equal(x.h.delivered.at(-1)?.payload.toString(), 'm2', 'the remaining twin takes it')
  assert.notEqual(first.subscriptionIdentifier, last.subscriptionIdentifier)
})

test('throttle: PUBLISH beyond the rate waits for wakeAt, replays included', () => {
  const x = harness({ throttle: { messagesPerSecond: 10, burstSeconds: 0.2 } })
  x.up()
  for (let i = 0; i < 5; i++) x.pub(String(i), 0)
  assert.equal(publishes(x.take()).length, 2)
  assert.equal(x.h.wakes.length > 0, true)
  x.h.now = 100
  x.session.pump()
  assert.equal(publishes(x.take()).length, 1)
})

test('local matching follows subscription changes (the per-topic match cache is dropped on every change)', () => {
  const got: string[] = []
  const names = new Map<unknown, string>()
  const session = new ClientSession({ protocolVersion: 4, now: () => 0 }, {
    write () { return true },
    reserve () { return 0 },
    buffer: Buffer.alloc(8192),
    commit () { return true },
    deliver (m, entry) { got.push(`${names.get(entry) ?? '?'}:${m.payload.toString()}`) },
    protocolViolation () {},
    unrouted () { return false },
    wakeAt () {},
    resubscribeFailed () {}
  })
  session.connectionUp({ type: 'connack', sessionPresent: false, reasonCode: 0 }, connectPacket(4))
  const msg = (payload: string): PublishPacket => ({ type: 'publish', topicName: 'a/b', payload: Buffer.from(payload), qos: 0, retain: false, dup: false })
  const a = session.subscribe([{ topicFilter: 'a/+', qos: 0 }], {}).entry
  names.set(a, 'A')
  session.handlePacket(msg('1'))
  session.handlePacket(msg('2')) // from the cache
  const b = session.subscribe([{ topicFilter: 'a/#', qos: 0 }], {}).entry
  names.set(b, 'B')
  session.handlePacket(msg('3'))
  session.unsubscribe(a)
  session.handlePacket(msg('4'))
  session.unsubscribe(b)
  session.handlePacket(msg('5'))
  // Several matches are delivered in the trie's order; compare as sets.
  assert.deepEqual([...got].sort(), ['A:1', 'A:2', 'A:3', 'B:3', 'B:4'])
})

// --- messages no subscription matches (a session the broker kept from before this client) ---

const inbound = (topicName: string, payload: string, qos: QoS, packetId?: number, properties?: PublishPacket['properties']): PublishPacket =>
  ({ type: 'publish', topicName, payload: Buffer.from(payload), qos, retain: false, dup: false, ...(packetId === undefined ? {} : { packetId }), ...(properties === undefined ? {} : { properties }) })
const acks = (ps: Packet[]): string[] => ps.filter((p) => p.type === 'puback' || p.type === 'pubrec').map((p) => `${p.type}:${(p as { packetId: number }).packetId}`)

test('session present: unmatched messages are held unacked, then delivered in order to the subscription made for them', () => {
  const x = harness({ protocolVersion: 4 })
  x.h.now = 1000
  x.up({ sessionPresent: true })
  assert.deepEqual(x.h.wakes, [3000], 'a wake-up at the end of the default 2 s hold')
  x.session.handlePacket(inbound('q/a', 'm1', 1, 1))
  x.session.handlePacket(inbound('q/b', 'm2', 2, 2))
  x.session.handlePacket(inbound('q/a', 'm3', 0))
  assert.deepEqual(acks(x.take()), [], 'nothing acked while held: the broker keeps them')
  assert.equal(x.h.delivered.length, 0)
  x.session.subscribe([{ topicFilter: 'q/#', qos: 2 }], {})
  x.session.deliverHeld()
  assert.deepEqual(x.h.delivered.map((m) => `${m.topic}:${m.payload.toString()}:${m.qos}`), ['q/a:m1:1', 'q/b:m2:2', 'q/a:m3:0'])
  assert.deepEqual(acks(x.take()), ['puback:1', 'pubrec:2'], 'acked once delivered, in arrival order [MQTT-4.6.0-2]')
  assert.equal(x.session.counters.messagesUnrouted, 0)
})

test('session present: a held message keeps its place in the ack order; another subscription takes only what it matches', () => {
  const x = harness({ protocolVersion: 4 })
  x.up({ sessionPresent: true })
  x.session.subscribe([{ topicFilter: 'live/#', qos: 1 }], {})
  x.session.deliverHeld()
  x.take()
  x.session.handlePacket(inbound('old/x', 'held', 1, 7))
  x.session.handlePacket(inbound('live/x', 'live', 1, 8))
  assert.deepEqual(x.h.delivered.map((m) => m.payload.toString()), ['live'])
  assert.deepEqual(acks(x.take()), [], 'the live message is delivered, its PUBACK waits behind the held one')
  x.session.subscribe([{ topicFilter: 'other/#', qos: 1 }], {})
  x.session.deliverHeld()
  assert.deepEqual(acks(x.take()), [], 'a subscription that does not match leaves it held')
  x.session.subscribe([{ topicFilter: 'old/+', qos: 1 }], {})
  x.session.deliverHeld()
  assert.deepEqual(x.h.delivered.map((m) => m.payload.toString()), ['live', 'held'])
  assert.deepEqual(acks(x.take()), ['puback:7', 'puback:8'])
})

test('session present: when the hold ends, what is still held goes to the unrouted listener, or is acked and counted', () => {
  const x = harness({ protocolVersion: 4, unroutedHoldMs: 500 })
  x.up({ sessionPresent: true })
  x.session.handlePacket(inbound('gone/1', 'a', 1, 1))
  x.session.handlePacket(inbound('gone/2', 'b', 1, 2))
  x.h.now = 499
  x.session.wake()
  assert.deepEqual(acks(x.take()), [], 'not before the hold ends')
  assert.deepEqual(x.h.wakes, [500, 500], 'a timer that fired early asks again')
  x.h.now = 500
  x.session.wake()
  assert.deepEqual(acks(x.take()), ['puback:1', 'puback:2'])
  assert.equal(x.session.counters.messagesUnrouted, 2)
  // After the hold, an unmatched message is acked at once; with a listener, the app gets it.
  x.session.handlePacket(inbound('gone/3', 'c', 1, 3))
  assert.deepEqual(acks(x.take()), ['puback:3'])
  x.h.takesUnrouted = true
  x.session.handlePacket(inbound('gone/4', 'd', 2, 4))
  assert.deepEqual(x.h.unrouted.map((m) => m.payload.toString()), ['d'])
  assert.deepEqual(acks(x.take()), ['pubrec:4'])
  assert.equal(x.session.counters.messagesUnrouted, 3)
})

test('an unrouted listener takes unmatched messages at once, even during a hold', () => {
  const x = harness({ protocolVersion: 4 })
  x.h.takesUnrouted = true
  x.up({ sessionPresent: true })
  x.session.handlePacket(inbound('a', 'x', 1, 5))
  assert.deepEqual(x.h.unrouted.map((m) => m.topic), ['a'])
  assert.deepEqual(acks(x.take()), ['puback:5'])
})

test('a subscription made once the app listens for unrouted messages releases everything held, in arrival order', () => {
  const x = harness({ protocolVersion: 4 })
  x.up({ sessionPresent: true })
  x.session.handlePacket(inbound('old/x', 'first', 1, 1))
  x.session.handlePacket(inbound('new/x', 'second', 1, 2))
  x.h.takesUnrouted = true
  x.session.subscribe([{ topicFilter: 'new/#', qos: 1 }], {})
  x.session.deliverHeld()
  assert.deepEqual(x.h.unrouted.map((m) => m.payload.toString()), ['first'])
  assert.deepEqual(x.h.delivered.map((m) => m.payload.toString()), ['second'])
  assert.deepEqual(x.h.seen, ['first', 'second'])
  assert.deepEqual(acks(x.take()), ['puback:1', 'puback:2'])
})

test('no hold without session present (clean start), nor with unroutedHoldMs 0', () => {
  for (const [connack, opts] of [[{ sessionPresent: false }, {}], [{ sessionPresent: true }, { unroutedHoldMs: 0 }]] as const) {
    const x = harness({ protocolVersion: 4, ...opts })
    x.up(connack)
    x.session.handlePacket(inbound('a', 'x', 1, 9))
    assert.deepEqual(acks(x.take()), ['puback:9'])
    assert.equal(x.session.counters.messagesUnrouted, 1)
    assert.deepEqual(x.h.wakes, [])
  }
})

test('a held QoS 2 message lost with its connection is delivered when the broker resends it', () => {
  const x = harness({ protocolVersion: 4 })
  x.up({ sessionPresent: true })
  x.session.handlePacket(inbound('q/a', 'once', 2, 3))
  x.session.connectionDown()
  x.up({ sessionPresent: true })
  x.session.subscribe([{ topicFilter: 'q/a', qos: 2 }], {})
  x.session.deliverHeld()
  x.take()
  x.session.handlePacket({ ...inbound('q/a', 'once', 2, 3), dup: true })
  assert.deepEqual(x.h.delivered.map((m) => m.payload.toString()), ['once'])
  assert.deepEqual(acks(x.take()), ['pubrec:3'])
})

test('the hold keeps at most 1,000 QoS 0 messages (the oldest goes first), and every QoS 1/2 one', () => {
  const x = harness({ protocolVersion: 4 })
  x.up({ sessionPresent: true })
  for (let i = 0; i < 1500; i++) x.session.handlePacket(inbound('b', `q${i}`, 1, i + 1))
  for (let i = 0; i < 1001; i++) x.session.handlePacket(inbound('a', String(i), 0))
  assert.equal(x.session.counters.messagesUnrouted, 1)
  assert.deepEqual(acks(x.take()), [], 'no QoS 1 message released')
  x.session.subscribe([{ topicFilter: 'b', qos: 1 }], {})
  x.session.deliverHeld()
  assert.equal(x.h.delivered.length, 1500)
  assert.equal(acks(x.take()).length, 1500)
  x.h.delivered.length = 0
  x.session.subscribe([{ topicFilter: 'a', qos: 0 }], {})
  x.session.deliverHeld()
  assert.equal(x.h.delivered.length, 1000)
  assert.equal(x.h.delivered[0]?.payload.toString(), '1')
})

test('the hold keeps at most unroutedHoldBytes of QoS 0 messages (the oldest goes first; one larger is held alone); QoS 1/2 ones are not counted', () => {
  const x = harness({ protocolVersion: 4, unroutedHoldBytes: 10_000 })
  x.up({ sessionPresent: true })
  const kb = 'k'.repeat(999) // 1,000 bytes with its topic 'a'
  for (let i = 0; i < 5; i++) x.session.handlePacket(inbound('b', kb, 1, i + 1))
  for (let i = 0; i < 25; i++) x.session.handlePacket(inbound('a', `${i % 10}${kb.slice(1)}`, 0))
  assert.equal(x.session.counters.messagesUnrouted, 15, 'the 15 oldest QoS 0 ones went')
  x.session.handlePacket(inbound('a', 'L'.repeat(50_000), 0))
  assert.equal(x.session.counters.messagesUnrouted, 25, 'a larger one is held alone')
  x.session.handlePacket(inbound('a', 'after', 0))
  assert.equal(x.session.counters.messagesUnrouted, 26)
  x.session.subscribe([{ topicFilter: '#', qos: 1 }], {})
  x.session.deliverHeld()
  assert.deepEqual(x.h.delivered.map((m) => m.payload.length), [999, 999, 999, 999, 999, 5], 'the QoS 1 ones and the newest QoS 0')
  // Charged as they left: a new hold (a reconnect during it) starts at nothing.
  const y = harness({ protocolVersion: 4, unroutedHoldBytes: 10_000 })
  y.up({ sessionPresent: true })
  for (let i = 0; i < 10; i++) y.session.handlePacket(inbound('a', kb, 0))
  y.session.subscribe([{ topicFilter: 'a', qos: 0 }], {})
  y.session.deliverHeld()
  assert.equal(y.h.delivered.length, 10)
  assert.equal(y.session.counters.messagesUnrouted, 0)
})

test('v5, session from before this client: a subscription identifier is trusted only for a filter it matches', () => {
  const x = harness({ protocolVersion: 5 })
  x.up({ sessionPresent: true })
  // Our first subscription gets identifier 1; the broker's old session used 1 for 'old/#'.
  x.session.subscribe([{ topicFilter: 'mine/#', qos: 1 }], {})
  x.session.deliverHeld()
  x.take()
  x.session.handlePacket(inbound('old/x', 'not mine', 1, 1, { subscriptionIdentifiers: [1] }))
  x.session.handlePacket(inbound('mine/x', 'mine', 1, 2, { subscriptionIdentifiers: [1] }))
  assert.deepEqual(x.h.delivered.map((m) => m.payload.toString()), ['mine'])
  // On a new session every identifier is ours again.
  x.session.connectionDown()
  x.up({ sessionPresent: false })
  x.take()
  x.session.handlePacket(inbound('elsewhere', 'by id', 1, 3, { subscriptionIdentifiers: [1] }))
  assert.deepEqual(x.h.delivered.map((m) => m.payload.toString()), ['mine', 'by id'])
})

test('a link lost during the hold keeps it (re-armed); a later reconnect starts none', () => {
  const x = harness({ protocolVersion: 4, unroutedHoldMs: 1000 })
  x.up({ sessionPresent: true })
  x.h.now = 300
  x.session.connectionDown()
  x.up({ sessionPresent: true })
  assert.deepEqual(x.h.wakes, [1000, 1000])
  x.session.handlePacket(inbound('q/a', 'resent', 1, 4))
  assert.deepEqual(acks(x.take()), [], 'still held on the new link')
  x.h.now = 1000
  x.session.wake()
  assert.deepEqual(acks(x.take()), ['puback:4'])
  // A reconnect after the first connection resumes subscriptions this client made: no hold.
  x.session.connectionDown()
  x.up({ sessionPresent: true })
  x.session.handlePacket(inbound('stray', 'x', 1, 5))
  assert.deepEqual(acks(x.take()), ['puback:5'])
  assert.equal(x.session.counters.messagesUnrouted, 2)
})

test('an unrouted listener added after messages were held gets them before a newer one', () => {
  const x = harness({ protocolVersion: 4 })
  x.up({ sessionPresent: true })
  x.session.handlePacket(inbound('old', 'queued0', 1, 1))
  x.session.handlePacket(inbound('old', 'queued1', 1, 2))
  x.h.takesUnrouted = true
  x.session.handlePacket(inbound('old', 'live', 1, 3))
  assert.deepEqual(x.h.seen, ['queued0', 'queued1', 'live'])
  assert.deepEqual(acks(x.take()), ['puback:1', 'puback:2', 'puback:3'])
})

test('unroutedManualAck: an unrouted message is acked by its ack(), in arrival order', () => {
  const x = harness({ protocolVersion: 4, unroutedManualAck: true })
  x.h.takesUnrouted = true
  x.up()
  x.session.handlePacket(inbound('a', 'one', 1, 1))
  x.session.handlePacket(inbound('a', 'two', 2, 2))
  assert.deepEqual(acks(x.take()), [])
  const [one, two] = x.h.unrouted
  assert.equal(one?.needsAck, true)
  two?.ack()
  assert.deepEqual(acks(x.take()), [], 'waits behind the first')
  one?.ack()
  assert.deepEqual(acks(x.take()), ['puback:1', 'pubrec:2'])
})

test('a subscription made by the unrouted listener while the hold ends takes the rest of the held messages', () => {
  const x = harness({ protocolVersion: 4, unroutedHoldMs: 100 })
  x.up({ sessionPresent: true })
  for (const m of ['a1', 'b1', 'b2']) x.session.handlePacket(inbound(m.startsWith('a') ? 'a' : 'b', m, 1, Number(m.slice(1)) + (m.startsWith('a') ? 10 : 20)))
  x.h.takesUnrouted = true
  const out = x.out
  const original = out.unrouted.bind(out)
  let subscribed = false
  out.unrouted = (m) => {
    if (!subscribed) {
      subscribed = true
      x.session.subscribe([{ topicFilter: 'b', qos: 1 }], {})
      x.session.deliverHeld()
    }
    return original(m)
  }
  x.h.now = 100
  x.session.wake()
  assert.deepEqual(x.h.unrouted.map((m) => m.payload.toString()), ['a1'])
  assert.deepEqual(x.h.delivered.map((m) => m.payload.toString()), ['b1', 'b2'])
  assert.deepEqual(acks(x.take()).filter((a) => a.startsWith('puback')), ['puback:11', 'puback:21', 'puback:22'])
})

test('a QoS 2 message the unrouted listener took stays known when the listener drops the link', () => {
  const x = harness({ protocolVersion: 4 })
  x.up({ sessionPresent: true })
  x.session.handlePacket(inbound('old', 'exactly once', 2, 9))
  x.h.takesUnrouted = true
  const out = x.out
  const original = out.unrouted.bind(out)
  out.unrouted = (m) => {
    const taken = original(m)
    x.session.connectionDown() // the app reconnects from its listener
    return taken
  }
  x.session.offerHeld()
  out.unrouted = original
  x.up({ sessionPresent: true })
  x.take()
  x.session.handlePacket({ ...inbound('old', 'exactly once', 2, 9), dup: true })
  assert.deepEqual(x.h.unrouted.map((m) => m.payload.toString()), ['exactly once'], 'not delivered twice')
  assert.deepEqual(acks(x.take()), ['pubrec:9'])
})

test('a subscription made by a handler during delivery of held messages gets the earlier ones it matches', () => {
  const x = harness({ protocolVersion: 4 })
  x.up({ sessionPresent: true })
  x.session.handlePacket(inbound('z', 'z1', 1, 1))
  x.session.handlePacket(inbound('a', 'a1', 1, 2))
  const out = x.out
  const original = out.deliver.bind(out)
  out.deliver = (m, e) => {
    original(m, e)
    if (m.topic === 'a') {
      x.session.subscribe([{ topicFilter: 'z', qos: 1 }], {})
      x.session.deliverHeld()
    }
  }
  x.session.subscribe([{ topicFilter: 'a', qos: 1 }], {})
  x.session.deliverHeld()
  assert.deepEqual(x.h.delivered.map((m) => m.payload.toString()), ['a1', 'z1'])
  assert.deepEqual(acks(x.take()), ['puback:1', 'puback:2'])
})

test('a refusal names its reason code: PUBACK / PUBREC / SUBACK / UNSUBACK >= 0x80 reject with the code and its name (3.1.1 SUBACK: Failure)', () => {
  const x = harness()
  x.up()
  const q1 = x.pub('a', 1, 'deny/1')
  const q2 = x.pub('b', 2, 'deny/2')
  const [p1, p2] = ids(x.take())
  x.session.handlePacket({ type: 'puback', packetId: p1 as number, reasonCode: 0x87 })
  x.session.handlePacket({ type: 'pubrec', packetId: p2 as number, reasonCode: 0x97 })
  assert.deepEqual([(q1.error as PetrelError).code, (q1.error as PetrelError).reasonCode], ['PETREL_ERR_PUBLISH_FAILED', 0x87])
  assert.match((q1.error as Error).message, /^the broker refused the publish to "deny\/1" with reason code 0x87 \(Not authorized\)$/)
  assert.match((q2.error as Error).message, /with reason code 0x97 \(Quota exceeded\)$/)

  const settled = (req: ControlRequest | null): { error: unknown } => {
    const t: { error: unknown } = { error: undefined }
    assert.ok(req !== null)
    req.resolve = () => {}
    req.reject = (err) => { t.error = err }
    return t
  }
  for (const [v, code, name] of [[5, 0x87, 'Not authorized'], [4, 0x80, 'Failure']] as const) {
    const y = harness({ protocolVersion: v })
    y.up()
    const sub = settled(y.session.subscribe([{ topicFilter: 'deny/#', qos: 1 }], {}).request)
    const [s] = y.take()
    y.session.handlePacket({ type: 'suback', packetId: s?.type === 'subscribe' ? s.packetId : 0, reasonCodes: [code] })
    assert.match((sub.error as Error).message, new RegExp(`^the broker refused the subscription to "deny/#" with reason code 0x${code.toString(16)} \\(${name}\\)$`), `v${v}`)
  }
  const z = harness()
  z.up()
  const { entry } = z.session.subscribe([{ topicFilter: 'k/#', qos: 1 }], {})
  const [s] = z.take()
  z.session.handlePacket({ type: 'suback', packetId: s?.type === 'subscribe' ? s.packetId : 0, reasonCodes: [1] })
  const unsub = settled(z.session.unsubscribe(entry))
  const [u] = z.take()
  z.session.handlePacket({ type: 'unsuback', packetId: u?.type === 'unsubscribe' ? u.packetId : 0, reasonCodes: [0x87] })
  assert.match((unsub.error as Error).message, /^the broker refused to unsubscribe with reason code 0x87 \(Not authorized\)$/)
})

test('maxQueuedBytes: a new outbound Topic Alias (3 bytes) is added as a QoS 0 publish leaves the queue, so blocked publishes with properties never take the queue past its bound', () => {
  const x = harness({ maxQueuedBytes: 300 })
  x.up({ properties: { topicAliasMaximum: 10 } })
  x.h.writable = false
  const props = { contentType: 'text/plain', userProperties: [['k', 'v']] as Array<[string, string]> }
  const reqs: Array<PublishRequest | null> = []
  // the first fills the socket's turn; the rest queue, then wait for room (block)
  for (let i = 0; i < 12; i++) {
    const r = x.session.publish(`topic/${i % 4}`, Buffer.alloc(40), 0, false, props)
    if (r !== null) { r.resolve = () => {}; r.reject = () => {} }
    reqs.push(r)
    assert.ok(x.session.queuedByteCount <= 300, `queued ${x.session.queuedByteCount} bytes after publish ${i}`)
  }
  assert.ok(x.session.blockedCount > 0, 'some wait for room')
  let rounds = 0
  while ((x.session.queuedCount > 0 || x.session.blockedCount > 0) && rounds++ < 50) {
    x.h.writable = true
    x.session.drained()
    x.h.writable = false
    assert.ok(x.session.queuedByteCount <= 300, `queued ${x.session.queuedByteCount} bytes`)
  }
  const w = publishes(x.take())
  assert.equal(w.length, 12)
  assert.ok(w.some((p) => p.properties?.topicAlias !== undefined && p.topicName !== ''), 'new aliases were sent (with their names)')
})

test('a PUBLISH the broker ends 3 links in a row over (3.1.1 cannot announce a packet size limit) fails alone; the network\'s drops, ours, or one no larger than what the broker took do not count', () => {
  const big = 'x'.repeat(2000)
  /** The broker ends the link (`dropped`) or we do, and the client reconnects (new session: republished). */
  const cycle = (x: ReturnType<typeof harness>, dropped: boolean): void => {
    x.take() // what the link that ends carried
    x.session.connectionDown(dropped)
    x.up()
  }
  for (const qos of [1, 2] as const) {
    // mosquitto: the small one before it is taken (its ack may be lost with the link), the one after it never read.
    const x = harness({ protocolVersion: 4 })
    x.up()
    const [a, b, c] = [x.pub('a', qos), x.pub(big, qos), x.pub('c', qos)]
    assert.equal(publishes(x.take()).length, 3)
    cycle(x, true)
    cycle(x, true)
    assert.equal(b.state, 'pending', 'two drops could be the network\'s')
    cycle(x, true)
    assert.equal(b.state, 'err')
    assert.equal((b.error as PetrelError).code, 'PETREL_ERR_PACKET_TOO_LARGE')
    assert.equal((b.error as PetrelError).reasonCode, 0x95)
    // The others go on the next link as before; the failed one is not sent again.
    const sent = publishes(x.take())
    assert.deepEqual(sent.map((p) => p.payload.length), [1, 1], 'a and c')
    for (const p of sent) {
      if (qos === 1) x.session.handlePacket({ type: 'puback', packetId: p.packetId as number })
      else {
        x.session.handlePacket({ type: 'pubrec', packetId: p.packetId as number })
        x.session.handlePacket({ type: 'pubcomp', packetId: p.packetId as number })
      }
    }
    assert.deepEqual([a.state, c.state], ['ok', 'ok'])
  }
  {
    // A link we ended (ping timeout, reconnect()) breaks the run.
    const x = harness({ protocolVersion: 4 })
    x.up()
    const b = x.pub(big)
    for (const dropped of [true, true, false, true, true]) cycle(x, dropped)
    assert.equal(b.state, 'pending')
    cycle(x, true)
    assert.equal(b.state, 'err')
  }
  {
    // The broker took one as large before: a drop is not about the size.
    const x = harness({ protocolVersion: 4 })
    x.up()
    x.pub(big + 'y')
    x.session.handlePacket({ type: 'puback', packetId: ids(x.take())[0] as number })
    const b = x.pub(big)
    for (let i = 0; i < 5; i++) cycle(x, true)
    assert.equal(b.state, 'pending')
    // Acknowledged at last: delivered, never failed.
    x.session.handlePacket({ type: 'puback', packetId: ids(x.take())[0] as number })
    assert.equal(b.state, 'ok')
  }
  {
    // Acknowledged between drops: the run starts again.
    const x = harness({ protocolVersion: 4 })
    x.up()
    const b = x.pub(big)
    cycle(x, true)
    cycle(x, true)
    x.take()
    const c = x.pub(big)
    x.session.handlePacket({ type: 'puback', packetId: ids(x.take())[0] as number })
    assert.equal(c.state, 'ok')
    for (let i = 0; i < 5; i++) cycle(x, true)
    assert.equal(b.state, 'pending', 'as large as one the broker took')
  }
  {
    // Told the limit, the session refuses it before the wire, on 3.1.1 and under a v5 CONNACK with a larger one.
    for (const v of [4, 5] as const) {
      const x = harness({ protocolVersion: v, brokerMaximumPacketSize: 1000 })
      x.up(v === 5 ? { properties: { maximumPacketSize: 5000 } } : {})
      assert.throws(() => x.pub(big), { code: 'PETREL_ERR_PACKET_TOO_LARGE' })
      assert.deepEqual(x.take(), [])
    }
  }
})
