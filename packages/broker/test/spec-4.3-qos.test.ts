// MQTT 5.0 §4.3 QoS flows, §4.4 redelivery, §4.9 flow control, and persistent sessions (§4.1).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { pino } from 'pino'
import type { PublishPacket } from '@petrel/wire'
import { connected, memoryClient, sleep, text, versions, withBroker } from './helpers.js'

const pub = (topicName: string, payload: string, extra: Partial<PublishPacket> = {}): PublishPacket =>
  ({ type: 'publish', topicName, payload: Buffer.from(payload), qos: 0, retain: false, dup: false, ...extra })

for (const v of versions) {
  test(`v${v}: QoS 2 inbound: duplicate PUBLISH before PUBREL is not delivered twice [MQTT-4.3.3-10] [MQTT-4.3.3-11]`, async () => {
    await withBroker({}, async (broker) => {
      const s = await connected(broker, v, { clientId: 's' })
      s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'q2', qos: 2 }] })
      await s.expect('suback')
      const p = await connected(broker, v, { clientId: 'p' })
      p.send(pub('q2', 'once', { qos: 2, packetId: 5 }))
      assert.equal((await p.expect('pubrec')).packetId, 5)
      p.send(pub('q2', 'once', { qos: 2, packetId: 5, dup: true }))
      assert.equal((await p.expect('pubrec')).packetId, 5)
      p.send({ type: 'pubrel', packetId: 5 })
      assert.equal((await p.expect('pubcomp')).packetId, 5)
      // outbound QoS 2: PUBLISH -> PUBREC -> PUBREL -> PUBCOMP [MQTT-4.3.3-4]
      const m = await s.expect('publish')
      assert.equal(m.qos, 2)
      s.send({ type: 'pubrec', packetId: m.packetId as number })
      assert.equal((await s.expect('pubrel')).packetId, m.packetId)
      s.send({ type: 'pubcomp', packetId: m.packetId as number })
      assert.equal(await s.quiet(200), true, 'the duplicate was not delivered')
      // the id is free again after PUBCOMP [MQTT-4.3.3-12]
      p.send(pub('q2', 'again', { qos: 2, packetId: 5 }))
      await p.expect('pubrec')
      assert.equal(text((await s.expect('publish')).payload), 'again')
    })
  })

  test(`v${v}: persistent session: subscriptions and QoS 1/2 queued offline, delivered on return with session present [MQTT-3.1.2-5] [MQTT-4.4.0-1]`, async () => {
    await withBroker({}, async (broker) => {
      const props = v === 5 ? { sessionExpiryInterval: 60 } : undefined
      const s = await connected(broker, v, { clientId: 'persist', cleanStart: false, properties: props })
      s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'ps/#', qos: 2 }] })
      await s.expect('suback')
      const p = await connected(broker, v, { clientId: 'p' })
      p.send(pub('ps/a', 'inflight', { qos: 1, packetId: 1 }))
      await p.expect('puback')
      const first = await s.expect('publish') // not acked: stays in flight
      s.destroy()
      await sleep(50)
      p.send(pub('ps/a', 'q1', { qos: 1, packetId: 2 }))
      p.send(pub('ps/b', 'q2', { qos: 2, packetId: 3 }))
      p.send(pub('ps/c', 'q0', { qos: 0 }))
      await p.expect('puback')
      await p.expect('pubrec')
      const again = await connected(broker, v, { clientId: 'persist', cleanStart: false, properties: props })
      const resent = await again.expect('publish')
      assert.equal(resent.dup, true, 'resend has DUP set [MQTT-3.3.1-1]')
      assert.equal(resent.packetId, first.packetId)
      assert.equal(text(resent.payload), 'inflight')
      const a = await again.expect('publish')
      const b = await again.expect('publish')
      assert.deepEqual([text(a.payload), text(b.payload)], ['q1', 'q2'])
      assert.equal(b.qos, 2)
      assert.equal(await again.quiet(200), true, 'QoS 0 is not queued offline')
      assert.equal(broker.stats.drops.offline, 1)
    })
  })

  test(`v${v}: clean start discards the session [MQTT-3.1.2-4]`, async () => {
    await withBroker({}, async (broker) => {
      const props = v === 5 ? { sessionExpiryInterval: 60 } : undefined
      const s = await connected(broker, v, { clientId: 'cs', cleanStart: false, properties: props })
      s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'cs', qos: 1 }] })
      await s.expect('suback')
      s.send({ type: 'disconnect' })
      await s.waitClosed()
      const ack = await memoryClient(broker, v).connect({ clientId: 'cs', cleanStart: false, properties: props })
      assert.equal(ack.sessionPresent, true)
      const fresh = await memoryClient(broker, v).connect({ clientId: 'cs', cleanStart: true })
      assert.equal(fresh.sessionPresent, false)
      assert.equal(broker.router.subscriptionCount, 0)
    })
  })
}


