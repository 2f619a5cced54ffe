// MQTT 5.0 §3.3 PUBLISH (retain, properties, aliases, expiry) and §3.8 SUBSCRIBE options.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import mqtt from 'mqtt'
import { connect as connectClient } from '@petrel/client'
import { encode, type PublishPacket } from '@petrel/wire'
import { startMosquitto, waitFor } from '@petrel/test-utils'
import { connected, sleep, tcpClient, text, versions, withBroker, type RawClient } from './helpers.js'

async function subscribe (c: RawClient, topicFilter: string, qos: 0 | 1 | 2 = 0, extra: Partial<{ noLocal: boolean, retainAsPublished: boolean, retainHandling: 0 | 1 | 2 }> = {}, subscriptionIdentifier?: number): Promise<number[]> {
  c.send({ type: 'subscribe', packetId: 7, subscriptions: [{ topicFilter, qos, ...extra }], properties: subscriptionIdentifier === undefined ? undefined : { subscriptionIdentifier } })
  return (await c.expect('suback')).reasonCodes
}

const pub = (topicName: string, payload: string, extra: Partial<PublishPacket> = {}): PublishPacket =>
  ({ type: 'publish', topicName, payload: Buffer.from(payload), qos: 0, retain: false, dup: false, ...extra })

for (const v of versions) {
  test(`v${v}: retained messages: set, replace, clear with an empty payload [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-10]`, async () => {
    await withBroker({}, async (broker) => {
      const p = await connected(broker, v, { clientId: 'p' })
      p.send(pub('r/1', 'first', { retain: true }))
      p.send(pub('r/1', 'second', { retain: true }))
      p.send(pub('r/2', 'other', { retain: true }))
      await sleep(50)
      const s = await connected(broker, v, { clientId: 's' })
      await subscribe(s, 'r/1')
      const m = await s.expect('publish')
      assert.equal(text(m.payload), 'second')
      assert.equal(m.retain, true, 'retained on subscribe carry RETAIN 1 (§3.3.1.3; 3.1.1: [MQTT-3.3.1-8])')
      p.send(pub('r/1', '', { retain: true }))
      const cleared = await s.expect('publish')
      assert.equal(cleared.payload.length, 0, 'the empty retained message is still forwarded')
      assert.equal(cleared.retain, false, 'routed messages carry RETAIN 0 [MQTT-3.3.1-12]')
      const s2 = await connected(broker, v, { clientId: 's2' })
      await subscribe(s2, 'r/+')
      const only = await s2.expect('publish')
      assert.equal(only.topicName, 'r/2')
      assert.equal(await s2.quiet(150), true)
    })
  })

  test(`v${v}: QoS is the minimum of publish and subscription [MQTT-3.8.4-8]`, async () => {
    await withBroker({}, async (broker) => {
      const s = await connected(broker, v, { clientId: 's' })
      assert.deepEqual(await subscribe(s, 't/q', 1), [1])
      const p = await connected(broker, v, { clientId: 'p' })
      p.send(pub('t/q', 'x', { qos: 2, packetId: 3 }))
      assert.equal((await p.expect('pubrec')).packetId, 3)
      const m = await s.expect('publish')
      assert.equal(m.qos, 1)
      s.send({ type: 'puback', packetId: m.packetId as number })
    })
  })

  test(`v${v}: a denied subscription gets a failure code; a denied publish is dropped`, async () => {
    await withBroker({
      authorizeSubscribe: (_c, s) => !s.topicFilter.startsWith('secret'),
      authorizePublish: (_c, p) => !p.topicName.startsWith('secret')
    }, async (broker) => {
      const s = await connected(broker, v, { clientId: 's' })
      assert.deepEqual(await subscribe(s, 'secret/#', 1), [v === 5 ? 0x87 : 0x80])
      assert.deepEqual(await subscribe(s, '#', 1), [1])
      const p = await connected(broker, v, { clientId: 'p' })
      p.send(pub('secret/x', 'no', { qos: 1, packetId: 1 }))
      const ack = await p.expect('puback')
      if (v === 5) assert.equal(ack.reasonCode, 0x87)
      assert.equal(await s.quiet(200), true)
      assert.equal(broker.stats.drops.not_authorized, 1)
    })
  })
}

