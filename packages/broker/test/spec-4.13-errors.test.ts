// MQTT 5.0 §4.13 Handling errors, §3.1.4 session takeover and §4.12 re-authentication: each
// client error gets the spec's answer, and the broker and every other client carry on.
import { connect as netConnect } from 'node:net'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Packet, PublishPacket } from '@petrel/wire'
import { waitFor } from '@petrel/test-utils'
import { connected, memoryClient, RawClient, sleep, tcpClient, text, versions, withBroker } from './helpers.js'

const pub = (topicName: string, payload: string | Buffer, extra: Partial<PublishPacket> = {}): PublishPacket =>
  ({ type: 'publish', topicName, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos: 0, retain: false, dup: false, ...extra })

for (const v of versions) {
  test(`v${v}: a packet over our Maximum Packet Size closes that connection only (5.0: DISCONNECT 0x95) [MQTT-3.2.2-15] [MQTT-4.13.1-1]`, async () => {
    await withBroker({ limits: { maxPacketSize: 1024 } }, async (broker) => {
      const watcher = await connected(broker, v, { clientId: 'w' })
      watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'big/#', qos: 0 }] })
      await watcher.expect('suback')
      const big = await connected(broker, v, { clientId: 'big' })
      big.send(pub('big/x', Buffer.alloc(2000)))
      if (v === 5) assert.equal((await big.expect('disconnect')).reasonCode, 0x95)
      await big.waitClosed()
      assert.equal(await watcher.quiet(100), true, 'the oversized message is not delivered')
      const ok = await connected(broker, v, { clientId: 'ok' })
      ok.send(pub('big/y', Buffer.alloc(900)))
      assert.equal((await watcher.expect('publish')).payload.length, 900, 'the broker carries on for everyone else')
      assert.equal(broker.stats.protocolErrors, 1)
    })
  })

  test(`v${v}: past max_connections (sockets, as mosquitto counts them) a new connection is closed at accept`, async () => {
    await withBroker({ limits: { maxConnections: 2 } }, async (broker) => {
      const a = await connected(broker, v, { clientId: 'a' })
      await connected(broker, v, { clientId: 'b' })
      const c = memoryClient(broker, v)
      await c.waitClosed()
      assert.equal(broker.stats.connectionsRejected, 1)
      assert.equal(broker.connections.size, 2)
      // a freed slot is taken again, by the same client id or another
      a.destroy()
      await waitFor(() => broker.connections.size === 1)
      const again = await connected(broker, v, { clientId: 'a' })
      again.send({ type: 'pingreq' })
      await again.expect('pingresp')
    })
  })

  test(`v${v}: takeover with clean start 0 keeps the session: session present, subscriptions and in-flight kept [MQTT-3.1.4-3] [MQTT-3.2.2-3]`, async () => {
    await withBroker({}, async (broker) => {
      const props = v === 5 ? { sessionExpiryInterval: 60 } : undefined
      const first = await connected(broker, v, { clientId: 'dev', cleanStart: false, properties: props })
      first.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'to/#', qos: 1 }] })
      await first.expect('suback')
      const p = await connected(broker, v, { clientId: 'p' })
      p.send(pub('to/1', 'unacked', { qos: 1, packetId: 1 }))
      await p.expect('puback')
      const m = await first.expect('publish')
      assert.equal(text(m.payload), 'unacked') // and never acknowledged by `first`
      const second = memoryClient(broker, v)
      const ack = await second.connect({ clientId: 'dev', cleanStart: false, properties: props })
      assert.equal(ack.sessionPresent, true)
      if (v === 5) assert.equal((await first.expect('disconnect')).reasonCode, 0x8e)
      await first.waitClosed()
      const resent = await second.expect('publish')
      assert.equal(text(resent.payload), 'unacked')
      assert.equal(resent.dup, true, 'resent with DUP [MQTT-3.3.1-1]')
      second.send({ type: 'puback', packetId: resent.packetId as number })
      p.send(pub('to/2', 'after', { qos: 1, packetId: 2 }))
      assert.equal(text((await second.expect('publish')).payload), 'after', 'the subscription carried over')
    })
  })

  test(`v${v}: takeover of a session that ends with its connection (${v === 5 ? 'Session Expiry Interval 0' : 'clean session 1'}): not resumed, even with clean start 0 [MQTT-3.1.4-3] [MQTT-3.2.2-3] [MQTT-4.1.0-2]`, async () => {
    await withBroker({}, async (broker) => {
      const first = await connected(broker, v, { clientId: 'dev', cleanStart: true })
      first.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'gone/#', qos: 1 }] })
      await first.expect('suback')
      const second = memoryClient(broker, v)
      const ack = await second.connect({ clientId: 'dev', cleanStart: false, properties: v === 5 ? { sessionExpiryInterval: 60 } : undefined })
      assert.equal(ack.sessionPresent, false, 'the old session ended when its connection was closed')
      await first.waitClosed()
      assert.equal(broker.router.subscriptionCount, 0, 'its subscriptions went with it')
      const p = await connected(broker, v, { clientId: 'p' })
      p.send(pub('gone/1', 'x', { qos: 1, packetId: 1 }))
      await p.expect('puback')
      assert.equal(await second.quiet(150), true)
    })
  })
}

