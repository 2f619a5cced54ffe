import { test, before, after } from 'node:test'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import assert from 'node:assert/strict'
import { encode, type ConnectPacket, type ConnectProperties, type Packet, type PetrelError } from '@petrel/wire'
import { FaultProxy, hasProgram, progressCutter, requirePeer, startMosquitto, waitFor, withTimeout, type Mosquitto } from '@petrel/test-utils'
import { connect, createClient, type MqttClient, type ClientOptions, type ReconnectEvent, type Subscription } from '../src/index.js'
import { disconnectReason, scriptedBroker, type ScriptedLink } from './scripted-broker.js'

// Supervisor behaviour under faults: cuts, restarts, blackholes, stalls, malformed input.

let broker: Mosquitto | undefined
before(async () => {
  if (hasProgram('mosquitto')) broker = await startMosquitto({ extraConfig: 'max_inflight_messages 100\nmax_queued_messages 100000' })
})
after(async () => { await broker?.stop() })

const fast: ClientOptions = { backoff: { initialDelayMs: 20, maxDelayMs: 200 }, connectTimeoutMs: 3000 }
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

for (const [qos, pubV, subV, label] of [[1, 4, 5, 'no loss'], [2, 5, 4, 'exactly once'], [2, 4, 5, 'exactly once']] as const) {
  test(`10,000 QoS ${qos} messages across 20 random cuts (publisher v${pubV}, subscriber v${subV}): ${label}`, { timeout: 90_000 }, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const b = broker as Mosquitto
    const proxy = await FaultProxy.start({ target: { host: b.host, port: b.port }, delayMs: 1 })
    const clients: MqttClient[] = []
    try {
      const topic = `faults/${qos}/${pubV}/${process.pid}`
      const N = 10_000
      const counts = new Map<string, number>()
      let delivered = 0
      const cutter = progressCutter(proxy, N, 20)
      // Both ends go through the proxy and are cut together; persistent sessions keep the flows.
      const sub = await connect(proxy.url, { ...fast, clientId: `sub-${qos}-${pubV}-${process.pid}`, clean: false, protocolVersion: subV })
      clients.push(sub)
      await sub.subscribe(topic, { qos }, (m) => {
        const k = m.payload.toString()
        counts.set(k, (counts.get(k) ?? 0) + 1)
        delivered++
        cutter.check(counts.size)
      })
      const pub = await connect(proxy.url, { ...fast, clientId: `pub-${qos}-${pubV}-${process.pid}`, clean: false, protocolVersion: pubV })
      clients.push(pub)
      const all = Promise.all(Array.from({ length: N }, async (_, i) => await pub.publish(topic, String(i), { qos })))
      await withTimeout(all, 60_000, 'publishes')
      await waitFor(() => counts.size === N, { timeoutMs: 30_000, message: `received ${counts.size} of ${N}` })
      assert.equal(cutter.made(), 20, 'all 20 cuts happened during the transfer')
      assert.ok(pub.stats().connects >= 2 && sub.stats().connects >= 2, 'both ends reconnected')
      for (let i = 0; i < N; i++) assert.ok(counts.has(String(i)), `message ${i} lost`)
      if (qos === 2) {
        // Let late duplicates (if any) arrive before judging exactly-once.
        await sleep(300)
        const dupes = [...counts.entries()].filter(([, n]) => n !== 1)
        assert.deepEqual(dupes.slice(0, 5), [], 'each QoS 2 message arrives exactly once')
        assert.equal(delivered, N)
      }
    } finally {
      await Promise.all(clients.map(async (c) => { await c.end({ force: true }) }))
      await proxy.close()
    }
  })
}

test('subscriptions survive a broker restart (session lost: automatic resubscribe)', { timeout: 30_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const m = await startMosquitto({ persistence: true })
  try {
    for (const v of [4, 5] as const) {
      const c = await connect(m.url, { ...fast, protocolVersion: v })
      const got: string[] = []
      await c.subscribe('restart/t', { qos: 1 }, (msg) => { got.push(msg.payload.toString()) })
      const connected = new Promise<boolean>((resolve) => { c.once('connect', (e) => { resolve(e.sessionPresent) }) })
      await m.restart()
      const present = await withTimeout(connected, 10_000, 'reconnect')
      assert.equal(present, false, 'a clean session does not survive the restart')
      const p = await connect(m.url, { protocolVersion: v })
      await waitFor(async () => {
        await p.publish('restart/t', 'after', { qos: 1 })
        return got.includes('after')
      }, { timeoutMs: 5000, message: 'message after restart' })
      await p.end()
      await c.end()
    }
  } finally {
    await m.stop()
  }
})

test('a publisher and a subscriber across a broker restart: persistent sessions lose nothing; with sessions lost, what the publisher sent before the subscriber resubscribed is reported (v5: 0x10 No matching subscribers), not lost silently', { timeout: 60_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const m = await startMosquitto({ persistence: true })
  try {
    for (const [v, clean] of [[5, false], [4, false], [5, true]] as const) {
      const topic = `race/${v}/${String(clean)}`
      const opts: ClientOptions = { ...fast, protocolVersion: v, clean }
      const sub = await connect(m.url, { ...opts, clientId: `race-sub-${v}-${String(clean)}` })
      const got = new Set<string>()
      await sub.subscribe(topic, { qos: 1 }, (msg) => { got.add(msg.payload.toString()) })
      const pub = await connect(m.url, { ...opts, clientId: `race-pub-${v}-${String(clean)}` })
      const results = new Map<string, number>()
      let n = 0
      const pending: Array<Promise<void>> = []
      const timer = setInterval(() => {
        const k = String(n++)
        pending.push(pub.publish(topic, k, { qos: 1 }).then((r) => { results.set(k, r.reasonCode) }))
      }, 5)
      try {
        await sleep(200)
        const back = Promise.all([sub, pub].map(async (c) => { await new Promise((resolve) => { c.once('connect', resolve) }) }))
        await m.restart() // both links drop together; both clients race back
        await withTimeout(back, 10_000, 'both reconnected')
        await sleep(300)
      } finally {
        clearInterval(timer)
      }
      await withTimeout(Promise.all(pending), 10_000, 'publishes')
      await waitFor(() => [...results].every(([k, rc]) => got.has(k) || rc !== 0), { timeoutMs: 5000, message: 'deliveries' })
      const missing = [...results].filter(([k]) => !got.has(k))
      if (!clean) {
        assert.deepEqual(missing, [], `v${v}, persistent sessions: nothing lost`)
      } else {
        // The restart lost the subscription until the resubscribe: the broker said so for each.
        assert.ok(missing.every(([, rc]) => rc === 0x10), `v${v}, clean: ${JSON.stringify(missing.slice(0, 5))}`)
      }
      assert.equal(sub.connected && pub.connected, true)
      await pub.end()
      await sub.end()
    }
  } finally {
    await m.stop()
  }
})

test('a blackholed link is detected within keepalive + ping timeout and recovered', { timeout: 30_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const b = broker as Mosquitto
  const proxy = await FaultProxy.start({ target: { host: b.host, port: b.port } })
  const c = await connect(proxy.url, { ...fast, keepalive: 1, pingTimeoutMs: 500 })
  try {
    const start = performance.now()
    const lost = new Promise<string | undefined>((resolve) => { c.once('disconnect', (e) => { resolve(e.error?.code) }) })
    proxy.blackhole(true)
    const code = await withTimeout(lost, 5000, 'dead link detection')
    const took = performance.now() - start
    assert.equal(code, 'PETREL_ERR_PING_TIMEOUT')
    assert.ok(took <= 1000 + 500 + 600, `detected after ${Math.round(took)} ms`)
    assert.equal(c.stats().pingTimeouts, 1)
    proxy.blackhole(false)
    await waitFor(() => c.connected, { timeoutMs: 5000, message: 'reconnected' })
    await c.publish('bh/t', 'ok', { qos: 1 })
  } finally {
    await c.end({ force: true })
    await proxy.close()
  }
})

