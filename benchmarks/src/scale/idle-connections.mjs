#!/usr/bin/env node
// Scale (issue 5): how many idle connections a broker holds, what each costs in resident memory,
// and how fast they are established. For each broker (Petrel, mosquitto, Aedes) and each count,
// a fresh broker process is started, its RSS read at rest, then `petrel bench conn` processes
// open `count` connections (keepalive 300 s, so nothing is sent while they are held), the RSS is
// read again after a settling pause, and the connections are closed. Both readings are taken in
// steady state (--settle seconds after start, and after the last connect): a garbage-collected
// heap gives back the young generation it grew during the burst only when V8's memory reducer
// runs, 8-24 s after allocation stops. The reading 2 s after the last connect is kept beside it.
//
//   node benchmarks/src/scale/idle-connections.mjs [--counts 10000,50000] [--brokers petrel,mosquitto,aedes]
//     [--runs 3] [--max-connecting 100] [--per-process 10000] [--settle 30] [--out benchmarks/results/scale.json]
//
// The establishment rate is measured closed-loop: at most --max-connecting handshakes in flight
// (split over the client processes), as fast as the broker completes them. An open-loop burst
// would overflow listen backlogs (mosquitto's is 100) and measure the kernel's 1 s SYN
// retransmission timer instead of the broker. The broker's CPU time per connection is reported
// beside it: it does not depend on how fast the client side is.
//
// Limits this runs into, checked up front rather than discovered as failures:
// - file descriptors: the broker needs one per connection. Brokers are started through a shell
//   that raises the soft limit to the hard one (brokers.mjs); past the hard limit only a process
//   with CAP_SYS_RESOURCE can go, so a count that does not fit is recorded as skipped, with why.
// - ephemeral ports: one source address has (ip_local_port_range) ports towards one broker port.
//   Past that, connections are spread over extra loopback addresses (`petrel bench --ifaddr`),
//   fresh ones for every measurement: ports a closed run left in TIME_WAIT stay taken for a
//   minute, and bind() (unlike connect()'s own port choice) does not reuse them. Below it, no
//   --ifaddr: bind()'s port search also costs the client CPU that grows with the count.
// - each client process also needs one fd per connection: `--per-process` connections each.
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { brokerKinds, nodeFlags, PETREL_BIN, ROOT, startBroker } from '../e2e/lib/brokers.mjs'
import { cpuSeconds, memoryKb } from '../e2e/lib/proc.mjs'
import { machineInfo } from '../e2e/lib/machine.mjs'
import { spread } from '../e2e/lib/stats.mjs'

const { values: v } = parseArgs({
  options: {
    counts: { type: 'string', default: '10000,50000' },
    brokers: { type: 'string', default: 'petrel,mosquitto,aedes' },
    runs: { type: 'string', default: '3' },
    'max-connecting': { type: 'string', default: '100' },
    'per-process': { type: 'string', default: '10000' },
    settle: { type: 'string', default: '30' },
    out: { type: 'string', default: resolve(ROOT, 'benchmarks/results/scale.json') }
  }
})
const counts = v.counts.split(',').map(Number)
const runs = Number(v.runs)
const maxConnecting = Number(v['max-connecting'])
const perProcess = Number(v['per-process'])
const settleMs = Number(v.settle) * 1000
const command = `node benchmarks/src/scale/idle-connections.mjs ${process.argv.slice(2).join(' ')}`.trim()
const log = (msg) => process.stderr.write(`${msg}\n`)

// Petrel's broker refuses connections past `max_connections` (10,000 by default, a bound users
// want); here it is raised so that the file-descriptor limit is the only limit. mosquitto
// (max_connections -1) and Aedes have none by default.
const PETREL_SCALE_CONFIG = '[limits]\nmax_connections = 1000000\n'
brokerKinds['petrel-scale'] = {
  ...brokerKinds.petrel,
  command (port) {
    const dir = mkdtempSync(join(tmpdir(), 'petrel-scale-'))
    writeFileSync(join(dir, 'petrel.toml'), PETREL_SCALE_CONFIG)
    return {
      // Node flags as `npm start` gives them (see brokers.mjs); PETREL_BENCH_NODE_FLAGS overrides.
      argv: [process.execPath, ...nodeFlags(), PETREL_BIN, 'broker', '--port', String(port), '--config', join(dir, 'petrel.toml')],
      cleanup: () => { rmSync(dir, { recursive: true, force: true }) }
    }
  }
}