test('v5: a retained message past its Message Expiry Interval is not sent to new subscribers [MQTT-3.3.2-5]', async () => {
  await withBroker({}, async (broker) => {
    const p = await connected(broker, 5, { clientId: 'p' })
    p.send(pub('exp/r', 'short', { retain: true, properties: { messageExpiryInterval: 1 } }))
    p.send(pub('exp/k', 'long', { retain: true, properties: { messageExpiryInterval: 60 } }))
    await sleep(1100)
    const s = await connected(broker, 5, { clientId: 's' })
    s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'exp/#', qos: 0 }] })
    await s.expect('suback')
    const m = await s.expect('publish')
    assert.equal(m.topicName, 'exp/k')
    const left = m.properties?.messageExpiryInterval ?? 0
    assert.ok(left > 0 && left < 60, `remaining lifetime forwarded [MQTT-3.3.2-6], got ${left}`)
    assert.equal(await s.quiet(150), true)
    assert.equal(broker.retained.size, 1, 'the expired one is gone from the store')
  })
})

test('v5: re-authentication: AUTH 0x19 runs the hook again; success gets AUTH 0x00, failure DISCONNECT [MQTT-4.12.1-1] [MQTT-4.12.1-2]', async () => {
  await withBroker({
    authenticateEnhanced: (r) => ({ reasonCode: r.data?.toString() === 'bad' ? 0x87 : 0 })
  }, async (broker) => {
    const c = await connected(broker, 5, { clientId: 're', properties: { authenticationMethod: 'tok', authenticationData: Buffer.from('t1') } })
    c.send({ type: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'tok', authenticationData: Buffer.from('t2') } })
    assert.equal((await c.expect('auth')).reasonCode, 0)
    // a different method is a protocol error [MQTT-4.12.1-1]
    const d = await connected(broker, 5, { clientId: 'other', properties: { authenticationMethod: 'tok' } })
    d.send({ type: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'changed' } })
    assert.equal((await d.expect('disconnect')).reasonCode, 0x82)
    c.send({ type: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'tok', authenticationData: Buffer.from('bad') } })
    assert.equal((await c.expect('disconnect')).reasonCode, 0x87)
    await c.waitClosed()
  })
})

test('v5: a re-authentication in several steps: the broker challenges (0x18), the client continues (0x18) [MQTT-4.12.1-1]', async () => {
  const steps: number[] = []
  await withBroker({
    authenticateEnhanced: (r) => {
      steps.push(r.step)
      if (r.step === 0) return { reasonCode: 0 }
      return r.data?.toString() === 'answer' ? { reasonCode: 0 } : { reasonCode: 0x18, data: Buffer.from('challenge') }
    }
  }, async (broker) => {
    const c = await connected(broker, 5, { clientId: 'multi', properties: { authenticationMethod: 'scram' } })
    for (let round = 0; round < 2; round++) {
      c.send({ type: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'scram', authenticationData: Buffer.from('hello') } })
      const challenge = await c.expect('auth')
      assert.equal(challenge.reasonCode, 0x18)
      c.send({ type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'scram', authenticationData: Buffer.from('answer') } })
      assert.equal((await c.expect('auth')).reasonCode, 0)
    }
    assert.deepEqual(steps, [0, 1, 2, 1, 2])
    // Outside an exchange, 0x18 is out of sequence.
    c.send({ type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'scram' } })
    assert.equal((await c.expect('disconnect')).reasonCode, 0x82)
  })
})

