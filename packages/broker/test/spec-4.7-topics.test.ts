// MQTT 5.0 §4.7 topic names and filters.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connected, sleep, text, versions, withBroker } from './helpers.js'

for (const v of versions) {
  test(`v${v}: wildcards + and # match per level; a/# matches a [MQTT-4.7.1-2] [MQTT-4.7.1-3]`, async () => {
    await withBroker({}, async (broker) => {
      const s = await connected(broker, v, { clientId: 's' })
      s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a/+/c', qos: 0 }, { topicFilter: 'x/#', qos: 0 }] })
      assert.deepEqual((await s.expect('suback')).reasonCodes, [0, 0])
      const p = await connected(broker, v, { clientId: 'p' })
      for (const t of ['a/b/c', 'a/b/d', 'a/b/c/d', 'x', 'x/y/z', 'a//c']) {
        p.send({ type: 'publish', topicName: t, payload: Buffer.from(t), qos: 0, retain: false, dup: false })
      }
      const got: string[] = []
      for (let i = 0; i < 4; i++) got.push((await s.expect('publish')).topicName)
      assert.deepEqual(got.sort(), ['a//c', 'a/b/c', 'x', 'x/y/z'])
      assert.equal(await s.quiet(150), true)
    })
  })

  test(`v${v}: $ topics are not matched by # or + at the first level [MQTT-4.7.2-1]`, async () => {
    await withBroker({}, async (broker) => {
      const s = await connected(broker, v, { clientId: 's' })
      s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '#', qos: 0 }, { topicFilter: '+/info', qos: 0 }] })
      await s.expect('suback')
      const d = await connected(broker, v, { clientId: 'd' })
      d.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '$app/#', qos: 0 }] })
      await d.expect('suback')
      const p = await connected(broker, v, { clientId: 'p' })
      p.send({ type: 'publish', topicName: '$app/info', payload: Buffer.from('x'), qos: 0, retain: false, dup: false })
      assert.equal((await d.expect('publish')).topicName, '$app/info')
      assert.equal(await s.quiet(200), true)
    })
  })

  test(`v${v}: a wildcard in a PUBLISH topic closes the connection [MQTT-3.3.2-2]`, async () => {
    await withBroker({}, async (broker) => {
      const p = await connected(broker, v, { clientId: 'p' })
      p.sendRaw(Buffer.from([0x30, 5, 0, 3, 0x61, 0x2f, 0x23])) // PUBLISH "a/#"
      if (v === 5) assert.equal((await p.expect('disconnect')).reasonCode, 0x81)
      await p.waitClosed()
    })
  })
}

test('$SYS/broker topics are published periodically', async () => {
  const { createBroker } = await import('@petrel/broker')
  const { memoryClient } = await import('./helpers.js')
  const broker = createBroker({ sysInterval: 1 })
  try {
    const c = memoryClient(broker, 5)
    await c.connect({ clientId: 'sys' })
    c.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '$SYS/broker/clients/connected', qos: 0 }] })
    await c.expect('suback')
    await sleep(100)
    const m = await c.expect('publish', 2500)
    assert.equal(Buffer.from(m.payload).toString(), '1')
  } finally {
    await broker.close()
  }
})

test('$SYS/broker carries messages by QoS, drops by reason and queue depths', async () => {
  const { createBroker } = await import('@petrel/broker')
  const { memoryClient } = await import('./helpers.js')
  const broker = createBroker({ sysInterval: 1 })
  try {
    const c = memoryClient(broker, 4)
    await c.connect({ clientId: 'sys' })
    c.send({ type: 'publish', topicName: 'nobody/listens', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 1 })
    await c.expect('puback')
    broker.stats.drop('offline')
    c.send({ type: 'subscribe', packetId: 2, subscriptions: [{ topicFilter: '$SYS/broker/messages/#', qos: 0 }, { topicFilter: '$SYS/broker/store/#', qos: 0 }] })
    await c.expect('suback')
    const got = new Map<string, string>()
    for (;;) {
      try {
        // the next update cycle (1 s) sends every value
        const m = await c.expect('publish', got.size === 0 ? 2500 : 300)
        got.set(m.topicName, Buffer.from(m.payload).toString())
      } catch { break }
    }
    assert.equal(got.get('$SYS/broker/messages/received/qos1'), '1')
    assert.equal(got.get('$SYS/broker/messages/dropped/offline'), '1')
    assert.equal(got.get('$SYS/broker/messages/dropped/queue_full'), '0')
    assert.equal(got.get('$SYS/broker/store/messages/count'), '0')
  } finally {
    await broker.close()
  }
})