test('publishing into a stalled broker: memory stays bounded, publish waits (block) or rejects (reject)', { timeout: 40_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const b = broker as Mosquitto
  const proxy = await FaultProxy.start({ target: { host: b.host, port: b.port } })
  const payload = Buffer.alloc(4096, 7)
  const blocking = await connect(proxy.url, { ...fast, keepalive: 0, maxQueuedMessages: 200 })
  const rejecting = await connect(proxy.url, { ...fast, keepalive: 0, maxQueuedMessages: 200, queuePolicy: 'reject' })
  try {
    proxy.stall()
    // block: 20,000 x 4 KiB = 80 MiB asked for (one shared payload buffer); the client holds at most
    // the queue bound plus socket buffers in bytes, and a small object per waiting publish.
    global.gc?.()
    const before = process.memoryUsage()
    let resolved = 0
    const ps: Array<Promise<unknown>> = []
    for (let i = 0; i < 20_000; i++) ps.push(blocking.publish('stall/t', payload).then(() => { resolved++ }))
    await sleep(500)
    global.gc?.()
    const after = process.memoryUsage()
    const s = blocking.stats()
    assert.ok(s.queued <= 200, `queued ${s.queued}`)
    assert.ok(s.blocked > 10_000, `blocked ${s.blocked}: the rest wait for room`)
    assert.ok(resolved < 20_000 - 200, `publish waits while the broker is stalled (${resolved} resolved)`)
    assert.ok(s.bytesOut < 16 * 1024 * 1024, `written ${s.bytesOut}`)
    const grewMiB = (after.arrayBuffers - before.arrayBuffers) / 1048576
    const heapMiB = (after.heapUsed - before.heapUsed) / 1048576
    assert.ok(grewMiB < 24, `buffers grew ${grewMiB.toFixed(1)} MiB for 80 MiB of waiting publishes`)
    assert.ok(heapMiB < 40, `heap grew ${heapMiB.toFixed(1)} MiB`)

    let rejected: unknown
    for (let i = 0; i < 20_000 && rejected === undefined; i++) {
      rejecting.publish('stall/t', payload).catch((err: unknown) => { rejected ??= err })
      if (i % 100 === 0) await sleep(1)
    }
    await waitFor(() => rejected !== undefined, { timeoutMs: 5000, message: 'a rejection' })
    assert.equal((rejected as { code: string }).code, 'PETREL_ERR_QUEUE_FULL')
    assert.ok(rejecting.stats().queued <= 200)

    proxy.resume()
    await withTimeout(Promise.all(ps), 30_000, 'blocked publishes complete after resume')
    assert.equal(resolved, 20_000)
  } finally {
    await blocking.end({ force: true })
    await rejecting.end({ force: true })
    await proxy.close()
  }
})

test('abort removes a publish that has not reached the wire', { timeout: 20_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const b = broker as Mosquitto
  const proxy = await FaultProxy.start({ target: { host: b.host, port: b.port } })
  const c = await connect(proxy.url, { ...fast, keepalive: 0, inflightWindow: 1 })
  try {
    proxy.stall()
    const onWire = new AbortController()
    const first = c.publish('ab/t', 'first', { qos: 1, signal: onWire.signal })
    const ac = new AbortController()
    const second = c.publish('ab/t', 'second', { qos: 1, signal: ac.signal })
    const reason = new Error('changed my mind')
    ac.abort(reason)
    await assert.rejects(second, (err) => err === reason)
    assert.equal(c.stats().queued, 0)
    // Written already: the abort is ignored, the publish completes on the broker's PUBACK.
    onWire.abort(new Error('too late'))
    proxy.resume()
    const r = await withTimeout(first, 5000, 'first publish')
    assert.ok(r.reasonCode < 0x80, `completed by the PUBACK (0x${r.reasonCode.toString(16)})`)
    assert.equal(c.stats().publishesSent, 1)
  } finally {
    await c.end({ force: true })
    await proxy.close()
  }
})

test('a malformed packet from the broker: v5 DISCONNECT 0x81, reconnect, the unacked publish is replayed with DUP', { timeout: 20_000 }, async () => {
  const broker = await scriptedBroker(5, (p, link) => {
    if (p.type !== 'publish' || link.index !== 0) return false
    link.socket.write(Buffer.from([0x30, 0x02, 0x00, 0x05])) // topic length 5 in a 2-byte body
    return true
  })
  const c = await connect(broker.url, { ...fast, protocolVersion: 5, clean: false })
  try {
    const r = await withTimeout(c.publish('mal/t', 'kept', { qos: 1 }), 10_000, 'publish completes after reconnect')
    assert.equal(r.reasonCode, 0)
    assert.equal(disconnectReason(broker.links[0]), 0x81)
    const resent = broker.links[1]?.packets.find((p) => p.type === 'publish')
    assert.equal(resent?.type === 'publish' ? resent.dup : undefined, true)
    assert.equal(resent?.type === 'publish' ? resent.payload.toString() : undefined, 'kept')
    assert.equal(c.stats().protocolErrors, 1, 'the malformed packet counts as a protocol error')
  } finally {
    await c.end({ force: true })
    await broker.close()
  }
})

test('supervisor: an accept-then-drop broker makes the backoff grow; a connection that stays up resets it', { timeout: 20_000 }, async () => {
  // A broker that accepts every CONNECT, then drops the link after `upMs`.
  let upMs = 0
  const broker = await scriptedBroker(5, (p, link) => {
    if (p.type !== 'connect') return false
    link.send({ type: 'connack', sessionPresent: false, reasonCode: 0 })
    setTimeout(() => { link.socket.destroy() }, upMs)
    return true
  })
  const c = await connect(broker.url, { protocolVersion: 5, backoff: { initialDelayMs: 20, maxDelayMs: 160, jitter: 0 } })
  const delays: number[] = []
  c.on('reconnect', (e) => { delays.push(e.delayMs) })
  try {
    await waitFor(() => delays.length >= 5, { timeoutMs: 5000, message: `delays ${delays.join(',')}` })
    // Each connection lived ~0 ms, never longer than the delay before it: no reset, x2 up to the cap.
    assert.deepEqual(delays.slice(0, 5), [20, 40, 80, 160, 160])
    upMs = 400 // outlives the last delay (160 ms): the next failure starts from the initial delay again
    const n = delays.length
    await waitFor(() => delays.length >= n + 3, { timeoutMs: 5000, message: `delays ${delays.join(',')}` })
    // The connection dialled right after `upMs` changed may still be one of the short ones.
    assert.ok(delays.slice(n).includes(20), `reset after a long-lived connection: ${delays.join(',')}`)
    assert.equal(delays.at(-1), 20)
  } finally {
    await c.end({ force: true })
    await broker.close()
  }
})

/** Records a client's failure signals: 'error' and 'reconnect' events. */
function failures (c: MqttClient): { errors: PetrelError[], reconnects: ReconnectEvent[] } {
  const f = { errors: [] as PetrelError[], reconnects: [] as ReconnectEvent[] }
  c.on('error', (e) => { f.errors.push(e) })
  c.on('reconnect', (e) => { f.reconnects.push(e) })
  return f
}

test('reconnect() and disconnect() during a connection attempt abandon it: no failure counted, no backoff, no error', { timeout: 20_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const b = broker as Mosquitto
  const proxy = await FaultProxy.start({ target: { host: b.host, port: b.port } })
  let connects = 0
  // A stalled proxy holds the CONNECT: the attempt stays under way until we act.
  proxy.stall()
  const c = createClient(proxy.url, {
    protocolVersion: 5,
    connectTimeoutMs: 5000,
    backoff: { initialDelayMs: 300, maxDelayMs: 3000, jitter: 0 },
    trace: (direction, p) => { if (direction === 'out' && p.type === 'connect') connects++ }
  })
  const f = failures(c)
  try {
    await waitFor(() => connects === 1, { timeoutMs: 3000, message: 'first CONNECT written' })
    // reconnect(): the attempt is dropped and the next one dials at once.
    c.reconnect()
    await waitFor(() => connects === 2, { timeoutMs: 1000, message: 'second CONNECT, without a backoff wait' })
    assert.equal(c.stats().connectFailures, 0)
    assert.equal(f.errors.length, 0, `errors: ${f.errors.map((e) => e.message).join('; ')}`)
    assert.equal(f.reconnects.length, 0, 'no reconnect (backoff) event')
    // disconnect(): the attempt is dropped and the client stays offline, with nothing reported.
    c.disconnect()
    await sleep(500)
    assert.equal(connects, 2, 'no new attempt while disconnected')
    assert.equal(c.stats().connectFailures, 0)
    assert.equal(f.errors.length, 0, `errors: ${f.errors.map((e) => e.message).join('; ')}`)
    assert.equal(f.reconnects.length, 0, 'no reconnect (backoff) event')
    // The backoff did not grow: a real failure now waits the initial delay, as attempt 2 of 2.
    proxy.refuse(true)
    proxy.resume()
    c.reconnect()
    await waitFor(() => f.reconnects.length === 1, { timeoutMs: 3000, message: 'a refused attempt' })
    assert.deepEqual(f.reconnects.map((e) => [e.attempt, e.delayMs]), [[2, 300]])
    assert.equal(c.stats().connectFailures, 1)
    assert.equal(f.errors.length, 1)
    proxy.refuse(false)
    await waitFor(() => c.connected, { timeoutMs: 3000, message: 'connected' })
    assert.equal(c.stats().connectFailures, 1)
  } finally {
    await c.end({ force: true })
    await proxy.close()
  }
})

