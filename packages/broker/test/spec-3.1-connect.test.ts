// MQTT 5.0 §3.1 CONNECT / §3.2 CONNACK / §3.14 DISCONNECT, and the 3.1.1 equivalents.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as netConnect } from 'node:net'
import { Decoder, encode, type ConnectPacket, type Will } from '@petrel/wire'
import { createBroker } from '@petrel/broker'
import mqtt from 'mqtt'
import { connected, memoryClient, RawClient, sleep, tcpClient, text, versions, withBroker } from './helpers.js'

for (const v of versions) {
  test(`v${v}: CONNECT gets CONNACK 0, session not present on clean start [MQTT-3.2.2-2]`, async () => {
    await withBroker({}, async (broker) => {
      const c = memoryClient(broker, v)
      const ack = await c.connect({ clientId: 'a' })
      assert.equal(ack.reasonCode, 0)
      assert.equal(ack.sessionPresent, false)
      c.end()
    })
  })

  test(`v${v}: a first packet other than CONNECT closes the connection [MQTT-3.1.0-1]`, async () => {
    await withBroker({}, async (broker) => {
      const c = memoryClient(broker, v)
      c.send({ type: 'pingreq' })
      await c.waitClosed()
      assert.equal(broker.online.size, 0)
    })
  })

  test(`v${v}: a second CONNECT is a protocol error [MQTT-3.1.0-2]`, async () => {
    await withBroker({}, async (broker) => {
      const c = await connected(broker, v, { clientId: 'twice' })
      c.send({ type: 'connect', protocolVersion: v, clientId: 'twice', cleanStart: true, keepAlive: 60 })
      if (v === 5) assert.equal((await c.expect('disconnect')).reasonCode, 0x82)
      await c.waitClosed()
    })
  })

  test(`v${v}: keepalive is enforced at 1.5 x, and the will is published [MQTT-3.1.2-24] [MQTT-3.1.2-8]`, async () => {
    await withBroker({}, async (broker) => {
      const watcher = await connected(broker, v, { clientId: 'w' })
      watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] })
      await watcher.expect('suback')
      const c = await connected(broker, v, { clientId: 'silent', keepAlive: 1, will: { topicName: 'will/silent', payload: Buffer.from('gone'), qos: 0, retain: false } })
      const t0 = Date.now()
      if (v === 5) assert.equal((await c.expect('disconnect', 3000)).reasonCode, 0x8d)
      await c.waitClosed()
      const elapsed = Date.now() - t0
      assert.ok(elapsed >= 1400 && elapsed < 2500, `closed after ${elapsed} ms`)
      const will = await watcher.expect('publish')
      assert.equal(will.topicName, 'will/silent')
      assert.equal(text(will.payload), 'gone')
    })
  })

  test(`v${v}: PINGREQ gets PINGRESP and keeps the connection alive [MQTT-3.12.4-1]`, async () => {
    await withBroker({}, async (broker) => {
      const c = await connected(broker, v, { keepAlive: 1 })
      for (let i = 0; i < 4; i++) {
        await sleep(500)
        c.send({ type: 'pingreq' })
        await c.expect('pingresp')
      }
      assert.equal(c.closed, false)
      c.end()
    })
  })

  test(`v${v}: no will after a normal DISCONNECT [MQTT-3.1.2-10] [MQTT-3.14.4-3]`, async () => {
    await withBroker({}, async (broker) => {
      const watcher = await connected(broker, v, { clientId: 'w' })
      watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] })
      await watcher.expect('suback')
      const c = await connected(broker, v, { clientId: 'polite', will: { topicName: 'will/polite', payload: Buffer.from('x'), qos: 0, retain: false } })
      c.send({ type: 'disconnect' })
      await c.waitClosed()
      assert.equal(await watcher.quiet(300), true)
    })
  })

  test(`v${v}: the will is published when the connection drops [MQTT-3.1.2-8]`, async () => {
    await withBroker({}, async (broker) => {
      const watcher = await connected(broker, v, { clientId: 'w' })
      watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 1 }] })
      await watcher.expect('suback')
      const c = await connected(broker, v, { clientId: 'rude', will: { topicName: 'will/rude', payload: Buffer.from('bye'), qos: 1, retain: true } })
      c.destroy()
      const p = await watcher.expect('publish')
      assert.equal(p.topicName, 'will/rude')
      assert.equal(p.qos, 1)
      assert.equal(broker.retained.size, 1, 'a retained will is retained [MQTT-3.1.2-17]')
    })
  })

  test(`v${v}: a second connection with the same client id takes over [MQTT-3.1.4-3]`, async () => {
    await withBroker({}, async (broker) => {
      const first = await connected(broker, v, { clientId: 'same' })
      const second = await connected(broker, v, { clientId: 'same' })
      if (v === 5) assert.equal((await first.expect('disconnect')).reasonCode, 0x8e)
      await first.waitClosed()
      second.send({ type: 'pingreq' })
      await second.expect('pingresp')
      assert.equal(broker.online.size, 1)
    })
  })

  test(`v${v}: CONNECT must arrive within the connect timeout`, async () => {
    await withBroker({ limits: { connectTimeoutMs: 200 } }, async (broker) => {
      const c = memoryClient(broker, v)
      await c.waitClosed(2000)
      assert.equal(broker.connections.size, 0)
    })
  })

  test(`v${v}: authenticate hook refusal gets CONNACK 0x86 / 4 (§3.2.2.2)`, async () => {
    await withBroker({ authenticate: async (r) => r.username === 'alice' && r.password?.toString() === 'secret' }, async (broker) => {
      const bad = memoryClient(broker, v)
      const ack = await bad.connect({ username: 'alice', password: Buffer.from('wrong') })
      assert.equal(ack.reasonCode, v === 5 ? 0x86 : 4)
      await bad.waitClosed()
      const good = memoryClient(broker, v)
      assert.equal((await good.connect({ username: 'alice', password: Buffer.from('secret') })).reasonCode, 0)
      good.end()
    })
  })

  test(`v${v}: a hook answering { reasonCode } without ok: a success code accepts, and a refusal never carries one`, async () => {
    type Answer = { ok: boolean, reasonCode?: number }
    await withBroker({ authenticate: (r) => ({ reasonCode: r.username === 'alice' ? 0 : 0x10 }) as unknown as Answer }, async (broker) => {
      const good = memoryClient(broker, v)
      assert.equal((await good.connect({ username: 'alice' })).reasonCode, 0)
      assert.equal(await good.quiet(200), true, 'and it stays connected')
      good.end()
    })
    await withBroker({ authenticate: () => ({ ok: false, reasonCode: 0 }) }, async (broker) => {
      const refused = memoryClient(broker, v)
      assert.equal((await refused.connect({ username: 'bob' })).reasonCode, v === 5 ? 0x86 : 4)
      await refused.waitClosed()
    })
  })
}