test('v5: retain handling 0/1/2 and retain as published [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11] [MQTT-3.3.1-13]', async () => {
  await withBroker({}, async (broker) => {
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('rh/t', 'kept', { retain: true }))
    await sleep(50)
    const s = await connected(broker, 5, { clientId: 's' })
    await subscribe(s, 'rh/t', 0, { retainHandling: 2 })
    assert.equal(await s.quiet(150), true, 'retain handling 2: none')
    const s1 = await connected(broker, 5, { clientId: 's1' })
    await subscribe(s1, 'rh/t', 0, { retainHandling: 1 })
    assert.equal(text((await s1.expect('publish')).payload), 'kept')
    await subscribe(s1, 'rh/t', 0, { retainHandling: 1 })
    assert.equal(await s1.quiet(150), true, 'retain handling 1: not on a re-subscribe')
    const s0 = await connected(broker, 5, { clientId: 's0' })
    await subscribe(s0, 'rh/t', 0, { retainHandling: 0, retainAsPublished: true })
    await s0.expect('publish')
    await subscribe(s0, 'rh/t', 0, { retainHandling: 0, retainAsPublished: true })
    await s0.expect('publish') // 0: again on re-subscribe
    p.send(pub('rh/t', 'live', { retain: true }))
    const live = await s0.expect('publish')
    assert.equal(live.retain, true, 'retain as published keeps RETAIN 1')
    assert.equal((await s1.expect('publish')).retain, false)
  })
})

test('v5: message expiry: expired messages are not delivered, remaining interval forwarded [MQTT-3.3.2-5] [MQTT-3.3.2-6]', async () => {
  await withBroker({}, async (broker) => {
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('e/short', 'gone', { retain: true, properties: { messageExpiryInterval: 1 } }))
    p.send(pub('e/long', 'here', { retain: true, properties: { messageExpiryInterval: 100 } }))
    await sleep(1200)
    const s = await connected(broker, 5, { clientId: 's' })
    await subscribe(s, 'e/#')
    const m = await s.expect('publish')
    assert.equal(m.topicName, 'e/long')
    const left = m.properties?.messageExpiryInterval ?? 0
    assert.ok(left >= 98 && left <= 99, `remaining ${left}`)
    assert.equal(await s.quiet(150), true)
  })
})

test('v5: a Message Expiry Interval of 0 reaches the subscribers that can take it at once, and is neither queued nor retained [MQTT-3.3.2-5]', async () => {
  await withBroker({}, async (broker) => {
    const live = await connected(broker, 5, { clientId: 'live' })
    await subscribe(live, 'z/#', 1)
    const away = await connected(broker, 5, { clientId: 'away', properties: { sessionExpiryInterval: 60 } })
    await subscribe(away, 'z/#', 1)
    away.destroy()
    await sleep(50)
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('z/now', 'now or never', { qos: 1, packetId: 1, retain: true, properties: { messageExpiryInterval: 0 } }))
    assert.equal((await p.expect('puback')).reasonCode, 0)
    const m = await live.expect('publish')
    assert.equal(text(m.payload), 'now or never')
    assert.equal(m.properties?.messageExpiryInterval, 0, 'no lifetime left')
    live.send({ type: 'puback', packetId: m.packetId as number })
    const back = await connected(broker, 5, { clientId: 'away', cleanStart: false, properties: { sessionExpiryInterval: 60 } })
    assert.equal(await back.quiet(200), true, 'the offline copy expired')
    const late = await connected(broker, 5, { clientId: 'late' })
    assert.deepEqual(await subscribe(late, 'z/#', 1), [1])
    assert.equal(await late.quiet(200), true, 'not retained past its lifetime')
  })
})

test('v5: inbound topic aliases; above the maximum is 0x94, unknown is 0x82 [MQTT-3.3.2-9]', async () => {
  await withBroker({ limits: { topicAliasMaximum: 4 } }, async (broker) => {
    const s = await connected(broker, 5, { clientId: 's' })
    await subscribe(s, 'alias/#')
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('alias/a', '1', { properties: { topicAlias: 2 } }))
    p.send(pub('', '2', { properties: { topicAlias: 2 } }))
    assert.equal((await s.expect('publish')).topicName, 'alias/a')
    const second = await s.expect('publish')
    assert.equal(second.topicName, 'alias/a')
    assert.equal(text(second.payload), '2')
    p.send(pub('alias/b', '3', { properties: { topicAlias: 5 } }))
    assert.equal((await p.expect('disconnect')).reasonCode, 0x94)
    const q = await connected(broker, 5, { clientId: 'q' })
    q.send(pub('', 'x', { properties: { topicAlias: 3 } }))
    assert.equal((await q.expect('disconnect')).reasonCode, 0x82)
  })
})

