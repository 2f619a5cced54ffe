#!/usr/bin/env node
// The results page: reads every benchmarks/results/*.json that exists (any subset of them) and
// writes benchmarks/RESULTS.md, with one table per suite (medians, min-max, and Petrel's ratio
// against each peer measured in the same run) and SVG charts per scenario group, drawn from the
// same data (benchmarks/results/<suite>-<group>.svg).
//
//   npm run report --workspace benchmarks        (node src/report.mjs [--dir results] [--out RESULTS.md])
//
// Each results file: { suite, command, date, machine: {...}, versions: {...}, scenarios: [{ id,
// title, metric, unit, higherIsBetter, group?, rate?, skipped?, results: { <impl>: { median, min,
// max, ... } } }] }. A scenario with a numeric `rate` is charted as a line over the rates of its
// group; the others as bars. Nothing here runs a benchmark: it only reads what the suites wrote.
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { barChart, lineChart } from './report/svg.mjs'

const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url))
const { values: v } = parseArgs({
  options: {
    dir: { type: 'string', default: join(BENCH_DIR, 'results') },
    out: { type: 'string', default: join(BENCH_DIR, 'RESULTS.md') }
  }
})
const dir = resolve(v.dir)
const out = resolve(v.out)

const SUITE_ORDER = ['client', 'broker', 'latency', 'scale', 'micro', 'wire', 'generator']
const SUITE_TITLES = {
  client: 'Client: @petrel/client vs MQTT.js',
  broker: 'Broker: Petrel vs mosquitto vs Aedes',
  scale: 'Scale: idle connections held by the broker',
  micro: 'Micro-benchmarks: topic matching',
  wire: 'Codec: @petrel/wire vs mqtt-packet',
  generator: '`petrel bench` vs a raw pre-encoded generator (is the load tool the bottleneck?)'
}
/** What a reader needs to read a suite's table right; the suites' own notes come after. */
const SUITE_NOTES = {
  generator: 'Both generators drive the same fresh mosquitto per run, alternating; each is one process holding all its publishers and subscribers. A ratio near 1.00 means `petrel bench` gets as much through the broker as a program that does nothing but write pre-encoded bytes and count headers; under 0.90 the load tool itself would be the limit. The generators\' own CPU share is recorded below the table: where it nears 100% of a core (1 -> 1 here) the test is tightest, and several `petrel bench` processes (`-n` to split the client indices) lift the ceiling.',
  scale: 'Resident memory is the broker process\'s own (VmRSS); kernel socket buffers are not in it, for any broker. The fd limit of a process caps the connections it can hold: a count that does not fit is listed as not measured, with the reason.',
  micro: 'Matchers are built from the same subscription table and must agree on every match count before they are timed.'
}
/** Names for the extra per-implementation fields the suites record beside the median. */
const DETAIL_LABELS = {
  cpuUsPerMsg: 'CPU per message (µs)',
  cpuUsPerMessage: 'CPU per message (µs)',
  rssMb: 'peak RSS (MB)',
  peakRssMb: 'peak RSS (MB)',
  deliveredPct: 'delivered (%)',
  established: 'connections established',
  settledRssMb: 'RSS settled (MB)',
  idlePerConnectionKb: 'KB per connection 2 s after the burst',
  peakPerConnectionKb: 'KB per connection at the peak',
  kbPerConnection2s: 'KiB per connection 2 s after the last connect',
  warmupMs: 'the same during the warm-up before it (ms)',
  rssKb: 'RSS with the connections (KiB)',
  baseRssKb: 'RSS at rest (KiB)',
  connectP50Ms: 'connect p50 (ms)',
  connectP99Ms: 'connect p99 (ms)',
  failed: 'connections failed',
  completedInCap: 'did not finish within the time cap; delivered (replay: acked) by then',
  generatorCpuPercent: 'load generator CPU (% of one core)',
  cpuSecondsToEstablish: 'broker CPU to establish all (s)'
}
const NOT_DETAILS = new Set(['median', 'min', 'max', 'runs', 'rounds', 'n'])
/** Peer results, written by hand elsewhere, linked when present. */
const OTHER_PAGES = ['RESULTS-client.md', 'RESULTS-broker.md', 'RESULTS-wire.md']
/**
 * Implementations that are reference ceilings, not competitors (pre-encoded raw sockets, a bare
 * Node.js relay): their ratio is shown, but Petrel is not "behind" them the way it can be behind
 * a peer.
 */
