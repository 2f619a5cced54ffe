// Async hooks that take their time: input is held in order meanwhile, which must not cost a
// healthy client its connection.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import mqtt from 'mqtt'
import { pino, type Logger } from 'pino'
import { createBroker, createMetricsRegistry, type Broker, type BrokerOptions } from '@petrel/broker'
import { connect as netConnect } from 'node:net'
import { encode, type Packet } from '@petrel/wire'
import { waitFor } from '@petrel/test-utils'
import { sleep, tcpClient, versions, type RawClient } from './helpers.js'

async function withTcpBroker (options: BrokerOptions, fn: (port: number, broker: Broker) => Promise<void>): Promise<void> {
  const broker = createBroker({ sysInterval: 0, sweepIntervalMs: 50, ...options })
  try {
    const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
    await fn(port, broker)
  } finally {
    await broker.close()
  }
}

/** Everything the client received within `ms`, stopping early if the broker closes it. */
async function collect (c: RawClient, ms: number): Promise<Packet[]> {
  const out: Packet[] = []
  const deadline = Date.now() + ms
  for (;;) {
    const left = deadline - Date.now()
    if (left <= 0 || c.closed) return out
    try {
      out.push(await c.next(left))
    } catch {
      return out
    }
  }
}

for (const v of versions) {
  test(`v${v}: a 2 s authorizePublish does not cost a client with keepalive 1 s and PINGREQs flowing its connection [MQTT-3.1.2-22]`, { timeout: 20_000 }, async () => {
    const authorizePublish = async (): Promise<boolean> => { await sleep(2000); return true }
    await withTcpBroker({ authorizePublish }, async (port) => {
      const c = await tcpClient(port, v)
      assert.equal((await c.connect({ clientId: 'patient', keepAlive: 1 })).reasonCode, 0)
      c.send({ type: 'publish', topicName: 'slow/hook', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 1 })
      // PINGREQs every 400 ms for 3.2 s: the broker holds them behind the hook for 2 s
      const pings = setInterval(() => { c.send({ type: 'pingreq' }) }, 400)
      let got: Packet[]
      try {
        got = await collect(c, 3200)
      } finally {
        clearInterval(pings)
      }
      assert.equal(c.closed, false, `closed; received ${got.map((p) => p.type).join(', ')}`)
      assert.deepEqual(got.filter((p) => p.type === 'disconnect'), [])
      const ack = got.find((p) => p.type === 'puback')
      // accepted: 5.0 says 0x10 No matching subscribers (nobody subscribed)
      assert.ok(ack !== undefined && ack.packetId === 1 && (ack.reasonCode ?? 0) === (v === 5 ? 0x10 : 0), 'PUBACK for the held publish')
      // the PINGREQs held behind the hook are answered, in order, after its PUBACK
      assert.ok(got.filter((p) => p.type === 'pingresp').length >= 6)
      assert.equal(got[0]?.type, 'puback')
      c.end()
    })
  })
}

/** A hook that never settles. */
const never = async (): Promise<boolean> => await new Promise<boolean>(() => {})

/** A warn-level logger whose lines land in `lines`. */
function capture (lines: string[]): Logger {
  return pino({ level: 'warn' }, { write: (s: string) => { lines.push(s) } })
}