test('v5: inbound alias names are bounded (max_inbound_topic_alias_bytes): one set past it is accepted but not kept, and using it alone is DISCONNECT 0x97 [MQTT-3.3.2-12]', async () => {
  await withBroker({ limits: { topicAliasMaximum: 4, maxInboundTopicAliasBytes: 20 } }, async (broker) => {
    const s = await connected(broker, 5, { clientId: 's' })
    await subscribe(s, 'ib/#')
    const p = await connected(broker, 5, { clientId: 'p' })
    const long1 = 'ib/1/' + 'x'.repeat(8) // 13
    const long2 = 'ib/2/' + 'y'.repeat(8)
    const got = async (): Promise<string> => {
      const m = await s.expect('publish')
      return `${m.topicName} ${text(m.payload)}`
    }
    p.send(pub(long1, 'a', { properties: { topicAlias: 1 } }))
    p.send(pub(long2, 'b', { properties: { topicAlias: 2 } })) // 26 > 20: delivered, not kept
    p.send(pub('', 'c', { properties: { topicAlias: 1 } }))
    p.send(pub('ib/s', 'd', { properties: { topicAlias: 1 } })) // re-mapped: 13 freed, 4 kept
    p.send(pub(long2, 'e', { properties: { topicAlias: 2 } })) // 17 now fits
    p.send(pub('', 'f', { properties: { topicAlias: 2 } }))
    p.send(pub('', 'g', { properties: { topicAlias: 1 } }))
    for (const want of [`${long1} a`, `${long2} b`, `${long1} c`, 'ib/s d', `${long2} e`, `${long2} f`, 'ib/s g']) assert.equal(await got(), want)
    p.send(pub('ib/3/' + 'z'.repeat(8), 'h', { properties: { topicAlias: 3 } }))
    assert.equal(await got(), `ib/3/${'z'.repeat(8)} h`, 'the PUBLISH that sets an alias past the bound goes on')
    p.send(pub('', 'i', { properties: { topicAlias: 3 } }))
    assert.equal((await p.expect('disconnect')).reasonCode, 0x97)
    assert.equal(await s.quiet(100), true)
  })
})

test('v5: outbound topic aliases up to the client\'s Topic Alias Maximum', async () => {
  await withBroker({}, async (broker) => {
    const s = await connected(broker, 5, { clientId: 's', properties: { topicAliasMaximum: 1 } })
    await subscribe(s, 'oa/#')
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('oa/1', 'a'))
    p.send(pub('oa/1', 'b'))
    p.send(pub('oa/2', 'c'))
    const a = await s.expect('publish')
    assert.equal(a.topicName, 'oa/1')
    assert.equal(a.properties?.topicAlias, 1)
    const b = await s.expect('publish')
    assert.equal(b.topicName, '')
    assert.equal(b.properties?.topicAlias, 1)
    const c = await s.expect('publish')
    assert.equal(c.topicName, 'oa/2')
    assert.equal(c.properties?.topicAlias, undefined, 'no alias left')
  })
})

test('v5: outbound topic aliases are bounded by the broker too (max_outbound_topic_aliases, max_outbound_topic_alias_bytes), whatever Topic Alias Maximum the client announces: past either the name goes whole (MQTT.js)', async () => {
  await withBroker({ limits: { maxOutboundTopicAliases: 4, maxOutboundTopicAliasBytes: 1000 } }, async (broker) => {
    const { port } = await broker.listen({ port: 0 })
    const url = `mqtt://127.0.0.1:${port}`
    const sub = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, properties: { topicAliasMaximum: 65535 } })
    const pubc = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0 })
    try {
      const seen: Array<[string, number | undefined]> = []
      sub.on('packetreceive', (p) => {
        if (p.cmd === 'publish') seen.push([p.topic.slice(0, 6), p.properties?.topicAlias])
      })
      const got: string[] = []
      sub.on('message', (topic) => { got.push(topic.slice(0, 6)) })
      await sub.subscribeAsync('oa/#', { qos: 0 })
      const name = (i: number, length: number): string => `oa/${i}/`.padEnd(length, 'x')
      // 400 + 400: kept; 400 more would pass 1,000 bytes; 100 + 100 fit; a fifth name passes the count
      const topics = [name(1, 400), name(2, 400), name(3, 400), name(4, 100), name(5, 100), name(6, 10), name(1, 400), name(3, 400)]
      for (const t of topics) await pubc.publishAsync(t, 'x', { qos: 1 })
      await waitFor(() => got.length === topics.length, { timeoutMs: 5000, message: 'every message' })
      // oa/3's second miss re-maps the least recently used alias (oa/2's), which frees enough room
      assert.deepEqual(seen, [['oa/1/x', 1], ['oa/2/x', 2], ['oa/3/x', undefined], ['oa/4/x', 3], ['oa/5/x', 4], ['oa/6/x', undefined], ['', 1], ['oa/3/x', 2]])
      assert.deepEqual(got, topics.map((t) => t.slice(0, 6)), 'MQTT.js resolves every alias')
    } finally {
      await sub.endAsync()
      await pubc.endAsync()
    }
  })
})

