#!/usr/bin/env node
// Is `petrel bench` the bottleneck? Drives a broker (default: mosquitto, a fresh process per run)
// with `petrel bench pubsub` and with the raw pre-encoded generator (raw-gen.mjs) in the same
// scenarios, alternating, and reports the receive rates and their ratio (goal: >= 0.90).
//
//   node benchmarks/src/e2e/generator-check.mjs [--runs 5] [--duration 3] [--broker mosquitto|aedes|petrel] [--out FILE]
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { brokerKinds, startBroker } from './lib/brokers.mjs'
import { pubsub } from './lib/generators.mjs'
import { machineInfo } from './lib/machine.mjs'
import { formatSpread, median, si } from './lib/stats.mjs'

const { values: v } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    duration: { type: 'string', default: '3' },
    broker: { type: 'string', default: 'mosquitto' },
    out: { type: 'string' }
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
for (const [title, s] of Object.entries(scenarios)) {
  const rates = { raw: [], petrel: [] }
  for (let run = 0; run < runs; run++) {
    for (const gen of run % 2 === 0 ? ['raw', 'petrel'] : ['petrel', 'raw']) {
      const b = await startBroker(v.broker)
      try {
        const r = await pubsub(gen, b.port, s, duration)
        rates[gen].push(r.perSecond)
        log(`${title} ${gen} run ${run + 1}: ${si(r.perSecond)} msg/s (${r.received}/${r.expected})`)
      } catch (err) {
        log(`${title} ${gen} run ${run + 1}: ERROR ${err.message}`)
      } finally {
        await b.stop()
      }
    }
  }
  const ratio = median(rates.petrel) / median(rates.raw)
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