test('3.1 (MQIsdp, level 3) CONNECT is accepted', async () => {
  await withBroker({}, async (broker) => {
    const c = memoryClient(broker, 3)
    const ack = await c.connect({ clientId: 'old' })
    assert.equal(ack.reasonCode, 0)
  })
})

test('an unsupported protocol level gets CONNACK 0x01 and close [MQTT-3.1.2-2]', async () => {
  await withBroker({}, async (broker) => {
    const c = memoryClient(broker, 4)
    const bytes = encode({ type: 'connect', protocolVersion: 4, clientId: 'x', cleanStart: true, keepAlive: 10 }, 4)
    bytes[8] = 9 // protocol level byte
    c.sendRaw(bytes)
    const ack = await c.expect('connack')
    assert.equal(ack.reasonCode, 1)
    await c.waitClosed()
  })
})

test('v5: a malformed CONNECT gets CONNACK 0x81 [MQTT-3.1.2-3]', async () => {
  await withBroker({}, async (broker) => {
    const c = memoryClient(broker, 5)
    const bytes = encode({ type: 'connect', protocolVersion: 5, clientId: 'x', cleanStart: true, keepAlive: 10 }, 5)
    bytes[9] = (bytes[9] as number) | 1 // reserved connect flag
    c.sendRaw(bytes)
    assert.equal((await c.expect('connack')).reasonCode, 0x81)
    await c.waitClosed()
  })
})

