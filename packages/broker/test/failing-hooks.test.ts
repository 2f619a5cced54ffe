// Hooks that throw or reject: the request they were asked about fails as on a timeout
// (hook_timeout_ms), and the connection goes on wherever that request allows it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runInNewContext } from 'node:vm'
import mqtt from 'mqtt'
import { pino, type Logger } from 'pino'
import { connect as petrelConnect } from '@petrel/client'
import type { PetrelError } from '@petrel/wire'
import { createBroker, createMetricsRegistry, type Broker, type BrokerOptions } from '@petrel/broker'
import { waitFor } from '@petrel/test-utils'
import { sleep, tcpClient, versions } from './helpers.js'

async function withTcpBroker (options: BrokerOptions, fn: (port: number, broker: Broker) => Promise<void>): Promise<void> {
  const broker = createBroker({ sysInterval: 0, sweepIntervalMs: 50, ...options })
  try {
    const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
    await fn(port, broker)
  } finally {
    await broker.close()
  }
}

/** A warn-level logger whose lines land in `lines`. */
function capture (lines: string[]): Logger {
  return pino({ level: 'warn' }, { write: (s: string) => { lines.push(s) } })
}

/** The two ways a hook fails: a synchronous throw, a rejected promise. */
const failures = {
  throws: (): never => { throw new Error('bug in the hook') },
  rejects: async (): Promise<never> => { throw new Error('bug in the hook') }
}

