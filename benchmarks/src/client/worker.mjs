// One client in its own process, so its CPU time and peak memory are its own.
//
//   node worker.mjs '{"impl":"petrel|mqttjs|raw|raw-window","scenario":"pub-qos0",...}'
//   (raw-window: pub-qos1 and replay only)
//
// Talks to the suite over lines: prints {"event":"ready"} once connected (and subscribed), waits
// for "go" on stdin, and prints {"event":"result",...} at the end. Scenarios whose end only the
// suite sees (a subscriber elsewhere has everything) end on "stop". CPU time is
// process.cpuUsage() from "go" to the result; peak memory is resourceUsage().maxRSS.
import { createInterface } from 'node:readline'
import { encodePublishes, frame, puback, rawConnect, subscribePacket, writeAll, PUBACK_TYPE, SUBACK_TYPE } from './raw.mjs'

const cfg = JSON.parse(process.argv[2])
const { impl, scenario, port, count, qos } = cfg
const topic = cfg.topic ?? 'bench/client'
const payload = Buffer.alloc(cfg.size ?? 64, 0x61)
const capMs = cfg.capMs ?? 60_000
const url = `mqtt://127.0.0.1:${cfg.proxyPort ?? port}`

const send = (o) => { process.stdout.write(JSON.stringify(o) + '\n') }
const lines = createInterface({ input: process.stdin })
const waiters = new Map()
const early = new Set()
lines.on('line', (line) => {
  const name = line.trim()
  const w = waiters.get(name)
  if (w !== undefined) { waiters.delete(name); w() } else early.add(name)
})
const command = (name) => new Promise((resolve) => {
  if (early.delete(name)) resolve()
  else waiters.set(name, resolve)
})

/** Tells the suite this client is set up, and waits for its "go". */
async function readyThenGo () {
  send({ event: 'ready' })
  await command('go')
}

let cpu0
let t0
const start = () => { cpu0 = process.cpuUsage(); t0 = performance.now() }
function finish (extra) {
  const cpu = process.cpuUsage(cpu0)
  send({ event: 'result', cpuUs: cpu.user + cpu.system, maxRssKb: process.resourceUsage().maxRSS, ...extra })
}

// --- the three clients behind one small interface ------------------------------------------

async function open (opts = {}) {
  if (impl === 'petrel') {
    // Imported here: each worker loads only the client it measures (peak RSS).
    const { connect } = await import('@petrel/client')
    const c = await connect(url, {
      protocolVersion: 4,
      clientId: opts.clientId,
      clean: opts.clean ?? true,
      reconnect: opts.reconnect ?? false,
      backoff: { initialDelayMs: 100, jitter: 0 },
      // PETREL_BENCH_INFLIGHT: try another inflight window; PETREL_BENCH_READ_MODERATION=off: eager
      // reads (exploration only; reported runs use the defaults).
      ...(process.env.PETREL_BENCH_READ_MODERATION === 'off' ? { readModeration: false } : {}),
      ...(process.env.PETREL_BENCH_INFLIGHT === undefined ? {} : { inflightWindow: Number(process.env.PETREL_BENCH_INFLIGHT) })
    })
    return {
      publish: (q) => c.publish(topic, payload, { qos: q }),
      subscribe: async (q, onMessage) => { await c.subscribe(topic, { qos: q }, onMessage) },
      end: async () => { await c.end({ force: true }) }
    }
  }
  const { default: mqtt } = await import('mqtt')
  const c = mqtt.connect(url, {
    protocolVersion: 4,
    clientId: opts.clientId,
    clean: opts.clean ?? true,
    reconnectPeriod: opts.reconnect === true ? 100 : 0,
    keepalive: 60
  })
  await new Promise((resolve, reject) => { c.once('connect', resolve); c.once('error', reject) })
  return {
    publish: (q) => c.publishAsync(topic, payload, { qos: q }),
    subscribe: async (q, onMessage) => { c.on('message', onMessage); await c.subscribeAsync(topic, { qos: q }) },
    end: async () => { await c.endAsync(true) }
  }
}

// --- scenarios -----------------------------------------------------------------------------

/** Publish `count` QoS 0: in windows of 1,000 outstanding publishes (`pub-qos0`) or all at once (`burst-qos0`). */
async function publishQoS0 (burst) {
  if (impl === 'raw') {
    const s = await rawConnect(port)
    const pre = encodePublishes(topic, payload, 0, count)
    await readyThenGo()
    start()
    await writeAll(s, pre)
    send({ event: 'published', ms: performance.now() - t0 })
    await command('stop')
    finish({})
    s.destroy()
    return
  }
  const c = await open()
  await readyThenGo()
  start()
  if (burst) {
    const all = []
    for (let i = 0; i < count; i++) all.push(c.publish(0))
    await Promise.all(all)
  } else {
    for (let i = 0; i < count; i += 1000) {
      const batch = []
      for (let j = i; j < Math.min(count, i + 1000); j++) batch.push(c.publish(0))
      await Promise.all(batch)
    }
  }
  send({ event: 'published', ms: performance.now() - t0 })
  await command('stop')
  finish({})
  await c.end()
}

/**
 * Pre-encoded QoS 1 publishes with Petrel's default window policy and nothing else: 100 in flight,
 * every place a read's acks free refilled at once (one write per read at most, as the client's
 * transport sends one event-loop turn's writes together); eager reads (a moderated reader would
 * leave the window empty for a millisecond at a time). What a client with that window costs and
 * reaches with no library work at all. Resolves on the last ack.
 */