for (const v of versions) {
  test(`v${v}: an authorizePublish that never settles fails its publish at hookTimeoutMs (5.0: PUBACK 0x83), the connection goes on, one warning`, { timeout: 20_000 }, async () => {
    const lines: string[] = []
    await withTcpBroker({ authorizePublish: never, limits: { hookTimeoutMs: 300 }, logger: capture(lines) }, async (port, broker) => {
      const c = await tcpClient(port, v)
      assert.equal((await c.connect({ clientId: 'stuck', keepAlive: 60 })).reasonCode, 0)
      c.send({ type: 'publish', topicName: 'a', payload: Buffer.from('1'), qos: 1, retain: false, dup: false, packetId: 1 })
      c.send({ type: 'publish', topicName: 'a', payload: Buffer.from('2'), qos: 1, retain: false, dup: false, packetId: 2 })
      c.send({ type: 'pingreq' })
      for (const id of [1, 2]) {
        const ack = await c.expect('puback', 3000)
        assert.equal(ack.packetId, id)
        assert.equal(ack.reasonCode ?? 0, v === 5 ? 0x83 : 0)
      }
      await c.expect('pingresp')
      assert.equal(c.closed, false)
      assert.equal(broker.stats.hookTimeouts, 2)
      // nothing decided against them: counted under their own reason, not as not_authorized
      assert.equal(broker.stats.drops.hook_timeout, 2)
      assert.equal(broker.stats.drops.not_authorized, 0)
      const metrics = await createMetricsRegistry(broker).metrics()
      assert.match(metrics, /petrel_messages_dropped_total\{reason="hook_timeout"\} 2/)
      assert.match(metrics, /petrel_messages_dropped_total\{reason="not_authorized"\} 0/)
      // rate-limited: one line for the two
      const warnings = lines.filter((l) => l.includes('hook_timeout_ms'))
      assert.equal(warnings.length, 1, lines.join(''))
      assert.match(warnings[0] as string, /"hook":"authorizePublish"/)
      c.end()
    })
  })

  test(`v${v}: an authorizeSubscribe that never settles fails the filter at hookTimeoutMs (SUBACK ${v === 5 ? '0x83' : '0x80'})`, { timeout: 20_000 }, async () => {
    await withTcpBroker({ authorizeSubscribe: never, limits: { hookTimeoutMs: 300 }, logger: capture([]) }, async (port) => {
      const c = await tcpClient(port, v)
      assert.equal((await c.connect({ clientId: 'stuck-sub' })).reasonCode, 0)
      c.send({ type: 'subscribe', packetId: 7, subscriptions: [{ topicFilter: 'a/#', qos: 1 }] })
      const ack = await c.expect('suback', 3000)
      assert.deepEqual(ack.reasonCodes, [v === 5 ? 0x83 : 0x80])
      c.send({ type: 'pingreq' })
      await c.expect('pingresp')
      c.end()
    })
  })

  test(`v${v}: an authenticate that never settles refuses the CONNECT at hookTimeoutMs (CONNACK ${v === 5 ? '0x88' : '3'})`, { timeout: 20_000 }, async () => {
    await withTcpBroker({ authenticate: never, limits: { hookTimeoutMs: 300 }, logger: capture([]) }, async (port) => {
      const c = await tcpClient(port, v)
      assert.equal((await c.connect({ clientId: 'stuck-auth' })).reasonCode, v === 5 ? 0x88 : 3)
      await c.waitClosed()
    })
  })

  test(`v${v}: a will whose authorizePublish never settles is discarded at hookTimeoutMs, counted as hook_timeout; the CONNECT is accepted`, { timeout: 20_000 }, async () => {
    const authorizePublish = async (_c: unknown, p: { topicName: string }): Promise<boolean> => p.topicName === 'will/stuck' ? await never() : true
    await withTcpBroker({ authorizePublish, limits: { hookTimeoutMs: 300 }, logger: capture([]) }, async (port, broker) => {
      const watcher = await tcpClient(port, v)
      assert.equal((await watcher.connect({ clientId: 'watcher' })).reasonCode, 0)
      watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] })
      await watcher.expect('suback')
      const c = await tcpClient(port, v)
      const will = { topicName: 'will/stuck', payload: Buffer.from('gone'), qos: 0 as const, retain: false }
      assert.equal((await c.connect({ clientId: 'stuck-will', will })).reasonCode, 0)
      assert.equal(broker.stats.drops.hook_timeout, 1)
      assert.equal(broker.stats.drops.not_authorized, 0)
      c.destroy() // no DISCONNECT: a will that had been kept would go out now
      assert.equal(await watcher.quiet(500), true)
      watcher.end()
    })
  })

  test(`v${v}: a client gone silent behind a hook that never settles is dropped for keepalive once hookTimeoutMs has passed`, { timeout: 20_000 }, async () => {
    await withTcpBroker({ authorizePublish: never, limits: { hookTimeoutMs: 1000 }, logger: capture([]) }, async (port) => {
      const c = await tcpClient(port, v)
      assert.equal((await c.connect({ clientId: 'silent', keepAlive: 1 })).reasonCode, 0)
      c.send({ type: 'publish', topicName: 'a', payload: Buffer.from('x'), qos: 0, retain: false, dup: false })
      if (v === 5) assert.equal((await c.expect('disconnect', 6000)).reasonCode, 0x8d)
      await c.waitClosed(6000)
    })
  })
}