// A sys_interval of 2^31 ms or more (some 25 days: what one sets for 'hardly ever') made the
// timer fire after 1 ms, as setInterval does past its range: $SYS updates a thousand times a second.
test('a sys_interval past what a timer can wait (2,200,000 s) does not publish $SYS every millisecond', async () => {
  const { createBroker } = await import('@petrel/broker')
  const { memoryClient } = await import('./helpers.js')
  const broker = createBroker({ sysInterval: 2_200_000 })
  try {
    const c = memoryClient(broker, 5)
    await c.connect({ clientId: 'sys' })
    c.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '$SYS/broker/clients/connected', qos: 0 }] })
    await c.expect('suback')
    // at most the retained value of an update made at start-up, then nothing for 300 ms
    let n = 0
    for (;;) {
      try {
        await c.expect('publish', 300)
        n++
      } catch { break }
      if (n > 3) break
    }
    assert.ok(n <= 1, `${n} updates in 300 ms`)
  } finally {
    await broker.close()
  }
})

test('v5: shared subscriptions keep to the $ rule too: $share/g/# and $share/h/+/x do not match $ topics [MQTT-4.7.2-1]; + matches an empty level', async () => {
  await withBroker({}, async (broker) => {
    const all = await connected(broker, 5, { clientId: 'all' })
    const one = await connected(broker, 5, { clientId: 'one' })
    const plain = await connected(broker, 5, { clientId: 'plain' })
    for (const [c, topicFilter] of [[all, '$share/g/#'], [one, '$share/h/+/x'], [plain, '+/+']] as const) {
      c.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter, qos: 0 }] })
      await c.expect('suback')
    }
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send({ type: 'publish', topicName: '$foo/x', payload: Buffer.from('dollar'), qos: 0, retain: false, dup: false })
    p.send({ type: 'publish', topicName: '/x', payload: Buffer.from('empty-first'), qos: 0, retain: false, dup: false })
    for (const c of [all, one, plain]) assert.equal(text((await c.expect('publish')).payload), 'empty-first', 'never $foo/x')
    for (const c of [all, one, plain]) assert.equal(await c.quiet(100), true)
  })
})

test('v5: retained messages on $ topics are not sent for a filter starting with # or + [MQTT-4.7.2-1]; $app/+ gets them', async () => {
  await withBroker({}, async (broker) => {
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send({ type: 'publish', topicName: '$app/info', payload: Buffer.from('d'), qos: 0, retain: true, dup: false })
    p.send({ type: 'publish', topicName: 'app/info', payload: Buffer.from('plain'), qos: 0, retain: true, dup: false })
    await sleep(50)
    const s = await connected(broker, 5, { clientId: 's' })
    s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '#', qos: 0 }, { topicFilter: '+/info', qos: 0 }] })
    await s.expect('suback')
    const got = [(await s.expect('publish')).topicName, (await s.expect('publish')).topicName]
    assert.deepEqual(got, ['app/info', 'app/info'], 'one per filter, never $app/info')
    assert.equal(await s.quiet(150), true)
    const d = await connected(broker, 5, { clientId: 'd' })
    d.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '$app/+', qos: 0 }] })
    await d.expect('suback')
    const m = await d.expect('publish')
    assert.equal(m.topicName, '$app/info')
    assert.equal(text(m.payload), 'd')
  })
})
