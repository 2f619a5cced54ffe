import type { LatencySummary } from './latency.js'
import type { BenchOptions } from './options.js'
import type { ReceiveResult, SequenceReport } from './sequence-tracker.js'
import { STAMP_BYTES } from './stamp.js'
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
  /**
   * CPU time this process used (user + system) and its share of one core over the run: near
   * 100% the load tool itself is the limit, and more processes (-n to split the indices) help.
   */
  cpu: { userSeconds: number, systemSeconds: number, percentOfCore: number }
  connections: {
    attempted: number
    established: number
    failed: number
    lost: number
    /** Establishment rate: connections established per second, first attempt to last CONNACK. */
    perSecond: number
    connectMs: LatencySummary
  }
  publish?: { sent: number, acked: number, seconds: number, perSecond: number }
  receive?: {
    received: number
    seconds: number
    perSecond: number
    /** Null when payloads were too small to carry the stamp (or nothing arrived after the warm-up). */
    latencyMs: LatencySummary | null
    /** With --warmup: the latencies of what arrived during the warm-up, left out of `latencyMs`. */
    warmupLatencyMs?: LatencySummary
    /**
     * How loss was checked: 'sequence' (per publisher, from the stamps), 'count' (payloads too
     * small for a stamp: received against sent, no duplicate or order check), or 'none'
     * (`sub` with unstamped payloads: nothing to compare against).
     */
    checked: 'sequence' | 'count' | 'none'
    /** Messages that carried no bench stamp (too short, or other traffic on the filter): not in latency or loss. */
    unstamped: number
    missing: number
    duplicates: number
    outOfOrder: number
    /** One row per publisher seen (or expected), problems or not; capped at 1,000 rows. */
    publishers: SequenceReport[]
  }
  errors: Record<string, number>
}

const MAX_PUBLISHER_ROWS = 1000

export function buildSummary (o: BenchOptions, s: BenchStats, endedAt: number, result?: ReceiveResult): BenchSummary {
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
    cpu: cpuSummary(s.startCpu, endedAt - s.startedAt),
    connections: {
      attempted: s.connectAttempts,
      established: s.connected,
      failed: s.connectFailed,
      lost: s.lost,
      perSecond: rate(s.connected, (s.lastConnectedAt - s.firstConnectAt) / 1000),
      connectMs: s.connectTime.summary()
    },
    errors: Object.fromEntries([...s.errors].sort((a, b) => b[1] - a[1]))
  }
  if (o.mode === 'pub' || o.mode === 'pubsub') {
    const seconds = (s.lastSentAt - s.firstSentAt) / 1000
    summary.publish = { sent: s.sent, acked: s.acked, seconds: round(seconds), perSecond: rate(s.sent, seconds) }
  }
  if (o.mode === 'sub' || o.mode === 'pubsub') {
    const seconds = (s.lastReceivedAt - s.firstReceivedAt) / 1000
    const rows = result?.reports ?? []
    const latency = s.latency.summary()
    // pubsub knows the payload size; a lone `sub` can only tell from what arrived.
    const stamped = o.mode === 'pubsub' ? o.payloadSize >= STAMP_BYTES : s.received === 0 || s.received > s.unstamped
    const checked = stamped ? 'sequence' : result?.expected !== undefined ? 'count' : 'none'
    summary.receive = {
      received: s.received,
      seconds: round(seconds),
      perSecond: rate(s.received, seconds),
      latencyMs: latency.count > 0 ? latency : null,
      ...(s.latency.warmup === undefined ? {} : { warmupLatencyMs: s.latency.warmup }),
      checked,
      unstamped: s.unstamped,
      missing: checked === 'count' ? Math.max(0, (result?.expected ?? 0) - s.received) : rows.reduce((n, r) => n + r.missing, 0),
      duplicates: rows.reduce((n, r) => n + r.duplicates, 0),
      outOfOrder: rows.reduce((n, r) => n + r.outOfOrder, 0),
      publishers: rows.slice(0, MAX_PUBLISHER_ROWS)
    }
  }
  return summary
}