/** Resolves what a subscriber receives as a 5.0 client must (§3.3.2.3.4): a name with an alias (re)sets it. */
function aliasResolver (): (p: PublishPacket) => string {
  const map = new Map<number, string>()
  return (p) => {
    const a = p.properties?.topicAlias
    if (a === undefined) return p.topicName
    if (p.topicName !== '') {
      map.set(a, p.topicName)
      return p.topicName
    }
    const t = map.get(a)
    assert.ok(t !== undefined, `alias ${a} used before it was set`)
    return t
  }
}

test('v5: once every outbound alias is taken, a topic seen again takes over the least recently used one, sent with its full name; one-off topics do not churn them (§3.3.2.3.4)', async () => {
  await withBroker({}, async (broker) => {
    const s = await connected(broker, 5, { clientId: 's', properties: { topicAliasMaximum: 2 } })
    await subscribe(s, 'ra/#')
    const p = await connected(broker, 5, { clientId: 'p' })
    const resolve = aliasResolver()
    const next = async (): Promise<[string, number | undefined, string]> => {
      const m = await s.expect('publish')
      return [m.topicName, m.properties?.topicAlias, resolve(m)]
    }
    for (const t of ['ra/early/1', 'ra/early/2', 'ra/late', 'ra/late', 'ra/late', 'ra/early/2', 'ra/early/1']) p.send(pub(t, 'x'))
    assert.deepEqual(await next(), ['ra/early/1', 1, 'ra/early/1'])
    assert.deepEqual(await next(), ['ra/early/2', 2, 'ra/early/2'])
    assert.deepEqual(await next(), ['ra/late', undefined, 'ra/late'], 'first miss: sent whole')
    assert.deepEqual(await next(), ['ra/late', 1, 'ra/late'], 'second miss: re-maps the LRU alias, with the name')
    assert.deepEqual(await next(), ['', 1, 'ra/late'])
    assert.deepEqual(await next(), ['', 2, 'ra/early/2'], 'the other alias is untouched')
    assert.deepEqual(await next(), ['ra/early/1', undefined, 'ra/early/1'], 'the topic that lost its alias goes whole')
    // a busy topic among many topics seen once: it keeps its alias, the one-offs mostly go whole
    let aliasedOneOffs = 0
    for (let i = 0; i < 40; i++) {
      p.send(pub(`ra/once/${i}`, 'x'))
      p.send(pub('ra/late', 'x'))
    }
    for (let i = 0; i < 40; i++) {
      const once = await next()
      assert.equal(once[2], `ra/once/${i}`)
      if (once[1] !== undefined) aliasedOneOffs++
      const late = await next()
      assert.equal(late[2], 'ra/late')
      assert.equal(late[0], '', 'ra/late stays aliased')
    }
    assert.ok(aliasedOneOffs <= 10, `${aliasedOneOffs} of 40 one-off topics re-mapped an alias`)
  })
})

test('v5: a busy topic that arrives after the outbound aliases are taken still gets one; MQTT.js and @petrel/client resolve every name, in fewer bytes (§3.3.2.3.4)', async () => {
  await withBroker({ limits: { maxOutboundTopicAliases: 4 } }, async (broker) => {
    const { port } = await broker.listen({ port: 0 })
    const url = `mqtt://127.0.0.1:${port}`
    const js = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, properties: { topicAliasMaximum: 100 } })
    const plain = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0 })
    const petrel = await connectClient(url, { protocolVersion: 5, topicAliasMaximum: 100, reconnect: false })
    const pubc = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0 })
    try {
      const bytes = { js: 0, plain: 0 }
      js.stream.on('data', (b: Buffer) => { bytes.js += b.length })
      plain.stream.on('data', (b: Buffer) => { bytes.plain += b.length })
      let busyAliased = 0
      js.on('packetreceive', (p) => {
        if (p.cmd === 'publish' && p.topic === '' && p.properties?.topicAlias !== undefined) busyAliased++
      })
      const got = { js: [] as string[], plain: [] as string[], petrel: [] as string[] }
      js.on('message', (t) => { got.js.push(t) })
      plain.on('message', (t) => { got.plain.push(t) })
      await js.subscribeAsync('ba/#')
      await plain.subscribeAsync('ba/#')
      await petrel.subscribe('ba/#', (m) => { got.petrel.push(m.topic) })
      const early = [1, 2, 3, 4].map((i) => `ba/early/${i}/some/long/device/name`)
      const busy = 'ba/late/busy/topic/with/a/long/device/name'
      const topics = [...early]
      for (let i = 0; i < 100; i++) topics.push(busy, `ba/other/${i}`)
      bytes.js = 0
      bytes.plain = 0
      for (const t of topics) await pubc.publishAsync(t, 'x', { qos: 1 })
      await waitFor(() => got.js.length === topics.length && got.plain.length === topics.length && got.petrel.length === topics.length, { timeoutMs: 10000, message: 'every message, to every subscriber' })
      assert.deepEqual(got.js, topics)
      assert.deepEqual(got.petrel, topics)
      assert.deepEqual(got.plain, topics)
      assert.ok(busyAliased >= 90, `the busy topic went by alias ${busyAliased} times of 100`)
      const saved = bytes.plain - bytes.js
      assert.ok(saved >= 80 * busy.length, `aliases saved ${saved} of ${bytes.plain} bytes`)
      console.log(`outbound aliases: ${bytes.js} bytes on the wire against ${bytes.plain} without (${saved} saved)`)
    } finally {
      await Promise.all([js.endAsync(), plain.endAsync(), pubc.endAsync(), petrel.end()])
    }
  })
})

