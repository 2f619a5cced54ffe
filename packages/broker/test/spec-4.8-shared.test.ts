// MQTT 5.0 §4.8.2 shared subscriptions.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connected, sleep, text, withBroker, type RawClient } from './helpers.js'

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

test('shared subscription: retained messages are not sent on subscribe (§3.3.1.3); a plain subscriber still gets its copy', async () => {
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

/** Subscribes `m` to `filter` and waits for its SUBACK. */
async function join (m: RawClient, filter: string, qos: 0 | 1 | 2 = 1): Promise<void> {
  m.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: filter, qos }] })
  await m.expect('suback')
}

/** Reads PUBLISH packets until `ms` of quiet, acking QoS 1 ones when `ack`; returns their payloads. */
async function drain (m: RawClient, ms: number, ack: boolean): Promise<string[]> {
  const got: string[] = []
  for (;;) {
    let p
    try { p = await m.next(ms) } catch { return got }
    if (p.type !== 'publish') continue
    got.push(Buffer.from(p.payload).toString())
    if (ack && p.qos === 1) m.send({ type: 'puback', packetId: p.packetId as number })
  }
}

test('shared subscription: a member that stops acknowledging does not stall the group; its unacked messages stay in flight to it, the rest go to the others', async () => {
  await withBroker({ limits: { maxInflightMessages: 10, maxQueuedMessages: 100 } }, async (broker) => {
    const stuck = await connected(broker, 5, { clientId: 'stuck' })
    const live = await connected(broker, 5, { clientId: 'live' })
    await join(stuck, '$share/g/work')
    await join(live, '$share/g/work')
    const p = await connected(broker, 5, { clientId: 'p' })
    const n = 500
    // a publisher keeping 20 unacknowledged, as clients do (and our Receive Maximum asks)
    const publish = async (): Promise<void> => {
      let sent = 0
      const send = (): void => { p.send({ type: 'publish', topicName: 'work', payload: Buffer.from(String(sent)), qos: 1, retain: false, dup: false, packetId: ++sent }) }
      while (sent < 20) send()
      for (let acked = 0; acked < n; acked++) {
        await p.expect('puback', 3000)
        await new Promise((resolve) => setImmediate(resolve)) // let the broker's end-of-turn flush run (see flow-control.test)
        if (sent < n) send()
      }
    }
    const [toStuck, toLive] = await Promise.all([drain(stuck, 500, false), drain(live, 500, true), publish()])
    // the stuck member holds what fills its in-flight window (kept for its session), no more
    assert.equal(toStuck.length, 10, `the stuck member got ${toStuck.length}; live ${toLive.length}; drops ${JSON.stringify(broker.stats.drops)}`)
    assert.equal(toLive.length, n - 10, `the live member got ${toLive.length}`)
    assert.equal(broker.stats.dropsTotal, 0, JSON.stringify(broker.stats.drops))
  })
})

for (const persistent of [false, true]) {
  test(`shared subscription: a member whose session ends (${persistent ? 'expires' : 'clean disconnect'}) with unacked QoS 1 messages: they go to another member (§4.8.2: SHOULD), nothing lost`, async () => {
    await withBroker({ limits: { maxInflightMessages: 5 } }, async (broker) => {
      const gone = await connected(broker, 5, persistent
        ? { clientId: 'gone', cleanStart: false, properties: { sessionExpiryInterval: 1 } }
        : { clientId: 'gone' })
      const live = await connected(broker, 5, { clientId: 'live' })
      await join(gone, '$share/g/work')
      await join(live, '$share/g/work')
      const p = await connected(broker, 5, { clientId: 'p' })
      const n = 20
      for (let i = 0; i < n; i++) p.send({ type: 'publish', topicName: 'work', payload: Buffer.from(String(i)), qos: 1, retain: false, dup: false, packetId: i + 1 })
      // the member that will go away reads but acknowledges nothing, then drops its link
      const before = await Promise.all([drain(gone, 200, false), drain(live, 200, true)])
      assert.ok(before[0].length > 0, 'the member that goes away had some')
      gone.destroy()
      const after = await drain(live, persistent ? 2000 : 500, true)
      const all = new Set([...before[1], ...after])
      for (let i = 0; i < n; i++) assert.ok(all.has(String(i)), `message ${i} lost with the member's session`)
      assert.equal(broker.sessions.has('gone'), false)
    })
  })
}