const isBaseline = (impl) => /^raw|relay/i.test(impl)
/** Petrel "behind" only past this margin: closer results are within the run-to-run noise here. */
const NOISE = 0.05

// --- reading ------------------------------------------------------------------------------------

function readSuites () {
  if (!existsSync(dir)) return []
  const suites = []
  for (const name of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    try {
      const doc = JSON.parse(readFileSync(join(dir, name), 'utf8'))
      if (!Array.isArray(doc.scenarios)) throw new Error('no scenarios array')
      suites.push({ file: name, ...doc, suite: doc.suite ?? name.replace(/\.json$/, '') })
    } catch (err) {
      process.stderr.write(`skipping ${name}: ${err.message}\n`)
    }
  }
  const rank = (s) => (SUITE_ORDER.includes(s.suite) ? SUITE_ORDER.indexOf(s.suite) : SUITE_ORDER.length)
  return suites.sort((a, b) => rank(a) - rank(b) || a.suite.localeCompare(b.suite))
}

/** The implementation keys of a suite, Petrel's first (the one ratios are taken of). */
function implsOf (suite) {
  const keys = []
  for (const s of suite.scenarios) for (const k of Object.keys(s.results ?? {})) if (!keys.includes(k)) keys.push(k)
  const petrel = keys.filter((k) => /petrel/i.test(k))
  return { petrel: petrel[0], all: [...petrel, ...keys.filter((k) => !/petrel/i.test(k))] }
}

// --- formatting ---------------------------------------------------------------------------------

function num (n, unit) {
  if (!Number.isFinite(n)) return '-'
  const a = Math.abs(n)
  if (/ms|µs|us|s$/.test(unit ?? '') && !/\/s/.test(unit ?? '')) return a >= 100 ? n.toFixed(0) : a >= 10 ? n.toFixed(1) : n.toFixed(2)
  if (a >= 1e6) return `${(n / 1e6).toFixed(2)}M`
  if (a >= 1e4) return `${(n / 1e3).toFixed(1)}k`
  if (a >= 100) return n.toFixed(0)
  if (a >= 10) return n.toFixed(1)
  return n.toFixed(2)
}

function cell (r, unit) {
  if (r === undefined || !Number.isFinite(r.median)) return '-'
  const spread = Number.isFinite(r.min) && Number.isFinite(r.max) && r.min !== r.max ? ` (${num(r.min, unit)}-${num(r.max, unit)})` : ''
  return `${num(r.median, unit)}${spread}`
}

/** How many times better Petrel is than `peer` (> 1: better, < 1: behind), whatever the direction of the metric. */
function advantage (scenario, petrel, peer) {
  const a = scenario.results?.[petrel]?.median
  const b = scenario.results?.[peer]?.median
  if (!Number.isFinite(a) || !Number.isFinite(b) || a <= 0 || b <= 0) return NaN
  return scenario.higherIsBetter === false ? b / a : a / b
}

function ratioCell (x) {
  if (!Number.isFinite(x)) return '-'
  const t = `${x.toFixed(2)}x`
  return x < 1 - NOISE ? `**${t}** (behind)` : t
}

/** The machine without what changes from run to run (load, limits), so that one machine prints once. */
function machineLine (m) {
  if (m === undefined) return 'unknown'
  return [m.cpu !== undefined ? `${m.cpu} x ${m.cores ?? '?'}` : undefined, m.memory, m.os].filter((p) => p !== undefined).join(', ')
}

/** What a suite recorded about its run: load average, node, limits. */
function runConditions (m) {
  if (m === undefined) return ''
  const parts = [m.node, m.load !== undefined ? `load average at the end (1, 5, 15 min, the suite's own processes included) ${m.load}` : undefined]
  const known = new Set(['cpu', 'cores', 'memory', 'os', 'node', 'load'])
  const labels = { fdHardLimit: 'file-descriptor hard limit' }
  for (const [k, val] of Object.entries(m)) if (!known.has(k)) parts.push(`${labels[k] ?? k} ${typeof val === 'object' ? JSON.stringify(val) : val}`)
  return parts.filter((p) => p !== undefined).join(', ')
}