test('v5: a message over the subscriber\'s Maximum Packet Size is dropped for it only [MQTT-3.1.2-25]', async () => {
  await withBroker({}, async (broker) => {
    const small = await connected(broker, 5, { clientId: 'small', properties: { maximumPacketSize: 100 } })
    const big = await connected(broker, 5, { clientId: 'big' })
    await subscribe(small, 'mp/#', 1)
    await subscribe(big, 'mp/#', 1)
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('mp/x', 'y'.repeat(500), { qos: 1, packetId: 1 }))
    p.send(pub('mp/x', 'tiny', { qos: 1, packetId: 2 }))
    assert.equal((await big.expect('publish')).payload.length, 500)
    assert.equal(text((await small.expect('publish')).payload), 'tiny')
    assert.equal(broker.stats.drops.packet_too_large, 1)
    assert.equal(small.closed, false)
  })
})

test('v5: no-local [MQTT-3.8.3-3] and subscription identifiers of overlapping subscriptions [MQTT-3.3.4-3]', async () => {
  await withBroker({}, async (broker) => {
    const c = await connected(broker, 5, { clientId: 'c' })
    await subscribe(c, 'nl/#', 0, { noLocal: true })
    c.send(pub('nl/x', 'mine'))
    assert.equal(await c.quiet(150), true)
    const s = await connected(broker, 5, { clientId: 's' })
    await subscribe(s, 'ov/+', 0, {}, 11)
    await subscribe(s, 'ov/#', 1, {}, 22)
    c.send(pub('ov/x', 'both', { qos: 1, packetId: 9 }))
    const m = await s.expect('publish')
    assert.equal(m.qos, 1, 'maximum QoS of the matching subscriptions [MQTT-3.3.4-2]')
    assert.deepEqual([...(m.properties?.subscriptionIdentifiers ?? [])].sort(), [11, 22])
    assert.equal(await s.quiet(150), true, 'delivered once')
  })
})

test('v5: overlapping subscriptions that differ in Retain As Published get a copy each for a retained message [MQTT-3.3.1-12] [MQTT-3.3.1-13] [MQTT-3.3.4-5]', async () => {
  await withBroker({}, async (broker) => {
    const c = await connected(broker, 5, { clientId: 'c' })
    const s = await connected(broker, 5, { clientId: 's' })
    await subscribe(s, 'rap/+', 1, { retainAsPublished: true, retainHandling: 2 }, 1)
    await subscribe(s, 'rap/x', 0, { retainHandling: 2 }, 2)
    await subscribe(s, 'rap/#', 1, { retainHandling: 2 }, 3)
    c.send(pub('rap/x', 'kept', { qos: 1, packetId: 5, retain: true }))
    const copies = [await s.expect('publish'), await s.expect('publish')]
      .map((m) => ({ retain: m.retain, qos: m.qos, ids: [...(m.properties?.subscriptionIdentifiers ?? [])].sort() }))
      .sort((a, b) => Number(b.retain) - Number(a.retain))
    assert.deepEqual(copies, [{ retain: true, qos: 1, ids: [1] }, { retain: false, qos: 1, ids: [2, 3] }])
    assert.equal(await s.quiet(150), true, 'two copies, no more')
    // Not retained: RETAIN 0 for all of them, so one copy.
    c.send(pub('rap/x', 'live', { qos: 1, packetId: 6 }))
    const m = await s.expect('publish')
    assert.deepEqual([m.retain, [...(m.properties?.subscriptionIdentifiers ?? [])].sort()], [false, [1, 2, 3]])
    assert.equal(await s.quiet(150), true, 'delivered once')
  })
})