test('disconnect(), reconnect(), end() and end({ force: true }) while the CONNACK is on its way send DISCONNECT: the broker, which accepted the connection, does not publish the will', { timeout: 40_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const b = broker as Mosquitto
  // 300 ms each way: the broker accepts the CONNECT 300 ms after it was written, its CONNACK is
  // back 300 ms later; the call comes between.
  const proxy = await FaultProxy.start({ target: { host: b.host, port: b.port }, delayMs: 300 })
  try {
    for (const v of [4, 5] as const) {
      for (const how of ['disconnect', 'reconnect', 'end', 'end force'] as const) {
        const topic = `will-mid/${v}/${how.replace(' ', '-')}/${process.pid}`
        const watcher = await connect(b.url, { protocolVersion: v })
        const wills: string[] = []
        await watcher.subscribe(topic, { qos: 1 }, (m) => { wills.push(m.payload.toString()) })
        let written = 0
        const c = createClient(proxy.url, {
          protocolVersion: v,
          will: { topic, payload: 'gone', qos: 1 },
          trace: (direction, p) => { if (direction === 'out' && p.type === 'connect' && written === 0) written = performance.now() }
        })
        c.on('error', () => {})
        try {
          await waitFor(() => written > 0, { timeoutMs: 3000, message: 'CONNECT written' })
          await sleep(450 - (performance.now() - written))
          assert.equal(c.connected, false, `v${v} ${how}: still waiting for the CONNACK`)
          if (how === 'disconnect') c.disconnect()
          else if (how === 'reconnect') c.reconnect()
          // Graceful with nothing to send: DISCONNECT at once, not after the CONNACK.
          else if (how === 'end') await c.end()
          else await c.end({ force: true })
          await sleep(1000)
          assert.deepEqual(wills, [], `v${v} ${how}: no will`)
        } finally {
          await c.end({ force: true })
          await watcher.end()
        }
      }
    }
  } finally {
    await proxy.close()
  }
})

test('a graceful end() while reconnecting waits for the link: the queued publish completes, then DISCONNECT (between attempts, and mid-attempt)', { timeout: 30_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const b = broker as Mosquitto
  const proxy = await FaultProxy.start({ target: { host: b.host, port: b.port } })
  const topic = `end-wait/${process.pid}`
  const got: string[] = []
  const s = await connect(b.url, { protocolVersion: 5 })
  await s.subscribe(topic, { qos: 1 }, (m) => { got.push(m.payload.toString()) })
  const clients: MqttClient[] = []
  try {
    for (const when of ['between attempts', 'mid-attempt'] as const) {
      const out: string[] = []
      const c = await connect(proxy.url, {
        protocolVersion: 5,
        connectTimeoutMs: 10_000,
        backoff: { initialDelayMs: 200, maxDelayMs: 2000, jitter: 0 },
        trace: (direction, p) => { if (direction === 'out') out.push(p.type) }
      })
      clients.push(c)
      c.on('error', () => {})
      const waiting = new Promise<void>((resolve) => { c.once('reconnect', () => { resolve() }) })
      if (when === 'between attempts') proxy.refuse(true)
      else proxy.stall() // the next attempt's CONNECT is held
      proxy.cut()
      await withTimeout(waiting, 3000, 'link lost')
      if (when === 'mid-attempt') await waitFor(() => out.filter((p) => p === 'connect').length === 2, { timeoutMs: 3000, message: 'second CONNECT written' })
      const pub = c.publish(topic, when, { qos: 1 })
      const ended = c.end({ timeoutMs: 8000 })
      await sleep(300)
      assert.equal(c.isClosed, false, `${when}: end() waits for the link`)
      proxy.refuse(false)
      proxy.resume()
      const r = await withTimeout(pub, 8000, `${when}: queued publish`)
      assert.equal(r.reasonCode, 0)
      await withTimeout(ended, 8000, `${when}: end()`)
      assert.equal(out.at(-1), 'disconnect', `${when}: DISCONNECT last (${out.join(',')})`)
      await waitFor(() => got.includes(when), { timeoutMs: 3000, message: `${when}: delivered` })
    }
  } finally {
    for (const c of clients) await c.end({ force: true })
    await s.end({ force: true })
    await proxy.close()
  }
})

test('a graceful end() after the backoff has grown redials at its first step, not the grown delay: the broker back, the queued publish and end() complete at once', { timeout: 30_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const b = broker as Mosquitto
  const proxy = await FaultProxy.start({ target: { host: b.host, port: b.port } })
  const c = await connect(proxy.url, { protocolVersion: 5, backoff: { initialDelayMs: 50, maxDelayMs: 30_000, jitter: 0 } })
  c.on('error', () => {})
  try {
    // 50, 100, ... 1600 ms: the delay after the next failure would be 3.2 s.
    const grown = new Promise<void>((resolve) => { c.on('reconnect', (e) => { if (e.delayMs >= 1600) resolve() }) })
    proxy.refuse(true)
    proxy.cut()
    await withTimeout(grown, 10_000, 'backoff grown')
    const pub = c.publish('end-grown/t', 'x', { qos: 1 })
    const ended = c.end({ timeoutMs: 10_000 })
    await sleep(300) // end() dialled at once, refused: the supervisor waits again
    proxy.refuse(false)
    const back = performance.now()
    assert.ok((await withTimeout(pub, 10_000, 'queued publish')).reasonCode < 0x80) // 0x10: no subscribers
    await withTimeout(ended, 10_000, 'end()')
    const took = performance.now() - back
    assert.ok(took < 1500, `end() completed ${Math.round(took)} ms after the broker came back`)
  } finally {
    await c.end({ force: true })
    await proxy.close()
  }
})

test('a graceful end() whose link never comes finishes at its timeout; pending requests reject with PETREL_ERR_CLIENT_CLOSED', { timeout: 20_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const b = broker as Mosquitto
  const proxy = await FaultProxy.start({ target: { host: b.host, port: b.port } })
  const c = await connect(proxy.url, { protocolVersion: 5, connectTimeoutMs: 10_000, backoff: { initialDelayMs: 100, maxDelayMs: 200, jitter: 0 } })
  c.on('error', () => {})
  try {
    const waiting = new Promise<void>((resolve) => { c.once('reconnect', () => { resolve() }) })
    proxy.stall()
    proxy.cut()
    await withTimeout(waiting, 3000, 'link lost')
    const pub = c.publish('end-never/t', 'x', { qos: 1 })
    const rejected = assert.rejects(pub, { code: 'PETREL_ERR_CLIENT_CLOSED' }) // it rejects while end() runs
    const started = performance.now()
    await withTimeout(c.end({ timeoutMs: 600 }), 5000, 'end()')
    const took = performance.now() - started
    // The timeout, then at most 1 s for the broker to close the attempt ended with DISCONNECT.
    assert.ok(took >= 550 && took < 3000, `end() took ${Math.round(took)} ms`)
    await rejected
    assert.equal(c.isClosed, true)
  } finally {
    await c.end({ force: true })
    await proxy.close()
  }
})

test('end({ force: true }) during a graceful end() closes at once: both settle, pending requests reject with PETREL_ERR_CLIENT_CLOSED', { timeout: 30_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const b = broker as Mosquitto
  const proxy = await FaultProxy.start({ target: { host: b.host, port: b.port } })
  const clients: MqttClient[] = []
  try {
    for (const when of ['waiting for acks', 'waiting for the link'] as const) {
      proxy.resume()
      const c = await connect(proxy.url, { protocolVersion: 5, connectTimeoutMs: 20_000, backoff: { initialDelayMs: 100, maxDelayMs: 200, jitter: 0 } })
      clients.push(c)
      c.on('error', () => {})
      proxy.stall()
      if (when === 'waiting for the link') {
        const waiting = new Promise<void>((resolve) => { c.once('reconnect', () => { resolve() }) })
        proxy.cut()
        await withTimeout(waiting, 3000, 'link lost')
      }
      const pub = c.publish('end-force/t', 'x', { qos: 1 })
      pub.catch(() => {})
      const graceful = c.end({ timeoutMs: 20_000 })
      await sleep(200)
      assert.equal(c.isClosed, false, `${when}: the graceful end() waits`)
      const started = performance.now()
      await withTimeout(Promise.all([c.end({ force: true }), graceful]), 2000, `${when}: both end() calls`)
      assert.ok(performance.now() - started < 500, `${when}: settled after ${Math.round(performance.now() - started)} ms`)
      await assert.rejects(pub, { code: 'PETREL_ERR_CLIENT_CLOSED' })
      assert.equal(c.isClosed, true)
    }
  } finally {
    for (const c of clients) await c.end({ force: true })
    await proxy.close()
  }
})

