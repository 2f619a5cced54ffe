import { test, type TestContext } from 'node:test'
import { spawn } from 'node:child_process'
import { Duplex } from 'node:stream'
import { connect as netConnect, type Socket } from 'node:net'
import assert from 'node:assert/strict'
import { waitFor, withTimeout } from '@petrel/test-utils'
import type { ConnectPacket, PetrelError } from '@petrel/wire'
import { connect, createClient, MqttClient, type ClientErrorCode } from '../src/index.js'
import { disconnectReason, scriptedBroker } from './scripted-broker.js'

// The supervisor and MQTT 5 exchanges mosquitto cannot show (enhanced authentication, server
// references, per-attempt CONNECT rewriting), against a scripted MQTT 5 broker on 127.0.0.1.

const fast = { backoff: { initialDelayMs: 20, maxDelayMs: 100, jitter: 0 }, connectTimeoutMs: 3000 }

/** Unhandled rejections while the test runs (its listener is removed after the test). */
function unhandledRejections (t: TestContext): unknown[] {
  const seen: unknown[] = []
  const onUnhandled = (reason: unknown): void => { seen.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.after(() => { process.off('unhandledRejection', onUnhandled) })
  return seen
}

test('beforeConnect rewrites the CONNECT on every attempt (rotating password)', { timeout: 15_000 }, async () => {
  const b = await scriptedBroker(5, (p, link) => {
    if (p.type !== 'connect') return false
    // Only the third token is accepted; the first attempts are refused as bad credentials.
    const ok = p.password?.toString() === 'token-3'
    link.send({ type: 'connack', sessionPresent: false, reasonCode: ok ? 0 : 0x86 })
    if (!ok) link.socket.end()
    return true
  })
  const attempts: number[] = []
  try {
    const c = await connect(b.url, {
      ...fast,
      protocolVersion: 5,
      retryInitialConnect: true,
      beforeConnect: async (packet, attempt) => {
        attempts.push(attempt.attempt)
        return { ...packet, username: 'jwt', password: Buffer.from(`token-${attempt.attempt}`) }
      }
    })
    assert.equal(c.connected, true)
    assert.deepEqual(attempts, [1, 2, 3])
    assert.equal(c.stats().connectFailures, 2)
    await c.end({ force: true })
  } finally {
    await b.close()
  }
})

test('beforeConnect: a rewritten client id is the client\'s from then on (stats label, next attempt); another protocol version or a non-CONNECT is refused before anything is sent', { timeout: 15_000 }, async () => {
  const seen: string[] = []
  const b = await scriptedBroker(5, (p, link) => {
    if (p.type !== 'connect') return false
    seen.push(p.clientId)
    link.send({ type: 'connack', sessionPresent: false, reasonCode: 0 })
    return true
  })
  try {
    const c = await connect(b.url, {
      ...fast,
      protocolVersion: 5,
      clientId: 'configured',
      beforeConnect: (packet, attempt) => ({ ...packet, clientId: `${packet.clientId.split('#')[0] ?? ''}#${attempt.attempt}` })
    })
    assert.equal(c.clientId, 'configured#1')
    assert.match(c.metrics(), /client_id="configured#1"/)
    c.reconnect()
    await waitFor(() => seen.length === 2 && c.connected, { timeoutMs: 3000, message: 'second connection' })
    assert.deepEqual(seen, ['configured#1', 'configured#1'], 'attempt numbers restart after a connection; the hook sees the id it set')
    assert.equal(c.clientId, 'configured#1')
    await c.end({ force: true })

    for (const hook of [(p: ConnectPacket): ConnectPacket => ({ ...p, protocolVersion: 4 }), (): ConnectPacket => ({ type: 'pingreq' }) as unknown as ConnectPacket]) {
      const refused = await connect(b.url, { ...fast, protocolVersion: 5, reconnect: false, beforeConnect: hook }).catch((e: unknown) => e)
      assert.equal((refused as { code?: string }).code, 'PETREL_ERR_INVALID_ARGUMENT', String(refused))
    }
    assert.equal(seen.length, 2, 'no CONNECT sent for the refused rewrites')
  } finally {
    await b.close()
  }
})

test('beforeConnect runs within the connect timeout; a failing one closes the socket it was given', { timeout: 15_000 }, async () => {
  const b = await scriptedBroker(5, () => true) // accepts the TCP connection, never answers
  try {
    const closed = (i: number): Promise<void> => new Promise((resolve) => {
      const s = b.links[i]?.socket
      if (s === undefined || s.destroyed) resolve()
      else s.once('close', () => { resolve() })
    })
    const thrown = await connect(b.url, { ...fast, reconnect: false, beforeConnect: async () => { throw new Error('token service down') } }).catch((e: unknown) => e)
    assert.match(String(thrown), /token service down/)
    await waitFor(() => b.links.length === 1, { timeoutMs: 2000, message: 'the attempt dialed' })
    await withTimeout(closed(0), 2000, 'the socket of the failed attempt closed')
    const started = performance.now()
    const slow = connect(b.url, {
      ...fast,
      reconnect: false,
      connectTimeoutMs: 300,
      beforeConnect: async (packet) => { await new Promise((resolve) => setTimeout(resolve, 1000)); return packet }
    })
    await assert.rejects(withTimeout(slow, 5000, 'connect()'), { code: 'PETREL_ERR_CONNECT_TIMEOUT' })
    assert.ok(performance.now() - started < 900, 'rejected at the connect timeout, not after the hook')
    await withTimeout(closed(1), 2000, 'the socket of the timed-out attempt closed')
  } finally {
    await b.close()
  }
})

test('a CONNECT the codec refuses (beforeConnect put a wildcard in the will topic) rejects connect() with the codec\'s error, closes the socket, and leaves no unhandled rejection', { timeout: 10_000 }, async (t) => {
  const b = await scriptedBroker(5, () => false) // the CONNECT never reaches it
  const unhandled = unhandledRejections(t)
  // Without a hook, such options are refused before any dial (client.test.ts).
  const beforeConnect = (p: ConnectPacket): ConnectPacket => ({ ...p, will: { topicName: 'w/#', payload: Buffer.from('x'), qos: 0, retain: false } })
  try {
    for (const v of [4, 5] as const) {
      const thrown = await connect(b.url, { ...fast, protocolVersion: v, reconnect: false, beforeConnect }).catch((e: unknown) => e)
      assert.equal((thrown as { code?: string }).code, 'PETREL_ERR_INVALID_PACKET', `v${v}: ${String(thrown)}`)
      assert.match(String(thrown), /wildcard/)
    }
    await waitFor(() => b.links.length === 2 && b.links.every((l) => l.socket.destroyed), { timeoutMs: 2000, message: 'both sockets closed' })
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.deepEqual(unhandled, [])
  } finally {
    await b.close()
  }
})

test('v5 enhanced authentication: AUTH exchange on connect, then re-authentication', { timeout: 15_000 }, async () => {
  const b = await scriptedBroker(5, (p, link) => {
    if (p.type === 'connect') {
      assert.equal(p.properties?.authenticationMethod, 'SCRAM-TEST')
      return link.send({ type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'SCRAM-TEST', authenticationData: Buffer.from('challenge-1') } })
    } else if (p.type === 'auth') {
      const data = p.properties?.authenticationData?.toString()
      if (data === 'answer:challenge-1') link.send({ type: 'connack', sessionPresent: false, reasonCode: 0, properties: { authenticationMethod: 'SCRAM-TEST' } })
      else if (p.reasonCode === 0x19) link.send({ type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'SCRAM-TEST', authenticationData: Buffer.from('challenge-2') } })
      else if (data === 'answer:challenge-2') link.send({ type: 'auth', reasonCode: 0, properties: { authenticationMethod: 'SCRAM-TEST' } })
      return true
    }
    return false
  })
  const challenges: string[] = []
  let c: MqttClient | undefined
  try {
    c = await connect(b.url, {
      ...fast,
      protocolVersion: 5,
      properties: { authenticationMethod: 'SCRAM-TEST', authenticationData: Buffer.from('first') },
      auth: (challenge) => {
        challenges.push(challenge.authenticationData?.toString() ?? '')
        return Buffer.from(`answer:${challenge.authenticationData?.toString() ?? ''}`)
      }
    })
    assert.deepEqual(challenges, ['challenge-1'])
    await withTimeout(c.reauthenticate(Buffer.from('again')), 5000, 're-authentication')
    assert.deepEqual(challenges, ['challenge-1', 'challenge-2'])
    const reauth = (): Array<number | undefined> => (b.links[0]?.packets ?? []).filter((p) => p.type === 'auth').map((p) => p.type === 'auth' ? p.reasonCode : undefined)
    assert.deepEqual(reauth(), [0x18, 0x19, 0x18], 'continue, re-authenticate, continue')
    // Two at once: one exchange after the other, both settle.
    await withTimeout(Promise.all([c.reauthenticate(Buffer.from('a')), c.reauthenticate(Buffer.from('b'))]), 5000, 'two re-authentications')
    assert.deepEqual(challenges, ['challenge-1', 'challenge-2', 'challenge-2', 'challenge-2'])
    assert.deepEqual(reauth(), [0x18, 0x19, 0x18, 0x19, 0x18, 0x19, 0x18])
  } finally {
    await c?.end({ force: true })
    await b.close()
  }
})