test('v5: a payload declared UTF-8 that is not is refused in its PUBACK/PUBREC (0x99), the link stays up; QoS 0: DISCONNECT 0x99 [MQTT-3.3.2-4]', async () => {
  await withBroker({}, async (broker) => {
    const s = await connected(broker, 5, { clientId: 's' })
    await subscribe(s, 'pf/#', 1)
    const c = await connected(broker, 5, { clientId: 'c' })
    const bad = Buffer.from([0xff, 0xfe])
    c.send({ ...pub('pf/1', ''), payload: bad, qos: 1, packetId: 1, properties: { payloadFormatIndicator: true } })
    assert.equal((await c.expect('puback')).reasonCode, 0x99)
    c.send({ ...pub('pf/2', ''), payload: bad, qos: 2, packetId: 2, properties: { payloadFormatIndicator: true } })
    assert.equal((await c.expect('pubrec')).reasonCode, 0x99)
    c.send(pub('pf/3', 'fine', { qos: 1, packetId: 3, properties: { payloadFormatIndicator: true } }))
    assert.equal((await c.expect('puback')).reasonCode, 0)
    const m = await s.expect('publish')
    assert.equal(text(m.payload), 'fine', 'only the well-formed one is routed')
    assert.equal(broker.stats.drops.payload_format_invalid, 2)
    c.send({ ...pub('pf/4', ''), payload: bad, properties: { payloadFormatIndicator: true } })
    assert.equal((await c.expect('disconnect')).reasonCode, 0x99)
  })
})

test('v5: user properties, response topic and correlation data are forwarded unchanged [MQTT-3.3.2-17] [MQTT-3.3.2-18]', async () => {
  await withBroker({}, async (broker) => {
    const s = await connected(broker, 5, { clientId: 's' })
    await subscribe(s, 'req')
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('req', 'q', { properties: { responseTopic: 'resp/p', correlationData: Buffer.from('id-1'), userProperties: [['a', '1'], ['a', '2']], contentType: 'text/plain' } }))
    const m = await s.expect('publish')
    assert.equal(m.properties?.responseTopic, 'resp/p')
    assert.equal(text(m.properties?.correlationData ?? new Uint8Array()), 'id-1')
    assert.deepEqual(m.properties?.userProperties, [['a', '1'], ['a', '2']])
    assert.equal(m.properties?.contentType, 'text/plain')
  })
})

test('v5: a client\'s PUBLISH carrying a Subscription Identifier is a protocol error (0x82), not forwarded [MQTT-3.3.4-6]', async () => {
  await withBroker({}, async (broker) => {
    const s = await connected(broker, 5, { clientId: 's' })
    await subscribe(s, 'sid/#')
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('sid/x', 'forged', { properties: { subscriptionIdentifiers: [5] } }))
    assert.equal((await p.expect('disconnect')).reasonCode, 0x82)
    assert.equal(await s.quiet(150), true, 'not routed')
  })
})

test('v5: broker.publishMessage does not pass a Topic Alias or Subscription Identifiers on to subscribers [MQTT-3.3.2-11] (§3.3.2.3.8)', async () => {
  await withBroker({}, async (broker) => {
    const plain = await connected(broker, 5, { clientId: 'plain' })
    await subscribe(plain, 'app/#')
    const own = await connected(broker, 5, { clientId: 'own' })
    await subscribe(own, 'app/#', 0, {}, 8)
    broker.publishMessage({ topic: 'app/t', payload: 'x', properties: { topicAlias: 5, subscriptionIdentifiers: [3], userProperties: [['k', 'v']] } })
    const a = await plain.expect('publish')
    assert.deepEqual(a.properties, { userProperties: [['k', 'v']] }, 'no alias above its Topic Alias Maximum of 0, no identifiers')
    const b = await own.expect('publish')
    assert.deepEqual(b.properties?.subscriptionIdentifiers, [8], 'only its own identifier')
    assert.equal(b.properties?.topicAlias, undefined)
  })
})

test('v5: a message whose Message Expiry Interval runs out while an async authorizePublish is pending is not delivered; one that waited is forwarded with what is left of it, counted from receipt [MQTT-3.3.2-5] [MQTT-3.3.2-6]', async () => {
  const delays = new Map<string, number>([['e/slow', 1200], ['e/first', 1100]])
  const authorizePublish = async (_c: unknown, p: { topicName: string }): Promise<boolean> => {
    const ms = delays.get(p.topicName) ?? 0
    if (ms > 0) await sleep(ms)
    return true
  }
  await withBroker({ authorizePublish }, async (broker) => {
    const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
    const s = await tcpClient(port, 5)
    await s.connect({ clientId: 's' })
    await subscribe(s, 'e/#', 1)
    const p = await tcpClient(port, 5)
    await p.connect({ clientId: 'p' })
    // a 1 s lifetime, and the hook takes 1.2 s: accepted (PUBACK 0), but nobody may get it now
    p.send(pub('e/slow', 'stale', { qos: 1, packetId: 1, retain: true, properties: { messageExpiryInterval: 1 } }))
    assert.equal((await p.expect('puback', 3000)).reasonCode ?? 0, 0)
    assert.equal(await s.quiet(300), true, 'expired before onward delivery could start')
    assert.equal(broker.stats.drops.expired, 1)
    assert.equal(broker.retained.size, 0, 'nor retained')
    // 5 s lifetimes: the first waits 1.1 s on the hook, the second (in the same segment) behind
    // it. Each is forwarded with what is left of 5 s counted from when it arrived, not 0 nor 5.
    p.sendRaw(Buffer.concat([
      encode(pub('e/first', '1', { qos: 1, packetId: 2, properties: { messageExpiryInterval: 5 } }), 5),
      encode(pub('e/second', '2', { qos: 1, packetId: 3, properties: { messageExpiryInterval: 5 } }), 5)
    ]))
    for (const topic of ['e/first', 'e/second']) {
      const m = await s.expect('publish', 5000)
      assert.equal(m.topicName, topic)
      const left = m.properties?.messageExpiryInterval ?? 0
      assert.ok(left > 0 && left < 5, `${topic}: ${left} s left`)
    }
    s.destroy()
    p.destroy()
  })
})