test('v5: session expiry ends an offline session', async () => {
  await withBroker({}, async (broker) => {
    const s = await connected(broker, 5, { clientId: 'exp', properties: { sessionExpiryInterval: 1 } })
    s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'x', qos: 1 }] })
    await s.expect('suback')
    s.destroy()
    await sleep(300)
    assert.equal(broker.sessions.has('exp'), true)
    await sleep(1100)
    assert.equal(broker.sessions.has('exp'), false)
    assert.equal(broker.router.subscriptionCount, 0)
  })
})

test('v5: the client\'s Receive Maximum limits QoS 1 in flight [MQTT-3.3.4-7]; acks release more', async () => {
  await withBroker({}, async (broker) => {
    const s = await connected(broker, 5, { clientId: 's', properties: { receiveMaximum: 2 } })
    s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'fc', qos: 1 }] })
    await s.expect('suback')
    const p = await connected(broker, 5, { clientId: 'p' })
    for (let i = 1; i <= 5; i++) p.send(pub('fc', String(i), { qos: 1, packetId: i }))
    const a = await s.expect('publish')
    const b = await s.expect('publish')
    assert.equal(await s.quiet(200), true, 'only two in flight')
    s.send({ type: 'puback', packetId: a.packetId as number })
    const c = await s.expect('publish')
    assert.equal(text(c.payload), '3', 'in order [MQTT-4.6.0-6]')
    s.send({ type: 'puback', packetId: b.packetId as number })
    s.send({ type: 'puback', packetId: c.packetId as number })
    assert.deepEqual([text((await s.expect('publish')).payload), text((await s.expect('publish')).payload)], ['4', '5'])
  })
})

test('v5: messages in flight are resent within the Receive Maximum of the new connection, in order, before new ones [MQTT-3.3.4-9] [MQTT-4.4.0-1]', async () => {
  await withBroker({}, async (broker) => {
    const props = { sessionExpiryInterval: 60 }
    const s = await connected(broker, 5, { clientId: 's', properties: { ...props, receiveMaximum: 10 } })
    s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'rr', qos: 2 }] })
    await s.expect('suback')
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('rr', 'q2', { qos: 2, packetId: 1 }))
    const q2 = await s.expect('publish')
    s.send({ type: 'pubrec', packetId: q2.packetId as number })
    await s.expect('pubrel')
    for (const [i, t] of ['a', 'b', 'c', 'd'].entries()) p.send(pub('rr', t, { qos: 1, packetId: 10 + i }))
    const first = new Map<string, number>()
    for (let i = 0; i < 4; i++) {
      const m = await s.expect('publish')
      first.set(text(m.payload), m.packetId as number)
    }
    s.destroy()
    await sleep(50)
    // 5 unacknowledged (q2 awaiting PUBCOMP, a-d awaiting PUBACK); the client now takes 2
    const r = memoryClient(broker, 5)
    assert.equal((await r.connect({ clientId: 's', cleanStart: false, properties: { ...props, receiveMaximum: 2 } })).sessionPresent, true)
    p.send(pub('rr', 'e', { qos: 1, packetId: 20 }))
    assert.equal((await r.expect('pubrel')).packetId, q2.packetId)
    const a = await r.expect('publish')
    assert.deepEqual([text(a.payload), a.dup, a.packetId], ['a', true, first.get('a')])
    assert.equal(await r.quiet(200), true, 'two unacknowledged: the Receive Maximum is full')
    const got: string[] = []
    const take = async (): Promise<void> => {
      const m = await r.expect('publish')
      got.push(text(m.payload) + (m.dup ? ' (dup)' : ''))
      r.send({ type: 'puback', packetId: m.packetId as number })
    }
    r.send({ type: 'pubcomp', packetId: q2.packetId as number })
    r.send({ type: 'puback', packetId: a.packetId as number })
    for (let i = 0; i < 4; i++) await take()
    assert.deepEqual(got, ['b (dup)', 'c (dup)', 'd (dup)', 'e'], 'the rest resent in order, then the new one')
    assert.equal(await r.quiet(150), true)
  })
})

