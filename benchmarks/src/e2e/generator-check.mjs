#!/usr/bin/env node
// Is `petrel bench` the bottleneck? Drives a broker (default: mosquitto, a fresh process per run)
// with `petrel bench pubsub` and with the raw pre-encoded generator (raw-gen.mjs) in the same
// scenarios, alternating, and reports the receive rates and their ratio (goal: >= 0.90).
//
//   node benchmarks/src/e2e/generator-check.mjs [--runs 5] [--duration 3] [--broker mosquitto|aedes|petrel]
//     [--out FILE.md] [--json-out FILE] (default benchmarks/results/generator.json; '-' for none)
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { brokerKinds, ROOT, startBroker } from './lib/brokers.mjs'
import { pubsub } from './lib/generators.mjs'
import { machineInfo } from './lib/machine.mjs'
import { formatSpread, median, si, spread } from './lib/stats.mjs'

const { values: v } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    duration: { type: 'string', default: '3' },
    broker: { type: 'string', default: 'mosquitto' },
    out: { type: 'string' },
    'json-out': { type: 'string', default: resolve(ROOT, 'benchmarks/results/generator.json') }
  }
})
const runs = Number(v.runs)
const duration = Number(v.duration)
const scenarios = {
  '1 -> 1, QoS 0, 256 B': { pubs: 1, subs: 1, qos: 0, size: 256 },
  'fan-in 4 -> 1, QoS 0, 64 B': { pubs: 4, subs: 1, qos: 0, size: 64 },
  'fan-out 1 -> 50, QoS 0, 64 B': { pubs: 1, subs: 50, qos: 0, size: 64 },
  'fan-in 4 -> 1, QoS 1, 64 B, 100 in flight': { pubs: 4, subs: 1, qos: 1, size: 64, inflight: 100 },
  '1 -> 1, QoS 0, 1 KiB': { pubs: 1, subs: 1, qos: 0, size: 1024 }
}
const log = (msg) => process.stderr.write(`${msg}\n`)
const missing = brokerKinds[v.broker]?.available()
if (missing !== undefined) {
  log(`cannot run against ${v.broker}: ${missing}`)
  process.exit(1)
}

const rows = []
const jsonScenarios = []
for (const [title, s] of Object.entries(scenarios)) {
  const rates = { raw: [], petrel: [] }
  const cpu = { raw: [], petrel: [] }
  for (let run = 0; run < runs; run++) {
    for (const gen of run % 2 === 0 ? ['raw', 'petrel'] : ['petrel', 'raw']) {
      const b = await startBroker(v.broker)
      try {
        const r = await pubsub(gen, b.port, s, duration)
        rates[gen].push(r.perSecond)
        cpu[gen].push(r.cpuPercent)
        log(`${title} ${gen} run ${run + 1}: ${si(r.perSecond)} msg/s (${r.received}/${r.expected}), generator CPU ${r.cpuPercent}% of a core`)
      } catch (err) {
        log(`${title} ${gen} run ${run + 1}: ERROR ${err.message}`)
      } finally {
        await b.stop()
      }
    }
  }
  const ratio = median(rates.petrel) / median(rates.raw)
  // The generator's own CPU (% of one core): far from 100%, it is not what limits the rate.
  const result = (xs, c) => ({ ...spread(xs), runs: xs, generatorCpuPercent: median(c) })
  jsonScenarios.push({
    id: title.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, ''),
    title,
    group: 'generator',
    metric: 'messages received per second',
    unit: 'msg/s',
    higherIsBetter: true,
    ratio: Number.isFinite(ratio) ? Math.round(ratio * 1000) / 1000 : null,
    results: { 'petrel bench': result(rates.petrel, cpu.petrel), 'raw-gen.mjs': result(rates.raw, cpu.raw) }
  })
  rows.push(`| ${title} | ${formatSpread(rates.raw, si)} | ${formatSpread(rates.petrel, si)} | ${Number.isFinite(ratio) ? ratio.toFixed(2) : '-'} |`)
}

const m = machineInfo()
const text = [
  `## \`petrel bench\` vs a raw pre-encoded generator, through ${brokerKinds[v.broker].version()}`, '',
  `${m.cpu} x ${m.cores}, Node.js ${process.version}; ${runs} runs of ${duration} s, fresh broker per run; messages/s received, median (min-max).`,
  `Command: \`node benchmarks/src/e2e/generator-check.mjs ${process.argv.slice(2).join(' ')}\``, '',
  '| Scenario | raw-gen.mjs | petrel bench | petrel / raw |',
  '|---|---:|---:|---:|',
  ...rows, ''
].join('\n')
console.log(text)
if (v.out !== undefined) writeFileSync(v.out, text)
if (v['json-out'] !== '-') {
  const ratios = jsonScenarios.map((x) => x.ratio).filter((x) => x !== null)
  mkdirSync(dirname(v['json-out']), { recursive: true })
  writeFileSync(v['json-out'], JSON.stringify({
    suite: 'generator',
    command: `node benchmarks/src/e2e/generator-check.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    date: new Date().toISOString(),
    machine: m,
    versions: { [brokerKinds[v.broker].label]: brokerKinds[v.broker].version(), 'petrel bench': brokerKinds.petrel.version().replace('@petrel/broker', '@petrel/cli') },
    goal: 'petrel bench reaches >= 0.90 of the raw generator in every scenario',
    lowestRatio: ratios.length > 0 ? Math.min(...ratios) : null,
    scenarios: jsonScenarios
  }, null, 2) + '\n')
  log(`wrote ${v['json-out']}`)
}