// 0x10 No matching subscribers (§3.4.2.1, §3.5.2.1: the Server MAY send it). mosquitto 2.0 does
// in its PUBACK, retained or not; its PUBREC comes before it routes a QoS 2 message and says 0x00.
// Petrel routes at PUBLISH, so its PUBREC says 0x10 too (as EMQX's does).
test('v5: a QoS 1/2 PUBLISH that matched no subscription is acknowledged with 0x10, as mosquitto does (MQTT.js)', async () => {
  const codes = async (url: string): Promise<number[]> => {
    const sub = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0 })
    const pubc = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0 })
    const got: number[] = []
    pubc.on('packetreceive', (p) => { if (p.cmd === 'puback' || p.cmd === 'pubrec') got.push((p as { reasonCode?: number }).reasonCode ?? 0) })
    try {
      await sub.subscribeAsync('nms/has', { qos: 1 })
      await pubc.publishAsync('nms/none', 'a', { qos: 1 })
      await pubc.publishAsync('nms/retained', 'b', { qos: 1, retain: true })
      await pubc.publishAsync('nms/has', 'c', { qos: 1 })
      await pubc.publishAsync('nms/none', 'd', { qos: 2 })
      await pubc.publishAsync('nms/has', 'e', { qos: 2 })
      await pubc.publishAsync('nms/retained', '', { qos: 1, retain: true }) // clear it
      return got
    } finally {
      await Promise.all([sub.endAsync(), pubc.endAsync()])
    }
  }
  const mosquitto = await startMosquitto()
  try {
    assert.deepEqual(await codes(mosquitto.url), [0x10, 0x10, 0, 0, 0, 0x10], mosquitto.logs())
  } finally {
    await mosquitto.stop()
  }
  await withBroker({}, async (broker) => {
    const { port } = await broker.listen({ port: 0, host: '127.0.0.1' })
    assert.deepEqual(await codes(`mqtt://127.0.0.1:${port}`), [0x10, 0x10, 0, 0x10, 0, 0x10])
  })
})

test('v5: 0x10 follows the routing of a PUBLISH parked behind flow control, or held behind an async authorizePublish; 3.1.1 has no code', async () => {
  await withBroker({
    limits: { maxQueuedMessages: 2, maxInflightMessages: 1 },
    authorizePublish: async (_c, p) => { if (p.topicName.startsWith('slow/')) await sleep(20); return true }
  }, async (broker) => {
    const s = await connected(broker, 5, { clientId: 's' })
    assert.deepEqual(await subscribe(s, 'fc/#', 1), [1])
    const p = await connected(broker, 5, { clientId: 'p' })
    // s makes progress once, so that it holds publishers back (Session.holdsBack)
    p.send(pub('fc/0', '0', { qos: 1, packetId: 1 }))
    assert.equal((await p.expect('puback')).reasonCode, 0)
    s.send({ type: 'puback', packetId: (await s.expect('publish')).packetId as number })
    p.send(pub('fc/1', '1', { qos: 1, packetId: 2 })) // in flight to s, unacked
    p.send(pub('fc/2', '2', { qos: 1, packetId: 3 })) // queued: half of max_queued_messages, held
    p.send(pub('none/x', 'x', { qos: 1, packetId: 4 })) // parked
    p.send(pub('fc/3', '3', { qos: 1, packetId: 5 })) // parked
    p.send(pub('slow/x', 'y', { qos: 1, packetId: 6 })) // parked, then behind the hook
    p.send(pub('slow/x', 'z', { qos: 2, packetId: 7 })) // parked, then behind the hook
    assert.equal((await p.expect('puback')).packetId, 2)
    await waitFor(() => broker.stats.flowControlHolds > 0)
    for (let i = 0; i < 3; i++) s.send({ type: 'puback', packetId: (await s.expect('publish')).packetId as number })
    const acks: Array<[number, number]> = []
    while (acks.length < 5) {
      const a = await p.next()
      assert.ok(a.type === 'puback' || a.type === 'pubrec', a.type)
      acks.push([a.packetId, a.reasonCode ?? 0])
    }
    assert.deepEqual(acks, [[3, 0], [4, 0x10], [5, 0], [6, 0x10], [7, 0x10]])
  })
  await withBroker({}, async (broker) => {
    const p = await connected(broker, 4, { clientId: 'p' })
    p.send(pub('none/x', 'x', { qos: 1, packetId: 1 }))
    assert.equal((await p.expect('puback')).reasonCode, undefined)
  })
})

