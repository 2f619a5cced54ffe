// MQTT 5.0 §3.8 SUBSCRIBE and §3.10 UNSUBSCRIBE: replacing a subscription, unsubscribing, and
// the option combinations the spec forbids.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { PublishPacket } from '@petrel/wire'
import { connected, sleep, text, versions, withBroker } from './helpers.js'

const pub = (topicName: string, payload: string, extra: Partial<PublishPacket> = {}): PublishPacket =>
  ({ type: 'publish', topicName, payload: Buffer.from(payload), qos: 0, retain: false, dup: false, ...extra })

for (const v of versions) {
  test(`v${v}: UNSUBSCRIBE stops delivery and gets UNSUBACK with the same packet id [MQTT-3.10.4-1] [MQTT-3.10.4-4] [MQTT-3.11.2-1]`, async () => {
    await withBroker({}, async (broker) => {
      const s = await connected(broker, v, { clientId: 's' })
      const p = await connected(broker, v, { clientId: 'p' })
      s.send({ type: 'subscribe', packetId: 3, subscriptions: [{ topicFilter: 'u/+', qos: 1 }, { topicFilter: 'u/keep', qos: 0 }] })
      assert.deepEqual((await s.expect('suback')).reasonCodes, [1, 0])
      s.send({ type: 'unsubscribe', packetId: 9, topicFilters: ['u/+', 'never/subscribed'] })
      const ack = await s.expect('unsuback')
      assert.equal(ack.packetId, 9)
      // 5.0: one code per filter, 0x11 No subscription existed for the unknown one [MQTT-3.11.3-1]
      if (v === 5) assert.deepEqual(ack.reasonCodes, [0, 0x11])
      p.send(pub('u/x', 'gone'))
      p.send(pub('u/keep', 'kept'))
      const m = await s.expect('publish')
      assert.equal(text(m.payload), 'kept', 'u/x is no longer delivered; u/keep still is')
      assert.equal(m.qos, 0)
      assert.equal(await s.quiet(150), true)
      assert.equal(broker.router.subscriptionCount, 1)
    })
  })

  test(`v${v}: a SUBSCRIBE for an existing filter replaces it; retained messages are sent again [MQTT-3.8.4-3]`, async () => {
    await withBroker({}, async (broker) => {
      const p = await connected(broker, v, { clientId: 'p' })
      p.send(pub('rep/a', 'r', { retain: true, qos: 1, packetId: 1 }))
      await p.expect('puback')
      const s = await connected(broker, v, { clientId: 's' })
      s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'rep/#', qos: 0 }] })
      await s.expect('suback')
      assert.equal((await s.expect('publish')).qos, 0)
      s.send({ type: 'subscribe', packetId: 2, subscriptions: [{ topicFilter: 'rep/#', qos: 1 }] })
      assert.deepEqual((await s.expect('suback')).reasonCodes, [1])
      const again = await s.expect('publish')
      assert.equal(again.retain, true, 'the retained message is re-sent on the replacing SUBSCRIBE')
      assert.equal(again.qos, 1, 'at the new QoS')
      s.send({ type: 'puback', packetId: again.packetId as number })
      assert.equal(broker.router.subscriptionCount, 1, 'replaced, not added')
      p.send(pub('rep/a', 'live', { qos: 1, packetId: 2 }))
      const live = await s.expect('publish')
      assert.equal(live.qos, 1)
      assert.equal(text(live.payload), 'live')
      assert.equal(await s.quiet(150), true, 'one copy, not one per SUBSCRIBE')
    })
  })

  test(`v${v}: QoS 0 is not queued for an offline session; QoS 1 is [MQTT-3.1.2-5]`, async () => {
    await withBroker({}, async (broker) => {
      const s = await connected(broker, v, { clientId: 'off', cleanStart: false, properties: v === 5 ? { sessionExpiryInterval: 60 } : undefined })
      s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'off/#', qos: 1 }] })
      await s.expect('suback')
      s.send({ type: 'disconnect' })
      await s.waitClosed()
      const p = await connected(broker, v, { clientId: 'p' })
      p.send(pub('off/0', 'q0'))
      p.send(pub('off/1', 'q1', { qos: 1, packetId: 5 }))
      await p.expect('puback')
      assert.equal(broker.stats.drops.offline, 1, 'the QoS 0 message is counted as dropped')
      const back = await connected(broker, v, { clientId: 'off', cleanStart: false, properties: v === 5 ? { sessionExpiryInterval: 60 } : undefined })
      const m = await back.expect('publish')
      assert.equal(text(m.payload), 'q1')
      assert.equal(await back.quiet(150), true)
    })
  })
}