for (const v of versions) {
  for (const [how, fail] of Object.entries(failures)) {
    test(`v${v}: an authorizePublish that ${how} refuses that publish (${v === 5 ? 'PUBACK 0x83' : 'PUBACK'}), counted as hook_error; the client (MQTT.js, persistent session) stays connected and goes on publishing`, { timeout: 20_000 }, async () => {
      const lines: string[] = []
      const authorizePublish = (_c: unknown, p: { topicName: string }): boolean | Promise<boolean> => p.topicName === 'boom' ? fail() : true
      await withTcpBroker({ authorizePublish, logger: capture(lines) }, async (port, broker) => {
        const url = `mqtt://127.0.0.1:${port}`
        const sub = await mqtt.connectAsync(url, { clientId: 'watcher', protocolVersion: v, reconnectPeriod: 0 })
        const pub = await mqtt.connectAsync(url, { clientId: 'pub', clean: false, protocolVersion: v, reconnectPeriod: 100 })
        try {
          const got: string[] = []
          sub.on('message', (topic) => { got.push(topic) })
          await sub.subscribeAsync('#', { qos: 1 })
          let closes = 0
          pub.on('close', () => { closes++ })
          for (let i = 0; i < 2; i++) {
            if (v === 5) await assert.rejects(pub.publishAsync('boom', 'x', { qos: 1 }), /Implementation specific error/)
            else await pub.publishAsync('boom', 'x', { qos: 1 }) // 3.1.1 has no refusal code
          }
          await pub.publishAsync('fine', 'y', { qos: 1 })
          await waitFor(() => got.length > 0, { timeoutMs: 5000 })
          await sleep(100) // a refused message would have come before 'fine'
          assert.deepEqual(got, ['fine'])
          assert.equal(closes, 0, 'the publisher was disconnected')
          assert.equal(pub.connected, true)
          assert.equal(broker.stats.hookErrors, 2)
          assert.equal(broker.stats.drops.hook_error, 2)
          assert.equal(broker.stats.drops.not_authorized, 0)
          const metrics = await createMetricsRegistry(broker).metrics()
          assert.match(metrics, /petrel_hook_errors_total 2/)
          assert.match(metrics, /petrel_messages_dropped_total\{reason="hook_error"\} 2/)
          // rate-limited: one line for the two, naming the hook and carrying the error
          const warnings = lines.filter((l) => l.includes('threw, rejected or gave no usable answer'))
          assert.equal(warnings.length, 1, lines.join(''))
          assert.match(warnings[0] as string, /"hook":"authorizePublish"/)
          assert.match(warnings[0] as string, /bug in the hook/)
        } finally {
          await pub.endAsync()
          await sub.endAsync()
        }
      })
    })

    test(`v${v}: an authorizeSubscribe that ${how} fails that filter (SUBACK ${v === 5 ? '0x83' : '0x80'}), the others in the packet are granted; the client (@petrel/client) stays connected`, { timeout: 20_000 }, async () => {
      const authorizeSubscribe = (_c: unknown, s: { topicFilter: string }): boolean | Promise<boolean> => s.topicFilter.startsWith('boom') ? fail() : true
      await withTcpBroker({ authorizeSubscribe, logger: capture([]) }, async (port, broker) => {
        const raw = await tcpClient(port, v)
        assert.equal((await raw.connect({ clientId: 'raw' })).reasonCode, 0)
        raw.send({ type: 'subscribe', packetId: 3, subscriptions: [{ topicFilter: 'ok/#', qos: 1 }, { topicFilter: 'boom/#', qos: 1 }] })
        assert.deepEqual((await raw.expect('suback')).reasonCodes, [1, v === 5 ? 0x83 : 0x80])
        raw.send({ type: 'pingreq' })
        await raw.expect('pingresp')
        raw.end()

        const client = await petrelConnect(`mqtt://127.0.0.1:${port}`, { clientId: 'petrel', protocolVersion: v, reconnect: false })
        const disconnects: unknown[] = []
        client.on('disconnect', (e) => { disconnects.push(e) })
        try {
          await assert.rejects(client.subscribe('boom/#', { qos: 1 }), (err: PetrelError) => err.reasonCode === (v === 5 ? 0x83 : 0x80))
          const s = await client.subscribe('ok/#', { qos: 1 })
          await client.publish('ok/1', 'hello', { qos: 1 })
          const it = s[Symbol.asyncIterator]()
          const msg = await Promise.race([it.next(), sleep(3000).then(() => undefined)])
          assert.equal(msg?.value?.topic, 'ok/1')
          assert.deepEqual(disconnects, [])
          assert.equal(broker.stats.hookErrors, 2)
        } finally {
          await client.end()
        }
      })
    })

    test(`v${v}: an authenticate that ${how} refuses the CONNECT with ${v === 5 ? 'CONNACK 0x88 Server unavailable' : 'return code 3'}, not as bad credentials; the broker goes on (@petrel/client)`, { timeout: 20_000 }, async () => {
      let calls = 0
      const authenticate = (): boolean | Promise<boolean> => ++calls === 1 ? fail() : true
      await withTcpBroker({ authenticate, logger: capture([]) }, async (port, broker) => {
        const url = `mqtt://127.0.0.1:${port}`
        await assert.rejects(petrelConnect(url, { clientId: 'a', protocolVersion: v, reconnect: false }), (err: PetrelError) => {
          assert.equal(err.code, 'PETREL_ERR_CONNECTION_REFUSED')
          assert.equal(err.reasonCode, v === 5 ? 0x88 : 3)
          return true
        })
        assert.equal(broker.stats.hookErrors, 1)
        const client = await petrelConnect(url, { clientId: 'a', protocolVersion: v, reconnect: false })
        await client.end()
      })
    })

    test(`v${v}: a will whose authorizePublish ${how} is discarded (counted as hook_error); the CONNECT is accepted`, { timeout: 20_000 }, async () => {
      const authorizePublish = (_c: unknown, p: { topicName: string }): boolean | Promise<boolean> => p.topicName === 'will/boom' ? fail() : true
      await withTcpBroker({ authorizePublish, logger: capture([]) }, async (port, broker) => {
        const watcher = await tcpClient(port, v)
        assert.equal((await watcher.connect({ clientId: 'watcher' })).reasonCode, 0)
        watcher.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'will/#', qos: 0 }] })
        await watcher.expect('suback')
        const c = await tcpClient(port, v)
        const will = { topicName: 'will/boom', payload: Buffer.from('gone'), qos: 0 as const, retain: false }
        assert.equal((await c.connect({ clientId: 'boom-will', will })).reasonCode, 0)
        assert.equal(broker.stats.drops.hook_error, 1)
        c.destroy() // no DISCONNECT: a will that had been kept would go out now
        assert.equal(await watcher.quiet(500), true)
        watcher.end()
      })
    })
  }
}