test('a graceful end() resolves once the broker has closed the link: a client taking the session over at once gets nothing again', { timeout: 30_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const b = broker as Mosquitto
  // Latency between the first client and the broker: its last PUBACK and DISCONNECT are still on
  // their way when end() has written them.
  const proxy = await FaultProxy.start({ target: { host: b.host, port: b.port }, delayMs: 150 })
  const clients: MqttClient[] = []
  try {
    for (const v of [4, 5] as const) {
      const id = `linger-${v}-${process.pid}`
      const topic = `linger/${v}/${process.pid}`
      const session: ClientOptions = { protocolVersion: v, clientId: id, clean: false, sessionExpiryInterval: 60 }
      const got: string[] = []
      const a = await connect(proxy.url, session)
      clients.push(a)
      await a.subscribe(topic, { qos: 1 }, (m) => { got.push(m.payload.toString()) })
      const p = await connect(b.url, { protocolVersion: v })
      clients.push(p)
      await p.publish(topic, 'once', { qos: 1 })
      await waitFor(() => got.length === 1, { timeoutMs: 3000, message: 'delivered' })
      await a.end()
      assert.equal(proxy.connections, 0, `v${v}: the link is closed when end() resolves`)
      // Straight to the broker: this CONNECT overtakes anything still in the proxy.
      const again = createClient(b.url, { ...session, unroutedHoldMs: 0 })
      clients.push(again)
      const redelivered: string[] = []
      again.on('unrouted', (m) => { redelivered.push(m.payload.toString()) })
      await waitFor(() => again.connected, { timeoutMs: 3000, message: 'connected again' })
      await sleep(400)
      assert.deepEqual(redelivered, [], `v${v}: nothing redelivered`)
      assert.equal(again.stats().messagesReceived, 0)
      await again.end()
      // force still closes at once, without waiting for the broker.
      const f = await connect(proxy.url, { protocolVersion: v })
      clients.push(f)
      const started = performance.now()
      await f.end({ force: true })
      assert.ok(performance.now() - started < 100, `v${v}: force took ${Math.round(performance.now() - started)} ms`)
    }
    // A graceful end() waiting for the broker's close (here it never comes) is cut short by force.
    const g = await connect(proxy.url, { protocolVersion: 5 })
    clients.push(g)
    proxy.stall()
    let settled = false
    const graceful = g.end().then(() => { settled = true })
    await sleep(200)
    assert.equal(settled, false, 'the graceful end() waits for the close')
    const started = performance.now()
    await withTimeout(Promise.all([g.end({ force: true }), graceful]), 2000, 'both end() calls')
    assert.ok(performance.now() - started < 300, `settled after ${Math.round(performance.now() - started)} ms`)
  } finally {
    for (const c of clients) await c.end({ force: true })
    await proxy.close()
  }
})

// --- a broker that breaks the protocol ---------------------------------------------------------

/**
 * The client publishes QoS 1 to `bad/t` on a persistent session; on the first connection the broker
 * answers that PUBLISH with `bad` instead of PUBACK. The client must leave with `expected.reasonCode`
 * (in a v5 DISCONNECT; 3.1.1 just closes), report `expected.code`, reconnect, and complete the publish
 * by replaying it (DUP) on the next connection.
 */
async function expectProtocolError (version: 4 | 5, bad: Buffer, expected: { code: string, reasonCode: number },
  options: ClientOptions = {}, prepare?: (c: MqttClient) => Promise<void>): Promise<ScriptedLink[]> {
  const broker = await scriptedBroker(version, (p, link) => {
    if (p.type !== 'publish' || p.topicName !== 'bad/t' || link.index !== 0) return false
    link.socket.write(bad)
    return true
  })
  const errors: PetrelError[] = []
  let c: MqttClient | undefined
  try {
    c = await connect(broker.url, { ...fast, protocolVersion: version, clean: false, ...options })
    c.on('disconnect', (e) => { if (e.error !== undefined) errors.push(e.error) })
    await prepare?.(c)
    const r = await withTimeout(c.publish('bad/t', 'kept', { qos: 1 }), 10_000, 'publish completes after reconnect')
    assert.equal(r.reasonCode, 0)
    assert.equal(disconnectReason(broker.links[0]), version === 5 ? expected.reasonCode : null, 'how the client left the first link')
    assert.deepEqual(errors.slice(0, 1).map((e) => [e.code, e.reasonCode]), [[expected.code, expected.reasonCode]], errors[0]?.message)
    const resent = broker.links[1]?.packets.find((p) => p.type === 'publish')
    assert.equal(resent?.type === 'publish' ? `${resent.payload.toString()} dup=${String(resent.dup)}` : undefined, 'kept dup=true')
    assert.equal(c.stats().protocolErrors, 1, 'one connection closed for a protocol error')
    assert.match(c.metrics(), /^petrel_client_protocol_errors_total\{client_id="[^"]*"\} 1$/m)
    return broker.links
  } finally {
    await c?.end({ force: true })
    await broker.close()
  }
}

test('v5: a PUBLISH with Topic Alias 0 [MQTT-3.3.2-8], or above our Topic Alias Maximum [MQTT-3.3.2-11]: DISCONNECT 0x94, reconnect, replay', { timeout: 30_000 }, async () => {
  // QoS 0 to "t", Topic Alias 0, payload "x" (the encoder refuses to write it).
  await expectProtocolError(5, Buffer.from([0x30, 0x08, 0x00, 0x01, 0x74, 0x03, 0x23, 0x00, 0x00, 0x78]),
    { code: 'PETREL_ERR_TOPIC_ALIAS_INVALID', reasonCode: 0x94 })
  const aliased = encode({ type: 'publish', topicName: 'a/b', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } }, 5)
  await expectProtocolError(5, aliased, { code: 'PETREL_ERR_CLIENT_PROTOCOL_ERROR', reasonCode: 0x94 }, { topicAliasMaximum: 2 })
})

test('v5: a PUBLISH with an empty topic name and a topic alias never mapped (§3.3.2.3.4): DISCONNECT 0x82, reconnect, replay', { timeout: 30_000 }, async () => {
  const unmapped = encode({ type: 'publish', topicName: '', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 9, properties: { topicAlias: 1 } }, 5)
  await expectProtocolError(5, unmapped, { code: 'PETREL_ERR_CLIENT_PROTOCOL_ERROR', reasonCode: 0x82 }, { topicAliasMaximum: 5 })
})

test('a SUBACK / UNSUBACK with more or fewer reason codes than topic filters: v5 DISCONNECT 0x82 (3.1.1 closes), reconnect, the request is resent and completes', { timeout: 30_000 }, async () => {
  for (const v of [5, 4] as const) {
    let unsubacks = 0
    const broker = await scriptedBroker(v, (p, link) => {
      if (p.type === 'subscribe' && link.index === 0) {
        link.socket.write(encode({ type: 'suback', packetId: p.packetId, reasonCodes: [1] }, v))
        return true
      }
      if (p.type === 'unsubscribe' && v === 5 && unsubacks++ === 0) {
        link.socket.write(encode({ type: 'unsuback', packetId: p.packetId, reasonCodes: [0, 0, 0] }, v))
        return true
      }
      return false
    })
    const errors: PetrelError[] = []
    let c: MqttClient | undefined
    try {
      c = await connect(broker.url, { ...fast, protocolVersion: v, clean: false })
      c.on('disconnect', (e) => { if (e.error !== undefined) errors.push(e.error) })
      const sub = await withTimeout(c.subscribe(['x/a', 'x/b'], { qos: 1 }), 10_000, 'subscribe completes after reconnect')
      assert.deepEqual(sub.reasonCodes, [1, 1], `v${v}`)
      assert.equal(disconnectReason(broker.links[0]), v === 5 ? 0x82 : null, `v${v}: how the client left the first link`)
      assert.deepEqual(errors.map((e) => [e.code, e.reasonCode]), [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x82]], `v${v}`)
      const resent = broker.links[1]?.packets.find((p) => p.type === 'subscribe')
      assert.deepEqual(resent?.type === 'subscribe' ? resent.subscriptions.map((s) => s.topicFilter) : undefined, ['x/a', 'x/b'])
      if (v === 5) {
        await withTimeout(sub.unsubscribe(), 10_000, 'unsubscribe completes after reconnect')
        assert.equal(disconnectReason(broker.links[1]), 0x82, 'UNSUBACK with 3 codes for 2 filters')
        const again = broker.links[2]?.packets.find((p) => p.type === 'unsubscribe')
        assert.deepEqual(again?.type === 'unsubscribe' ? again.topicFilters : undefined, ['x/a', 'x/b'])
      }
      assert.equal(c.stats().protocolErrors, v === 5 ? 2 : 1, `v${v}: connections closed for a protocol error`)
    } finally {
      await c?.end({ force: true })
      await broker.close()
    }
  }
})

test('3.1.1: a broker breaking the protocol is left without DISCONNECT, but the acks owed for the messages read before it still go out', { timeout: 20_000 }, async () => {
  // One chunk: the SUBACK, a QoS 1 message, then a CONNACK, which a connected client never expects.
  const broker = await scriptedBroker(4, (p, link) => {
    if (p.type !== 'subscribe' || link.index !== 0) return false
    link.socket.write(Buffer.concat([
      encode({ type: 'suback', packetId: p.packetId, reasonCodes: [1] }, 4),
      encode({ type: 'publish', topicName: 'x/1', payload: Buffer.from('m'), qos: 1, retain: false, dup: false, packetId: 7 }, 4),
      encode({ type: 'connack', sessionPresent: false, reasonCode: 0 }, 4)
    ]))
    return true
  })
  let c: MqttClient | undefined
  try {
    c = await connect(broker.url, { ...fast, protocolVersion: 4 })
    const errors: PetrelError[] = []
    c.on('disconnect', (e) => { if (e.error !== undefined) errors.push(e.error) })
    const got: string[] = []
    await c.subscribe('x/#', { qos: 1 }, (m) => { got.push(m.topic) })
    await withTimeout(waitFor(() => broker.links.length >= 2), 10_000, 'the reconnect')
    await sleep(50)
    assert.deepEqual(got, ['x/1'])
    assert.deepEqual(errors.map((e) => e.code), ['PETREL_ERR_CLIENT_PROTOCOL_ERROR'])
    const first = broker.links[0]?.packets.filter((p) => p.type !== 'connect' && p.type !== 'subscribe')
    assert.deepEqual(first?.map((p) => p.type === 'puback' ? `puback ${p.packetId}` : p.type), ['puback 7'], 'the PUBACK went out; no DISCONNECT under 3.1.1')
  } finally {
    await c?.end({ force: true })
    await broker.close()
  }
})