test('v5: a re-authentication the client leaves unanswered (AUTH 0x18 sent, none back) ends with DISCONNECT 0x87 after connectTimeoutMs, whatever other traffic goes on; one answered in time succeeds [MQTT-4.12.1-2] (raw tcp)', { timeout: 20_000 }, async () => {
  const authenticateEnhanced = (r: { step: number, data: Buffer | undefined }): { reasonCode: number, data?: Buffer } =>
    r.step === 0 || r.data?.toString() === 'answer' ? { reasonCode: 0 } : { reasonCode: 0x18, data: Buffer.from('challenge') }
  await withBroker({ authenticateEnhanced, limits: { connectTimeoutMs: 400 } }, async (broker) => {
    const { port } = await broker.listen({ port: 0 })
    const reauth = async (c: RawClient): Promise<void> => {
      c.send({ type: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'scram', authenticationData: Buffer.from('hello') } })
      assert.equal((await c.expect('auth')).reasonCode, 0x18)
    }
    const prompt = await tcpClient(port, 5)
    assert.equal((await prompt.connect({ clientId: 'prompt', keepAlive: 1, properties: { authenticationMethod: 'scram' } })).reasonCode, 0)
    const mute = await tcpClient(port, 5)
    assert.equal((await mute.connect({ clientId: 'mute', keepAlive: 1, properties: { authenticationMethod: 'scram' } })).reasonCode, 0)
    await reauth(prompt)
    await reauth(mute)
    const started = Date.now()
    await sleep(250)
    prompt.send({ type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'scram', authenticationData: Buffer.from('answer') } })
    assert.equal((await prompt.expect('auth')).reasonCode, 0)
    // the mute one keeps its link busy (PINGREQ, QoS 1 PUBLISH) but never answers the challenge
    const got: Packet[] = []
    for (let i = 1; i <= 20 && !mute.closed; i++) {
      mute.send({ type: 'pingreq' })
      mute.send(pub('busy', 'x', { qos: 1, packetId: i }))
      await sleep(100)
      while (true) {
        try { got.push(await mute.next(1)) } catch { break }
      }
    }
    await mute.waitClosed()
    const elapsed = Date.now() - started
    while (true) {
      try { got.push(await mute.next(1)) } catch { break }
    }
    assert.ok(got.some((p) => p.type === 'pingresp') && got.some((p) => p.type === 'puback'), 'traffic went on meanwhile')
    assert.deepEqual(got.filter((p) => p.type === 'disconnect').map((p) => p.type === 'disconnect' ? p.reasonCode : 0), [0x87])
    assert.ok(elapsed >= 350 && elapsed < 1500, `closed after ${elapsed} ms`)
    // the one that answered stays
    prompt.send({ type: 'pingreq' })
    await prompt.expect('pingresp')
    prompt.end()
  })
})

test('v5: AUTH from a client that did not use enhanced authentication is a protocol error (0x82) [MQTT-4.12.0-5]', async () => {
  await withBroker({ authenticateEnhanced: () => ({ reasonCode: 0 }) }, async (broker) => {
    const c = await connected(broker, 5, { clientId: 'plain' })
    c.send({ type: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'x' } })
    assert.equal((await c.expect('disconnect')).reasonCode, 0x82)
    await c.waitClosed()
  })
})

test('v5: a client still writing when we disconnect it reads our DISCONNECT and sees a clean close, not a reset [MQTT-4.13.1-1]', async () => {
  await withBroker({ limits: { receiveMaximum: 2 } }, async (broker) => {
    const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
    // half-open allowed, as a plain socket (Python's, C's) is: our FIN does not close its side
    const socket = netConnect({ host: '127.0.0.1', port, allowHalfOpen: true })
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
    const c = new RawClient(socket, 5)
    let socketError: Error | undefined
    socket.on('error', (err) => { socketError = err })
    const closed = new Promise((resolve) => { socket.once('close', resolve) })
    await c.connect({ clientId: 'flood' })
    // one QoS 2 publish past our Receive Maximum; the client answers each PUBREC as it reads it
    for (let i = 1; i <= 3; i++) c.send(pub('rm/x', 'q2', { qos: 2, packetId: i }))
    let disconnect: number | undefined
    for (let i = 0; i < 3; i++) {
      const p = await c.next()
      if (p.type === 'pubrec') c.send({ type: 'pubrel', packetId: p.packetId })
      else if (p.type === 'disconnect') disconnect = p.reasonCode
      await sleep(50)
    }
    assert.equal(disconnect, 0x93)
    c.end()
    await closed
    assert.equal(socketError, undefined, 'the PUBRELs already on their way were met with a reset')
  })
})

test('v5: a protocol error within a CONNECT\'s enhanced authentication gets CONNACK 0x82 before the close, not a bare close [MQTT-3.1.2-30] [MQTT-4.12.0-4]', async () => {
  await withBroker({ authenticateEnhanced: (r) => ({ reasonCode: r.step === 0 ? 0x18 : 0 }) }, async (broker) => {
    const wrong: Packet[] = [
      { type: 'pingreq' }, // only AUTH or DISCONNECT before CONNACK [MQTT-3.1.2-30]
      { type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'other' } }, // [MQTT-4.12.0-5]
      { type: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'scram' } } // out of sequence
    ]
    for (const p of wrong) {
      const c = memoryClient(broker, 5)
      c.send({ type: 'connect', protocolVersion: 5, clientId: 'x', cleanStart: true, keepAlive: 60, properties: { authenticationMethod: 'scram' } })
      assert.equal((await c.expect('auth')).reasonCode, 0x18)
      c.send(p)
      assert.equal((await c.expect('connack')).reasonCode, 0x82, p.type)
      await c.waitClosed()
    }
  })
})