test('v5: an authenticateEnhanced that never settles refuses the CONNECT at hookTimeoutMs (CONNACK 0x88)', { timeout: 20_000 }, async () => {
  const authenticateEnhanced = async (): Promise<{ reasonCode: number }> => await new Promise(() => {})
  await withTcpBroker({ authenticateEnhanced, limits: { hookTimeoutMs: 300 }, logger: capture([]) }, async (port, broker) => {
    const c = await tcpClient(port, 5)
    assert.equal((await c.connect({ clientId: 'stuck-enhanced', properties: { authenticationMethod: 'SCRAM-SHA-1' } })).reasonCode, 0x88)
    await c.waitClosed()
    assert.equal(broker.stats.hookTimeouts, 1)
  })
})

test('v5: a hookTimeoutMs past what a timer can wait (2^31 ms, ~25 days: "no bound" in practice) does not fail every async hook after 1 ms', { timeout: 20_000 }, async () => {
  const authorizePublish = async (): Promise<boolean> => { await sleep(200); return true }
  await withTcpBroker({ authorizePublish, limits: { hookTimeoutMs: 2 ** 31 }, logger: capture([]) }, async (port, broker) => {
    const c = await tcpClient(port, 5)
    assert.equal((await c.connect({ clientId: 'patient-for-ever' })).reasonCode, 0)
    c.send({ type: 'publish', topicName: 'a', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 1 })
    const ack = await c.expect('puback', 3000)
    assert.equal(ack.reasonCode, 0x10, 'accepted (No matching subscribers), not failed')
    assert.equal(broker.stats.hookTimeouts, 0)
    c.end()
  })
})

test('v5: hookTimeoutMs 0 is no bound, as 0 is for other limits: async hooks are waited for, not failed at once (raw tcp)', { timeout: 20_000 }, async () => {
  const authorizePublish = async (): Promise<boolean> => { await sleep(200); return true }
  const authorizeSubscribe = async (): Promise<boolean> => { await sleep(100); return true }
  await withTcpBroker({ authorizePublish, authorizeSubscribe, limits: { hookTimeoutMs: 0 }, logger: capture([]) }, async (port, broker) => {
    const c = await tcpClient(port, 5)
    assert.equal((await c.connect({ clientId: 'unbounded' })).reasonCode, 0)
    c.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a', qos: 1 }] })
    assert.deepEqual((await c.expect('suback', 3000)).reasonCodes, [1])
    c.send({ type: 'publish', topicName: 'a', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 2 })
    assert.equal((await c.expect('puback', 3000)).reasonCode ?? 0, 0)
    assert.equal((await c.expect('publish', 3000)).topicName, 'a')
    assert.equal(broker.stats.hookTimeouts, 0)
    c.end()
  })
})

