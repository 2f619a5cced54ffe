import type { LatencySummary } from './latency.js'
import type { BenchOptions } from './options.js'
import type { SequenceReport } from './sequence-tracker.js'
import type { BenchStats } from './stats.js'
import { ms, si } from './format.js'

/** Sequence reports of one publisher, added up over every subscriber. */
export function mergeReports (reports: Iterable<SequenceReport>): SequenceReport[] {
  const byPublisher = new Map<number, SequenceReport>()
  for (const r of reports) {
    const m = byPublisher.get(r.publisher)
    if (m === undefined) byPublisher.set(r.publisher, { ...r })
    else {
      m.received += r.received
      m.missing += r.missing
      m.duplicates += r.duplicates
      m.outOfOrder += r.outOfOrder
    }
  }
  return [...byPublisher.values()].sort((a, b) => a.publisher - b.publisher)
}

/** The final report; `--json` prints exactly this. Times in milliseconds unless named otherwise. */
export interface BenchSummary {
  mode: BenchOptions['mode']
  url: string
  protocolVersion: number
  qos: number
  payloadSize: number
  clients: number
  subscribers: number
  /** Messages per second per publisher; 0: unlimited. */
  rate: number
  elapsedSeconds: number
  connections: { attempted: number, established: number, failed: number, lost: number, connectMs: LatencySummary }
  publish?: { sent: number, acked: number, seconds: number, perSecond: number }
  receive?: {
    received: number
    seconds: number
    perSecond: number
    /** Null when payloads were too small to carry the stamp. */
    latencyMs: LatencySummary | null
    missing: number
    duplicates: number
    outOfOrder: number
    /** One row per publisher seen (or expected), problems or not; capped at 1,000 rows. */
    publishers: SequenceReport[]
  }
  errors: Record<string, number>
}

const MAX_PUBLISHER_ROWS = 1000

export function buildSummary (o: BenchOptions, s: BenchStats, endedAt: number, reports?: SequenceReport[]): BenchSummary {
  const summary: BenchSummary = {
    mode: o.mode,
    url: o.target.url,
    protocolVersion: o.protocolVersion,
    qos: o.qos,
    payloadSize: o.payloadSize,
    clients: o.clients,
    subscribers: o.mode === 'pubsub' ? o.subscribers : 0,
    rate: o.rate,
    elapsedSeconds: round((endedAt - s.startedAt) / 1000),
    connections: {
      attempted: s.connectAttempts, established: s.connected, failed: s.connectFailed, lost: s.lost, connectMs: s.connectTime.summary()
    },
    errors: Object.fromEntries([...s.errors].sort((a, b) => b[1] - a[1]))
  }
  if (o.mode === 'pub' || o.mode === 'pubsub') {
    const seconds = (s.lastSentAt - s.firstSentAt) / 1000
    summary.publish = { sent: s.sent, acked: s.acked, seconds: round(seconds), perSecond: rate(s.sent, seconds) }
  }
  if (o.mode === 'sub' || o.mode === 'pubsub') {
    const seconds = (s.lastReceivedAt - s.firstReceivedAt) / 1000
    const rows = reports ?? []
    const latency = s.latency.summary()
    summary.receive = {
      received: s.received,
      seconds: round(seconds),
      perSecond: rate(s.received, seconds),
      latencyMs: latency.count > 0 ? latency : null,
      missing: rows.reduce((n, r) => n + r.missing, 0),
      duplicates: rows.reduce((n, r) => n + r.duplicates, 0),
      outOfOrder: rows.reduce((n, r) => n + r.outOfOrder, 0),
      publishers: rows.slice(0, MAX_PUBLISHER_ROWS)
    }
  }
  return summary
}

function round (v: number): number {
  return Math.round(v * 1000) / 1000
}

function rate (count: number, seconds: number): number {
  return seconds > 0 ? Math.round(count / seconds) : 0
}

function latencyLine (l: LatencySummary): string {
  return `p50 ${ms(l.p50)}  p95 ${ms(l.p95)}  p99 ${ms(l.p99)}  max ${ms(l.max)} ms (mean ${ms(l.mean)}, ${si(l.count)} samples)`
}

/** The summary as a few aligned lines for people. */
export function formatSummary (r: BenchSummary): string {
  const version = r.protocolVersion === 5 ? 'MQTT 5.0' : r.protocolVersion === 4 ? 'MQTT 3.1.1' : 'MQTT 3.1'
  const who = r.mode === 'pubsub' ? `${r.clients} pub / ${r.subscribers} sub` : `${r.clients} clients`
  const lines = [`petrel bench ${r.mode}  ${r.url}  ${version}  QoS ${r.qos}  ${r.payloadSize} B  ${who}` +
    `${r.rate > 0 ? `  ${si(r.rate)} msg/s each` : ''}`]
  const row = (name: string, text: string): void => { lines.push(`  ${name.padEnd(12)}${text}`) }
  row('elapsed', `${r.elapsedSeconds.toFixed(2)} s`)
  const c = r.connections
  row('connections', `${c.established}/${c.attempted} established, ${c.failed} failed, ${c.lost} lost` +
    (c.connectMs.count > 0 ? `; connect p50 ${ms(c.connectMs.p50)}  p99 ${ms(c.connectMs.p99)}  max ${ms(c.connectMs.max)} ms` : ''))
  if (r.publish !== undefined) {
    const p = r.publish
    row('published', `${p.sent.toLocaleString('en-US')} sent${r.qos > 0 ? `, ${p.acked.toLocaleString('en-US')} acked` : ''} in ${p.seconds.toFixed(2)} s: ${si(p.perSecond)} msg/s`)
  }
  if (r.receive !== undefined) {
    const v = r.receive
    row('received', `${v.received.toLocaleString('en-US')} in ${v.seconds.toFixed(2)} s: ${si(v.perSecond)} msg/s`)
    row('latency', v.latencyMs === null ? 'n/a (payloads under 16 bytes carry no stamp)' : latencyLine(v.latencyMs))
    row('loss', `${v.missing} missing, ${v.duplicates} duplicated, ${v.outOfOrder} out of order (${v.publishers.length} publishers)`)
    for (const p of v.publishers.filter((x) => x.missing + x.duplicates + x.outOfOrder > 0).slice(0, 10)) {
      row('', `publisher ${p.publisher}: ${p.received} received, ${p.missing} missing, ${p.duplicates} duplicated, ${p.outOfOrder} out of order`)
    }
  }
  const errors = Object.entries(r.errors)
  row('errors', errors.length === 0 ? 'none' : errors.map(([k, n]) => `${k} x${n}`).join(', '))
  return lines.join('\n')
}