for (const [how, fail] of Object.entries(failures)) {
  test(`v5: an authenticateEnhanced that ${how} on CONNECT, or on an AUTH continuing it, gets CONNACK 0x88 before the close [MQTT-4.12.0-4]`, { timeout: 20_000 }, async () => {
    const authenticateEnhanced = (r: { step: number, data: Buffer | undefined }): { reasonCode: number, data?: Buffer } | Promise<{ reasonCode: number, data?: Buffer }> => {
      if (r.data?.toString() === 'boom') return fail()
      return r.step === 0 ? { reasonCode: 0x18, data: Buffer.from('challenge') } : fail()
    }
    await withTcpBroker({ authenticateEnhanced, logger: capture([]) }, async (port, broker) => {
      const a = await tcpClient(port, 5)
      assert.equal((await a.connect({ clientId: 'e1', properties: { authenticationMethod: 'SCRAM', authenticationData: Buffer.from('boom') } })).reasonCode, 0x88)
      await a.waitClosed()

      const b = await tcpClient(port, 5)
      b.send({ type: 'connect', protocolVersion: 5, clientId: 'e2', cleanStart: true, keepAlive: 60, properties: { authenticationMethod: 'SCRAM' } })
      assert.equal((await b.expect('auth')).reasonCode, 0x18)
      b.send({ type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'SCRAM', authenticationData: Buffer.from('answer') } })
      assert.equal((await b.expect('connack')).reasonCode, 0x88)
      await b.waitClosed()
      assert.equal(broker.stats.hookErrors, 2)
    })
  })

  test(`v5: an authenticateEnhanced that ${how} on a re-authentication ends it with DISCONNECT 0x83, as a timeout does [MQTT-4.12.1-2]`, { timeout: 20_000 }, async () => {
    const authenticateEnhanced = (r: { step: number }): { reasonCode: number } | Promise<{ reasonCode: number }> => r.step === 0 ? { reasonCode: 0 } : fail()
    await withTcpBroker({ authenticateEnhanced, logger: capture([]) }, async (port) => {
      const c = await tcpClient(port, 5)
      assert.equal((await c.connect({ clientId: 're', properties: { authenticationMethod: 'tok' } })).reasonCode, 0)
      c.send({ type: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'tok', authenticationData: Buffer.from('t2') } })
      assert.equal((await c.expect('disconnect')).reasonCode, 0x83)
      await c.waitClosed()
    })
  })
}

// An answer a hook cannot have meant (undefined from a missing `return`, a number) is a hook
// error, never a yes; a promise from another realm or library is awaited like a native one.
/** A promise of another realm, as a hook running in a `vm` context or under Jest makes one. */
function foreignPromise<T> (value: T): Promise<T> {
  return runInNewContext('Promise.resolve(value)', { value }) as Promise<T>
}

for (const v of versions) {
  test(`v${v}: an authorizeSubscribe that answers undefined (sync or async) does not grant the filter (SUBACK ${v === 5 ? '0x83' : '0x80'}), and is counted and warned about as a hook error`, { timeout: 20_000 }, async () => {
    const lines: string[] = []
    const authorizeSubscribe = ((_c: unknown, s: { topicFilter: string }) => s.topicFilter === 'sync/#' ? undefined : s.topicFilter === 'async/#' ? Promise.resolve(undefined) : true) as unknown as BrokerOptions['authorizeSubscribe']
    await withTcpBroker({ authorizeSubscribe, logger: capture(lines) }, async (port, broker) => {
      const c = await tcpClient(port, v)
      assert.equal((await c.connect({ clientId: 'forgot-return' })).reasonCode, 0)
      c.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'sync/#', qos: 1 }, { topicFilter: 'async/#', qos: 1 }, { topicFilter: 'ok/#', qos: 1 }] })
      const fail = v === 5 ? 0x83 : 0x80
      assert.deepEqual((await c.expect('suback')).reasonCodes, [fail, fail, 1])
      assert.equal(broker.stats.hookErrors, 2)
      assert.match(lines.join(''), /authorizeSubscribe answered undefined; expected a boolean/)
      c.end()
    })
  })

  test(`v${v}: hooks answering with a promise of another realm are awaited: authenticate's false refuses the CONNECT, authorizePublish's false refuses the publish (MQTT.js)`, { timeout: 20_000 }, async () => {
    const authenticate = (r: { username: string | undefined }): Promise<boolean> => foreignPromise(r.username === 'alice')
    const authorizePublish = (_c: unknown, p: { topicName: string }): Promise<boolean> => foreignPromise(p.topicName !== 'secret')
    await withTcpBroker({ authenticate, authorizePublish }, async (port, broker) => {
      const url = `mqtt://127.0.0.1:${port}`
      await assert.rejects(mqtt.connectAsync(url, { clientId: 'mallory', username: 'mallory', protocolVersion: v, reconnectPeriod: 0 }), v === 5 ? /Bad User Name or Password/ : /Bad username or password/)
      const c = await mqtt.connectAsync(url, { clientId: 'alice', username: 'alice', protocolVersion: v, reconnectPeriod: 0 })
      try {
        const got: string[] = []
        c.on('message', (topic) => { got.push(topic) })
        await c.subscribeAsync('#', { qos: 1 })
        if (v === 5) await assert.rejects(c.publishAsync('secret', 'x', { qos: 1 }), /Not authorized/)
        else await c.publishAsync('secret', 'x', { qos: 1 })
        await c.publishAsync('public', 'y', { qos: 1 })
        await waitFor(() => got.length > 0, { timeoutMs: 5000 })
        await sleep(100) // a refused message would have come before 'public'
        assert.deepEqual(got, ['public'])
        assert.equal(broker.stats.drops.not_authorized, 1)
      } finally {
        await c.endAsync()
      }
    })
  })

  test(`v${v}: an authenticate that answers undefined refuses the CONNECT with ${v === 5 ? 'CONNACK 0x88' : 'return code 3'} instead of crashing the broker`, { timeout: 20_000 }, async () => {
    const authenticate = ((r: { username: string | undefined }) => { if (r.username === 'alice') return true }) as unknown as BrokerOptions['authenticate']
    await withTcpBroker({ authenticate, logger: capture([]) }, async (port) => {
      const bad = await tcpClient(port, v)
      assert.equal((await bad.connect({ clientId: 'b', username: 'bob' })).reasonCode, v === 5 ? 0x88 : 3)
      await bad.waitClosed()
      const good = await tcpClient(port, v)
      assert.equal((await good.connect({ clientId: 'a', username: 'alice' })).reasonCode, 0)
      good.end()
    })
  })
}