test('v5: empty client id gets an Assigned Client Identifier [MQTT-3.1.3-7] [MQTT-3.2.2-16]', async () => {
  await withBroker({}, async (broker) => {
    const c = memoryClient(broker, 5)
    const ack = await c.connect({ clientId: '' })
    assert.equal(ack.reasonCode, 0)
    const id = ack.properties?.assignedClientIdentifier
    assert.ok(id !== undefined && id.length > 0)
    assert.ok(broker.online.has(id))
  })
})

test('3.1.1: empty client id with clean session 0 is rejected with 0x02 [MQTT-3.1.3-8]', async () => {
  await withBroker({}, async (broker) => {
    const c = memoryClient(broker, 4)
    const ack = await c.connect({ clientId: '', cleanStart: false })
    assert.equal(ack.reasonCode, 2)
    await c.waitClosed()
  })
})

test('v5: CONNACK announces limits; Server Keep Alive caps the keepalive [MQTT-3.2.2-21]', async () => {
  await withBroker({ limits: { maxKeepAlive: 30, receiveMaximum: 50, topicAliasMaximum: 5, maxPacketSize: 4096 } }, async (broker) => {
    const c = memoryClient(broker, 5)
    const ack = await c.connect({ keepAlive: 600 })
    assert.equal(ack.properties?.serverKeepAlive, 30)
    assert.equal(ack.properties?.receiveMaximum, 50)
    assert.equal(ack.properties?.topicAliasMaximum, 5)
    assert.equal(ack.properties?.maximumPacketSize, 4096)
  })
})

test('v5: a will declared UTF-8 (Payload Format Indicator 1) that is not gets CONNACK 0x99 and is never published (§3.1.3.2.3)', async () => {
  await withBroker({}, async (broker) => {
    const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
    const watcher = await tcpClient(port, 5)
    await watcher.connect({ clientId: 'w' })
    watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] })
    await watcher.expect('suback')
    const bad = Buffer.from([0x68, 0x69, 0xc3, 0x28]) // "hi" then an invalid 2-byte sequence
    const c = await tcpClient(port, 5)
    const ack = await c.connect({ clientId: 'bad-will', will: { topicName: 'will/bad', payload: bad, qos: 0, retain: true, properties: { payloadFormatIndicator: true } } })
    assert.equal(ack.reasonCode, 0x99)
    await c.waitClosed()
    assert.equal(broker.sessions.has('bad-will'), false)
    assert.equal(broker.retained.size, 0, 'the will was neither retained')
    assert.equal(await watcher.quiet(300), true, 'nor published: a subscriber checking the format would take it for a malformed packet')
    // the same bytes without the indicator are unspecified bytes: accepted, and published as they are
    const ok = await tcpClient(port, 5)
    assert.equal((await ok.connect({ clientId: 'bytes-will', will: { topicName: 'will/bytes', payload: bad, qos: 0, retain: false } })).reasonCode, 0)
    ok.destroy()
    assert.deepEqual(Buffer.from((await watcher.expect('publish')).payload), bad)
    // and a well-formed UTF-8 will with the indicator is fine
    const good = await tcpClient(port, 5)
    assert.equal((await good.connect({ clientId: 'good-will', will: { topicName: 'will/good', payload: Buffer.from('adiós'), qos: 0, retain: false, properties: { payloadFormatIndicator: true } } })).reasonCode, 0)
    good.destroy()
    const p = await watcher.expect('publish')
    assert.equal(text(p.payload), 'adiós')
    assert.equal(p.properties?.payloadFormatIndicator, true)
    watcher.destroy()
  })
})

/** Records every packet the broker sends `c` whose size is over `max` (a second decoder on the same bytes). */
function oversize (c: RawClient, max: number): string[] {
  const seen: string[] = []
  const strict = new Decoder({ protocolVersion: 5, maxPacketSize: max })
  c.stream.on('data', (chunk: Buffer) => {
    try { strict.push(chunk) } catch (err) { seen.push((err as Error).message) }
  })
  return seen
}