// connect_timeout_ms bounds the client's part of a CONNECT (sending it, then its AUTH answers),
// not the broker's own hooks: those are bounded by hook_timeout_ms and answered with a CONNACK.
for (const v of versions) {
  test(`v${v}: an authenticate slower than connectTimeoutMs (within hookTimeoutMs) still answers the CONNECT: CONNACK 0 (MQTT.js)`, { timeout: 20_000 }, async () => {
    const authenticate = async (): Promise<boolean> => { await sleep(900); return true }
    await withTcpBroker({ authenticate, limits: { connectTimeoutMs: 300 } }, async (port) => {
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'slow-auth', protocolVersion: v, reconnectPeriod: 0, connectTimeout: 5000 })
      try {
        assert.equal(c.connected, true)
        await c.publishAsync('after/slow/auth', 'x', { qos: 1 })
      } finally {
        await c.endAsync()
      }
    })
  })

  test(`v${v}: an authenticate that never settles, with hookTimeoutMs above connectTimeoutMs, gets CONNACK ${v === 5 ? '0x88' : '3'}, not a silent close`, { timeout: 20_000 }, async () => {
    await withTcpBroker({ authenticate: never, limits: { connectTimeoutMs: 300, hookTimeoutMs: 900 }, logger: capture([]) }, async (port) => {
      const c = await tcpClient(port, v)
      const started = Date.now()
      assert.equal((await c.connect({ clientId: 'stuck-auth' })).reasonCode, v === 5 ? 0x88 : 3)
      assert.ok(Date.now() - started >= 800, 'answered at hookTimeoutMs')
      await c.waitClosed()
    })
  })
}

test('v5: a client that does not continue an enhanced authentication within connectTimeoutMs gets CONNACK 0x87 before the close [MQTT-4.12.0-4]', { timeout: 20_000 }, async () => {
  const authenticateEnhanced = (): { reasonCode: number, data: Buffer } => ({ reasonCode: 0x18, data: Buffer.from('challenge') })
  await withTcpBroker({ authenticateEnhanced, limits: { connectTimeoutMs: 400 } }, async (port, broker) => {
    const c = await tcpClient(port, 5)
    c.send({ type: 'connect', protocolVersion: 5, clientId: 'mute', cleanStart: true, keepAlive: 60, properties: { authenticationMethod: 'SCRAM' } })
    assert.equal((await c.expect('auth')).reasonCode, 0x18)
    assert.equal((await c.expect('connack', 3000)).reasonCode, 0x87)
    await c.waitClosed()
    assert.equal(broker.stats.connectRefused, 1)
  })
})

test('v5: the time an enhanced authentication hook takes does not count against connectTimeoutMs; the client\'s own time does', { timeout: 20_000 }, async () => {
  // each step takes 400 ms of the broker's time; the client answers at once: 800 ms in all
  // against a connect timeout of 500 ms
  const authenticateEnhanced = async (r: { step: number, data: Buffer | undefined }): Promise<{ reasonCode: number, data?: Buffer }> => {
    await sleep(400)
    if (r.step === 0) return { reasonCode: 0x18, data: Buffer.from('challenge') }
    return { reasonCode: r.data?.toString() === 'answer' ? 0 : 0x87 }
  }
  await withTcpBroker({ authenticateEnhanced, limits: { connectTimeoutMs: 500 } }, async (port) => {
    const c = await tcpClient(port, 5)
    c.send({ type: 'connect', protocolVersion: 5, clientId: 'scram', cleanStart: true, keepAlive: 60, properties: { authenticationMethod: 'SCRAM' } })
    assert.equal((await c.expect('auth')).reasonCode, 0x18)
    c.send({ type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'SCRAM', authenticationData: Buffer.from('answer') } })
    assert.equal((await c.expect('connack')).reasonCode, 0)
    c.send({ type: 'pingreq' })
    await c.expect('pingresp')
    c.end()
  })
})