test('a CONNACK with Session Present after a Clean Start is a protocol error [MQTT-3.2.2-2] [MQTT-3.2.2-4]: v5 DISCONNECT 0x82 (3.1.1 closes), reconnect, no publish lost', { timeout: 30_000 }, async () => {
  for (const v of [5, 4] as const) {
    // v5 sends Clean Start only until the first accepted connection, so the broker lies on the
    // first one; 3.1.1 sends Clean Session every time, so it lies on a reconnect after a cut.
    const lieOn = v === 5 ? 0 : 1
    const broker = await scriptedBroker(v, (p, link) => {
      if (p.type === 'connect' && link.index === lieOn) {
        link.socket.write(encode({ type: 'connack', sessionPresent: true, reasonCode: 0 }, v))
        return true
      }
      if (p.type === 'publish' && v === 4 && link.index === 0) { link.socket.destroy(); return true }
      return false
    })
    const errors: PetrelError[] = []
    const c = createClient(broker.url, { ...fast, protocolVersion: v })
    c.on('reconnect', (e) => { errors.push(e.error) })
    try {
      const r = await withTimeout(c.publish('sp/t', 'kept', { qos: 1 }), 10_000, 'publish completes')
      assert.equal(r.reasonCode, 0)
      const lied = broker.links[lieOn]
      assert.equal(lied?.packets[0]?.type === 'connect' ? lied.packets[0].cleanStart : undefined, true, `v${v}: the CONNECT asked for a clean start`)
      assert.equal(disconnectReason(lied), v === 5 ? 0x82 : null, `v${v}: how the client left the link`)
      assert.ok(!(lied?.packets.some((p) => p.type === 'publish') ?? true), `v${v}: nothing sent on the refused link`)
      const err = errors.find((e) => e.code !== 'PETREL_ERR_CONNECTION_FAILED')
      assert.deepEqual([err?.code, err?.reasonCode], ['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x82], `v${v}: ${errors.map((e) => e.message).join('; ')}`)
      assert.ok(broker.links[lieOn + 1]?.packets.some((p) => p.type === 'publish' && p.payload.toString() === 'kept'), `v${v}: the publish went out on the next link`)
      assert.equal(c.stats().protocolErrors, 1, `v${v}: the refused CONNACK counts as a protocol error`)
    } finally {
      await c.end({ force: true })
      await broker.close()
    }
  }
})

test('v5: a CONNACK assigning an empty Client Identifier is a protocol error (§3.2.2.3.7, [MQTT-3.2.2-16]: an assigned identifier is a new Client Identifier, and an empty one asks for one): DISCONNECT 0x82, reconnect, the id is not adopted', { timeout: 30_000 }, async () => {
  for (const sent of ['mine', ''] as const) {
    // The first CONNACK assigns '', the next one 'assigned' when the CONNECT asked for an id.
    const broker = await scriptedBroker(5, (p, link) => {
      if (p.type !== 'connect') return false
      const id = link.index === 0 ? '' : p.clientId === '' ? 'assigned' : undefined
      link.send({ type: 'connack', sessionPresent: false, reasonCode: 0, properties: id === undefined ? undefined : { assignedClientIdentifier: id } })
      return true
    })
    const errors: PetrelError[] = []
    const c = createClient(broker.url, { ...fast, protocolVersion: 5, clientId: sent })
    c.on('reconnect', (e) => { errors.push(e.error) })
    try {
      const r = await withTimeout(c.publish('aci/t', 'kept', { qos: 1 }), 10_000, 'publish completes')
      assert.equal(r.reasonCode, 0)
      assert.equal(disconnectReason(broker.links[0]), 0x82, `${JSON.stringify(sent)}: how the client left the first link`)
      assert.ok(!(broker.links[0]?.packets.some((p) => p.type === 'publish') ?? true), `${JSON.stringify(sent)}: nothing sent on the refused link`)
      assert.deepEqual(errors.slice(0, 1).map((e) => [e.code, e.reasonCode]), [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x82]], errors[0]?.message)
      const next = broker.links[1]?.packets[0]
      assert.equal(next?.type === 'connect' ? next.clientId : undefined, sent, `${JSON.stringify(sent)}: the next CONNECT carries the id as before`)
      assert.equal(c.clientId, sent === '' ? 'assigned' : 'mine')
      assert.equal(c.stats().protocolErrors, 1)
    } finally {
      await c.end({ force: true })
      await broker.close()
    }
  }
})

test('v5: an AUTH with no exchange in progress, or any AUTH when the CONNECT carried no Authentication Method [MQTT-4.12.0-6]: DISCONNECT 0x82, reconnect, replay', { timeout: 60_000 }, async () => {
  const expected = { code: 'PETREL_ERR_CLIENT_PROTOCOL_ERROR', reasonCode: 0x82 }
  const hook = { auth: () => Buffer.from('answer') }
  // No method in the CONNECT: AUTH Success, and AUTH Continue even though an auth hook could answer it.
  await expectProtocolError(5, encode({ type: 'auth', reasonCode: 0 }, 5), expected)
  await expectProtocolError(5, encode({ type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'M', authenticationData: Buffer.from('c') } }, 5), expected, hook)
  // With a method (and no re-authentication asked for): AUTH Success out of the blue.
  await expectProtocolError(5, encode({ type: 'auth', reasonCode: 0, properties: { authenticationMethod: 'M' } }, 5), expected,
    { ...hook, properties: { authenticationMethod: 'M' } })
})

test('v5: a packet larger than the Maximum Packet Size our CONNECT advertised (maximumPacketSize or properties.maximumPacketSize) [MQTT-3.1.2-24]: DISCONNECT 0x95, reconnect, replay', { timeout: 30_000 }, async () => {
  const big = encode({ type: 'publish', topicName: 'big/t', payload: Buffer.alloc(200, 0x61), qos: 0, retain: false, dup: false }, 5)
  for (const options of [{ maximumPacketSize: 128 }, { properties: { maximumPacketSize: 128 } }]) {
    const links = await expectProtocolError(5, big, { code: 'PETREL_ERR_PACKET_TOO_LARGE', reasonCode: 0x95 }, options)
    const sent = links[0]?.packets[0]
    assert.equal(sent?.type === 'connect' ? sent.properties?.maximumPacketSize : undefined, 128, `${JSON.stringify(options)}: advertised`)
  }
})

test('a broker streaming large messages to a for-await loop that does not read: the queue stays within queueBytes (default 64 MiB), the rest dropped and counted', { timeout: 30_000 }, async () => {
  const n = 300
  const big = encode({ type: 'publish', topicName: 'flood/t', payload: Buffer.alloc(512 * 1024, 1), qos: 0, retain: false, dup: false }, 5)
  const broker = await scriptedBroker(5, (p, link) => {
    if (p.type !== 'subscribe') return false
    link.send({ type: 'suback', packetId: p.packetId, reasonCodes: [0] })
    let i = 0
    const pump = (): void => { while (i < n) { i++; if (!link.socket.write(big)) { link.socket.once('drain', pump); return } } }
    pump()
    return true
  })
  const c = await connect(broker.url, { ...fast, protocolVersion: 5 })
  try {
    const sub = await c.subscribe('flood/#')
    await waitFor(() => c.stats().messagesReceived === n, { timeoutMs: 20_000, message: `received ${c.stats().messagesReceived}` })
    assert.ok(sub.queuedBytes <= 64 * 1024 * 1024, `queued ${sub.queuedBytes} bytes`)
    assert.equal(sub.queued, 127)
    assert.equal(sub.dropped, n - 127)
    assert.equal(c.stats().messagesDropped, n - 127)
  } finally {
    await c.end({ force: true })
    await broker.close()
  }
})