test('v5: nothing larger than the client\'s Maximum Packet Size is sent: CONNACK drops Response Information, a SUBSCRIBE or UNSUBSCRIBE whose acknowledgement cannot fit gets DISCONNECT 0x95 with nothing done, a CONNACK that cannot fit refuses with 0x95 [MQTT-3.1.2-24]', async () => {
  await withBroker({ responseInformation: 'responses/for/the/client/%c/please' }, async (broker) => {
    const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
    const max = 40
    const tiny = async (clientId: string): Promise<[RawClient, string[]]> => {
      const c = await tcpClient(port, 5)
      const seen = oversize(c, max)
      const ack = await c.connect({ clientId, properties: { maximumPacketSize: max, requestResponseInformation: true, sessionExpiryInterval: 60 } })
      assert.equal(ack.reasonCode, 0)
      assert.equal(ack.properties?.responseInformation, undefined, 'Response Information left out: it would not fit')
      assert.equal(ack.properties?.maximumPacketSize, broker.limits.maxPacketSize, 'the limits the client must respect are kept')
      return [c, seen]
    }
    const [c, seen] = await tiny('tiny')
    // a SUBACK for 38 filters is 43 bytes: DISCONNECT 0x95, and none of them subscribed. Discarded
    // as if sent, it left the client waiting for it for good.
    const filters = (n: number): Array<{ topicFilter: string, qos: 0 }> => Array.from({ length: n }, (_, i) => ({ topicFilter: `t/${i}`, qos: 0 as const }))
    c.send({ type: 'subscribe', packetId: 1, subscriptions: filters(38) })
    assert.equal((await c.expect('disconnect', 1000)).reasonCode, 0x95)
    await c.waitClosed()
    assert.equal(broker.stats.controlPacketsTooLarge, 1)
    assert.equal(broker.router.subscriptionCount, 0, 'nothing subscribed')
    assert.deepEqual(seen, [])
    // 35 filters: a SUBACK of 40 bytes, which fits
    const [c2, seen2] = await tiny('tiny')
    c2.send({ type: 'subscribe', packetId: 2, subscriptions: filters(35) })
    assert.equal((await c2.expect('suback')).reasonCodes.length, 35)
    c2.send({ type: 'publish', topicName: 't/34', payload: Buffer.from('hi'), qos: 1, retain: false, dup: false, packetId: 3 })
    assert.equal((await c2.expect('puback')).packetId, 3)
    assert.equal(text((await c2.expect('publish')).payload), 'hi')
    // an UNSUBACK too: DISCONNECT 0x95, the subscriptions stay
    c2.send({ type: 'unsubscribe', packetId: 4, topicFilters: [...filters(35).map((f) => f.topicFilter), 'one/more'] })
    assert.equal((await c2.expect('disconnect', 1000)).reasonCode, 0x95)
    await c2.waitClosed()
    assert.equal(broker.router.subscriptionCount, 35, 'nothing unsubscribed')
    assert.equal(broker.stats.controlPacketsTooLarge, 2)
    assert.deepEqual(seen2, [])
    // with no room even for what it must know (its assigned client id among it): refused, no session
    const d = await tcpClient(port, 5)
    const seenD = oversize(d, 16)
    const refused = await d.connect({ clientId: '', properties: { maximumPacketSize: 16, sessionExpiryInterval: 60 } })
    assert.equal(refused.reasonCode, 0x95)
    await d.waitClosed()
    assert.deepEqual(seenD, [])
    assert.equal(broker.sessions.size, 1)
  })
})

test('v5: a client whose subscribe acknowledgement cannot fit its Maximum Packet Size is told so (DISCONNECT 0x95), not left waiting (MQTT.js)', async () => {
  await withBroker({}, async (broker) => {
    const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, reconnectPeriod: 0, properties: { maximumPacketSize: 64 } })
    const disconnect = new Promise<number | undefined | string>((resolve) => {
      c.once('disconnect', (p) => { resolve(p.reasonCode) })
      setTimeout(() => { resolve('no DISCONNECT within 3 s') }, 3000).unref()
    })
    const subscribed = c.subscribeAsync(Array.from({ length: 100 }, (_, i) => `many/${i}`), { qos: 0 })
    subscribed.catch(() => {})
    assert.equal(await disconnect, 0x95)
    await assert.rejects(subscribed)
    c.end(true)
  })
})