test('a hook still pending when the broker closes its connection (taken over, evicted at max_connections) is no longer timed: no hook timeout counted or warned about hookTimeoutMs later (authenticate, authorizeSubscribe, authorizePublish; MQTT.js and raw tcp)', { timeout: 20_000 }, async () => {
  const lines: string[] = []
  const called: string[] = []
  const hang = async (name: string): Promise<boolean> => { called.push(name); return await never() }
  const options: BrokerOptions = {
    authenticate: async (r) => r.clientId === 'stuck-in-connect' ? await hang('authenticate') : true,
    authorizeSubscribe: async (c) => c.clientId === 'stays' ? await hang('stays') : await hang('authorizeSubscribe'),
    authorizePublish: async () => await hang('authorizePublish'),
    limits: { hookTimeoutMs: 400, maxConnections: 3 },
    logger: capture(lines)
  }
  await withTcpBroker(options, async (port, broker) => {
    const url = `mqtt://127.0.0.1:${port}`
    const opts = { protocolVersion: 5 as const, reconnectPeriod: 0 }
    const waitCalled = async (n: number): Promise<void> => {
      const deadline = Date.now() + 3000
      while (called.length < n && Date.now() < deadline) await sleep(20)
      assert.equal(called.length, n, called.join())
    }
    // a CONNECT waiting on authenticate holds no CONNACK: the first evicted at max_connections
    const raw = await tcpClient(port, 5)
    raw.send({ type: 'connect', protocolVersion: 5, clientId: 'stuck-in-connect', cleanStart: true, keepAlive: 60 })
    await waitCalled(1)
    const sub = await mqtt.connectAsync(url, { ...opts, clientId: 'sub' })
    sub.subscribe('never/answered')
    const pub = await mqtt.connectAsync(url, { ...opts, clientId: 'pub' })
    pub.publish('never/answered', 'x', { qos: 1 })
    await waitCalled(3)
    // each taken over by a new connection for its client id (the first also evicts `raw`)
    const sub2 = await mqtt.connectAsync(url, { ...opts, clientId: 'sub' })
    const pub2 = await mqtt.connectAsync(url, { ...opts, clientId: 'pub' })
    await raw.waitClosed()
    const gone = Date.now() + 3000
    while (broker.connections.size > 2 && Date.now() < gone) await sleep(20)
    assert.equal(broker.connections.size, 2, 'the old connections closed')
    await sleep(1000) // well past hookTimeoutMs
    assert.deepEqual(called.sort(), ['authenticate', 'authorizePublish', 'authorizeSubscribe'])
    assert.equal(broker.stats.hookTimeouts, 0)
    assert.deepEqual(lines.filter((l) => l.includes('did not settle')), [])
    sub.end(true)
    pub.end(true)
    await pub2.endAsync()
    // a connection that stays still has its hook timed out (and counted)
    const stays = await mqtt.connectAsync(url, { ...opts, clientId: 'stays' })
    try {
      // SUBACK 0x83: MQTT.js rejects
      await assert.rejects(stays.subscribeAsync('never/answered', { qos: 0 }), /Implementation specific error/)
      assert.equal(broker.stats.hookTimeouts, 1)
    } finally {
      await stays.endAsync()
      await sub2.endAsync()
    }
  })
})

// Each pending hook listens on its connection's abort signal (see withHookTimeout): a SUBSCRIBE
// of more than 10 filters checked by an async authorizeSubscribe made Node warn of an
// 'EventTarget memory leak' (MaxListenersExceededWarning) in the broker's process.
test('an async authorizeSubscribe asked about 50 filters of one SUBSCRIBE: no MaxListenersExceededWarning', { timeout: 20_000 }, async () => {
  const warnings: Error[] = []
  const onWarning = (w: Error): void => { warnings.push(w) }
  process.on('warning', onWarning)
  const broker = createBroker({ sysInterval: 0, authorizeSubscribe: async () => { await sleep(20); return true } })
  try {
    const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
    const c = await tcpClient(port, 5)
    assert.equal((await c.connect({ clientId: 'many' })).reasonCode, 0)
    c.send({ type: 'subscribe', packetId: 1, subscriptions: Array.from({ length: 50 }, (_, i) => ({ topicFilter: `f/${i}`, qos: 0 as const })) })
    const ack = await c.expect('suback', 5000)
    assert.deepEqual(ack.reasonCodes, Array.from({ length: 50 }, () => 0))
    await sleep(50) // a warning is emitted on the next tick
    c.end()
    assert.deepEqual(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message), [])
  } finally {
    process.off('warning', onWarning)
    await broker.close()
  }
})