test('v5: No Local on a shared subscription is a Protocol Error: DISCONNECT 0x82 [MQTT-3.8.3-4]', async () => {
  await withBroker({}, async (broker) => {
    const c = await connected(broker, 5, { clientId: 'nl' })
    const other = await connected(broker, 5, { clientId: 'other' })
    c.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '$share/g/x', qos: 0, noLocal: true }] })
    assert.equal((await c.expect('disconnect')).reasonCode, 0x82)
    await c.waitClosed()
    other.send({ type: 'pingreq' })
    await other.expect('pingresp')
  })
})

test('v5: a Subscription Identifier is attached only to deliveries of the subscription that set it [MQTT-3.3.4-3]', async () => {
  await withBroker({}, async (broker) => {
    const s = await connected(broker, 5, { clientId: 's' })
    s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'sid/a', qos: 0 }], properties: { subscriptionIdentifier: 42 } })
    await s.expect('suback')
    s.send({ type: 'subscribe', packetId: 2, subscriptions: [{ topicFilter: 'sid/b', qos: 0 }] })
    await s.expect('suback')
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('sid/a', 'a'))
    assert.deepEqual((await s.expect('publish')).properties?.subscriptionIdentifiers, [42])
    p.send(pub('sid/b', 'b'))
    assert.equal((await s.expect('publish')).properties?.subscriptionIdentifiers, undefined)
    await sleep(10)
  })
})

test('v5: a SUBSCRIBE that replaces a subscription without a Subscription Identifier removes the one it had [MQTT-3.8.4-3]', async () => {
  await withBroker({}, async (broker) => {
    const s = await connected(broker, 5, { clientId: 's' })
    s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'sid/r', qos: 0 }], properties: { subscriptionIdentifier: 5 } })
    await s.expect('suback')
    s.send({ type: 'subscribe', packetId: 2, subscriptions: [{ topicFilter: 'sid/r', qos: 0 }] })
    await s.expect('suback')
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('sid/r', 'x'))
    assert.equal((await s.expect('publish')).properties?.subscriptionIdentifiers, undefined)
  })
})

// Raw bytes after CONNECT: each is answered with DISCONNECT and the reason code, then the close
// (§4.13); the others' connections carry on.
const malformedSubscribes: Array<[string, number, number[]]> = [
  ['SUBSCRIBE fixed header flags other than 0010 [MQTT-3.8.1-1]', 0x81, [0x80, 6, 0, 1, 0, 0, 1, 0x61, 0]],
  ['UNSUBSCRIBE fixed header flags other than 0010 [MQTT-3.10.1-1]', 0x81, [0xa0, 5, 0, 1, 0, 0, 1, 0x61]],
  ['SUBSCRIBE without a topic filter [MQTT-3.8.3-2]', 0x82, [0x82, 3, 0, 1, 0]],
  ['UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]', 0x82, [0xa2, 3, 0, 1, 0]],
  ['Subscription Identifier 0 (§3.8.2.1.2)', 0x82, [0x82, 9, 0, 1, 2, 0x0b, 0, 0, 1, 0x61, 0]],
  ['two Subscription Identifiers in a SUBSCRIBE (§3.8.2.1.2)', 0x82, [0x82, 11, 0, 1, 4, 0x0b, 1, 0x0b, 2, 0, 1, 0x61, 0]],
  ['Retain Handling 3 (§3.8.3.1)', 0x82, [0x82, 7, 0, 1, 0, 0, 1, 0x61, 0x30]],
  ['reserved subscription option bits set [MQTT-3.8.3-5]', 0x81, [0x82, 7, 0, 1, 0, 0, 1, 0x61, 0x40]],
  ['a ShareName with a wildcard: $share/g+/x [MQTT-4.8.2-2]', 0x81, [0x82, 15, 0, 1, 0, 0, 11, ...Buffer.from('$share/g+/x'), 0]],
  ['an empty ShareName: $share//x [MQTT-4.8.2-1]', 0x81, [0x82, 13, 0, 1, 0, 0, 9, ...Buffer.from('$share//x'), 0]],
  ['no filter after the ShareName: $share/g/ [MQTT-4.8.2-2]', 0x81, [0x82, 13, 0, 1, 0, 0, 9, ...Buffer.from('$share/g/'), 0]],
  ['no / after the ShareName: $share/g [MQTT-4.8.2-2]', 0x81, [0x82, 12, 0, 1, 0, 0, 8, ...Buffer.from('$share/g'), 0]]
]
for (const [what, reasonCode, bytes] of malformedSubscribes) {
  test(`v5: ${what} is DISCONNECT 0x${reasonCode.toString(16)}`, async () => {
    await withBroker({}, async (broker) => {
      const c = await connected(broker, 5, { clientId: 'bad' })
      const other = await connected(broker, 5, { clientId: 'other' })
      c.sendRaw(Buffer.from(bytes))
      assert.equal((await c.expect('disconnect')).reasonCode, reasonCode)
      await c.waitClosed()
      assert.equal(broker.router.subscriptionCount, 0)
      other.send({ type: 'pingreq' })
      await other.expect('pingresp')
    })
  })
}