test('v5: DISCONNECT 0x04 publishes the will [MQTT-3.14.4-3]', async () => {
  await withBroker({}, async (broker) => {
    const watcher = await connected(broker, 5, { clientId: 'w' })
    watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] })
    await watcher.expect('suback')
    const c = await connected(broker, 5, { clientId: 'x', will: { topicName: 'will/x', payload: Buffer.from('w'), qos: 0, retain: false } })
    c.send({ type: 'disconnect', reasonCode: 0x04 })
    assert.equal((await watcher.expect('publish')).topicName, 'will/x')
  })
})

test('v5: a DISCONNECT with an error code (0x80, 0x83) publishes the will; only 0x00 discards it [MQTT-3.1.2-8] [MQTT-3.14.4-3]', async () => {
  await withBroker({}, async (broker) => {
    const watcher = await connected(broker, 5, { clientId: 'w' })
    watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] })
    await watcher.expect('suback')
    for (const reasonCode of [0x80, 0x83, 0x00]) {
      const c = await connected(broker, 5, { clientId: `x${reasonCode}`, will: { topicName: `will/${reasonCode}`, payload: Buffer.from('w'), qos: 0, retain: false } })
      c.send({ type: 'disconnect', reasonCode })
      await c.waitClosed()
    }
    assert.equal((await watcher.expect('publish')).topicName, `will/${0x80}`)
    assert.equal((await watcher.expect('publish')).topicName, `will/${0x83}`)
    assert.equal(await watcher.quiet(200), true, 'no will after 0x00')
  })
})

test('v5: will delay: not sent if the session resumes in time, sent after the delay otherwise [MQTT-3.1.3-9]', async () => {
  await withBroker({}, async (broker) => {
    const watcher = await connected(broker, 5, { clientId: 'w' })
    watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] })
    await watcher.expect('suback')
    const will = { topicName: 'will/d', payload: Buffer.from('late'), qos: 0 as const, retain: false, properties: { willDelayInterval: 1 } }
    const props = { sessionExpiryInterval: 60 }
    const a = await connected(broker, 5, { clientId: 'd', cleanStart: false, will, properties: props })
    a.destroy()
    await sleep(300)
    const b = await connected(broker, 5, { clientId: 'd', cleanStart: false, will, properties: props })
    assert.equal(await watcher.quiet(1200), true, 'resumed within the delay: no will')
    const t0 = Date.now()
    b.destroy()
    const p = await watcher.expect('publish', 3000)
    assert.equal(p.topicName, 'will/d')
    assert.ok(Date.now() - t0 >= 900, 'sent after the delay')
  })
})

test('v5: a new connection for the client id within the will delay cancels the will, even with clean start [MQTT-3.1.2-8] [MQTT-3.1.3-9]', async () => {
  await withBroker({}, async (broker) => {
    const watcher = await connected(broker, 5, { clientId: 'w' })
    watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] })
    await watcher.expect('suback')
    const will = (name: string): ConnectPacket['will'] => ({ topicName: `will/${name}`, payload: Buffer.from(name), qos: 0, retain: false, properties: { willDelayInterval: 1 } })
    const props = { sessionExpiryInterval: 60 }
    // offline, waiting out the delay, then a clean-start connection
    const a = await connected(broker, 5, { clientId: 'a', will: will('a'), properties: props })
    a.destroy()
    await sleep(200)
    await connected(broker, 5, { clientId: 'a', cleanStart: true })
    // still connected, taken over by a clean-start connection
    await connected(broker, 5, { clientId: 'b', will: will('b'), properties: props })
    await connected(broker, 5, { clientId: 'b', cleanStart: true })
    assert.equal(await watcher.quiet(1500), true, 'neither will is sent, now or after the delay')
  })
})