test('a broker flooding QoS 1 PUBLISHes without reading our PUBACKs is no longer read from once 4 MiB of acks wait (they were buffered without end); reading resumes when it reads again', { timeout: 30_000 }, async () => {
  const batch = Buffer.concat(Array.from({ length: 1000 }, (_, i) => encode({ type: 'publish', topicName: 'f/t', payload: Buffer.alloc(0), qos: 1, retain: false, dup: false, packetId: i + 1 }, 5)))
  let stop = false
  let socket: Socket | undefined
  const server = createServer((s) => {
    socket = s
    s.on('error', () => {})
    s.once('data', () => {
      s.pause() // reads nothing more: every PUBACK stays on our side
      s.write(encode({ type: 'connack', sessionPresent: false, reasonCode: 0 }, 5))
      const pump = (): void => { while (!stop) { if (!s.write(batch)) { s.once('drain', pump); return } } }
      pump()
    })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const c = await connect(`mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`, { protocolVersion: 5, reconnect: false, keepalive: 0 })
  try {
    // Reading stops (how soon depends on the machine's speed), and stays stopped.
    let held = -1
    await waitFor(async () => {
      const before = c.stats().bytesIn
      await sleep(300)
      held = c.stats().bytesIn
      return held === before
    }, { timeoutMs: 15_000, message: `still reading: ${c.stats().bytesIn} bytes in` })
    await sleep(1000)
    assert.equal(c.stats().bytesIn, held, 'no more read')
    assert.ok(held < 64 * 1024 * 1024, `read ${held} bytes before holding`)
    assert.equal(c.connected, true)
    // The broker reads again: our acks drain, and its messages are read again.
    socket?.resume()
    await waitFor(() => c.stats().bytesIn > held + 8 * 1024 * 1024, { timeoutMs: 10_000, message: 'reading again' })
  } finally {
    stop = true
    await c.end({ force: true })
    socket?.destroy()
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  }
})

test('a PUBREC answering a QoS 1 PUBLISH [MQTT-4.3.2-1]: a Protocol Error (v5 DISCONNECT 0x82, 3.1.1 closes), reconnect, the publish is replayed and completes', { timeout: 30_000 }, async () => {
  for (const v of [5, 4] as const) {
    // The first PUBLISH of a fresh client carries packet id 1.
    await expectProtocolError(v, encode({ type: 'pubrec', packetId: 1 }, v), { code: 'PETREL_ERR_CLIENT_PROTOCOL_ERROR', reasonCode: 0x82 })
  }
})

test('v5: a packet other than PUBLISH with more User Properties than maxUserProperties (default 1,024; 75 bytes of heap each for 5 on the wire): DISCONNECT 0x95, reconnect, replay; within it, delivered', { timeout: 30_000 }, async () => {
  const pairs = (n: number): Array<[string, string]> => Array.from({ length: n }, () => ['', ''] as [string, string])
  const flood = (n: number): Buffer => encode({
    type: 'publish', topicName: 'up/t', payload: Buffer.from('x'), qos: 0, retain: false, dup: false,
    properties: { userProperties: pairs(n) }
  }, 5)
  // The PUBACK answering the publish (a PUBLISH past the limit is refused alone: see below).
  const puback = (n: number): Buffer => encode({ type: 'puback', packetId: 1, reasonCode: 0, properties: { userProperties: pairs(n) } }, 5)
  await expectProtocolError(5, puback(1025), { code: 'PETREL_ERR_PACKET_TOO_LARGE', reasonCode: 0x95 })
  await expectProtocolError(5, puback(11), { code: 'PETREL_ERR_PACKET_TOO_LARGE', reasonCode: 0x95 }, { maxUserProperties: 10 })
  // At the limit the message arrives, its properties whole.
  const broker = await scriptedBroker(5, (p, link) => {
    if (p.type === 'subscribe') setImmediate(() => { link.socket.write(flood(1024)) })
    return false
  })
  const c = await connect(broker.url, { ...fast, protocolVersion: 5 })
  try {
    const got: number[] = []
    await c.subscribe('up/#', {}, (m) => { got.push(m.properties?.userProperties?.length ?? 0) })
    await waitFor(() => got.length === 1, { timeoutMs: 5000, message: 'message at the limit' })
    assert.deepEqual(got, [1024])
    assert.equal(c.stats().protocolErrors, 0)
  } finally {
    await c.end({ force: true })
    await broker.close()
  }
})

test('v5: a PUBLISH with more User Properties than maxUserProperties, or more than 65,535 Subscription Identifiers, on a persistent session, is refused alone (PUBACK / PUBREC 0x97 Quota exceeded, QoS 0 dropped): no DISCONNECT, no reconnect, no redelivery loop; counted, reported, the next message delivered', { timeout: 30_000 }, async () => {
  const flood = (id: number, qos: 0 | 1 | 2): Buffer => encode({
    type: 'publish', topicName: `up/${qos}`, payload: Buffer.from('x'), qos, retain: false, dup: false, packetId: qos === 0 ? undefined : id,
    properties: { userProperties: Array.from({ length: 1025 }, () => ['', ''] as [string, string]) }
  }, 5)
  const broker = await scriptedBroker(5, (p, link) => {
    if (p.type === 'subscribe') {
      setImmediate(() => {
        // Subscription Identifiers: at most 65,535 in one PUBLISH (one per matching subscription of ours).
        const ids = encode({
          type: 'publish', topicName: 'up/ids', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 4,
          properties: { subscriptionIdentifiers: Array.from({ length: 65_536 }, () => 1) }
        }, 5)
        link.socket.write(Buffer.concat([flood(1, 1), flood(2, 2), flood(0, 0), ids,
          encode({ type: 'publish', topicName: 'up/ok', payload: Buffer.from('ok'), qos: 1, retain: false, dup: false, packetId: 3 }, 5)]))
      })
    }
    return false
  })
  const c = await connect(broker.url, { ...fast, protocolVersion: 5, clean: false, clientId: 'refuse' })
  const errors: PetrelError[] = []
  c.on('error', (e) => { errors.push(e) })
  try {
    const got: string[] = []
    await c.subscribe('up/#', { qos: 2 }, (m) => { got.push(m.topic) })
    await waitFor(() => got.length === 1, { timeoutMs: 5000, message: 'the message after them' })
    await waitFor(() => (broker.links[0]?.packets.filter((p) => p.type === 'puback' || p.type === 'pubrec').length ?? 0) === 4, { timeoutMs: 5000, message: 'acks' })
    assert.deepEqual(got, ['up/ok'])
    const acks = broker.links[0]?.packets.flatMap((p) => p.type === 'puback' || p.type === 'pubrec' ? [`${p.type} ${p.packetId} 0x${(p.reasonCode ?? 0).toString(16)}`] : [])
    assert.deepEqual(acks, ['puback 1 0x97', 'pubrec 2 0x97', 'puback 4 0x97', 'puback 3 0x0'])
    await sleep(200)
    assert.equal(broker.links.length, 1, 'no reconnect')
    assert.equal(disconnectReason(broker.links[0]), null, 'no DISCONNECT')
    assert.deepEqual(errors.map((e) => [e.code, e.reasonCode]), Array(4).fill(['PETREL_ERR_MESSAGE_REFUSED', 0x97]), errors[0]?.message)
    assert.match(errors[0]?.message ?? '', /"up\/1".*more than 1,024 User Properties \(maxUserProperties\)$/)
    assert.match(errors[3]?.message ?? '', /"up\/ids".*more than 65,535 Subscription Identifiers$/)
    const st = c.stats()
    assert.deepEqual([st.messagesRefused, st.messagesReceived, st.protocolErrors, st.connects], [4, 5, 0, 1])
    assert.match(c.metrics(), /^petrel_client_messages_refused_total\{client_id="refuse"\} 4$/m)
  } finally {
    await c.end({ force: true })
    await broker.close()
  }
})

test('v5 against mosquitto: a QoS 1 message with more User Properties than maxUserProperties, to a persistent session, is refused once (0x97) and not sent again, on this connection or the next', { timeout: 30_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const b = broker as Mosquitto
  const topic = `refuse/${process.pid}`
  // A limit of our own, not the default 1,024: the error names the one in force.
  const options = { protocolVersion: 5 as const, clean: false, clientId: `refuse-${process.pid}`, sessionExpiryInterval: 300, maxUserProperties: 20 }
  const sub = await connect(b.url, options)
  const errors: PetrelError[] = []
  sub.on('error', (e) => { errors.push(e) })
  const got: string[] = []
  await sub.subscribe(topic, { qos: 1 }, (m) => { got.push(m.payload.toString()) })
  const pub = await connect(b.url, { protocolVersion: 5 })
  let again: MqttClient | undefined
  try {
    const userProperties = Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v'] as [string, string])
    await pub.publish(topic, 'too many', { qos: 1, properties: { userProperties } })
    await pub.publish(topic, 'fine', { qos: 1 })
    await waitFor(() => got.length === 1, { timeoutMs: 5000, message: 'the next message' })
    await sleep(500)
    assert.deepEqual(got, ['fine'])
    assert.deepEqual(errors.map((e) => e.code), ['PETREL_ERR_MESSAGE_REFUSED'])
    assert.match(errors[0]?.message ?? '', /carries more than 20 User Properties \(maxUserProperties\)$/)
    assert.deepEqual([sub.stats().messagesRefused, sub.stats().connects, sub.stats().protocolErrors], [1, 1, 0], 'refused once, on the one connection')
    await sub.end()
    again = await connect(b.url, options)
    const later: string[] = []
    again.on('unrouted', (m) => { later.push(m.payload.toString()) })
    await again.subscribe(topic, { qos: 1 }, (m) => { later.push(m.payload.toString()) })
    await sleep(500)
    assert.deepEqual(later, [], 'the session holds nothing to send again')
  } finally {
    await sub.end({ force: true })
    await again?.end({ force: true })
    await pub.end()
  }
})

test('v5: more unacknowledged QoS 1 PUBLISHes than the Receive Maximum our CONNECT advertised (manual ack holds them) [MQTT-3.3.4-9]: DISCONNECT 0x93, reconnect, replay', { timeout: 30_000 }, async () => {
  // Three QoS 1 messages for a manual-ack subscription, none acked, against a Receive Maximum of 2.
  const three = Buffer.concat([101, 102, 103].map((id) => encode({ type: 'publish', topicName: 'rm/x', payload: Buffer.from(String(id)), qos: 1, retain: false, dup: false, packetId: id }, 5)))
  let held: Subscription | undefined
  const links = await expectProtocolError(5, three, { code: 'PETREL_ERR_CLIENT_PROTOCOL_ERROR', reasonCode: 0x93 }, { properties: { receiveMaximum: 2 } },
    async (c) => { held = await c.subscribe('rm/#', { qos: 1, manualAck: true }) })
  const sent = links[0]?.packets[0]
  assert.equal(sent?.type === 'connect' ? sent.properties?.receiveMaximum : undefined, 2, 'advertised')
  assert.ok(!(links[0]?.packets.some((p) => p.type === 'puback' && p.packetId > 100) ?? true), 'none of them acked')
  assert.ok(held !== undefined)
})

test('v5: a DISCONNECT from the broker carrying a Session Expiry Interval [MQTT-3.14.2-2] is a protocol error: DISCONNECT 0x82, reconnect, replay', { timeout: 30_000 }, async () => {
  const bad = encode({ type: 'disconnect', reasonCode: 0x8b, properties: { sessionExpiryInterval: 60 } }, 5)
  await expectProtocolError(5, bad, { code: 'PETREL_ERR_CLIENT_PROTOCOL_ERROR', reasonCode: 0x82 })
})

test('v5: an AUTH or a successful CONNACK whose Authentication Method is not the CONNECT\'s, or an AUTH without one [MQTT-4.12.0-5] [MQTT-4.12.0-6] (§3.15.2.2.2): DISCONNECT 0x82, reconnect', { timeout: 60_000 }, async () => {
  const cases: Array<{ name: string, method: string | undefined, lie: Packet }> = [
    { name: 'AUTH Continue with another method', method: 'M', lie: { type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'OTHER', authenticationData: Buffer.from('c') } } },
    { name: 'AUTH Continue without a method', method: 'M', lie: { type: 'auth', reasonCode: 0x18, properties: { authenticationData: Buffer.from('c') } } },
    { name: 'CONNACK success with another method', method: 'M', lie: { type: 'connack', sessionPresent: false, reasonCode: 0, properties: { authenticationMethod: 'OTHER' } } },
    { name: 'CONNACK success with a method the CONNECT did not carry', method: undefined, lie: { type: 'connack', sessionPresent: false, reasonCode: 0, properties: { authenticationMethod: 'M' } } }
  ]
  for (const k of cases) {
    // The first link gets the lie in answer to CONNECT; later ones an honest exchange.
    const broker = await scriptedBroker(5, (p, link) => {
      if (p.type === 'connect' && link.index === 0) return link.send(k.lie)
      if (p.type === 'connect' && k.method !== undefined) return link.send({ type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: k.method, authenticationData: Buffer.from('c') } })
      if (p.type === 'auth') return link.send({ type: 'connack', sessionPresent: false, reasonCode: 0, properties: { authenticationMethod: k.method } })
      return false
    })
    const errors: PetrelError[] = []
    const c = createClient(broker.url, { ...fast, protocolVersion: 5, properties: k.method === undefined ? {} : { authenticationMethod: k.method }, auth: () => Buffer.from('answer') })
    c.on('reconnect', (e) => { errors.push(e.error) })
    try {
      await waitFor(() => c.connected, { timeoutMs: 10_000, message: `${k.name}: connected on a later link` })
      assert.equal(disconnectReason(broker.links[0]), 0x82, `${k.name}: how the client left the first link`)
      assert.ok(!(broker.links[0]?.packets.some((p) => p.type === 'auth') ?? true), `${k.name}: no AUTH answered with a method the client did not choose`)
      assert.deepEqual(errors.slice(0, 1).map((e) => [e.code, e.reasonCode]), [['PETREL_ERR_CLIENT_PROTOCOL_ERROR', 0x82]], `${k.name}: ${errors[0]?.message ?? 'no error'}`)
      assert.equal(c.stats().protocolErrors, 1, k.name)
    } finally {
      await c.end({ force: true })
      await broker.close()
    }
  }
})

