#!/usr/bin/env node
// Topic matching, head to head: Petrel's TopicTrie (@petrel/session, what the broker's router
// matches with) against the qlobber matchers Aedes uses: QlobberSub (aedes-persistence's
// subscription index, the one that decides who gets a PUBLISH) and Qlobber (mqemitter, its
// in-process bus). Same subscription tables, same topic names, same process; rounds alternate
// between matchers so machine noise hits all alike, and the median round is reported.
//
//   node --expose-gc benchmarks/src/micro/topic-match.mjs [--rounds 9] [--round-ms 250] [--out benchmarks/results/micro.json]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { TopicTrie } from '@petrel/session'
import { machineInfo } from '../e2e/lib/machine.mjs'
import { spread } from '../e2e/lib/stats.mjs'
import { prng } from '../lib/prng.mjs'

const require = createRequire(import.meta.url)
const { Qlobber } = require('qlobber')
const QlobberSub = require('qlobber/aedes/qlobber-sub')

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const { values: v } = parseArgs({
  options: {
    rounds: { type: 'string', default: '9' },
    'round-ms': { type: 'string', default: '250' },
    out: { type: 'string', default: resolve(ROOT, 'benchmarks/results/micro.json') }
  }
})
const ROUNDS = Number(v.rounds)
const ROUND_MS = Number(v['round-ms'])
// Aedes' options for both of its matchers (aedes-persistence, mqemitter defaults)
const QLOBBER_OPTIONS = { separator: '/', wildcard_one: '+', wildcard_some: '#', match_empty_levels: true }

/**
 * Subscription tables and the topics published into them. Each subscription is
 * (clientId, filter); each topic is matched, and the matchers must agree on the match count.
 */
function scenarios () {
  const rnd = prng(42)
  const pick = (n) => Math.floor(rnd() * n)
  const out = []
  // Device fleet: each device listens on its own command topic, a few consoles watch everything.
  {
    const subs = []
    for (let i = 0; i < 10_000; i++) subs.push([`dev-${i}`, `devices/${i}/cmd/#`])
    for (let i = 0; i < 10; i++) subs.push([`console-${i}`, 'devices/+/cmd/#'])
    const topics = Array.from({ length: 1000 }, () => `devices/${pick(10_000)}/cmd/reboot`)
    out.push({ id: 'fleet-10k', title: '10,000 devices (devices/<id>/cmd/#) + 10 wildcard consoles', subs, topics })
  }
  // Telemetry fan-in: many exact subscriptions, few topics each.
  {
    const subs = []
    for (let i = 0; i < 1000; i++) subs.push([`app-${i}`, `site/${i % 50}/line/${i % 20}/telemetry`])
    const topics = Array.from({ length: 1000 }, () => `site/${pick(50)}/line/${pick(20)}/telemetry`)
    out.push({ id: 'exact-1k', title: '1,000 exact 5-level filters', subs, topics })
  }
  // Wildcard-heavy: + and # at several levels, deeper topic names.
  {
    const subs = []
    const levels = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']
    for (let i = 0; i < 1000; i++) {
      const parts = Array.from({ length: 2 + pick(4) }, () => (rnd() < 0.3 ? '+' : levels[pick(8)]))
      if (rnd() < 0.3) parts.push('#')
      subs.push([`w-${i}`, parts.join('/')])
    }
    const topics = Array.from({ length: 1000 }, () => Array.from({ length: 2 + pick(5) }, () => levels[pick(8)]).join('/'))
    out.push({ id: 'wildcards-1k', title: '1,000 filters with + and # (2-6 levels)', subs, topics })
  }
  return out
}

/** The matchers, each built from a table and returning a match function (topic -> match count). */
const matchers = {
  'petrel TopicTrie': (subs) => {
    const t = new TopicTrie()
    for (const [clientId, filter] of subs) t.add(filter, { clientId, qos: 1 })
    return (topic) => t.match(topic).length
  },
  'qlobber QlobberSub (aedes-persistence)': (subs) => {
    const q = new QlobberSub(QLOBBER_OPTIONS)
    for (const [clientId, filter] of subs) q.add(filter, { clientId, topic: filter, qos: 1 })
    return (topic) => q.match(topic).length
  },
  'qlobber Qlobber (mqemitter)': (subs) => {
    const q = new Qlobber(QLOBBER_OPTIONS)
    for (const [clientId, filter] of subs) q.add(filter, clientId)
    return (topic) => q.match(topic).length
  }
}

/** Matches per second over one round of about ROUND_MS. */
function round (match, topics) {
  let n = 0
  let sink = 0
  const t0 = performance.now()
  const until = t0 + ROUND_MS
  let now = t0
  while (now < until) {
    for (let i = 0; i < topics.length; i++) sink += match(topics[i])
    n += topics.length
    now = performance.now()
  }
  if (sink < 0) console.log(sink) // keeps the work observable
  return n / ((now - t0) / 1000)
}

const results = []
for (const s of scenarios()) {
  const built = Object.fromEntries(Object.entries(matchers).map(([name, make]) => [name, make(s.subs)]))
  // The matchers must agree before their speed means anything.
  const counts = Object.entries(built).map(([name, m]) => [name, s.topics.reduce((a, t) => a + m(t), 0)])
  if (new Set(counts.map((c) => c[1])).size !== 1) throw new Error(`${s.id}: matchers disagree: ${JSON.stringify(counts)}`)
  for (const m of Object.values(built)) round(m, s.topics) // warm-up
  const rates = Object.fromEntries(Object.keys(built).map((k) => [k, []]))
  for (let r = 0; r < ROUNDS; r++) {
    const order = Object.keys(built)
    if (r % 2 === 1) order.reverse()
    for (const k of order) {
      globalThis.gc?.()
      rates[k].push(round(built[k], s.topics))
    }
  }
  results.push({
    id: s.id,
    title: s.title,
    group: 'topic-match',
    metric: 'matches per second',
    unit: 'match/s',
    higherIsBetter: true,
    subscriptions: s.subs.length,
    matchesPerTopic: counts[0][1] / s.topics.length,
    results: Object.fromEntries(Object.entries(rates).map(([k, xs]) => {
      const sp = spread(xs)
      return [k, { median: Math.round(sp.median), min: Math.round(sp.min), max: Math.round(sp.max), rounds: xs.length }]
    }))
  })
  process.stderr.write(`${s.title}: ${Object.entries(rates).map(([k, xs]) => `${k} ${Math.round(spread(xs).median)}/s`).join(', ')}\n`)
}

const version = (p) => JSON.parse(readFileSync(resolve(ROOT, 'node_modules', p, 'package.json'), 'utf8')).version
const doc = {
  suite: 'micro',
  command: `node --expose-gc benchmarks/src/micro/topic-match.mjs ${process.argv.slice(2).join(' ')}`.trim(),
  date: new Date().toISOString(),
  machine: machineInfo(),
  versions: { node: process.version, '@petrel/session': version('@petrel/session'), qlobber: version('qlobber'), 'aedes-persistence': version('aedes-persistence'), mqemitter: version('mqemitter') },
  notes: [`${ROUNDS} alternating rounds of ${ROUND_MS} ms per matcher after a warm-up; median round (min-max).`],
  scenarios: results
}
mkdirSync(dirname(v.out), { recursive: true })
writeFileSync(v.out, JSON.stringify(doc, null, 2) + '\n')
process.stderr.write(`wrote ${v.out}\n`)