test('v5: a delayed will\'s Message Expiry Interval runs from its publication, not from the disconnect (§3.1.3.2.4)', async () => {
  await withBroker({}, async (broker) => {
    const watcher = await connected(broker, 5, { clientId: 'w' })
    watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 1 }] })
    await watcher.expect('suback')
    // expiry no longer than the delay: counted from the disconnect, it had expired when published
    const will = { topicName: 'will/e', payload: Buffer.from('late'), qos: 1 as const, retain: false, properties: { willDelayInterval: 1, messageExpiryInterval: 1 } }
    const c = await connected(broker, 5, { clientId: 'e', will, properties: { sessionExpiryInterval: 60 } })
    c.destroy()
    const p = await watcher.expect('publish', 3000)
    assert.equal(p.topicName, 'will/e')
    assert.equal(p.properties?.messageExpiryInterval, 1, 'its whole lifetime is left')
    watcher.send({ type: 'puback', packetId: p.packetId as number })
    assert.equal(broker.stats.drops.expired, 0)
  })
})

test('v5: delayed wills are bounded in bytes (max_delayed_will_bytes): connect/drop loops with new client ids cannot grow the broker; past the bound a will goes out at once, counted', async () => {
  const KiB = 1024
  await withBroker({ limits: { maxDelayedWillBytes: 256 * KiB } }, async (broker) => {
    const watcher = await connected(broker, 5, { clientId: 'w' })
    watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] })
    await watcher.expect('suback')
    // each will holds 60 KiB for up to an hour: without a bound, 10,000 such clients held 600 MB
    const will = { topicName: 'will/loop', payload: Buffer.alloc(60 * KiB), qos: 0 as const, retain: false, properties: { willDelayInterval: 3600 } }
    for (let i = 0; i < 20; i++) {
      const c = await connected(broker, 5, { clientId: `loop-${i}`, cleanStart: false, will, properties: { sessionExpiryInterval: 3600 } })
      c.destroy()
      await c.closedPromise
    }
    await sleep(50)
    assert.ok(broker.delayedWillBytes <= 256 * KiB, `delayed wills hold ${broker.delayedWillBytes} bytes`)
    const held = Math.floor(256 * KiB / (60 * KiB + 'will/loop'.length + 64 + 256))
    assert.equal(broker.stats.willsSentEarly, 20 - held)
    for (let i = 0; i < 20 - held; i++) assert.equal((await watcher.expect('publish')).topicName, 'will/loop')
    assert.equal(await watcher.quiet(100), true)
    // a session that resumes gives its will's room back
    const back = await connected(broker, 5, { clientId: 'loop-0', cleanStart: false, properties: { sessionExpiryInterval: 3600 } })
    assert.ok(broker.delayedWillBytes <= 256 * KiB - 60 * KiB, `after a resume: ${broker.delayedWillBytes}`)
    back.destroy()
  })
})

test('v5: a delayed will holds its own Correlation Data, not a view into the CONNECT it came in (which max_delayed_will_bytes does not count)', async () => {
  await withBroker({}, async (broker) => {
    // a 4-byte correlation data read with a 40 KiB CONNECT: as a view it kept all 40 KiB alive for the will's delay
    const will = { topicName: 'will/cd', payload: Buffer.from('x'), qos: 0 as const, retain: false, properties: { willDelayInterval: 3600, correlationData: Buffer.from('abcd') } }
    const c = await connected(broker, 5, { clientId: 'cd', will, properties: { sessionExpiryInterval: 3600, userProperties: [['pad', 'p'.repeat(40 * 1024)]] } })
    c.destroy()
    await c.closedPromise
    await sleep(50)
    const cd = broker.sessions.get('cd')?.delayedWill?.properties?.correlationData
    assert.ok(cd !== undefined)
    assert.equal(Buffer.from(cd).toString(), 'abcd')
    assert.ok(cd.buffer.byteLength < 16 * 1024, `the correlation data keeps ${cd.buffer.byteLength} bytes alive`)
  })
})