test('v5: a PUBLISH with RETAIN 0 neither replaces nor clears the retained message, empty payload or not [MQTT-3.3.1-8]', async () => {
  await withBroker({}, async (broker) => {
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('r0', 'kept', { retain: true }))
    p.send(pub('r0', 'live'))
    p.send(pub('r0', ''))
    await sleep(50)
    const s = await connected(broker, 5, { clientId: 's' })
    await subscribe(s, 'r0')
    const m = await s.expect('publish')
    assert.equal(text(m.payload), 'kept')
    assert.equal(m.retain, true)
  })
})

test('v5: DUP of a received PUBLISH is not passed on: the copy to a subscriber has its own DUP 0 [MQTT-3.3.1-3]', async () => {
  await withBroker({}, async (broker) => {
    const s = await connected(broker, 5, { clientId: 's' })
    await subscribe(s, 'dup', 1)
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('dup', 'x', { qos: 1, packetId: 5, dup: true }))
    await p.expect('puback')
    const m = await s.expect('publish')
    assert.equal(m.dup, false)
    assert.equal(m.qos, 1)
  })
})

test('v5: Payload Format Indicator, Content Type, Response Topic and Correlation Data go out unaltered, to subscribers now and from the retained store later [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-20]', async () => {
  await withBroker({}, async (broker) => {
    const properties = { payloadFormatIndicator: true, contentType: 'text/plain; charset=utf-8', responseTopic: 'resp/x', correlationData: Buffer.from([0, 1, 2]) }
    const s = await connected(broker, 5, { clientId: 's' })
    await subscribe(s, 'props')
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('props', 'héllo', { retain: true, properties }))
    const check = (m: PublishPacket): void => {
      assert.equal(m.properties?.payloadFormatIndicator, true)
      assert.equal(m.properties?.contentType, properties.contentType)
      assert.equal(m.properties?.responseTopic, properties.responseTopic)
      assert.deepEqual(Buffer.from(m.properties?.correlationData ?? []), properties.correlationData)
      assert.equal(text(m.payload), 'héllo')
    }
    check(await s.expect('publish'))
    const late = await connected(broker, 5, { clientId: 'late' })
    await subscribe(late, 'props')
    check(await late.expect('publish'))
  })
})

test('v5: topic aliases do not outlive their connection, either way [MQTT-3.3.2-7]', async () => {
  await withBroker({ limits: { topicAliasMaximum: 4 } }, async (broker) => {
    // inbound: an alias set on an earlier connection is unknown on the next one (0x82)
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('ta/in', '1', { properties: { topicAlias: 1 } }))
    p.send({ type: 'disconnect', reasonCode: 0 })
    await p.waitClosed()
    const again = await connected(broker, 5, { clientId: 'p' })
    again.send(pub('', '2', { properties: { topicAlias: 1 } }))
    assert.equal((await again.expect('disconnect')).reasonCode, 0x82)
    // outbound: after a reconnect the broker sends the topic name with the alias again
    const props = { sessionExpiryInterval: 60, topicAliasMaximum: 2 }
    const s = await connected(broker, 5, { clientId: 's', cleanStart: false, properties: props })
    await subscribe(s, 'ta/out')
    const q = await connected(broker, 5, { clientId: 'q' })
    q.send(pub('ta/out', 'a'))
    q.send(pub('ta/out', 'b'))
    assert.deepEqual([(await s.expect('publish')).topicName, (await s.expect('publish')).topicName], ['ta/out', ''])
    s.send({ type: 'disconnect', reasonCode: 0 })
    await s.waitClosed()
    const s2 = await connected(broker, 5, { clientId: 's', cleanStart: false, properties: props })
    q.send(pub('ta/out', 'c'))
    const c = await s2.expect('publish')
    assert.equal(c.topicName, 'ta/out', 'the name again: the new connection knows no alias')
    assert.equal(c.properties?.topicAlias, 1)
  })
})