test('v5: QoS 1 counts against our Receive Maximum with unreleased QoS 2 [MQTT-3.3.4-7]: one too many is DISCONNECT 0x93', async () => {
  await withBroker({ limits: { receiveMaximum: 2 } }, async (broker) => {
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('rm', 'x', { qos: 2, packetId: 1 }))
    p.send(pub('rm', 'x', { qos: 2, packetId: 2 }))
    await p.expect('pubrec')
    await p.expect('pubrec')
    p.send(pub('rm', 'x', { qos: 1, packetId: 3 }))
    assert.equal((await p.expect('disconnect')).reasonCode, 0x93)
  })
})

test('v5: QoS 1 publishes acked at once never count as outstanding: no false 0x93', async () => {
  await withBroker({ limits: { receiveMaximum: 2 } }, async (broker) => {
    const p = await connected(broker, 5, { clientId: 'p' })
    for (let i = 1; i <= 10; i++) p.send(pub('rm', 'x', { qos: 1, packetId: i }))
    for (let i = 1; i <= 10; i++) assert.equal((await p.expect('puback')).packetId, i)
    assert.equal(await p.quiet(100), true, 'still connected, nothing else sent')
  })
})

test('v5: exceeding our Receive Maximum with QoS 2 is DISCONNECT 0x93 [MQTT-3.3.4-7]', async () => {
  await withBroker({ limits: { receiveMaximum: 2 } }, async (broker) => {
    const p = await connected(broker, 5, { clientId: 'p' })
    for (let i = 1; i <= 3; i++) p.send(pub('rm', 'x', { qos: 2, packetId: i }))
    await p.expect('pubrec')
    await p.expect('pubrec')
    assert.equal((await p.expect('disconnect')).reasonCode, 0x93)
  })
})

test('3.1.1: session queue bound: messages past max_queued_messages are dropped and counted', async () => {
  await withBroker({ limits: { maxQueuedMessages: 3 } }, async (broker) => {
    const s = await connected(broker, 4, { clientId: 'bound', cleanStart: false })
    s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'b', qos: 1 }] })
    await s.expect('suback')
    s.destroy()
    await sleep(50)
    const p = await connected(broker, 4, { clientId: 'p' })
    for (let i = 1; i <= 5; i++) p.send(pub('b', String(i), { qos: 1, packetId: i }))
    for (let i = 1; i <= 5; i++) await p.expect('puback')
    assert.equal(broker.stats.drops.queue_full, 2)
    const again = await connected(broker, 4, { clientId: 'bound', cleanStart: false })
    const got = [text((await again.expect('publish')).payload), text((await again.expect('publish')).payload), text((await again.expect('publish')).payload)]
    assert.deepEqual(got, ['1', '2', '3'])
  })
})

test('QoS 1/2 still unacknowledged or queued when a session ends are counted (session_ended), not lost silently', async () => {
  await withBroker({ limits: { maxInflightMessages: 2 } }, async (broker) => {
    const s = await connected(broker, 5, { clientId: 'leaves' })
    s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'e', qos: 2 }] })
    await s.expect('suback')
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('e', 'q0'))
    for (let i = 1; i <= 5; i++) p.send(pub('e', String(i), { qos: i % 2 === 0 ? 2 : 1, packetId: i }))
    await s.expect('publish') // the QoS 0 one, gone on the wire
    await s.expect('publish')
    await s.expect('publish') // two in flight (never acknowledged), three queued
    s.destroy() // a clean session: it ends with its connection
    await sleep(50)
    assert.equal(broker.stats.drops.session_ended, 5)
  })
})