test('shared subscription: a QoS 2 message already sent to a member whose session ends goes to no other member [MQTT-4.8.2-5]; one still queued for it does', async () => {
  await withBroker({ limits: { maxInflightMessages: 1 } }, async (broker) => {
    const gone = await connected(broker, 5, { clientId: 'gone' })
    await join(gone, '$share/g/q2', 2)
    const p = await connected(broker, 5, { clientId: 'p' })
    for (let i = 0; i < 2; i++) p.send({ type: 'publish', topicName: 'q2', payload: Buffer.from(String(i)), qos: 2, retain: false, dup: false, packetId: i + 1 })
    assert.equal(text((await gone.expect('publish')).payload), '0') // in flight, no PUBREC yet; '1' waits in its queue
    const live = await connected(broker, 5, { clientId: 'live' })
    await join(live, '$share/g/q2', 2)
    gone.destroy()
    const m = await live.expect('publish')
    assert.equal(text(m.payload), '1', 'the queued one goes to the other member')
    assert.equal(await live.quiet(200), true, 'the one already sent does not [MQTT-4.8.2-5]')
    assert.equal(broker.stats.drops.session_ended, 1)
  })
})

test('shared subscription: a message that expired while a member held it is not handed to another member when that session ends [MQTT-3.3.2-5]', async () => {
  await withBroker({ limits: { maxInflightMessages: 1 } }, async (broker) => {
    const gone = await connected(broker, 5, { clientId: 'gone' })
    await join(gone, '$share/g/exp', 1)
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send({ type: 'publish', topicName: 'exp', payload: Buffer.from('0'), qos: 1, retain: false, dup: false, packetId: 1, properties: { messageExpiryInterval: 1 } })
    assert.equal(text((await gone.expect('publish')).payload), '0') // in flight, never acked
    p.send({ type: 'publish', topicName: 'exp', payload: Buffer.from('1'), qos: 1, retain: false, dup: false, packetId: 2 })
    await sleep(1200) // '0' has expired; '1' waits in the queue
    const live = await connected(broker, 5, { clientId: 'live' })
    await join(live, '$share/g/exp', 1)
    gone.destroy()
    assert.equal(text((await live.expect('publish')).payload), '1', 'the expired one goes to nobody; the live one to the other member')
    assert.equal(broker.stats.drops.expired, 1)
  })
})

test('shared subscription: a message a member refuses (PUBACK 0x80, PUBREC 0x83) is discarded, not sent to another member, even when that member\'s session then ends [MQTT-4.8.2-6]', async () => {
  await withBroker({}, async (broker) => {
    const a = await connected(broker, 5, { clientId: 'a' })
    a.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '$share/g/refuse/+', qos: 2 }] })
    await a.expect('suback')
    const b = await connected(broker, 5, { clientId: 'b' })
    const p = await connected(broker, 5, { clientId: 'p' })
    // b not yet a member: both messages go to a
    p.send({ type: 'publish', topicName: 'refuse/1', payload: Buffer.from('q1'), qos: 1, retain: false, dup: false, packetId: 1 })
    p.send({ type: 'publish', topicName: 'refuse/2', payload: Buffer.from('q2'), qos: 2, retain: false, dup: false, packetId: 2 })
    const m1 = await a.expect('publish')
    const m2 = await a.expect('publish')
    b.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '$share/g/refuse/+', qos: 2 }] })
    await b.expect('suback')
    a.send({ type: 'puback', packetId: m1.packetId as number, reasonCode: 0x80 })
    a.send({ type: 'pubrec', packetId: m2.packetId as number, reasonCode: 0x83 })
    await sleep(50)
    a.send({ type: 'disconnect', reasonCode: 0 }) // session ends: nothing of a's is left to hand on
    await a.waitClosed()
    assert.equal(await b.quiet(200), true, 'refused messages are not redelivered to another member')
    assert.equal(text(m1.payload) + text(m2.payload), 'q1q2')
  })
})
