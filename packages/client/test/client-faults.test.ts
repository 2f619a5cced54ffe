import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Socket } from 'node:net'
import { Decoder, encode, type Packet } from '@petrel/wire'
import { FaultProxy, hasProgram, requirePeer, startMosquitto, waitFor, withTimeout, type Mosquitto } from '@petrel/test-utils'
import { connect, type MqttClient, type ClientOptions } from '../src/index.js'

// Supervisor behaviour under faults: cuts, restarts, blackholes, stalls, malformed input.

let broker: Mosquitto | undefined
before(async () => {
  if (hasProgram('mosquitto')) broker = await startMosquitto({ extraConfig: 'max_inflight_messages 100\nmax_queued_messages 100000' })
})
after(async () => { await broker?.stop() })

const fast: ClientOptions = { backoff: { initialDelayMs: 20, maxDelayMs: 200 }, connectTimeoutMs: 3000 }
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Cuts every connection through `proxy` `times` times at random 40-120 ms intervals while `until` is false. */
async function cutter (proxy: FaultProxy, times: number, until: () => boolean): Promise<number> {
  let cuts = 0
  while (cuts < times && !until()) {
    await sleep(40 + Math.random() * 80)
    proxy.cut()
    cuts++
  }
  return cuts
}

for (const [qos, label] of [[1, 'no loss'], [2, 'exactly once']] as const) {
  test(`10,000 QoS ${qos} messages across 20 random cuts: ${label}`, { timeout: 90_000 }, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const b = broker as Mosquitto
    const proxy = await FaultProxy.start({ target: { host: b.host, port: b.port }, delayMs: 2 })
    const clients: MqttClient[] = []
    try {
      const topic = `faults/${qos}/${process.pid}`
      const counts = new Map<string, number>()
      // Both ends go through the proxy and are cut together; persistent sessions keep the flows.
      const sub = await connect(proxy.url, { ...fast, clientId: `sub-${qos}-${process.pid}`, clean: false, protocolVersion: 5 })
      clients.push(sub)
      await sub.subscribe(topic, { qos }, (m) => {
        const k = m.payload.toString()
        counts.set(k, (counts.get(k) ?? 0) + 1)
      })
      const pub = await connect(proxy.url, { ...fast, clientId: `pub-${qos}-${process.pid}`, clean: false, protocolVersion: qos === 1 ? 4 : 5 })
      clients.push(pub)
      const N = 10_000
      let done = false
      const all = Promise.all(Array.from({ length: N }, async (_, i) => await pub.publish(topic, String(i), { qos })))
      const cuts = cutter(proxy, 20, () => done)
      await withTimeout(all, 60_000, 'publishes')
      done = true
      const made = await cuts
      await waitFor(() => counts.size === N, { timeoutMs: 30_000, message: `received ${counts.size} of ${N}` })
      assert.ok(made >= 5, `only ${made} cuts happened during the run`)
      assert.ok(pub.stats().connects >= 2, 'the publisher reconnected')
      if (qos === 2) {
        const dupes = [...counts.entries()].filter(([, n]) => n !== 1)
        assert.deepEqual(dupes.slice(0, 5), [], 'each QoS 2 message arrives exactly once')
      }
      for (let i = 0; i < N; i++) assert.ok(counts.has(String(i)), `message ${i} lost`)
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
    // block: 20,000 x 4 KiB = 80 MiB asked for; the client holds at most the queue bound plus socket buffers.
    let resolved = 0
    const ps: Array<Promise<unknown>> = []
    for (let i = 0; i < 20_000; i++) ps.push(blocking.publish('stall/t', payload).then(() => { resolved++ }))
    await sleep(500)
    const s = blocking.stats()
    assert.ok(s.queued <= 200, `queued ${s.queued}`)
    assert.ok(resolved < 20_000, 'publish waits while the broker is stalled')
    assert.ok(s.bytesOut < 40 * 1024 * 1024, `written ${s.bytesOut}`)

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
    const first = c.publish('ab/t', 'first', { qos: 1 })
    const ac = new AbortController()
    const second = c.publish('ab/t', 'second', { qos: 1, signal: ac.signal })
    const reason = new Error('changed my mind')
    ac.abort(reason)
    await assert.rejects(second, (err) => err === reason)
    assert.equal(c.stats().queued, 0)
    proxy.resume()
    await withTimeout(first, 5000, 'first publish')
    assert.equal(c.stats().publishesSent, 1)
  } finally {
    await c.end({ force: true })
    await proxy.close()
  }
})

test('a malformed packet from the broker: v5 DISCONNECT 0x81, reconnect, the unacked publish is replayed with DUP', { timeout: 20_000 }, async () => {
  // A hand-written broker: the only way to inject bad bytes.
  const seen: Packet[][] = []
  const sockets: Socket[] = []
  const server = createServer((socket) => {
    sockets.push(socket)
    const conn: Packet[] = []
    seen.push(conn)
    const dec = new Decoder({ protocolVersion: 5 })
    socket.on('data', (chunk) => {
      for (const p of dec.push(chunk)) {
        conn.push(p)
        if (p.type === 'connect') socket.write(encode({ type: 'connack', sessionPresent: seen.length > 1, reasonCode: 0 }, 5))
        if (p.type === 'publish' && seen.length === 1) socket.write(Buffer.from([0x30, 0x02, 0x00, 0x05])) // topic length 5 in a 2-byte body
        if (p.type === 'publish' && seen.length > 1) socket.write(encode({ type: 'puback', packetId: p.packetId as number }, 5))
      }
    })
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const port = (server.address() as { port: number }).port
  const c = await connect(`mqtt://127.0.0.1:${port}`, { ...fast, protocolVersion: 5, clean: false })
  try {
    const r = await withTimeout(c.publish('mal/t', 'kept', { qos: 1 }), 10_000, 'publish completes after reconnect')
    assert.equal(r.reasonCode, 0)
    const first = seen[0] ?? []
    const disconnect = first.find((p) => p.type === 'disconnect')
    assert.equal(disconnect?.type === 'disconnect' ? disconnect.reasonCode : undefined, 0x81)
    const resent = (seen[1] ?? []).find((p) => p.type === 'publish')
    assert.equal(resent?.type === 'publish' ? resent.dup : undefined, true)
    assert.equal(resent?.type === 'publish' ? resent.payload.toString() : undefined, 'kept')
  } finally {
    await c.end({ force: true })
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  }
})