test('v5: a re-authentication under way when end() is called, or asked for after, rejects with PETREL_ERR_CLIENT_CLOSED (as every other call), not as a lost link', { timeout: 15_000 }, async () => {
  // The broker never answers the AUTH 0x19.
  const b = await scriptedBroker(5, (p, link) => {
    if (p.type === 'connect') return link.send({ type: 'connack', sessionPresent: false, reasonCode: 0, properties: { authenticationMethod: 'M' } })
    return p.type === 'auth'
  })
  try {
    for (const force of [false, true]) {
      const c = await connect(b.url, { ...fast, protocolVersion: 5, properties: { authenticationMethod: 'M' }, auth: () => Buffer.from('a') })
      const pending = c.reauthenticate(Buffer.from('x')).then(() => 'resolved', (e: PetrelError) => e.code)
      const queued = c.reauthenticate(Buffer.from('y')).then(() => 'resolved', (e: PetrelError) => e.code)
      await waitFor(() => b.links.at(-1)?.packets.some((p) => p.type === 'auth') === true, { timeoutMs: 3000, message: 'AUTH 0x19 sent' })
      await withTimeout(c.end({ force }), 3000, 'end()')
      assert.deepEqual([await pending, await queued], ['PETREL_ERR_CLIENT_CLOSED', 'PETREL_ERR_CLIENT_CLOSED'], `force: ${String(force)}`)
      await assert.rejects(c.reauthenticate(), { code: 'PETREL_ERR_CLIENT_CLOSED' })
    }
  } finally {
    await b.close()
  }
})

test('v5: re-authentication uses the Authentication Method of the CONNECT sent (beforeConnect may change it) [MQTT-4.12.1-1]', { timeout: 15_000 }, async () => {
  const b = await scriptedBroker(5, (p, link) => {
    if (p.type === 'connect') return link.send({ type: 'connack', sessionPresent: false, reasonCode: 0, properties: { authenticationMethod: p.properties?.authenticationMethod } })
    if (p.type === 'auth' && p.reasonCode === 0x19) return link.send({ type: 'auth', reasonCode: 0, properties: { authenticationMethod: 'NEW' } })
    return false
  })
  let c: MqttClient | undefined
  try {
    c = await connect(b.url, {
      ...fast,
      protocolVersion: 5,
      properties: { authenticationMethod: 'OLD' },
      beforeConnect: (packet) => ({ ...packet, properties: { ...packet.properties, authenticationMethod: 'NEW' } })
    })
    await withTimeout(c.reauthenticate(Buffer.from('again')), 5000, 're-authentication')
    const sent = (b.links[0]?.packets ?? []).filter((p) => p.type === 'auth').map((p) => p.type === 'auth' ? p.properties?.authenticationMethod : undefined)
    assert.deepEqual(sent, ['NEW'])
  } finally {
    await c?.end({ force: true })
    await b.close()
  }
})