for (const qos of [1, 2] as const) {
  test(`QoS ${qos} in flight to one subscriber is bounded in bytes (max_inflight_bytes), not only in count; one message always goes, however large`, async () => {
    const MiB = 1024 * 1024
    await withBroker({
      limits: { maxPacketSize: 8 * MiB, maxInflightBytes: 4 * MiB + 1024, maxQueuedBytes: 64 * MiB },
      memory: { maxSegmentSize: 64 * MiB, maxSegmentCount: 1 }
    }, async (broker) => {
      const s = await connected(broker, 5, { clientId: 'big' })
      s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'big/#', qos }] })
      await s.expect('suback')
      const p = await connected(broker, 5, { clientId: 'p' })
      // 10 x 1 MiB, then one of 6 MiB: the count (100) would let all of them be in flight at once
      for (let i = 1; i <= 10; i++) p.send(pub('big/a', String(i).padEnd(MiB, '.'), { qos, packetId: i }))
      p.send(pub('big/b', '11'.padEnd(6 * MiB, '.'), { qos, packetId: 11 }))
      const got: PublishPacket[] = []
      for (let i = 0; i < 4; i++) got.push(await s.expect('publish', 5000))
      assert.equal(await s.quiet(200), true, 'no more than 4 x 1 MiB in flight')
      const session = broker.sessions.get('big')
      assert.ok(session !== undefined && session.inflightCount === 4 && session.inflightByteCount <= 4 * MiB + 1024, `in flight: ${session?.inflightCount}, ${session?.inflightByteCount} B`)
      const ack = async (m: PublishPacket): Promise<void> => {
        if (qos === 1) { s.send({ type: 'puback', packetId: m.packetId as number }); return }
        s.send({ type: 'pubrec', packetId: m.packetId as number })
        await s.expect('pubrel')
        s.send({ type: 'pubcomp', packetId: m.packetId as number })
      }
      // each ack frees room for the next, in order
      for (let i = 0; i < 10; i++) {
        await ack(got[i] as PublishPacket)
        if (i + 4 < 10) got.push(await s.expect('publish', 5000))
      }
      // the 6 MiB one, larger than the bound, goes once nothing else is in flight
      const last = await s.expect('publish', 5000)
      assert.equal(last.payload.length, 6 * MiB)
      assert.deepEqual(got.map((m) => text(m.payload).replace(/\.+$/, '')), Array.from({ length: 10 }, (_, i) => String(i + 1)))
      await ack(last)
      await sleep(50)
      assert.equal(session.inflightByteCount, 0)
      assert.equal(broker.stats.dropsTotal, 0)
    })
  })
}

for (const v of versions) {
  test(`v${v}: a resumed session's queue of messages of 64 KiB or more is sent whole and in order, after its in-flight ones [MQTT-4.6.0-6]`, async () => {
    // Each write of 64 KiB or more flushes at once, and a flush that the socket takes pumps the
    // session: the queue was pumped from inside its own pump, and the outer loop then read a
    // slot the inner one had emptied (TypeError: the broker process died).
    await withBroker({ limits: { maxInflightMessages: 2 } }, async (broker) => {
      const big = (i: number): string => String(i).padEnd(100 * 1024, '.')
      const s = await connected(broker, v, { clientId: 'resume-big', cleanStart: false, properties: v === 5 ? { sessionExpiryInterval: 60 } : undefined })
      s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'rb', qos: 1 }] })
      await s.expect('suback')
      const p = await connected(broker, v, { clientId: 'p' })
      for (let i = 1; i <= 6; i++) p.send(pub('rb', big(i), { qos: 1, packetId: i }))
      for (let i = 1; i <= 6; i++) await p.expect('puback')
      await s.expect('publish')
      await s.expect('publish') // two in flight, never acknowledged; four queued
      s.destroy()
      await sleep(50)
      const again = await connected(broker, v, { clientId: 'resume-big', cleanStart: false, properties: v === 5 ? { sessionExpiryInterval: 60 } : undefined })
      const got: string[] = []
      while (got.length < 6) {
        const m = await again.expect('publish')
        got.push(text(m.payload).replace(/\.+$/, ''))
        again.send({ type: 'puback', packetId: m.packetId as number })
      }
      assert.deepEqual(got, ['1', '2', '3', '4', '5', '6'])
    })
  })
}

test('messages dropped at a session\'s queue bound are logged with the client id, at most once in a while, besides being counted', async () => {
  const lines: string[] = []
  const logger = pino({ level: 'warn' }, { write: (s: string) => { lines.push(s) } })
  await withBroker({ logger, limits: { maxQueuedMessages: 3 } }, async (broker) => {
    const s = await connected(broker, 4, { clientId: 'offline-too-long', cleanStart: false })
    s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'b', qos: 1 }] })
    await s.expect('suback')
    s.destroy()
    await sleep(50)
    const p = await connected(broker, 4, { clientId: 'p' })
    for (let i = 1; i <= 50; i++) p.send(pub('b', String(i), { qos: 1, packetId: i }))
    for (let i = 1; i <= 50; i++) await p.expect('puback')
    assert.equal(broker.stats.drops.queue_full, 47)
    const warnings = lines.map((l) => JSON.parse(l) as { clientId?: string, reason?: string, msg: string }).filter((l) => l.reason === 'queue_full')
    assert.equal(warnings.length, 1, 'one warning for a burst of drops')
    assert.equal(warnings[0]?.clientId, 'offline-too-long')
    assert.match(warnings[0]?.msg ?? '', /max_queued_messages/)
  })
})