/** Soft "Max open files" of a process (/proc/PID/limits). */
function fdLimit (pid) {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))
  return m === null || m[1] === 'unlimited' ? Infinity : Number(m[1])
}

/** Ports one source address has towards one destination (ip_local_port_range), less a margin. */
function portsPerAddress () {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
    return Math.floor((hi - lo + 1) * 0.9)
  } catch {
    return 25_000
  }
}

let addressesUsed = 0

/**
 * Source addresses on the loopback (127.0.0.0/8 is all local on Linux) for `count` connections:
 * none (the system's choice from 127.0.0.1) when one address has the ports, else fresh ones
 * with 10,000 connections each at most.
 */
function sourceAddresses (count) {
  if (count <= portsPerAddress()) return []
  const n = Math.ceil(count / 10_000)
  return Array.from({ length: n }, () => {
    const k = addressesUsed++
    return `127.${1 + Math.floor(k / 250)}.0.${2 + (k % 250)}`
  })
}

/**
 * One `petrel bench conn` process for `n` connections (client indices from `first`). Resolves
 * `up` once its progress line shows all of them connected (or it stalls), `done` with its JSON.
 */
function holder (port, n, first, pending, addresses, tag) {
  const child = spawn('/bin/sh', ['-c', `ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"`, 'sh', process.execPath, PETREL_BIN,
    'bench', 'conn', '-p', String(port), '-c', String(n), '-n', String(first), '--max-connecting', String(pending), '-k', '300',
    '--prefix', `${tag}-`, ...(addresses.length > 0 ? ['--ifaddr', addresses.join(',')] : []), '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  let connected = 0
  let errors = 0
  child.stdout.setEncoding('utf8').on('data', (d) => { out += d })
  child.stderr.setEncoding('utf8').on('data', (d) => {
    err = (err + d).slice(-4096)
    // Progress lines (stderr under --json): "  12s  conns 9870/10000  ...  errors 0"
    for (const m of d.matchAll(/conns (\d+)\/\d+.*errors (\d+)/g)) {
      connected = Number(m[1])
      errors = Number(m[2])
    }
  })
  const done = new Promise((resolve, reject) => {
    child.once('close', (code) => {
      try {
        resolve(JSON.parse(out))
      } catch {
        reject(new Error(`petrel bench conn exited ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`))
      }
    })
  })
  return { child, done, state: () => ({ connected, errors }) }
}

/** Waits until every holder has all its connections (or gave up on some), or nothing changes for 15 s. */
async function allUp (holders, total) {
  let last = -1
  let lastChange = performance.now()
  for (;;) {
    const states = holders.map((h) => h.state())
    const connected = states.reduce((a, s) => a + s.connected, 0)
    const errors = states.reduce((a, s) => a + s.errors, 0)
    if (connected + errors >= total) return connected
    if (connected !== last) {
      last = connected
      lastChange = performance.now()
    } else if (performance.now() - lastChange > 15_000) {
      return connected
    }
    await sleep(250)
  }
}

async function measure (kind, count, run) {
  const addresses = sourceAddresses(count)
  const processes = Math.ceil(count / perProcess)
  const b = await startBroker(kind === 'petrel' ? 'petrel-scale' : kind)
  try {
    const limit = fdLimit(b.pid)
    if (count + 64 > limit) {
      return { skipped: `the broker's file-descriptor limit is ${limit} (the hard limit here; raising it needs CAP_SYS_RESOURCE)` }
    }
    await sleep(Math.max(1000, settleMs))
    const base = memoryKb(b.pid).rss
    const cpu0 = cpuSeconds(b.pid)
    const holders = []
    for (let p = 0; p < processes; p++) {
      const n = Math.min(perProcess, count - p * perProcess)
      holders.push(holder(b.port, n, p * perProcess, Math.max(1, Math.round(maxConnecting / processes)), addresses, `scale-${run}`))
    }
    const t0 = performance.now()
    const connected = await allUp(holders, count)
    const upSeconds = (performance.now() - t0) / 1000
    await sleep(2000)
    const after2s = memoryKb(b.pid).rss
    const cpu = cpuSeconds(b.pid) - cpu0
    await sleep(Math.max(0, settleMs - 2000))
    const held = memoryKb(b.pid)
    for (const h of holders) h.child.kill('SIGINT')
    const summaries = await Promise.all(holders.map((h) => h.done))
    const c = summaries.map((s) => s.connections)
    const established = c.reduce((a, x) => a + x.established, 0)
    const errors = {}
    for (const s of summaries) for (const [k, n] of Object.entries(s.errors)) errors[k] = (errors[k] ?? 0) + n
    return {
      established,
      connectedAtSample: connected,
      failed: c.reduce((a, x) => a + x.failed, 0),
      lost: c.reduce((a, x) => a + x.lost, 0),
      // Holders run side by side over the same window: their rates add up.
      perSecond: c.reduce((a, x) => a + x.perSecond, 0),
      upSeconds: Math.round(upSeconds * 100) / 100,
      connectP50Ms: spread(c.map((x) => x.connectMs.p50)).median,
      connectP99Ms: Math.max(...c.map((x) => x.connectMs.p99)),
      baseRssKb: base,
      rssKb: held.rss,
      peakRssKb: held.hwm,
      // KiB of resident memory per held connection (RSS with them, less RSS at rest)
      kbPerConnection: connected > 0 ? Math.round((held.rss - base) / connected * 100) / 100 : NaN,
      rss2sKb: after2s,
      kbPerConnection2s: connected > 0 ? Math.round((after2s - base) / connected * 100) / 100 : NaN,
      cpuSecondsToEstablish: Math.round(cpu * 100) / 100,
      // Broker CPU per connection, µs (accepting, CONNECT/CONNACK, and the first 2 s of holding it)
      cpuUsPerConnection: connected > 0 ? Math.round(cpu / connected * 1e6) : NaN,
      errors
    }
  } finally {
    await b.stop()
  }
}

const brokers = v.brokers.split(',')
const versions = {}
const skippedBrokers = {}
for (const name of brokers) {
  const k = brokerKinds[name]
  if (k === undefined) throw new Error(`unknown broker '${name}' (mosquitto, aedes, petrel)`)
  const missing = k.available()
  if (missing !== undefined) skippedBrokers[name] = missing
  else versions[name] = k.version()
}
versions['petrel bench (load)'] = brokerKinds.petrel.version().replace('@petrel/broker', '@petrel/cli')

const scenarios = []
for (const count of counts) {
  const raw = {}
  const skipped = {}
  for (const name of brokers) {
    if (skippedBrokers[name] !== undefined) {
      skipped[name] = skippedBrokers[name]
      continue
    }
    raw[name] = []
    for (let run = 0; run < runs; run++) {
      try {
        const r = await measure(name, count, run)
        if (r.skipped !== undefined) {
          skipped[name] = r.skipped
          log(`${count} ${name}: skipped: ${r.skipped}`)
          break
        }
        raw[name].push(r)
        log(`${count} ${name} run ${run + 1}: ${r.established} established at ${Math.round(r.perSecond)}/s, ` +
          `${r.kbPerConnection} KiB each (RSS ${r.baseRssKb} -> ${r.rssKb} KiB), errors ${JSON.stringify(r.errors)}`)
      } catch (err) {
        log(`${count} ${name} run ${run + 1}: ERROR ${err.message}`)
      }
    }
  }
  const measured = Object.entries(raw).filter(([, rs]) => rs.length > 0)
  const results = (field, extra) => Object.fromEntries(measured.map(([name, rs]) => {
    const s = spread(rs.map((r) => r[field]))
    return [name, { median: s.median, min: s.min, max: s.max, runs: rs.length, ...extra(rs) }]
  }))
  const note = Object.keys(skipped).length === 0 ? undefined : skipped
  scenarios.push({
    id: `idle-${count}-memory`,
    title: `${count.toLocaleString('en-US')} idle connections: resident memory per connection`,
    group: 'idle-memory',
    metric: 'RSS per connection',
    unit: 'KiB',
    higherIsBetter: false,
    connections: count,
    results: results('kbPerConnection', (rs) => ({
      established: Math.min(...rs.map((r) => r.established)),
      rssKb: spread(rs.map((r) => r.rssKb)).median,
      kbPerConnection2s: spread(rs.map((r) => r.kbPerConnection2s)).median,
      baseRssKb: spread(rs.map((r) => r.baseRssKb)).median
    })),
    ...(note === undefined ? {} : { skipped: note })
  })
  scenarios.push({
    id: `idle-${count}-rate`,
    title: `${count.toLocaleString('en-US')} connections: establishment rate (${maxConnecting} handshakes in flight)`,
    group: 'connection-rate',
    metric: 'connections established per second',
    unit: 'conn/s',
    higherIsBetter: true,
    connections: count,
    results: results('perSecond', (rs) => ({
      connectP50Ms: spread(rs.map((r) => r.connectP50Ms)).median,
      connectP99Ms: spread(rs.map((r) => r.connectP99Ms)).median,
      failed: Math.max(...rs.map((r) => r.failed)),
      cpuSecondsToEstablish: spread(rs.map((r) => r.cpuSecondsToEstablish)).median
    })),
    ...(note === undefined ? {} : { skipped: note })
  })
  scenarios.push({
    id: `idle-${count}-cpu`,
    title: `${count.toLocaleString('en-US')} connections: broker CPU time per connection`,
    group: 'connection-cpu',
    metric: 'broker CPU per connection (accept, CONNECT/CONNACK, first 2 s held)',
    unit: 'µs',
    higherIsBetter: false,
    connections: count,
    results: results('cpuUsPerConnection', () => ({})),
    ...(note === undefined ? {} : { skipped: note })
  })
}

const doc = {
  suite: 'scale',
  command,
  date: new Date().toISOString(),
  machine: { ...machineInfo(), fdHardLimit: Number(readFileSync('/proc/self/limits', 'utf8').match(/^Max open files\s+\S+\s+(\d+)/m)?.[1] ?? NaN) },
  versions,
  goal: 'Petrel holds 50,000 idle connections on this machine at no more than 4 KB (4 KiB) of resident memory each',
  notes: [
    `RSS per connection = (broker VmRSS with the connections held, ${settleMs / 1000} s after the last one connected) - (VmRSS after the broker idled ${settleMs / 1000} s from its start), divided by the connections held; one fresh broker process per run. Both are steady states: a Node broker's young generation, grown during the connect burst, is given back only when V8's memory reducer runs (8-24 s after allocation stops, here). kbPerConnection2s is the same 2 s after the last connect.`,
    `Petrel's broker runs with \`max_connections = 1000000\` (default 10,000); mosquitto with the suite's usual config (max_connections unlimited by default); Aedes with in-memory persistence.`,
    `Connections: \`petrel bench conn\` processes of at most ${perProcess.toLocaleString('en-US')} connections each, keepalive 300 s; past ${portsPerAddress().toLocaleString('en-US')} connections (the ephemeral ports of one source address), extra loopback source addresses (--ifaddr).`,
    'The establishment rate is end to end: with a broker that accepts cheaply (mosquitto), the client processes are the limit; the broker CPU per connection is the number that compares brokers.'
  ],
  scenarios
}
mkdirSync(dirname(v.out), { recursive: true })
writeFileSync(v.out, JSON.stringify(doc, null, 2) + '\n')
log(`wrote ${v.out}`)