test('v5: a successful CONNACK without the Authentication Method is accepted (§3.2.2.3.17); an AUTH ending a re-authentication without it is a Protocol Error (§3.15.2.2.2): DISCONNECT 0x82', { timeout: 30_000 }, async () => {
  const broker = await scriptedBroker(5, (p, link) => {
    if (p.type === 'connect') return link.send({ type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'M', authenticationData: Buffer.from('c') } })
    if (p.type === 'auth' && p.reasonCode === 0x18) return link.send({ type: 'connack', sessionPresent: false, reasonCode: 0 })
    if (p.type === 'auth' && p.reasonCode === 0x19) return link.send({ type: 'auth', reasonCode: 0 })
    return false
  })
  let c: MqttClient | undefined
  try {
    c = await connect(broker.url, { ...fast, protocolVersion: 5, properties: { authenticationMethod: 'M' }, auth: () => Buffer.from('answer') })
    assert.equal(broker.links.length, 1)
    assert.equal(disconnectReason(broker.links[0]), null, 'still on the first link')
    await assert.rejects(withTimeout(c.reauthenticate(Buffer.from('again')), 5000, 're-authentication'), { code: 'PETREL_ERR_CLIENT_PROTOCOL_ERROR', reasonCode: 0x82 })
    await waitFor(() => disconnectReason(broker.links[0]) !== null, { timeoutMs: 3000, message: 'DISCONNECT at the broker' })
    assert.equal(disconnectReason(broker.links[0]), 0x82)
    assert.equal(c.stats().protocolErrors, 1)
  } finally {
    await c?.end({ force: true })
    await broker.close()
  }
})

test('v5: the Receive Maximum and Topic Alias Maximum enforced are those of the CONNECT sent, as beforeConnect rewrote it', { timeout: 60_000 }, async () => {
  type Rewrite = (p: ConnectPacket) => ConnectPacket
  const advertise = (properties: ConnectProperties): Rewrite => (p) => ({ ...p, properties: { ...p.properties, ...properties } })
  const advertised = (links: ScriptedLink[]): ConnectProperties | undefined => {
    const sent = links[0]?.packets[0]
    return sent?.type === 'connect' ? sent.properties : undefined
  }
  // The hook lowers the Receive Maximum to 2: a third unacknowledged QoS 1 PUBLISH is 0x93.
  const three = Buffer.concat([101, 102, 103].map((id) => encode({ type: 'publish', topicName: 'rm/x', payload: Buffer.from(String(id)), qos: 1, retain: false, dup: false, packetId: id }, 5)))
  let links = await expectProtocolError(5, three, { code: 'PETREL_ERR_CLIENT_PROTOCOL_ERROR', reasonCode: 0x93 }, { beforeConnect: advertise({ receiveMaximum: 2 }) },
    async (c) => { await c.subscribe('rm/#', { qos: 1, manualAck: true }) })
  assert.equal(advertised(links)?.receiveMaximum, 2)
  // The hook takes the Topic Alias Maximum away: an alias is 0x94 though the option allowed 5.
  const aliased = encode({ type: 'publish', topicName: 'a/b', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } }, 5)
  const strip: Rewrite = (p) => ({ ...p, properties: { ...p.properties, topicAliasMaximum: undefined } })
  links = await expectProtocolError(5, aliased, { code: 'PETREL_ERR_CLIENT_PROTOCOL_ERROR', reasonCode: 0x94 }, { topicAliasMaximum: 5, beforeConnect: strip })
  assert.equal(advertised(links)?.topicAliasMaximum, undefined)

  // The hook grants 5 topic aliases (the option left none): the broker may use them.
  const broker = await scriptedBroker(5, (p, link) => {
    if (p.type !== 'publish' || p.topicName !== 'go' || link.index !== 0) return false
    const msg = (topicName: string, payload: string): Buffer => encode({ type: 'publish', topicName, payload: Buffer.from(payload), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } }, 5)
    link.socket.write(Buffer.concat([msg('al/x', 'one'), msg('', 'two'), encode({ type: 'puback', packetId: p.packetId as number }, 5)]))
    return true
  })
  let c: MqttClient | undefined
  try {
    c = await connect(broker.url, { ...fast, protocolVersion: 5, beforeConnect: advertise({ topicAliasMaximum: 5 }) })
    const got: string[] = []
    await c.subscribe('al/#', { qos: 0 }, (m) => { got.push(`${m.topic}:${m.payload.toString()}`) })
    await c.publish('go', '', { qos: 1 })
    await waitFor(() => got.length === 2, { timeoutMs: 3000, message: `aliased messages: ${got.join(', ')}` })
    assert.deepEqual(got, ['al/x:one', 'al/x:two'])
    assert.equal(advertised(broker.links)?.topicAliasMaximum, 5)
    assert.equal(disconnectReason(broker.links[0]), null, 'still on the first link')
    assert.equal(c.stats().protocolErrors, 0)
  } finally {
    await c?.end({ force: true })
    await broker.close()
  }
})