// --- charts -------------------------------------------------------------------------------------

const slug = (s) => String(s).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '')

/** Scenario groups of a suite: explicit `group`, else one per metric and unit. */
function groups (suite) {
  const m = new Map()
  for (const s of suite.scenarios) {
    if (Object.keys(s.results ?? {}).length === 0) continue
    const key = s.group ?? `${s.metric ?? 'value'} ${s.unit ?? ''}`.trim()
    if (!m.has(key)) m.set(key, [])
    m.get(key).push(s)
  }
  return m
}

/** Every chart written in this run, so that charts of scenarios no longer in the results go. */
const chartsWritten = new Set()

function chartsFor (suite) {
  const { all } = implsOf(suite)
  const written = []
  for (const [key, scenarios] of groups(suite)) {
    const first = scenarios[0]
    const yLabel = `${first.metric ?? ''}${first.unit ? ` (${first.unit})` : ''}`
    const direction = first.higherIsBetter === false ? 'lower is better' : 'higher is better'
    const impls = all.filter((k) => scenarios.some((s) => s.results?.[k] !== undefined))
    const point = (s, k, x) => {
      const r = s.results?.[k]
      return r === undefined ? undefined : { x, median: r.median, min: r.min ?? r.median, max: r.max ?? r.median }
    }
    const rated = scenarios.every((s) => Number.isFinite(s.rate))
    // Bars: at most 6 categories per chart, so that labels stay readable.
    const chunks = rated ? [scenarios] : Array.from({ length: Math.ceil(scenarios.length / 6) }, (_, i) => scenarios.slice(i * 6, i * 6 + 6))
    chunks.forEach((chunk, ci) => {
      const name = `${slug(suite.suite)}-${slug(key)}${chunks.length > 1 ? `-${ci + 1}` : ''}.svg`
      const title = `${SUITE_TITLES[suite.suite]?.replace(/`/g, '') ?? suite.suite}`
      const subtitle = `${first.metric ?? key}, median of runs, whiskers min-max, ${direction}`
      const svg = rated
        ? lineChart({
          title, subtitle, yLabel, xLabel: first.rateLabel ?? 'offered rate (msg/s)',
          series: impls.map((k) => ({ name: k, points: chunk.map((s) => point(s, k, s.rate)).filter(Boolean) }))
        })
        : barChart({
          title, subtitle, yLabel, categories: chunk.map((s) => s.title ?? s.id),
          series: impls.map((k) => ({ name: k, points: chunk.map((s) => point(s, k, s.title ?? s.id)).filter(Boolean) }))
        })
      writeFileSync(join(dir, name), svg)
      chartsWritten.add(name)
      written.push({ name, key })
    })
  }
  return written
}

// --- the page -----------------------------------------------------------------------------------

function suiteSection (suite, behind) {
  const { petrel, all } = implsOf(suite)
  const peers = all.filter((k) => k !== petrel)
  const lines = [`## ${SUITE_TITLES[suite.suite] ?? suite.suite}`, '']
  if (suite.command !== undefined) lines.push(`Command: \`${suite.command}\`${suite.date !== undefined ? ` (run ${suite.date.slice(0, 16).replace('T', ' ')} UTC)` : ''}`, '')
  if (SUITE_NOTES[suite.suite] !== undefined) lines.push(SUITE_NOTES[suite.suite], '')
  if (suite.goal !== undefined) lines.push(`Goal: ${suite.goal}.`, '')
  const head = ['Scenario', 'Metric', ...all.map((k) => k)]
  if (petrel !== undefined) head.push(...peers.map((p) => `${petrel} vs ${p}${isBaseline(p) ? ' (ceiling)' : ''}`))
  lines.push(`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`)
  for (const s of suite.scenarios) {
    // Nothing measured (every implementation skipped): said once below the table instead.
    if (Object.keys(s.results ?? {}).length === 0) continue
    const unit = s.unit ?? ''
    const metric = `${s.metric ?? ''}${unit ? ` (${unit})` : ''}, ${s.higherIsBetter === false ? 'lower' : 'higher'} is better`
    const row = [s.title ?? s.id, metric, ...all.map((k) => cell(s.results?.[k], unit))]
    if (petrel !== undefined) {
      for (const p of peers) {
        const x = advantage(s, petrel, p)
        if (isBaseline(p)) {
          row.push(Number.isFinite(x) ? `${x.toFixed(2)}x` : '-')
          continue
        }
        row.push(ratioCell(x))
        if (x < 1 - NOISE) behind.push({ suite: suite.suite, scenario: s.title ?? s.id, peer: p, x })
        // Latency runs after a warm-up carry the warm-up's own median (lower is better): listed too.
        const wp = s.results?.[petrel]?.warmupMs
        const wq = s.results?.[p]?.warmupMs
        if (typeof wp === 'number' && typeof wq === 'number' && wp > 0 && wq / wp < 1 - NOISE) {
          behind.push({ suite: suite.suite, scenario: `${s.title ?? s.id}, during the warm-up itself (${wp} vs ${wq} ms)`, peer: p, x: wq / wp })
        }
      }
    }
    lines.push(`| ${row.join(' | ')} |`)
  }
  lines.push('')
  if (petrel !== undefined && peers.length > 0) {
    lines.push(`Ratios: how many times better ${petrel} is than the peer on the median (above 1: better; **bold**: behind by more than ${NOISE * 100}%, the run-to-run noise here).` +
      (peers.some(isBaseline) ? ' A "ceiling" is a raw pre-encoded socket program doing the same job with no library, or (node-relay, latency only) a Node.js process that only forwards bytes: how close Petrel gets to it, not a competitor.' : ''), '')
  }
  lines.push(...details(suite, all))
  if (typeof suite.skipped === 'string') lines.push(`- Not measured: ${suite.skipped}`)
  else for (const [k, why] of Object.entries(suite.skipped ?? {})) lines.push(`- Not measured: ${k}: ${why}`)
  const skipped = suite.scenarios.filter((s) => s.skipped !== undefined)
  for (const s of skipped) {
    const reasons = typeof s.skipped === 'string' ? [s.skipped] : [...new Set(Object.values(s.skipped))]
    const why = reasons.length === 1
      ? `${typeof s.skipped === 'string' ? '' : `${Object.keys(s.skipped).join(', ')}: `}${reasons[0]}`
      : Object.entries(s.skipped).map(([k, w]) => `${k}: ${w}`).join('; ')
    lines.push(`- Not measured: "${s.title ?? s.id}" (${why}).`)
  }
  for (const n of suite.notes ?? []) lines.push(`- ${n}`)
  if (skipped.length > 0 || (suite.notes ?? []).length > 0 || Object.keys(suite.skipped ?? {}).length > 0) lines.push('')
  for (const c of chartsFor(suite)) lines.push(`![${c.key}](${relative(dirname(out), join(dir, c.name)).replaceAll('\\', '/')})`, '')
  return lines
}

/** Counts exactly (10,000), measurements to three digits. */
function detail (val) {
  return Number.isInteger(val) ? val.toLocaleString('en-US') : num(val, '')
}

/** The numbers each suite recorded beside the medians (CPU per message, peak memory, ...), as a second table. */
function details (suite, impls) {
  const rows = []
  for (const s of suite.scenarios) {
    const fields = []
    for (const k of impls) {
      for (const [f, val] of Object.entries(s.results?.[k] ?? {})) {
        if (!NOT_DETAILS.has(f) && typeof val === 'number' && !fields.includes(f)) fields.push(f)
      }
    }
    for (const f of fields) {
      rows.push(`| ${s.title ?? s.id} | ${DETAIL_LABELS[f] ?? f} | ${impls.map((k) => detail(s.results?.[k]?.[f])).join(' | ')} |`)
    }
  }
  if (rows.length === 0) return []
  return ['Recorded beside each median (medians over the same runs):', '',
    `| Scenario | | ${impls.join(' | ')} |`, `|---|---|${impls.map(() => '---:').join('|')}|`, ...rows, '']
}

function page (suites) {
  const lines = [
    '# Petrel benchmark results', '',
    `Generated by \`npm run report --workspace benchmarks\` from \`benchmarks/results/*.json\` (${suites.map((s) => s.file).join(', ') || 'none found'}). ` +
      'Do not edit by hand: re-run the suites, then the report. Every suite starts fresh processes for each run and reports medians with min-max over its runs; ' +
      'ratios compare implementations measured in the same run on the same machine.', ''
  ]
  if (suites.length === 0) {
    lines.push('No results yet: run the suites first (see the commands in benchmarks/package.json).', '')
    return lines.join('\n')
  }
  const behind = []
  const body = suites.flatMap((s) => suiteSection(s, behind))

  lines.push('## Machine', '')
  const machines = new Map()
  for (const s of suites) {
    const line = machineLine(s.machine)
    machines.set(line, [...(machines.get(line) ?? []), s.suite])
  }
  // Machines that gave less detail (e.g. only the CPU) are the same machine when the CPU matches.
  const full = [...machines.keys()].sort((a, b) => b.length - a.length)
  for (const line of full.slice(1)) {
    const wider = full.find((f) => f !== line && f.startsWith(line))
    if (wider !== undefined) {
      machines.set(wider, [...machines.get(wider), ...machines.get(line)])
      machines.delete(line)
    }
  }
  if (machines.size === 1) lines.push(`${[...machines.keys()][0]}.`, '')
  else for (const [line, names] of machines) lines.push(`- ${names.join(', ')}: ${line}`)
  if (machines.size > 1) lines.push('')
  for (const s of suites) {
    const c = runConditions(s.machine)
    if (c !== '') lines.push(`- ${s.suite}: ${c}`)
  }
  lines.push('')
  lines.push('The machine is shared: other work may run beside a suite (each suite holds `/tmp/petrel-bench.lock` so suites never overlap each other). Compare ratios within one run rather than absolute numbers across runs.', '')

  lines.push('## Versions', '', '| Component | Version | Suites |', '|---|---|---|')
  const versions = new Map()
  for (const s of suites) {
    for (const [k, val] of Object.entries(s.versions ?? {})) {
      const key = `${k}\u0000${val}`
      versions.set(key, [...(versions.get(key) ?? []), s.suite])
    }
  }
  for (const [key, names] of [...versions].sort()) {
    const [k, val] = key.split('\u0000')
    lines.push(`| ${k} | ${val} | ${names.join(', ')} |`)
  }
  lines.push('')

  lines.push('## Commands', '', 'Build first (`npm ci && npx tsc -b`), and hold the lock so that nothing else benchmarks at the same time:', '', '```sh')
  for (const s of suites) if (s.command !== undefined) lines.push(s.command.startsWith('flock ') ? s.command : `flock /tmp/petrel-bench.lock ${s.command}`)
  lines.push('npm run report --workspace benchmarks', '```', '')

  lines.push(...body)

  lines.push('## Where Petrel is behind', '')
  if (behind.length === 0) lines.push(`Nowhere by more than ${NOISE * 100}% in the results above.`)
  for (const b of behind) lines.push(`- ${b.suite}: ${b.scenario}: ${b.x.toFixed(2)}x of ${b.peer}.`)
  lines.push('')
  const others = OTHER_PAGES.filter((p) => existsSync(join(dirname(out), p)))
  if (others.length > 0) {
    lines.push('## More', '', 'Each suite\'s own page, with its notes and scenario details:', '')
    for (const p of others) lines.push(`- [${p}](${p})`)
    lines.push('')
  }
  return lines.join('\n')
}

const suites = readSuites()
writeFileSync(out, page(suites))
// Charts are named <suite>-<group>.svg: one of a suite in the results that this run did not draw is stale.
const suiteSlugs = new Set(suites.map((s) => slug(s.suite)))
for (const f of readdirSync(dir)) {
  if (f.endsWith('.svg') && !chartsWritten.has(f) && suiteSlugs.has(f.split('-')[0])) rmSync(join(dir, f))
}
process.stderr.write(`wrote ${relative(process.cwd(), out) || out} from ${suites.length} results file(s)\n`)