// A will's check still pending when the broker closes its connection (evicted at
// max_connections, taken over, broker shutdown) was answered HOOK_TIMEOUT by the abort, and the
// will was counted as dropped for hook_timeout (and logged as discarded) though no hook timed
// out: petrel_dropped_messages_total{reason="hook_timeout"} went up, petrel_hook_timeouts_total not.
test('a will whose check is pending when its connection is evicted at max_connections is not counted as dropped for hook_timeout', { timeout: 20_000 }, async () => {
  let asked = false
  const authorizePublish = async (): Promise<boolean> => { asked = true; return await never() }
  await withTcpBroker({ authorizePublish, limits: { hookTimeoutMs: 5000, maxConnections: 1 } }, async (port, broker) => {
    const c = await tcpClient(port, 5)
    c.send({ type: 'connect', protocolVersion: 5, clientId: 'willful', cleanStart: true, keepAlive: 60, will: { topicName: 'w/t', payload: Buffer.from('bye'), qos: 0, retain: false } })
    const deadline = Date.now() + 3000
    while (!asked && Date.now() < deadline) await sleep(20)
    assert.ok(asked, 'the will was being checked')
    const next = await tcpClient(port, 5) // takes its place: it has no CONNACK yet
    await c.waitClosed()
    await sleep(50)
    assert.equal(broker.stats.connectionsEvicted, 1)
    assert.equal(broker.stats.hookTimeouts, 0)
    assert.equal(broker.stats.drops.hook_timeout, 0, 'no will dropped for a hook timeout')
    next.end()
  })
})

test('a client that closes its socket while a hook is pending is released at once: the hook\'s signal aborts and its late answer is ignored (authenticate, authorizeSubscribe, authorizePublish; raw tcp and MQTT.js)', { timeout: 20_000 }, async () => {
  const pending: Array<{ signal: AbortSignal, answer: (ok: boolean) => void }> = []
  const wait = async (signal: AbortSignal): Promise<boolean> => await new Promise<boolean>((resolve) => { pending.push({ signal, answer: resolve }) })
  const options: BrokerOptions = {
    // 30 s hooks: a socket closed meanwhile used to hold its connection (and session) as long
    authenticate: async (r) => r.clientId.startsWith('slow') ? await wait(r.signal) : true,
    authorizeSubscribe: async (c, s) => s.topicFilter === 'slow' ? await wait(c.signal) : true,
    authorizePublish: async (c, p) => p.topicName === 'slow' ? await wait(c.signal) : true,
    limits: { hookTimeoutMs: 60_000 }
  }
  await withTcpBroker(options, async (port, broker) => {
    const url = `mqtt://127.0.0.1:${port}`
    const released = async (n: number, what: string): Promise<void> => {
      await waitFor(() => pending.length === n, { timeoutMs: 3000, message: `${what}: hook called` })
      await waitFor(() => broker.connections.size === 0, { timeoutMs: 3000, message: `${what}: connection released while its hook is pending` })
      assert.equal(pending[n - 1]?.signal.aborted, true, `${what}: signal aborted`)
    }
    // authenticate: CONNECT, then FIN (raw tcp)
    const a = await tcpClient(port, 5)
    a.send({ type: 'connect', protocolVersion: 5, clientId: 'slow-a', cleanStart: true, keepAlive: 60 })
    await waitFor(() => pending.length === 1)
    a.end()
    await released(1, 'authenticate')
    // authorizeSubscribe: MQTT.js with a persistent session, its socket destroyed
    const m = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, clientId: 'm', clean: false, properties: { sessionExpiryInterval: 60 } })
    m.subscribe('slow', { qos: 1 }, () => {})
    await waitFor(() => pending.length === 2)
    m.end(true)
    await released(2, 'authorizeSubscribe')
    assert.equal(broker.online.has('m'), false)
    // authorizePublish: raw 3.1.1 with a persistent session, destroyed mid-publish
    const p = await tcpClient(port, 4)
    await p.connect({ clientId: 'p', cleanStart: false })
    p.send({ type: 'publish', topicName: 'slow', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 1 })
    await waitFor(() => pending.length === 3)
    p.destroy()
    await released(3, 'authorizePublish')
    // the answers arrive late: ignored, nothing half-done
    const watcher = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, clientId: 'watcher' })
    try {
      const got: string[] = []
      watcher.on('message', (t) => { got.push(t) })
      await watcher.subscribeAsync('#', { qos: 1 })
      for (const h of pending) h.answer(true)
      await sleep(200)
      assert.equal(broker.sessions.has('slow-a'), false, 'no session for a CONNECT whose client left')
      assert.equal(broker.sessions.get('m')?.subscriptions?.has('slow') ?? false, false, 'no subscription its client never got a SUBACK for')
      assert.equal(got.length, 0, 'no message its client never got a PUBACK for')
      assert.equal(broker.stats.hookTimeouts, 0)
      assert.equal(broker.connections.size, 1)
      await watcher.publishAsync('still/works', 'y', { qos: 1 })
      await waitFor(() => got.includes('still/works'))
    } finally {
      await watcher.endAsync()
    }
  })
})

