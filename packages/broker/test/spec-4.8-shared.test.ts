// MQTT 5.0 §4.8.2 shared subscriptions.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connected, sleep, withBroker } from './helpers.js'

test('shared subscription: each message goes to one member, balanced round robin [MQTT-4.8.2-4]', async () => {
  await withBroker({}, async (broker) => {
    const members = await Promise.all([0, 1, 2].map(async (i) => await connected(broker, i === 2 ? 4 : 5, { clientId: `m${i}` })))
    for (const m of members) {
      m.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '$share/g/jobs/+', qos: 1 }] })
      await m.expect('suback')
    }
    const p = await connected(broker, 5, { clientId: 'p' })
    for (let i = 0; i < 30; i++) p.send({ type: 'publish', topicName: `jobs/${i}`, payload: Buffer.from(String(i)), qos: 0, retain: false, dup: false })
    await sleep(200)
    const counts: number[] = []
    for (const m of members) {
      let n = 0
      while (!(await m.quiet(50))) n++
      counts.push(n + 0)
    }
    // quiet() consumed one packet per loop iteration that was not quiet
    assert.equal(counts.reduce((a, b) => a + b, 0), 30)
    for (const n of counts) assert.equal(n, 10)
  })
})

test('shared subscription: retained messages are not sent on subscribe [MQTT-3.8.4-?]; a plain subscriber still gets its copy', async () => {
  await withBroker({}, async (broker) => {
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send({ type: 'publish', topicName: 'sh/r', payload: Buffer.from('r'), qos: 0, retain: true, dup: false })
    await sleep(50)
    const m = await connected(broker, 5, { clientId: 'm' })
    m.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '$share/g/sh/#', qos: 0 }] })
    await m.expect('suback')
    assert.equal(await m.quiet(150), true)
    const plain = await connected(broker, 5, { clientId: 'plain' })
    plain.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'sh/#', qos: 0 }] })
    await plain.expect('suback')
    await plain.expect('publish') // retained
    p.send({ type: 'publish', topicName: 'sh/x', payload: Buffer.from('x'), qos: 0, retain: false, dup: false })
    assert.equal((await m.expect('publish')).topicName, 'sh/x')
    assert.equal((await plain.expect('publish')).topicName, 'sh/x')
  })
})

test('shared subscription: unsubscribing one member leaves the others served', async () => {
  await withBroker({}, async (broker) => {
    const a = await connected(broker, 5, { clientId: 'a' })
    const b = await connected(broker, 5, { clientId: 'b' })
    for (const m of [a, b]) {
      m.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '$share/g/u', qos: 0 }] })
      await m.expect('suback')
    }
    a.send({ type: 'unsubscribe', packetId: 2, topicFilters: ['$share/g/u'] })
    assert.deepEqual((await a.expect('unsuback')).reasonCodes, [0])
    const p = await connected(broker, 5, { clientId: 'p' })
    for (let i = 0; i < 4; i++) p.send({ type: 'publish', topicName: 'u', payload: Buffer.from('x'), qos: 0, retain: false, dup: false })
    for (let i = 0; i < 4; i++) await b.expect('publish')
    assert.equal(await a.quiet(100), true)
  })
})