test('v5: request() needs no wildcard subscription (a broker with Wildcard Subscription Available 0)', { timeout: 10_000 }, async () => {
  const b = await scriptedBroker(5, (p, link) => {
    if (p.type === 'connect') return link.send({ type: 'connack', sessionPresent: false, reasonCode: 0, properties: { wildcardSubscriptionAvailable: false } })
    // The responder: answers on the response topic with the correlation data.
    if (p.type === 'publish' && p.properties?.responseTopic !== undefined) {
      if (p.qos > 0) link.send({ type: 'puback', packetId: p.packetId as number, reasonCode: 0 })
      return link.send({ type: 'publish', topicName: p.properties.responseTopic, payload: Buffer.from('answer'), qos: 0, retain: false, dup: false, properties: { correlationData: p.properties.correlationData } })
    }
    return false // SUBACK granting the QoS asked for
  })
  try {
    const c = await connect(b.url, { ...fast, protocolVersion: 5, reconnect: false })
    const m = await c.request('svc', 'q', { timeoutMs: 3000 })
    assert.equal(m.payload.toString(), 'answer')
    await c.end({ force: true })
  } finally {
    await b.close()
  }
})

test('server redirect: CONNACK 0x9C with Server Reference is reported and typed', { timeout: 10_000 }, async () => {
  const b = await scriptedBroker(5, (p, link) => p.type === 'connect' &&
    link.send({ type: 'connack', sessionPresent: false, reasonCode: 0x9c, properties: { serverReference: 'other.example:1883' } }))
  try {
    const refs: string[] = []
    const err = await connect(b.url, { ...fast, protocolVersion: 5 }).catch((e: unknown) => e)
    assert.equal((err as { code: ClientErrorCode }).code, 'PETREL_ERR_CONNECTION_REFUSED')
    assert.equal((err as { reasonCode: number }).reasonCode, 0x9c)
    // connect() rejects before a serverReference listener could be added: the error names it.
    assert.match((err as Error).message, /server reference: other\.example:1883/)
    // And on a live connection: DISCONNECT 0x9D with a reference emits the event.
    const live = await scriptedBroker(5, (p, link) => p.type === 'publish' &&
      link.send({ type: 'disconnect', reasonCode: 0x9d, properties: { serverReference: 'moved.example' } }))
    try {
      const c = await connect(live.url, { ...fast, protocolVersion: 5, reconnect: false })
      c.on('serverReference', (e) => { refs.push(`${e.reasonCode.toString(16)} ${e.serverReference}`) })
      const gone = new Promise<string | undefined>((resolve) => { c.once('disconnect', (e) => { resolve(e.error?.code) }) })
      void c.publish('x', 'y').catch(() => {})
      assert.equal(await withTimeout(gone, 5000, 'disconnect'), 'PETREL_ERR_DISCONNECTED_BY_BROKER')
      assert.deepEqual(refs, ['9d moved.example'])
      await c.end({ force: true })
    } finally {
      await live.close()
    }
  } finally {
    await b.close()
  }
})

test('reconnect callback returning false stops the client; pending publishes reject with PETREL_ERR_CLIENT_CLOSED', { timeout: 10_000 }, async () => {
  // QoS 1 publishes are never acked; the link is then cut.
  const b = await scriptedBroker(5, (p) => p.type === 'publish')
  try {
    const asked: number[] = []
    const c = await connect(b.url, { ...fast, protocolVersion: 5, reconnect: (attempt) => { asked.push(attempt); return false } })
    const closed = new Promise<void>((resolve) => { c.once('close', () => { resolve() }) })
    const pending = c.publish('t', 'never acked', { qos: 1 })
    await waitFor(() => (b.links[0]?.packets ?? []).some((p) => p.type === 'publish'), { timeoutMs: 3000, message: 'publish on the wire' })
    for (const l of b.links) l.socket.destroy()
    await assert.rejects(pending, { code: 'PETREL_ERR_CLIENT_CLOSED' })
    await withTimeout(closed, 3000, 'close event')
    assert.deepEqual(asked, [1])
    assert.equal(c.isClosed, true)
    assert.equal(b.links.length, 1, 'no second connection')
  } finally {
    await b.close()
  }
})

test('disconnect() stays offline and queues; reconnect() resumes and sends the queued publish', { timeout: 10_000 }, async () => {
  const b = await scriptedBroker(5, () => false) // CONNACK, PUBACK
  try {
    const c = await connect(b.url, { ...fast, protocolVersion: 5 })
    c.disconnect()
    await waitFor(() => !c.connected, { timeoutMs: 2000, message: 'offline' })
    const p = c.publish('q', 'while offline', { qos: 1 })
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.equal(b.links.length, 1, 'no reconnect while disconnected on purpose')
    assert.equal(b.links[0]?.packets.at(-1)?.type, 'disconnect', 'a DISCONNECT went out')
    c.reconnect()
    const r = await withTimeout(p, 5000, 'queued publish after reconnect')
    assert.equal(r.reasonCode, 0)
    assert.equal(b.links.length, 2)
    await c.end({ force: true })
  } finally {
    await b.close()
  }
})

/**
 * Runs `body` (an ES module body; `client` is this package's index, `scriptedBroker` the helper)
 * in a fresh Node process and resolves with its stdout and how long it took to exit: a timer or
 * socket the client left behind keeps a process alive.
 */