function sendWindowed (s, pre) {
  const WINDOW = 100
  let acked = 0
  let sent = 0
  const refill = () => {
    const end = Math.min(pre.count, acked + WINDOW)
    if (end > sent) s.write(Buffer.concat(pre.packets.slice(sent, end)))
    sent = end
  }
  const done = new Promise((resolve) => { frame(s, (type) => { if (type === PUBACK_TYPE && ++acked === pre.count) resolve() }) })
  s.on('data', () => { if (sent < pre.count && sent - acked < WINDOW) refill() }) // after frame's listener: this read's acks are counted
  refill()
  return done
}

/** Fire `count` QoS 1 publishes at once; time to the last ack. */
async function publishQoS1 () {
  if (impl === 'raw') {
    const s = await rawConnect(port)
    const pre = encodePublishes(topic, payload, 1, count)
    let acked = 0
    const done = new Promise((resolve) => { frame(s, (type) => { if (type === PUBACK_TYPE && ++acked === count) resolve() }) })
    await readyThenGo()
    start()
    // Raw packet ids wrap at 65,535: fine below that many.
    await writeAll(s, pre)
    await done
    finish({ ms: performance.now() - t0, n: acked })
    s.destroy()
    return
  }
  if (impl === 'raw-window') {
    const pre = encodePublishes(topic, payload, 1, count)
    const s = await rawConnect(port, { moderate: false })
    await readyThenGo()
    start()
    await sendWindowed(s, pre)
    finish({ ms: performance.now() - t0, n: count })
    s.destroy()
    return
  }
  const c = await open()
  await readyThenGo()
  start()
  const all = []
  for (let i = 0; i < count; i++) all.push(c.publish(1))
  await Promise.all(all)
  finish({ ms: performance.now() - t0, n: count })
  await c.end()
}

/** Receive `count` messages the suite publishes; time from "go" to the last one. */
async function receive () {
  let n = 0
  let tLast = 0
  let resolveAll
  const all = new Promise((resolve) => { resolveAll = resolve })
  const onMessage = () => {
    if (++n === count) { tLast = performance.now(); resolveAll() }
  }
  let end
  if (impl === 'raw') {
    const s = await rawConnect(port)
    let subacked
    const ready = new Promise((resolve) => { subacked = resolve })
    frame(s, (type, q, packetId) => {
      if (type === 3) {
        if (q === 1) s.write(puback(packetId))
        onMessage()
      } else if (type === SUBACK_TYPE) subacked()
    })
    s.write(subscribePacket(topic, qos))
    await ready
    end = async () => { s.destroy() }
  } else {
    const c = await open()
    await c.subscribe(qos, onMessage)
    end = c.end
  }
  await readyThenGo()
  start()
  const capped = await Promise.race([all.then(() => false), command('stop').then(() => true)])
  finish({ ms: capped ? performance.now() - t0 : tLast - t0, n, capped })
  await end()
}

/**
 * `count` QoS 1 publishes stored unacked (the suite blackholes the link, then cuts it), replayed
 * after the reconnect over a link with `delayMs` each way; time from the reconnect to the last ack.
 */
async function replay () {
  if (impl === 'raw' || impl === 'raw-window') {
    // The baselines: the same packets on a fresh connection over the same link, written at once
    // (raw) or through Petrel's default window (raw-window: the ceiling of any client with it).
    const pre = encodePublishes(topic, payload, 1, count)
    await readyThenGo()
    send({ event: 'stored' })
    await command('reconnect')
    start()
    // Both clients wait 100 ms to redial after the cut.
    await new Promise((resolve) => setTimeout(resolve, 100))
    const s = await rawConnect(cfg.proxyPort, { moderate: impl === 'raw' })
    if (impl === 'raw-window') await sendWindowed(s, pre)
    else {
      let acked = 0
      const done = new Promise((resolve) => { frame(s, (type) => { if (type === PUBACK_TYPE && ++acked === count) resolve() }) })
      await writeAll(s, pre)
      await done
    }
    finish({ ms: performance.now() - t0, n: count })
    s.destroy()
    return
  }
  const c = await open({ clientId: `replay-${impl}-${process.pid}`, clean: false, reconnect: true })
  let acked = 0
  let resolveAll
  const all = new Promise((resolve) => { resolveAll = resolve })
  await readyThenGo()
  for (let i = 0; i < count; i++) {
    c.publish(1).then(() => { if (++acked === count) resolveAll() }, () => {})
  }
  // Give the client time to put what it will on the (blackholed) wire.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  send({ event: 'stored', acked })
  // Timed from the cut (the suite says so at once): MQTT.js emits `connect` only after its
  // replay, so the reconnect event cannot be the start. Both clients wait 100 ms to redial.
  await command('reconnect')
  start()
  const capped = await Promise.race([
    all.then(() => false),
    new Promise((resolve) => setTimeout(resolve, capMs).unref()).then(() => true)
  ])
  const ms = capped ? capMs : performance.now() - t0
  finish({ ms, n: capped ? acked : count, capped })
  await c.end()
}

switch (scenario) {
  case 'pub-qos0': await publishQoS0(false); break
  case 'burst-qos0': await publishQoS0(true); break
  case 'pub-qos1': await publishQoS1(); break
  case 'recv-qos0': case 'recv-qos1': await receive(); break
  case 'replay': await replay(); break
  default: throw new Error(`unknown scenario ${scenario}`)
}
lines.close()
process.exit(0)