test('v5: session expiry set on DISCONNECT after 0 on CONNECT is a protocol error [MQTT-3.14.2-2]', async () => {
  await withBroker({}, async (broker) => {
    const c = await connected(broker, 5, { clientId: 'e' })
    c.send({ type: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 100 } })
    assert.equal((await c.expect('disconnect')).reasonCode, 0x82)
    await c.waitClosed()
  })
})

test('v5: Authentication Method without the enhanced-auth hook gets 0x8C', async () => {
  await withBroker({}, async (broker) => {
    const c = memoryClient(broker, 5)
    const ack = await c.connect({ properties: { authenticationMethod: 'SCRAM-SHA-1' } })
    assert.equal(ack.reasonCode, 0x8c)
  })
})

test('v5: enhanced authentication through the hook (AUTH 0x18 exchange) [MQTT-4.12.0-2]', async () => {
  await withBroker({
    authenticateEnhanced: (r) => r.step === 0 ? { reasonCode: 0x18, data: Buffer.from('challenge') } : { reasonCode: r.data?.toString() === 'response' ? 0 : 0x86 }
  }, async (broker) => {
    const c = memoryClient(broker, 5)
    c.send({ type: 'connect', protocolVersion: 5, clientId: 'ea', cleanStart: true, keepAlive: 60, properties: { authenticationMethod: 'demo' } })
    const auth = await c.expect('auth')
    assert.equal(auth.reasonCode, 0x18)
    assert.equal(text(auth.properties?.authenticationData ?? new Uint8Array()), 'challenge')
    c.send({ type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'demo', authenticationData: Buffer.from('response') } })
    const ack = await c.expect('connack')
    assert.equal(ack.reasonCode, 0)
    assert.equal(ack.properties?.authenticationMethod, 'demo')
  })
})

test('v5: an AUTH 0x18 larger than the client\'s Maximum Packet Size refuses the CONNECT with 0x95, rather than leaving the client waiting [MQTT-3.1.2-24]', async () => {
  await withBroker({ authenticateEnhanced: () => ({ reasonCode: 0x18, data: Buffer.alloc(200, 1) }) }, async (broker) => {
    const c = memoryClient(broker, 5)
    c.send({ type: 'connect', protocolVersion: 5, clientId: 'small', cleanStart: true, keepAlive: 60, properties: { authenticationMethod: 'demo', maximumPacketSize: 100 } })
    const ack = await c.expect('connack', 1000)
    assert.equal(ack.reasonCode, 0x95)
    await c.waitClosed()
    assert.equal(broker.stats.controlPacketsTooLarge, 1)
  })
})

test('v5: a re-authentication whose AUTH does not fit the client\'s Maximum Packet Size ends with DISCONNECT 0x95 (§4.12.1)', async () => {
  await withBroker({ authenticateEnhanced: (r) => r.step === 0 ? { reasonCode: 0 } : { reasonCode: 0x18, data: Buffer.alloc(200, 1) } }, async (broker) => {
    const c = memoryClient(broker, 5)
    const ack = await c.connect({ clientId: 'small', properties: { authenticationMethod: 'demo', maximumPacketSize: 100 } })
    assert.equal(ack.reasonCode, 0)
    c.send({ type: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'demo' } })
    assert.equal((await c.expect('disconnect', 1000)).reasonCode, 0x95)
    await c.waitClosed()
  })
})

test('v5: request response information returns the configured Response Information', async () => {
  await withBroker({ responseInformation: 'replies/%c' }, async (broker) => {
    const c = memoryClient(broker, 5)
    const ack = await c.connect({ clientId: 'rr', properties: { requestResponseInformation: true } })
    assert.equal(ack.properties?.responseInformation, 'replies/rr')
  })
})

test('close(): v5 clients get DISCONNECT 0x8B Server shutting down', async () => {
  await withBroker({}, async (broker) => {
    const c5 = await connected(broker, 5, { clientId: 'five' })
    const c4 = await connected(broker, 4, { clientId: 'four' })
    await broker.close()
    assert.equal((await c5.expect('disconnect')).reasonCode, 0x8b)
    await c5.waitClosed()
    await c4.waitClosed()
  })
})