test('v5: an authenticateEnhanced that answers undefined refuses the CONNECT with CONNACK 0x88 instead of crashing the broker', { timeout: 20_000 }, async () => {
  const authenticateEnhanced = (() => undefined) as unknown as BrokerOptions['authenticateEnhanced']
  await withTcpBroker({ authenticateEnhanced, logger: capture([]) }, async (port, broker) => {
    const c = await tcpClient(port, 5)
    assert.equal((await c.connect({ clientId: 'e', properties: { authenticationMethod: 'SCRAM' } })).reasonCode, 0x88)
    await c.waitClosed()
    assert.equal(broker.stats.hookErrors, 1)
  })
})

test('v5: a refusal code a CONNACK cannot carry (0x91, or not a byte) becomes 0x80 Unspecified error: the client reads a refusal, not a Protocol Error, and the broker goes on', { timeout: 20_000 }, async () => {
  const authenticate = (r: { username: string | undefined }): { ok: boolean, reasonCode?: number } => r.username === 'alice' ? { ok: true } : { ok: false, reasonCode: r.username === 'byte' ? 0x187 : 0x91 }
  await withTcpBroker({ authenticate }, async (port) => {
    for (const username of ['table', 'byte']) {
      const c = await tcpClient(port, 5)
      assert.equal((await c.connect({ clientId: username, username })).reasonCode, 0x80, username)
      await c.waitClosed()
    }
    const client = await petrelConnect(`mqtt://127.0.0.1:${port}`, { clientId: 'alice', username: 'alice', protocolVersion: 5, reconnect: false })
    await client.end()
  })
})

test('v5: a re-authentication refused with a code a DISCONNECT cannot carry (0x86 Bad User Name or Password) ends with DISCONNECT 0x87 Not authorized [MQTT-4.12.1-2]', { timeout: 20_000 }, async () => {
  const authenticateEnhanced = (r: { step: number }): { reasonCode: number } => ({ reasonCode: r.step === 0 ? 0 : 0x86 })
  await withTcpBroker({ authenticateEnhanced }, async (port) => {
    const c = await tcpClient(port, 5)
    assert.equal((await c.connect({ clientId: 're', properties: { authenticationMethod: 'tok' } })).reasonCode, 0)
    c.send({ type: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'tok', authenticationData: Buffer.from('expired') } })
    assert.equal((await c.expect('disconnect')).reasonCode, 0x87)
    await c.waitClosed()
  })
})

// An answer's `data` goes into an AUTH or CONNACK: one that is not bytes (a number, an object)
// made the encoder throw in the socket's 'data' handler, and the broker process died.
for (const data of [42, { token: 'x' }, 'text']) {
  test(`v5: an authenticateEnhanced answering data ${JSON.stringify(data)} (not bytes) refuses the CONNECT with CONNACK 0x88 instead of crashing the broker`, { timeout: 20_000 }, async () => {
    const authenticateEnhanced = (() => ({ reasonCode: 0x18, data })) as unknown as BrokerOptions['authenticateEnhanced']
    await withTcpBroker({ authenticateEnhanced, logger: capture([]) }, async (port, broker) => {
      const c = await tcpClient(port, 5)
      assert.equal((await c.connect({ clientId: 'e', properties: { authenticationMethod: 'SCRAM' } })).reasonCode, 0x88)
      await c.waitClosed()
      assert.equal(broker.stats.hookErrors, 1)
    })
  })
}

test('v4: an authenticate answering a user name that is not a string refuses the CONNECT (return code 3): ACL %u and session ownership go by it', { timeout: 20_000 }, async () => {
  const authenticate = (() => ({ ok: true, username: 42 })) as unknown as BrokerOptions['authenticate']
  await withTcpBroker({ authenticate, logger: capture([]) }, async (port, broker) => {
    const c = await tcpClient(port, 4)
    assert.equal((await c.connect({ clientId: 'n' })).reasonCode, 3)
    await c.waitClosed()
    assert.equal(broker.stats.hookErrors, 1)
  })
})