test('v5: properties.topicAliasMaximum is advertised in the CONNECT, as the topicAliasMaximum option is, and aliases within it are accepted', { timeout: 30_000 }, async () => {
  const broker = await scriptedBroker(5, (p, link) => {
    if (p.type !== 'subscribe') return false
    link.send({ type: 'suback', packetId: p.packetId, reasonCodes: [0] })
    // Alias 3 is mapped by the first message and used alone by the second.
    link.send({ type: 'publish', topicName: 'a/b', payload: Buffer.from('1'), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } })
    return link.send({ type: 'publish', topicName: '', payload: Buffer.from('2'), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } })
  })
  const c = await connect(broker.url, { protocolVersion: 5, reconnect: false, properties: { topicAliasMaximum: 5 } })
  try {
    const connectPacket = broker.links[0]?.packets[0]
    assert.equal(connectPacket?.type === 'connect' ? connectPacket.properties?.topicAliasMaximum : undefined, 5)
    const got: string[] = []
    await c.subscribe('a/#', { qos: 0 }, (m) => { got.push(`${m.topic}=${m.payload.toString()}`) })
    await waitFor(() => got.length === 2, { timeoutMs: 5000 })
    assert.deepEqual(got, ['a/b=1', 'a/b=2'])
    assert.equal(c.stats().protocolErrors, 0)
  } finally {
    await c.end({ force: true })
    await broker.close()
  }
})

test('v5: request() ends at its timeout or signal while the broker has not acknowledged the PUBLISH, with no unhandled rejection', { timeout: 20_000 }, async () => {
  // A stalled broker: it takes the PUBLISH and never answers it.
  const broker = await scriptedBroker(5, (p) => p.type === 'publish' && p.topicName === 'svc/stalled')
  const unhandled: unknown[] = []
  const onUnhandled = (err: unknown): void => { unhandled.push(err) }
  process.on('unhandledRejection', onUnhandled)
  const c = await connect(broker.url, { protocolVersion: 5, reconnect: false })
  try {
    const started = performance.now()
    await assert.rejects(withTimeout(c.request('svc/stalled', 'x', { qos: 1, timeoutMs: 200 }), 5000, 'request timeout'), { code: 'PETREL_ERR_REQUEST_TIMEOUT' })
    assert.ok(performance.now() - started < 2000, 'rejected at its timeout, not when the publish settles')
    const ac = new AbortController()
    setTimeout(() => { ac.abort(new Error('user abort')) }, 100)
    await assert.rejects(withTimeout(c.request('svc/stalled', 'y', { qos: 1, signal: ac.signal, timeoutMs: 30_000 }), 5000, 'request abort'), /user abort/)
    await sleep(50) // unhandled rejections are reported once the microtasks ran
    assert.deepEqual(unhandled, [])
    assert.equal(c.stats().inflight, 2, 'both publishes stay in flight: they went to the wire')
  } finally {
    process.off('unhandledRejection', onUnhandled)
    await c.end({ force: true })
    await broker.close()
  }
})

test('a connectTimeoutMs or request timeoutMs past what a timer can wait (2^31 ms, or Infinity: no bound in practice) does not fail after 1 ms', async () => {
  // the CONNACK, and the response to a request, come 100 ms late
  const b = await scriptedBroker(5, (p, link) => {
    if (p.type === 'connect') {
      setTimeout(() => { link.send({ type: 'connack', sessionPresent: false, reasonCode: 0 }) }, 100)
      return true
    }
    if (p.type === 'publish' && p.properties?.responseTopic !== undefined) {
      const { responseTopic, correlationData } = p.properties
      setTimeout(() => { link.send({ type: 'publish', topicName: responseTopic, payload: Buffer.from('pong'), qos: 0, retain: false, dup: false, properties: { correlationData } }) }, 100)
    }
    return false
  })
  try {
    for (const ms of [2 ** 31, Infinity]) {
      const c = await connect(b.url, { connectTimeoutMs: ms, reconnect: false })
      try {
        assert.equal(c.connected, true, `connectTimeoutMs ${ms}`)
        const answer = await c.request('svc/ping', 'ping', { timeoutMs: ms })
        assert.equal(answer.payload.toString(), 'pong', `request timeoutMs ${ms}`)
      } finally {
        await c.end({ force: true })
      }
    }
  } finally {
    await b.close()
  }
})

test('a backoff delay past what a timer can wait (2^31 ms) does not redial after 1 ms', async () => {
  const b = await scriptedBroker(5, (p, link) => p.type === 'connect' && link.send({ type: 'connack', sessionPresent: false, reasonCode: 0x88 }))
  const c = createClient(b.url, { protocolVersion: 5, backoff: { initialDelayMs: 2 ** 31, maxDelayMs: 2 ** 31, jitter: 0 } })
  c.on('error', () => {})
  try {
    await waitFor(() => b.links.length >= 1, { timeoutMs: 5000, message: 'the first attempt' })
    await sleep(300)
    assert.equal(b.links.length, 1, 'attempts within 300 ms of a refusal')
  } finally {
    await c.end({ force: true })
    await b.close()
  }
})

test('v5: a Maximum Packet Size learnt only on a later connection (the next broker, mosquitto max_packet_size) refuses what was queued over it, PETREL_ERR_PACKET_TOO_LARGE 0x95, and never sends it: no disconnect-reconnect loop [MQTT-3.2.2-15]', { timeout: 30_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const first = await startMosquitto()
  const limited = await startMosquitto({ extraConfig: 'max_packet_size 1000' })
  const c = await connect([first.url, limited.url], { ...fast, protocolVersion: 5, maxQueuedMessages: 3 })
  const outcome: string[] = []
  const track = (name: string, p: Promise<unknown>): Promise<void> => p.then(() => { outcome.push(`${name} ok`) }, (e: PetrelError) => { outcome.push(`${name} ${e.code} 0x${(e.reasonCode ?? 0).toString(16)}`) })
  const watcher = await connect(limited.url, { protocolVersion: 5 })
  try {
    const got: string[] = []
    await watcher.subscribe('mps/#', { qos: 1 }, (m) => { got.push(`${m.topic} ${m.payload.length}`) })
    await first.stop()
    await waitFor(() => !c.connected, { timeoutMs: 5000, message: 'link lost' })
    // Queued while away; the last two wait for room in the queue (queuePolicy block).
    const all = [0, 1, 2].map((qos) => track(`big QoS ${qos}`, c.publish(`mps/${qos}`, Buffer.alloc(2000), { qos: qos as 0 | 1 | 2 })))
    all.push(track('small', c.publish('mps/small', 'fits', { qos: 1 })))
    all.push(track('big with properties', c.publish('mps/p', Buffer.alloc(1500), { qos: 1, properties: { contentType: 'x' } })))
    await withTimeout(Promise.all(all), 10_000, 'every publish settled')
    assert.deepEqual(outcome.sort(), [
      'big QoS 0 PETREL_ERR_PACKET_TOO_LARGE 0x95', 'big QoS 1 PETREL_ERR_PACKET_TOO_LARGE 0x95', 'big QoS 2 PETREL_ERR_PACKET_TOO_LARGE 0x95',
      'big with properties PETREL_ERR_PACKET_TOO_LARGE 0x95', 'small ok'
    ])
    await waitFor(() => got.length === 1, { timeoutMs: 5000, message: 'the small one' })
    await sleep(500)
    assert.deepEqual(got, ['mps/small 4'])
    assert.equal(c.connected, true)
    assert.equal(c.stats().connects, 2, 'one connection to each broker, no loop')
    assert.equal(c.stats().publishesSent, 1)
  } finally {
    await c.end({ force: true })
    await watcher.end({ force: true })
    await first.stop()
    await limited.stop()
  }
})

// A pingTimeoutMs of 2^31 ms or more (Infinity: the obvious 'no bound') made the keepalive timer
// fire after 1 ms, as setTimeout does past its range, for as long as a PINGREQ went unanswered:
// a 1 kHz loop with a TimeoutOverflowWarning each time, against a broker slow to answer.
test('pingTimeoutMs Infinity: an unanswered PINGREQ is waited for without a timer firing every millisecond', { timeout: 20_000 }, async () => {
  const warnings: Error[] = []
  const onWarning = (w: Error): void => { warnings.push(w) }
  process.on('warning', onWarning)
  const broker = await scriptedBroker(5, (p) => p.type === 'pingreq') // never answered
  const c = await connect(broker.url, { ...fast, keepalive: 1, pingTimeoutMs: Infinity, reconnect: false })
  try {
    await waitFor(() => broker.links[0]?.packets.some((p) => p.type === 'pingreq') === true, { timeoutMs: 5000, message: 'a PINGREQ' })
    await sleep(300)
    assert.equal(c.connected, true)
    assert.deepEqual(warnings.filter((w) => w.name === 'TimeoutOverflowWarning').map((w) => w.message), [])
  } finally {
    process.off('warning', onWarning)
    await c.end({ force: true }).catch(() => {})
    await broker.close()
  }
})