test('close() over TCP: clients that keep their side open (half-open) still read DISCONNECT 0x8B, and close() does not wait out their 2 s linger', async () => {
  const broker = createBroker({ sysInterval: 0 })
  const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
  const clients: RawClient[] = []
  try {
    for (let i = 0; i < 3; i++) {
      // as a plain socket (Python's, C's): our FIN does not close its side
      const socket = netConnect({ host: '127.0.0.1', port, allowHalfOpen: true })
      socket.on('error', () => {})
      await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
      const c = new RawClient(socket, 5)
      clients.push(c)
      await c.connect({ clientId: `open-${i}` })
    }
    const t0 = Date.now()
    await broker.close()
    const ms = Date.now() - t0
    for (const c of clients) assert.equal((await c.expect('disconnect')).reasonCode, 0x8b)
    assert.ok(ms < 1000, `close() took ${ms} ms`)
  } finally {
    for (const c of clients) c.destroy()
    await broker.close()
  }
})

for (const v of versions) {
  test(`v${v}: a resumed session's queued PUBLISH of 64 KiB or more comes after the CONNACK [MQTT-3.2.0-1]`, async () => {
    const broker = createBroker({ sysInterval: 0, sweepIntervalMs: 50 })
    const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
    try {
      const persistent = v === 5 ? { cleanStart: false, properties: { sessionExpiryInterval: 300 } } : { cleanStart: false }
      const sub = await tcpClient(port, v)
      await sub.connect({ clientId: 'big', ...persistent })
      sub.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'big', qos: 1 }] })
      await sub.expect('suback')
      sub.send({ type: 'disconnect' })
      await sub.waitClosed()
      broker.publishMessage({ topic: 'big', payload: Buffer.alloc(100_000, 0x61), qos: 1 })
      const back = await tcpClient(port, v)
      const ack = await back.connect({ clientId: 'big', ...persistent })
      assert.equal(ack.sessionPresent, true)
      assert.equal((await back.expect('publish')).payload.length, 100_000)
      back.destroy()
    } finally {
      await broker.close()
    }
  })
}

test('v5: a Will Delay Interval longer than the Session Expiry Interval: the will goes when the session ends [MQTT-3.1.3-9]', async () => {
  await withBroker({ sweepIntervalMs: 50 }, async (broker) => {
    const watcher = await connected(broker, 5, { clientId: 'w' })
    watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] })
    await watcher.expect('suback')
    const c = await connected(broker, 5, { clientId: 'c', properties: { sessionExpiryInterval: 1 }, will: { topicName: 'will/c', payload: Buffer.from('x'), qos: 0, retain: false, properties: { willDelayInterval: 3600 } } })
    const t0 = Date.now()
    c.destroy()
    assert.equal((await watcher.expect('publish', 3000)).topicName, 'will/c')
    assert.ok(Date.now() - t0 >= 900, 'not before the session ends')
  })
})

test('v5: DISCONNECT 0x00 discards a will that has a delay; 0x04 sends it once the delay has passed [MQTT-3.1.2-8] [MQTT-3.14.4-3]', async () => {
  await withBroker({ sweepIntervalMs: 50 }, async (broker) => {
    const watcher = await connected(broker, 5, { clientId: 'w' })
    watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] })
    await watcher.expect('suback')
    const will = (topicName: string): Will => ({ topicName, payload: Buffer.from('x'), qos: 0, retain: false, properties: { willDelayInterval: 1 } })
    const a = await connected(broker, 5, { clientId: 'a', properties: { sessionExpiryInterval: 10 }, will: will('will/a') })
    a.send({ type: 'disconnect', reasonCode: 0 })
    const b = await connected(broker, 5, { clientId: 'b', properties: { sessionExpiryInterval: 10 }, will: will('will/b') })
    const t0 = Date.now()
    b.send({ type: 'disconnect', reasonCode: 4 })
    assert.equal((await watcher.expect('publish', 3000)).topicName, 'will/b')
    assert.ok(Date.now() - t0 >= 900, 'after its delay')
    assert.equal(await watcher.quiet(1200), true, 'no will after 0x00')
  })
})