function cpuSummary (since: NodeJS.CpuUsage, elapsedMs: number): BenchSummary['cpu'] {
  const { user, system } = process.cpuUsage(since)
  return {
    userSeconds: round(user / 1e6),
    systemSeconds: round(system / 1e6),
    percentOfCore: elapsedMs > 0 ? Math.round((user + system) / 10 / elapsedMs) : 0
  }
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
  const who = r.mode === 'pubsub' ? `${r.clients} pub / ${r.subscribers} sub` : `${r.clients} client${r.clients === 1 ? '' : 's'}`
  // Payload size and QoS are the publishers' choice: a lone subscriber or connection holder has none.
  const load = r.mode === 'conn' ? '' : r.mode === 'sub' ? `  QoS ${r.qos}` : `  QoS ${r.qos}  ${r.payloadSize} B`
  const lines = [`petrel bench ${r.mode}  ${r.url}  ${version}${load}  ${who}` +
    `${r.rate > 0 ? `  ${si(r.rate)} msg/s each` : ''}`]
  const row = (name: string, text: string): void => { lines.push(`  ${name.padEnd(12)}${text}`) }
  row('elapsed', `${r.elapsedSeconds.toFixed(2)} s`)
  const c = r.connections
  row('connections', `${c.established}/${c.attempted} established${c.established > 1 ? ` (${si(c.perSecond)}/s)` : ''}, ${c.failed} failed, ${c.lost} lost` +
    (c.connectMs.count > 0 ? `; connect p50 ${ms(c.connectMs.p50)}  p99 ${ms(c.connectMs.p99)}  max ${ms(c.connectMs.max)} ms` : ''))
  if (r.publish !== undefined) {
    const p = r.publish
    row('published', `${p.sent.toLocaleString('en-US')} sent${r.qos > 0 ? `, ${p.acked.toLocaleString('en-US')} acked` : ''} in ${p.seconds.toFixed(2)} s: ${si(p.perSecond)} msg/s`)
  }
  if (r.receive !== undefined) {
    const v = r.receive
    row('received', `${v.received.toLocaleString('en-US')} in ${v.seconds.toFixed(2)} s: ${si(v.perSecond)} msg/s`)
    const noStamps = `no bench stamps: payloads under ${STAMP_BYTES} bytes, or not from petrel bench`
    row('latency', v.latencyMs !== null ? latencyLine(v.latencyMs) : v.received === 0 ? 'n/a (nothing received)' : v.warmupLatencyMs !== undefined ? 'n/a (nothing after the warm-up)' : `n/a (${noStamps})`)
    if (v.warmupLatencyMs !== undefined && v.warmupLatencyMs.count > 0) row('  (warm-up)', latencyLine(v.warmupLatencyMs))
    if (v.checked === 'sequence' && v.unstamped > 0) row('', `${v.unstamped.toLocaleString('en-US')} messages carried no bench stamp (other traffic?): left out of latency and loss`)
    if (v.checked === 'sequence') {
      row('loss', `${v.missing} missing, ${v.duplicates} duplicated, ${v.outOfOrder} out of order (${v.publishers.length} publishers)`)
    } else if (v.checked === 'count') {
      row('loss', `${v.missing} missing by count (no per-publisher check: ${noStamps})`)
    } else {
      row('loss', `not checked (${noStamps})`)
    }
    for (const p of v.publishers.filter((x) => x.missing + x.duplicates + x.outOfOrder > 0).slice(0, 10)) {
      row('', `publisher ${p.publisher}: ${p.received} received, ${p.missing} missing, ${p.duplicates} duplicated, ${p.outOfOrder} out of order`)
    }
  }
  row('load tool', `${r.cpu.percentOfCore}% of one core (user ${r.cpu.userSeconds.toFixed(2)} s, system ${r.cpu.systemSeconds.toFixed(2)} s)` +
    (r.cpu.percentOfCore >= 90 ? ': the load tool may be the limit; split the clients over several processes' : ''))
  const errors = Object.entries(r.errors)
  row('errors', errors.length === 0 ? 'none' : errors.map(([k, n]) => `${k} x${n}`).join(', '))
  return lines.join('\n')
}