async function runAlone (body: string, timeoutMs: number): Promise<{ out: string, code: number | null, ms: number }> {
  const head = `import * as client from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)}\n` +
    `import { scriptedBroker } from ${JSON.stringify(new URL('./scripted-broker.js', import.meta.url).href)}\n`
  const started = performance.now()
  const child = spawn(process.execPath, ['--input-type=module', '-e', head + body], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
  const code = await new Promise<number | null>((resolve) => { child.on('exit', (c) => { resolve(c) }) })
  clearTimeout(timer)
  return { out: out.trim(), code, ms: performance.now() - started }
}

test('disconnect() during the first connect() (from beforeConnect, or from a reconnect listener) rejects it with PETREL_ERR_ABORTED and closes the client, as end() would: no socket or timer left behind, later calls reject with PETREL_ERR_CLIENT_CLOSED, reconnect() dials nothing', { timeout: 20_000 }, async () => {
  const b = await scriptedBroker(5, () => false)
  try {
    // connect() hands out no client before it resolves: the client is made as connect() makes it.
    let hooked = 0
    const c: MqttClient = new MqttClient([new URL(b.url)], {
      ...fast,
      beforeConnect: (p) => { if (hooked++ === 0) c.disconnect(); return p }
    })
    const closed = new Promise((resolve) => { c.once('close', resolve) })
    await assert.rejects(withTimeout(c.start(true), 3000, 'connect()'), { code: 'PETREL_ERR_ABORTED' })
    // connect() rejected: nobody holds this client to reconnect() it, so it is closed, not offline.
    assert.equal(c.isClosed, true, 'closed')
    assert.equal(await withTimeout(closed, 1000, 'close event'), undefined, 'closed on purpose')
    await assert.rejects(c.publish('t', 'x', { qos: 1 }), { code: 'PETREL_ERR_CLIENT_CLOSED' })
    await waitFor(() => b.links.every((l) => l.socket.destroyed), { timeoutMs: 2000, message: 'the attempt\'s socket closed' })
    c.reconnect()
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal(c.connected, false)
    assert.equal(b.links.length, 1, 'reconnect() dialled nothing')
    await withTimeout(c.end(), 1000, 'end() after')
  } finally {
    await b.close()
  }
  // Long connect timeout and backoff: a timer left running would hold the process for 20 s.
  const slow = '{ connectTimeoutMs: 20000, backoff: { initialDelayMs: 20000, jitter: 0 }, retryInitialConnect: true }'
  for (const [name, body] of [
    ['beforeConnect', `const b = await scriptedBroker(5, () => false)
      let c
      c = new client.MqttClient([new URL(b.url)], { ...${slow}, beforeConnect: (p) => { c.disconnect(); return p } })
      await c.start(true).catch((e) => { console.log(e.code) })
      await b.close()`],
    ['reconnect listener', `const c = new client.MqttClient([new URL('mqtt://127.0.0.1:1')], ${slow})
      c.on('error', () => {})
      c.on('reconnect', () => { c.disconnect() })
      await c.start(true).catch((e) => { console.log(e.code) })`]
  ] as const) {
    const r = await runAlone(body, 15_000)
    assert.equal(r.out, 'PETREL_ERR_ABORTED', name)
    assert.equal(r.code, 0, name)
    assert.ok(r.ms < 5000, `${name}: the process exited after ${Math.round(r.ms)} ms`)
  }
})

test('a reconnect listener calling end() ends the backoff wait (the process exits at once); one calling reconnect() dials at once', { timeout: 20_000 }, async () => {
  const r = await runAlone(`const c = client.createClient('mqtt://127.0.0.1:1', { backoff: { initialDelayMs: 20000, jitter: 0 } })
    c.on('error', () => {})
    c.on('reconnect', () => { void c.end().then(() => { console.log('ended') }) })`, 15_000)
  assert.equal(r.out, 'ended')
  assert.ok(r.ms < 5000, `the process exited after ${Math.round(r.ms)} ms`)
  // The first CONNECT is refused; the listener asks for the next attempt now, not in 20 s.
  const b = await scriptedBroker(5, (p, link) => {
    if (p.type !== 'connect' || link.index > 0) return false
    link.send({ type: 'connack', sessionPresent: false, reasonCode: 0x88 })
    link.socket.end()
    return true
  })
  const c = createClient(b.url, { backoff: { initialDelayMs: 20_000, jitter: 0 } })
  try {
    c.on('error', () => {})
    let delays = 0
    c.on('reconnect', () => { if (delays++ === 0) c.reconnect() })
    await waitFor(() => c.connected, { timeoutMs: 3000, message: 'connected without waiting out the delay' })
    assert.equal(b.links.length, 2)
  } finally {
    await c.end({ force: true })
    await b.close()
  }
})

test('v5: request() is bounded by its timeout and signal while offline too (the response subscription waits for a link); a signal aborted already rejects at once, nothing sent', { timeout: 20_000 }, async () => {
  const b = await scriptedBroker(5, () => false)
  try {
    const c = await connect(b.url, { ...fast, protocolVersion: 5 })
    await assert.rejects(c.request('svc/a', 'x', { signal: AbortSignal.abort() }), { name: 'AbortError' })
    c.disconnect()
    await waitFor(() => !c.connected, { timeoutMs: 2000, message: 'offline' })
    const started = performance.now()
    await assert.rejects(withTimeout(c.request('svc/a', 'x', { timeoutMs: 300 }), 3000, 'request()'), { code: 'PETREL_ERR_REQUEST_TIMEOUT' })
    assert.ok(performance.now() - started < 1000, `rejected after ${Math.round(performance.now() - started)} ms`)
    const ac = new AbortController()
    const aborted = c.request('svc/a', 'x', { signal: ac.signal })
    setTimeout(() => { ac.abort(new Error('stop')) }, 100)
    await assert.rejects(withTimeout(aborted, 3000, 'request()'), { message: 'stop' })
    assert.deepEqual(b.links.flatMap((l) => l.packets.map((p) => p.type)), ['connect', 'disconnect'], 'nothing sent for them')
    await c.end({ force: true })
  } finally {
    await b.close()
  }
})

test('a graceful end() with nothing to send, while an attempt is still dialling or in beforeConnect, ends it at once (no CONNECT was sent: no will to keep from the broker)', { timeout: 20_000 }, async () => {
  const b = await scriptedBroker(5, () => false)
  try {
    let hooked = false
    // A token fetch that never answers: the attempt sits in beforeConnect.
    const c = createClient(b.url, { ...fast, connectTimeoutMs: 10_000, beforeConnect: async () => { hooked = true; return await new Promise<never>(() => {}) } })
    await waitFor(() => hooked, { timeoutMs: 3000, message: 'beforeConnect called' })
    const started = performance.now()
    await withTimeout(c.end({ timeoutMs: 3000 }), 5000, 'end()')
    assert.ok(performance.now() - started < 500, `end() took ${Math.round(performance.now() - started)} ms`)
    assert.equal(c.isClosed, true)
    await waitFor(() => b.links.every((l) => l.socket.destroyed || l.socket.readableEnded), { timeoutMs: 2000, message: 'the attempt\'s socket closed' })
    assert.deepEqual(b.links.flatMap((l) => l.packets), [], 'nothing sent')
  } finally {
    await b.close()
  }
})

test('a graceful end() with nothing to send, while the broker has not answered the CONNECT, does not wait for the CONNACK: DISCONNECT goes out at once, pending connect() rejects with PETREL_ERR_CLIENT_CLOSED, the process exits', { timeout: 30_000 }, async (t) => {
  // A broker that reads the CONNECT and never answers nor closes.
  const b = await scriptedBroker(5, () => true)
  const unhandled = unhandledRejections(t)
  try {
    for (const how of ['createClient', 'connect'] as const) {
      const before = b.links.length
      const c = new MqttClient([new URL(b.url)], { ...fast, connectTimeoutMs: 60_000 })
      c.on('error', () => {})
      const first = c.start(how === 'connect')
      const firstSettled = first.then(() => 'resolved', (e: PetrelError) => e.code)
      await waitFor(() => b.links[before]?.packets.length === 1, { timeoutMs: 3000, message: 'CONNECT written' })
      const started = performance.now()
      // The timeout is far longer than the test's bound: end() must not spend it on the CONNACK.
      await withTimeout(c.end({ timeoutMs: 60_000 }), 5000, `${how}: end()`)
      assert.ok(performance.now() - started < 4000, `${how}: end() took ${Math.round(performance.now() - started)} ms`)
      assert.equal(c.isClosed, true, how)
      assert.equal(await firstSettled, how === 'connect' ? 'PETREL_ERR_CLIENT_CLOSED' : 'resolved', how)
      // DISCONNECT before the CONNACK (§3.1.4): a broker accepting the CONNECT late publishes no will.
      assert.equal(disconnectReason(b.links[before]), 0, `${how}: the attempt was ended with DISCONNECT`)
      await waitFor(() => b.links[before]?.socket.readableEnded === true || b.links[before]?.socket.destroyed === true, { timeoutMs: 3000, message: `${how}: the attempt's socket closed` })
      assert.equal(b.links.length, before + 1, `${how}: no other attempt`)
    }
    assert.deepEqual(unhandled, [])
  } finally {
    await b.close()
  }
  // Nothing left behind: the process exits by itself well within the connect timeout and backoff.
  const r = await runAlone(`const b = await scriptedBroker(5, () => true)
    const c = new client.MqttClient([new URL(b.url)], { connectTimeoutMs: 60000, backoff: { initialDelayMs: 60000 } })
    const first = c.start(true).catch((e) => e.code)
    await new Promise((resolve) => setTimeout(resolve, 200))
    await c.end({ timeoutMs: 60000 })
    console.log(await first)
    await b.close()`, 20_000)
  assert.equal(r.out, 'PETREL_ERR_CLIENT_CLOSED')
  assert.equal(r.code, 0)
  assert.ok(r.ms < 8000, `the process exited after ${Math.round(r.ms)} ms`)
})

test('v5: a graceful end() does not wait for a link to carry the response subscription of a request() made while offline: it ends at once, nothing is sent for it, the request rejects with PETREL_ERR_CLIENT_CLOSED', { timeout: 30_000 }, async (t) => {
  const unhandled = unhandledRejections(t)
  const slow = { backoff: { initialDelayMs: 20_000, jitter: 0 }, connectTimeoutMs: 20_000 }
  // No broker at all: a graceful end() would wait its whole timeout for a link.
  const gone = await scriptedBroker(5, () => false)
  const { port } = new URL(gone.url)
  await gone.close()
  const c = createClient(`mqtt://127.0.0.1:${port}`, slow)
  c.on('error', () => {})
  try {
    await withTimeout(new Promise((resolve) => { c.once('reconnect', resolve) }), 3000, 'first attempt refused')
    const req = c.request('svc/a', 'x', { timeoutMs: 60_000 }).then(() => 'resolved', (e: PetrelError) => e.code)
    const started = performance.now()
    await withTimeout(c.end({ timeoutMs: 60_000 }), 5000, 'end()')
    assert.ok(performance.now() - started < 3000, `end() took ${Math.round(performance.now() - started)} ms`)
    assert.equal(await req, 'PETREL_ERR_CLIENT_CLOSED')
  } finally {
    await c.end({ force: true })
  }
  // A broker there (the first CONNECT refused, the client in its backoff): end() dials no link for it.
  const b = await scriptedBroker(5, (p, link) => {
    if (p.type !== 'connect' || link.index > 0) return false
    link.send({ type: 'connack', sessionPresent: false, reasonCode: 0x88 })
    link.socket.end()
    return true
  })
  const d = createClient(b.url, slow)
  d.on('error', () => {})
  try {
    await withTimeout(new Promise((resolve) => { d.once('reconnect', resolve) }), 3000, 'first attempt refused')
    const req = d.request('svc/a', 'x', { timeoutMs: 60_000 }).then(() => 'resolved', (e: PetrelError) => e.code)
    await withTimeout(d.end({ timeoutMs: 60_000 }), 5000, 'end()')
    assert.equal(await req, 'PETREL_ERR_CLIENT_CLOSED')
    assert.deepEqual(b.links.flatMap((l) => l.packets.map((p) => p.type)), ['connect'], 'no link dialled for the request')
  } finally {
    await d.end({ force: true })
    await b.close()
  }
  assert.deepEqual(unhandled, [])
})

test('end() called from a message handler sends the ack of that message (auto-ack: PUBACK / PUBREC) before DISCONNECT: the broker does not send it again', { timeout: 20_000 }, async () => {
  for (const qos of [1, 2] as const) {
    const b = await scriptedBroker(5, () => false)
    try {
      const c = await connect(b.url, { ...fast, protocolVersion: 5 })
      let ending: Promise<void> | undefined
      await c.subscribe('t', { qos }, () => { ending = c.end() })
      b.links[0]?.send({ type: 'publish', topicName: 't', payload: Buffer.from('x'), qos, retain: false, dup: false, packetId: 9 })
      await waitFor(() => ending !== undefined, { timeoutMs: 3000, message: 'handler called' })
      await withTimeout(ending as Promise<void>, 3000, 'end()')
      const tail = b.links[0]?.packets.slice(-2).map((p) => p.type === 'puback' || p.type === 'pubrec' ? `${p.type} ${p.packetId}` : p.type)
      assert.deepEqual(tail, [`${qos === 1 ? 'puback' : 'pubrec'} 9`, 'disconnect'], `QoS ${qos}`)
    } finally {
      await b.close()
    }
  }
})

test('a connect, reconnect or disconnect listener that throws is reported (PETREL_ERR_HANDLER_FAILED) and the supervisor carries on: one link open, no attempt failed, no unhandled rejection', { timeout: 20_000 }, async (t) => {
  // The second CONNECT is refused, so that a reconnect event comes.
  const b = await scriptedBroker(5, (p, link) => {
    if (p.type !== 'connect' || link.index !== 1) return false
    link.send({ type: 'connack', sessionPresent: false, reasonCode: 0x88 })
    link.socket.end()
    return true
  })
  const unhandled = unhandledRejections(t)
  try {
    const c = await connect(b.url, { ...fast, protocolVersion: 5 })
    const errors: string[] = []
    c.on('error', (e) => { errors.push(`${e.code} ${e.message}`) })
    for (const event of ['connect', 'reconnect', 'disconnect'] as const) c.on(event, () => { throw new Error(`${event} listener bug`) })
    c.reconnect()
    await waitFor(() => b.links.length === 3 && c.connected, { timeoutMs: 5000, message: 'connected again after the refusal' })
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal(b.links.filter((l) => !l.socket.destroyed && !l.socket.readableEnded).length, 1, 'one link open')
    assert.equal(c.stats().connectFailures, 1, 'only the refusal failed')
    for (const event of ['connect', 'reconnect', 'disconnect']) {
      assert.ok(errors.some((e) => e.startsWith(`PETREL_ERR_HANDLER_FAILED a '${event}' listener threw`)), `${event}: ${errors.join('; ')}`)
    }
    assert.equal((await withTimeout(c.publish('t', 'x', { qos: 1 }), 3000, 'publish')).reasonCode, 0)
    await c.end()
    assert.deepEqual(unhandled, [])
  } finally {
    await b.close()
  }
})

test('a reconnect callback that throws closes the client, saying why (PETREL_ERR_HANDLER_FAILED), with no unhandled rejection', { timeout: 10_000 }, async (t) => {
  const unhandled = unhandledRejections(t)
  // A listening port that closes every connection: each attempt fails at once.
  const b = await scriptedBroker(5, (_, link) => { link.socket.destroy(); return true })
  try {
    const c = createClient(b.url, { ...fast, reconnect: () => { throw new Error('decider bug') } })
    c.on('error', () => {})
    const closed = new Promise<PetrelError | undefined>((resolve) => { c.once('close', resolve) })
    const pending = c.publish('t', 'x', { qos: 1 })
    const why = await withTimeout(closed, 3000, 'close event')
    assert.equal(why?.code, 'PETREL_ERR_HANDLER_FAILED')
    assert.equal((why?.cause as Error).message, 'decider bug')
    await assert.rejects(pending, { code: 'PETREL_ERR_CLIENT_CLOSED' })
    assert.equal(c.isClosed, true)
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.deepEqual(unhandled, [])
  } finally {
    await b.close()
  }
})

test('a stream given as transport carries one connection: when it ends (the broker\'s close, or disconnect()) the client closes at once instead of redialling the dead stream', { timeout: 20_000 }, async () => {
  const b = await scriptedBroker(5, () => false)
  const clients: MqttClient[] = []
  try {
    const { port } = new URL(b.url)
    for (const how of ['broker closes', 'disconnect()'] as const) {
      const socket = netConnect(Number(port), '127.0.0.1')
      await new Promise((resolve) => { socket.once('connect', resolve) })
      const c = await connect(undefined, { ...fast, transport: socket })
      clients.push(c)
      c.on('error', () => {})
      const closed = new Promise<PetrelError | undefined>((resolve) => { c.once('close', resolve) })
      const pending = c.publish('t', 'x', { qos: 1 }).catch((e: PetrelError) => e.code)
      if (how === 'broker closes') b.links.at(-1)?.socket.destroy()
      else c.disconnect()
      await withTimeout(closed, 2000, `${how}: close event`)
      assert.equal(c.isClosed, true, how)
      const code = await withTimeout(pending, 2000, `${how}: the queued publish`)
      assert.ok(code === 'PETREL_ERR_CLIENT_CLOSED' || code === undefined, `${how}: ${String(code)}`)
    }
  } finally {
    for (const c of clients) await c.end({ force: true })
    await b.close()
  }
})

test('reconnect() from a disconnect listener dials at once, not after the backoff delay', { timeout: 10_000 }, async () => {
  const b = await scriptedBroker(5, () => false)
  try {
    const c = await connect(b.url, { ...fast, backoff: { initialDelayMs: 20_000, jitter: 0 } })
    try {
      const delays: number[] = []
      c.on('reconnect', (e) => { delays.push(e.delayMs) })
      c.once('disconnect', () => { c.reconnect() })
      b.links[0]?.socket.destroy()
      await waitFor(() => b.links.length === 2 && c.connected, { timeoutMs: 3000, message: 'connected again' })
      assert.deepEqual(delays, [], 'no backoff wait')
    } finally {
      await c.end({ force: true })
    }
  } finally {
    await b.close()
  }
})

test('reconnect(), disconnect() and end() in every state (connecting, connected, backoff, offline, ended), alone and together: each settles, and the client ends where asked', { timeout: 60_000 }, async (t) => {
  // connecting: the broker never answers the CONNECT; backoff: it refuses it, once.
  let mode: 'answer' | 'silent' | 'refuse' = 'answer'
  const b = await scriptedBroker(5, (p, link) => {
    if (p.type !== 'connect' || mode === 'answer') return false
    if (mode === 'refuse') {
      mode = 'answer'
      link.send({ type: 'connack', sessionPresent: false, reasonCode: 0x88 })
      link.socket.end()
    }
    return true
  })
  const unhandled = unhandledRejections(t)
  const slow = { backoff: { initialDelayMs: 20_000, jitter: 0 }, connectTimeoutMs: 20_000 }
  const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
  try {
    for (const state of ['connecting', 'connected', 'backoff', 'offline', 'ended'] as const) {
      for (const call of ['reconnect', 'disconnect', 'end', 'end force', 'end twice', 'disconnect end', 'reconnect end'] as const) {
        mode = state === 'connecting' ? 'silent' : state === 'backoff' ? 'refuse' : 'answer'
        let c: MqttClient
        if (state === 'backoff') {
          c = createClient(b.url, slow)
          c.on('error', () => {})
          await withTimeout(new Promise((resolve) => { c.once('reconnect', resolve) }), 3000, 'backoff')
        } else if (state === 'connecting') {
          const before = b.links.length
          c = createClient(b.url, slow)
          c.on('error', () => {})
          await waitFor(() => b.links[before]?.packets.length === 1, { timeoutMs: 3000, message: 'CONNECT written' })
        } else {
          c = await connect(b.url, slow)
          if (state === 'offline') c.disconnect()
          if (state === 'ended') await c.end()
        }
        const what = `${state}: ${call}`
        try {
          const ending: Array<Promise<void>> = []
          if (call === 'reconnect' || call === 'reconnect end') c.reconnect()
          if (call === 'disconnect' || call === 'disconnect end') c.disconnect()
          if (call === 'end' || call.endsWith(' end')) ending.push(c.end({ timeoutMs: 300 }))
          if (call === 'end force') ending.push(c.end({ force: true }))
          if (call === 'end twice') ending.push(c.end({ timeoutMs: 300 }), c.end({ timeoutMs: 300 }))
          await withTimeout(Promise.all(ending), 2000, what)
          await sleep(50)
          const ended = call !== 'reconnect' && call !== 'disconnect'
          assert.equal(c.isClosed, ended || state === 'ended', what)
          if (!ended && state !== 'ended') {
            // reconnect() dials at once (not after the 20 s delay); disconnect() stays offline.
            if (call === 'reconnect' && state !== 'connecting') await waitFor(() => c.connected, { timeoutMs: 2000, message: what })
            if (call === 'disconnect') assert.equal(c.connected, false, what)
          }
        } finally {
          await c.end({ force: true })
        }
      }
    }
    assert.deepEqual(unhandled, [])
  } finally {
    await b.close()
  }
})

test('a process that connects, works and ends exits at once: no timer or socket left behind (keepalive, a pending request, an iterator, a throttle)', { timeout: 20_000 }, async () => {
  const r = await runAlone(`const b = await scriptedBroker(5, () => false)
    const c = await client.connect(b.url, { keepalive: 1, throttle: { messagesPerSecond: 1000 } })
    const sub = await c.subscribe('s/#', { qos: 1 })
    const reading = (async () => { for await (const m of sub) void m })()
    await c.publish('s/1', 'x', { qos: 2 })
    const req = c.request('nobody/answers', 'x', { timeoutMs: 60000 }).catch((e) => e.code)
    await new Promise((resolve) => setTimeout(resolve, 100))
    await c.end()
    console.log(await req)
    await reading
    await b.close()`, 15_000)
  assert.equal(r.out, 'PETREL_ERR_CLIENT_CLOSED')
  assert.equal(r.code, 0)
  assert.ok(r.ms < 5000, `the process exited after ${Math.round(r.ms)} ms`)
})

test('a transport stream of the app\'s that ignores destroy() (and never finishes a write or end()) does not hang end() nor hold the process: what the client holds is bounded', { timeout: 60_000 }, async () => {
  // The stream answers the CONNECT with a CONNACK (or, as a factory's, never), then takes no
  // write, end() or destroy() to completion. It holds no socket: whatever keeps the process
  // alive after end() is the client's.
  const stream = `(answer) => {
    let writes = 0
    return new Duplex({
      read () {},
      write (chunk, encoding, callback) {
        if (++writes === 1 && answer) { this.push(Buffer.from([0x20, 3, 0, 0, 0])); callback() }
      },
      final () {},
      destroy () {}
    })
  }`
  for (const [how, options, end] of [
    ['connected, graceful', '{ transport: stubborn(true), keepalive: 1 }', '{ timeoutMs: 300 }'],
    ['connected, force', '{ transport: stubborn(true), keepalive: 1 }', '{ force: true }'],
    ['connecting (a factory)', '{ transport: () => stubborn(false), connectTimeoutMs: 60000 }', '{ timeoutMs: 300 }']
  ] as const) {
    const r = await runAlone(`import { Duplex } from 'node:stream'
      const stubborn = ${stream}
      const c = ${how.startsWith('connecting') ? 'client.createClient(undefined, ' : 'await client.connect(undefined, '}${options})
      c.on('error', () => {})
      if (!${how.startsWith('connecting')}) await c.publish('t', 'x')
      const pending = c.publish('t', 'y', { qos: 1 }).catch((e) => e.code)
      await new Promise((resolve) => setTimeout(resolve, 100))
      const started = performance.now()
      await c.end(${end})
      console.log(await pending)
      console.log(Math.round(performance.now() - started))
      process.on('exit', () => { console.log(Math.round(performance.now() - started)) })`, 30_000)
    const [pending, ended, exited] = r.out.split('\n')
    assert.equal(r.code, 0, how)
    assert.equal(pending, 'PETREL_ERR_CLIENT_CLOSED', how)
    // end(): its timeout and the 1 s wait for the broker's close at most; the exit right after.
    assert.ok(Number(ended) < 3000, `${how}: end() resolved after ${ended ?? '?'} ms`)
    assert.ok(Number(exited) - Number(ended) < 1000, `${how}: the process exited ${exited ?? '?'} ms after end() was called`)
  }
})

test('end() and end({ force: true }) against a broker that stopped reading: the socket left writing the DISCONNECT does not hold the process open (it exits once end() resolved, not 10 s later)', { timeout: 60_000 }, async () => {
  // Accepts the connection, then never reads again (its socket stays open until the test ends).
  const b = await scriptedBroker(5, (p, link) => {
    if (p.type !== 'connect') return false
    link.send({ type: 'connack', sessionPresent: false, reasonCode: 0 })
    link.socket.pause()
    return true
  })
  try {
    for (const how of ['{ timeoutMs: 300 }', '{ force: true }']) {
      // 40 MiB of QoS 0: far more than the socket buffers hold, so the DISCONNECT cannot be written.
      const r = await runAlone(`const c = await client.connect(${JSON.stringify(b.url)}, { protocolVersion: 5 })
        const big = Buffer.alloc(1024 * 1024)
        for (let i = 0; i < 40; i++) c.publish('t', big).catch(() => {})
        await new Promise((resolve) => setTimeout(resolve, 300))
        const started = performance.now()
        await c.end(${how})
        console.log('ended')
        process.on('exit', () => { console.log(Math.round(performance.now() - started)) })`, 30_000)
      const [ended, afterEnd] = r.out.split('\n')
      assert.equal(ended, 'ended', how)
      assert.equal(r.code, 0, how)
      // end() itself: the timeout and the 1 s close wait at most; the exit follows it.
      assert.ok(Number(afterEnd) < 5000, `${how}: the process exited ${afterEnd ?? '?'} ms after end() was called`)
    }
  } finally {
    await b.close()
  }
})

test('a graceful end() sends what QoS 0 publishes left in the transport\'s buffers before its DISCONNECT, waiting (within its timeout) for a transport slow to take them', { timeout: 30_000 }, async () => {
  const b = await scriptedBroker(5, () => false)
  try {
    const { port } = new URL(b.url)
    // A transport that holds the last publish (the 41st 1 MiB write) for 2 s: a slow link.
    let big = 0
    const transport = async (): Promise<Duplex> => {
      const socket = netConnect(Number(port), '127.0.0.1')
      await new Promise((resolve) => socket.once('connect', resolve))
      const d = new Duplex({
        read () {},
        write (chunk: Buffer, _encoding, callback) {
          if (chunk.length >= 1024 * 1024 && ++big === 41) setTimeout(() => { socket.write(chunk, callback) }, 2000)
          else socket.write(chunk, callback)
        },
        final (callback) { socket.end(callback) },
        destroy (err, callback) { socket.destroy(); callback(err) }
      })
      socket.on('data', (chunk: Buffer) => d.push(chunk))
      socket.on('end', () => d.push(null))
      socket.on('error', (err) => d.destroy(err))
      return d
    }
    const c = await connect(undefined, { ...fast, protocolVersion: 5, transport })
    const payload = Buffer.alloc(1024 * 1024)
    // Each resolves once written: the last one is still in the transport when end() is called.
    await Promise.all(Array.from({ length: 41 }, async () => await c.publish('t', payload)))
    await withTimeout(c.end({ timeoutMs: 10_000 }), 15_000, 'end()')
    await waitFor(() => b.links[0]?.packets.at(-1)?.type === 'disconnect', { timeoutMs: 5000, message: 'DISCONNECT, last' })
    assert.equal(b.links[0]?.packets.filter((p) => p.type === 'publish').length, 41, 'every publish arrived')
  } finally {
    await b.close()
  }
})

test('a transport factory that ignores its signal is still bounded by the connect timeout; the stream it hands over late is closed', { timeout: 10_000 }, async () => {
  const b = await scriptedBroker(5, () => false)
  try {
    const { port } = new URL(b.url)
    let late: Socket | undefined
    const started = performance.now()
    await assert.rejects(withTimeout(connect(undefined, {
      ...fast,
      connectTimeoutMs: 300,
      // Opens a socket only after 800 ms, whatever the signal says.
      transport: async () => await new Promise<Socket>((resolve) => {
        setTimeout(() => { late = netConnect(Number(port), '127.0.0.1'); resolve(late) }, 800)
      })
    }), 3000, 'connect()'), { code: 'PETREL_ERR_CONNECT_TIMEOUT' })
    assert.ok(performance.now() - started < 700, `rejected after ${Math.round(performance.now() - started)} ms`)
    await waitFor(() => late?.destroyed === true, { timeoutMs: 2000, message: 'the late stream closed' })
  } finally {
    await b.close()
  }
})

test('a connect timeout while beforeConnect has not returned says so, not "no CONNACK" (nothing was sent to the broker)', { timeout: 10_000 }, async () => {
  const b = await scriptedBroker(5, () => false)
  try {
    // A token fetch that never answers.
    const connecting = connect(b.url, { ...fast, connectTimeoutMs: 300, reconnect: false, beforeConnect: async () => await new Promise<never>(() => {}) })
    await assert.rejects(connecting, (err: PetrelError) => {
      assert.equal(err.code, 'PETREL_ERR_CONNECT_TIMEOUT')
      assert.match(err.message, /beforeConnect/)
      assert.doesNotMatch(err.message, /CONNACK/)
      return true
    })
    assert.deepEqual(b.links.flatMap((l) => l.packets), [], 'nothing sent')
  } finally {
    await b.close()
  }
})