test('a client that writes CONNECT, PUBLISH, DISCONNECT and closes without waiting for its CONNACK, behind a slow authenticate, still has its messages routed and its will dropped (raw tcp: in one write, and apart)', { timeout: 20_000 }, async () => {
  const authenticate = async (r: { clientId: string }): Promise<boolean> => { if (r.clientId.startsWith('pipelined')) await sleep(300); return true }
  await withTcpBroker({ authenticate }, async (port) => {
    const watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, reconnectPeriod: 0, clientId: 'watcher' })
    try {
      const got: string[] = []
      watcher.on('message', (t) => { got.push(t) })
      await watcher.subscribeAsync('#', { qos: 1 })
      for (const [clientId, apart] of [['pipelined-together', false], ['pipelined-apart', true]] as const) {
        const s = netConnect({ host: '127.0.0.1', port })
        s.on('error', () => {})
        await new Promise<void>((resolve) => { s.once('connect', resolve) })
        const connect = encode({ type: 'connect', protocolVersion: 4, clientId, cleanStart: true, keepAlive: 60, will: { topicName: `will/${clientId}`, payload: Buffer.from('w'), qos: 0, retain: false } }, 4)
        const rest = Buffer.concat([
          encode({ type: 'publish', topicName: `q0/${clientId}`, payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, 4),
          encode({ type: 'publish', topicName: `q1/${clientId}`, payload: Buffer.from('y'), qos: 1, retain: false, dup: false, packetId: 1 }, 4),
          encode({ type: 'disconnect' }, 4)
        ])
        if (apart) {
          s.write(connect)
          await sleep(50) // the CONNECT is behind the hook by now
          s.end(rest)
        } else {
          s.end(Buffer.concat([connect, rest]))
        }
      }
      await waitFor(() => got.length >= 4, { timeoutMs: 5000, message: `got ${got.join()}` })
      await sleep(200)
      assert.deepEqual(got.sort(), ['q0/pipelined-apart', 'q0/pipelined-together', 'q1/pipelined-apart', 'q1/pipelined-together'])
    } finally {
      await watcher.endAsync()
    }
  })
})
