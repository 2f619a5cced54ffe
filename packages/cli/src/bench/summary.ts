import type { LatencySummary } from './latency.js'
import type { BenchOptions, Tolerated } from './options.js'
import type { LimitShortfall, ReceiveResult, SequenceReport } from './sequence-tracker.js'
import { STAMP_BYTES } from './stamp.js'
import { runQueueWaitNs, type BenchStats } from './stats.js'
import { ms, si } from './format.js'

/** Sequence reports of one publisher (run id and index), added up over every subscriber. */
export function mergeReports (reports: Iterable<SequenceReport>): SequenceReport[] {
  const byPublisher = new Map<string, SequenceReport>()
  for (const r of reports) {
    const key = `${r.run}/${r.publisher}`
    const m = byPublisher.get(key)
    if (m === undefined) byPublisher.set(key, { ...r })
    else {
      m.received += r.received
      m.missing += r.missing
      m.duplicates += r.duplicates
      m.outOfOrder += r.outOfOrder
    }
  }
  return [...byPublisher.values()].sort((a, b) => a.run < b.run ? -1 : a.run > b.run ? 1 : a.publisher - b.publisher)
}

/** A rate needs a window at least this long: a burst read in one go has no meaningful rate. */
const MIN_RATE_WINDOW_S = 0.01
/** Below this run length the CPU share says more about start-up than about load. */
const MIN_CPU_WARNING_S = 2
const CPU_WARNING_PERCENT = 90
/** Run-queue wait, as a share of the run, from which the summary says the machine is oversubscribed. */
const WAIT_WARNING_SHARE = 0.1
/** All at once (-R 0 --max-connecting 0), this many handshakes overflow a listen backlog of 100 (mosquitto's). */
const BACKLOG_NOTE_CLIENTS = 100
/** Unpaced pubsub latencies from this median up are mostly the queues the publishers filled. */
const QUEUEING_LATENCY_MS = 100
/** The kernel's first SYN retransmission: connect times past it with -R suggest a dropped SYN. */
const SYN_RETRY_MS = 1000

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
  /** New connections per second (0: all at once) and the cap on handshakes in flight (0: none). */
  connRate: number
  maxConnecting: number
  elapsedSeconds: number
  /** Stopped by the user (Ctrl-C, SIGTERM) rather than by its count or --duration. */
  interrupted: boolean
  /**
   * Why the run failed, empty when it did not (exit code 2, 3 or 4 otherwise): no connection made,
   * connections failed or lost, messages missing or duplicated, subscriptions or publishes
   * refused, a limit of the broker's in the way. What --tolerate accepts is left out.
   */
  failures: string[]
  /**
   * CPU time this process used (user + system) and its share of one core over the run: near
   * 100% the load tool itself is the limit, and more processes (-n to split the indices) help.
   */
  cpu: { userSeconds: number, systemSeconds: number, percentOfCore: number, waitSeconds?: number | undefined }
  connections: {
    attempted: number
    established: number
    failed: number
    /** Handshakes still under way when the run ended (Ctrl-C, --duration): not failures. */
    cancelled: number
    /** Clients never started: the run ended (--duration, Ctrl-C, a failure) before the ramp was through. */
    notStarted: number
    lost: number
    /** Establishment rate: connections established per second, first attempt to last CONNACK. */
    perSecond: number | null
    /**
     * Dial to CONNACK (and SUBACK for subscribers). With no limit on handshakes under way
     * (--max-connecting 0, or a -R faster than the broker), this includes the kernel's SYN
     * retransmissions (1 s, 3 s...) once the broker's listen backlog is full.
     */
    connectMs: LatencySummary
  }
  /**
   * With --warmup: what the warm-up sent and received (`seconds` long, from the start). It is left
   * out of `publish` and `receive` (counts and rates), not out of the loss check, which covers
   * the whole run.
   */
  warmup?: { seconds: number, sent: number, acked: number, received: number }
  /**
   * `seconds` is measured: from the first message sent (or received) to the last; `ackedSeconds`
   * (QoS 1/2) from the first sent to the last acknowledgement. `perSecond` counts the intervals
   * within that span: N messages of a paced publisher span N - 1 of its intervals (each stream's
   * first message opens it), so that a steady rate reads as configured. Rates are null when that
   * is not known: every message went in a window under 10 ms, or each stream sent only one.
   * `streams`: the publishers that sent (publish), or the publisher-subscriber pairs that
   * delivered (receive). QoS 0 messages are sent once written to the socket: what the broker delivered is what
   * subscribers receive.
   */
  publish?: { sent: number, acked: number, seconds: number, ackedSeconds?: number, perSecond: number | null, streams: number }
  receive?: {
    received: number
    seconds: number
    perSecond: number | null
    streams: number
    /** Null when payloads were too small to carry the stamp (or nothing arrived after the warm-up). */
    latencyMs: LatencySummary | null
    /** With --warmup: the latencies of what arrived during the warm-up, left out of `latencyMs`. */
    warmupLatencyMs?: LatencySummary
    /**
     * How loss was checked: 'sequence' (per publisher, from the stamps), 'count' (payloads too
     * small for a stamp: received against sent, no duplicate or order check), or 'none'
     * (`sub` that received nothing, or only unstamped payloads: nothing to compare against).
     */
    checked: 'sequence' | 'count' | 'none'
    /** Messages that carried no bench stamp (too short, or other traffic on the filter): not in latency or loss. */
    unstamped: number
    /**
     * Stamped messages whose send time this machine's clock cannot compare (a publisher on
     * another machine, whose monotonic clock has another origin): in the loss check, not in latency.
     */
    clockNotComparable: number
    /**
     * In pubsub, counted from sequence 0 (subscribers subscribe before anything is sent); in sub,
     * from the first sequence seen of each publisher (a subscriber that joins late cannot know
     * what it missed before, least of all at QoS 0), so loss before the first message is not seen.
     */
    missing: number
    /** pubsub: the messages the subscribers should have received over the whole run (warm-up included). */
    expected?: number
    /**
     * pubsub: the wait for messages on their way (--drain-timeout) ran out while they still
     * arrived, so some of `missing` may be late rather than lost.
     */
    stillArriving?: boolean
    /**
     * sub -L: receivers given up on short of their count, once messages had come and then none for
     * --drain-timeout (their publishers are done): `received` of the `due`. Trailing loss shows
     * here, where the gaps (`missing`) cannot see it. Absent when every receiver had its count.
     */
    shortOfLimit?: LimitShortfall
    duplicates: number
    /** Messages of one publisher that arrived after a later one of it (per receiver). */
    outOfOrder: number
    /**
     * Of `outOfOrder`, those within members of shared subscriptions: MQTT 5.0 requires order on
     * non-shared subscriptions only [MQTT-4.6.0-6], so these are reported and fail no run.
     */
    outOfOrderShared?: number
    /**
     * Shared subscriptions among the subscribers: the members of each are one receiver (a
     * message reaches one of them), so loss and duplicates are counted over the group, and
     * `outOfOrder` only within each member (the order across members is not defined).
     */
    sharedGroups: number
    /** Publishers seen (or expected): all of them, where `publishers` stops at 1,000 rows. */
    publisherCount: number
    /** One row per publisher seen (or expected), problems or not; capped at 1,000 rows. */
    publishers: SequenceReport[]
  }
  errors: Record<string, number>
}

const MAX_PUBLISHER_ROWS = 1000

export function buildSummary (o: BenchOptions, s: BenchStats, endedAt: number, result?: ReceiveResult, failures: string[] = [], interrupted = false): BenchSummary {
  const summary: BenchSummary = {
    mode: o.mode,
    url: o.target.url,
    protocolVersion: o.protocolVersion,
    qos: o.qos,
    payloadSize: o.payloadSize,
    clients: o.clients,
    subscribers: o.mode === 'pubsub' ? o.subscribers : 0,
    rate: o.rate,
    connRate: o.connRate,
    maxConnecting: o.maxConnecting,
    elapsedSeconds: round((endedAt - s.startedAt) / 1000),
    interrupted,
    failures,
    cpu: cpuSummary(s.startCpu, s.startWaitNs, endedAt - s.startedAt),
    connections: {
      attempted: s.connectAttempts,
      established: s.connected,
      failed: s.connectFailed,
      cancelled: s.connectCancelled,
      notStarted: Math.max(0, o.clients + (o.mode === 'pubsub' ? o.subscribers : 0) - s.connectAttempts),
      lost: s.lost,
      perSecond: rate(s.connected, (s.lastConnectedAt - s.firstConnectAt) / 1000),
      connectMs: s.connectTime.summary()
    },
    errors: Object.fromEntries([...s.errors].sort((a, b) => b[1] - a[1]))
  }
  const warm = s.warmup ?? { seconds: 0, sent: 0, acked: 0, received: 0 }
  if (s.warmup !== undefined) summary.warmup = { ...s.warmup, seconds: round(s.warmup.seconds) }
  if (o.mode === 'pub' || o.mode === 'pubsub') {
    const sent = s.sent - warm.sent
    const w = window(sent, (s.lastSentAt - s.firstSentAt) / 1000, s.sendStreams)
    summary.publish = { sent, acked: s.acked - warm.acked, seconds: round(w.seconds), perSecond: w.perSecond, streams: s.sendStreams }
    if (o.qos > 0 && s.lastAckedAt > s.firstSentAt && s.firstSentAt > 0) summary.publish.ackedSeconds = round((s.lastAckedAt - s.firstSentAt) / 1000)
  }
  if (o.mode === 'sub' || o.mode === 'pubsub') {
    const received = s.received - warm.received
    const streams = result?.streams ?? 1
    const w = window(received, (s.lastReceivedAt - s.firstReceivedAt) / 1000, streams)
    const rows = result?.reports ?? []
    const latency = s.latency.summary()
    // pubsub knows the payload size; a lone `sub` can only tell from what arrived.
    // A lone `sub` that received nothing has no publisher to check: '0 missing' would read as a pass.
    const stamped = o.mode === 'pubsub' ? o.payloadSize >= STAMP_BYTES : s.received > s.unstamped
    const checked = stamped ? 'sequence' : result?.expected !== undefined ? 'count' : 'none'
    summary.receive = {
      received,
      seconds: round(w.seconds),
      perSecond: w.perSecond,
      streams,
      latencyMs: latency.count > 0 ? latency : null,
      ...(s.latency.warmup === undefined ? {} : { warmupLatencyMs: s.latency.warmup }),
      checked,
      unstamped: s.unstamped,
      clockNotComparable: s.clockNotComparable,
      missing: checked === 'count' ? Math.max(0, (result?.expected ?? 0) - s.received) : rows.reduce((n, r) => n + r.missing, 0),
      ...(result?.expected === undefined ? {} : { expected: result.expected }),
      ...(result?.stillArriving === true ? { stillArriving: true } : {}),
      ...(result?.shortOfLimit === undefined ? {} : { shortOfLimit: result.shortOfLimit }),
      duplicates: rows.reduce((n, r) => n + r.duplicates, 0),
      outOfOrder: rows.reduce((n, r) => n + r.outOfOrder, 0),
      ...(result?.outOfOrderShared === undefined || result.outOfOrderShared === 0 ? {} : { outOfOrderShared: result.outOfOrderShared }),
      sharedGroups: result?.sharedGroups ?? 0,
      publisherCount: rows.length,
      publishers: rows.slice(0, MAX_PUBLISHER_ROWS)
    }
  }
  return summary
}

/** What a failure that --tolerate can accept says after it. */
export const TO_PASS: Readonly<Record<keyof Tolerated, string>> = {
  loss: '--tolerate loss to pass',
  duplicates: '--tolerate duplicates to pass',
  reorder: '--tolerate reorder to pass',
  connections: '--tolerate connections to pass'
}

/** Whether what is missing may only be late: a pubsub stopped by the user cut short its wait for messages on their way. */
function missingMayBeInFlight (r: BenchSummary): boolean {
  return r.interrupted && r.mode === 'pubsub'
}

/**
 * The run's failures in delivery, from its summary: messages missing, duplicated or out of order
 * (at any QoS: a broker that loses QoS 0 messages under the load asked for is what a load test is
 * for; one publisher's messages are on one topic at one QoS, whose order a broker keeps on a
 * non-shared subscription [MQTT-4.6.0-5] [MQTT-4.6.0-6]), each unless `tolerate` accepts it.
 */
export function deliveryFailures (r: BenchSummary, tolerate: Tolerated): string[] {
  const v = r.receive
  if (v === undefined) return []
  const out: string[] = []
  const n = (x: number): string => x.toLocaleString('en-US')
  // Whatever the payloads: -L is a count of messages, stamped or not.
  const short = v.shortOfLimit
  const shortFailure = short !== undefined && !tolerate.loss ? [`${shortOfLimitText(short)} (QoS ${r.qos}; ${TO_PASS.loss})`] : []
  if (v.checked === 'none') return shortFailure
  if (v.missing > 0 && !tolerate.loss && !missingMayBeInFlight(r)) {
    // A lone sub knows no total, only the gaps; pubsub knows what each publisher sent.
    out.push(v.expected === undefined
      ? `${n(v.missing)} message${v.missing === 1 ? '' : 's'} missing: gaps in the publishers' sequences (QoS ${r.qos}; ${TO_PASS.loss})`
      : v.stillArriving === true
        ? `${n(v.missing)} of the ${n(v.expected)} messages due had not arrived when --drain-timeout ran out, with messages still arriving (QoS ${r.qos}; ${TO_PASS.loss})`
        : `${n(v.missing)} of the ${n(v.expected)} messages due never arrived (QoS ${r.qos}; ${TO_PASS.loss})`)
  }
  if (v.duplicates > 0 && !tolerate.duplicates) {
    out.push(`${n(v.duplicates)} message${v.duplicates === 1 ? ' was' : 's were'} received more than once (QoS ${r.qos}; ${TO_PASS.duplicates})`)
  }
  const reordered = v.outOfOrder - (v.outOfOrderShared ?? 0)
  if (reordered > 0 && !tolerate.reorder) {
    out.push(`${n(reordered)} message${reordered === 1 ? '' : 's'} arrived out of order, after a later one from the same publisher on the same topic, ` +
      `which MQTT forbids outside shared subscriptions (QoS ${r.qos}; ${TO_PASS.reorder})`)
  }
  out.push(...shortFailure)
  return out
}

/** What a sub -L short of its count says, in the summary and as a failure. */
function shortOfLimitText (s: LimitShortfall): string {
  const who = s.receivers === 1 ? 'a subscriber' : `${s.receivers.toLocaleString('en-US')} subscribers`
  return `${who} stopped short of -L ${s.limit.toLocaleString('en-US')}: ${s.received.toLocaleString('en-US')} of ${s.due.toLocaleString('en-US')} received, ` +
    `then nothing for ${s.idleSeconds} s (--drain-timeout)`
}

function cpuSummary (since: NodeJS.CpuUsage, waitSinceNs: number | undefined, elapsedMs: number): BenchSummary['cpu'] {
  const { user, system } = process.cpuUsage(since)
  const waitNs = runQueueWaitNs()
  return {
    userSeconds: round(user / 1e6),
    systemSeconds: round(system / 1e6),
    percentOfCore: elapsedMs > 0 ? Math.round((user + system) / 10 / elapsedMs) : 0,
    waitSeconds: waitNs === undefined || waitSinceNs === undefined ? undefined : round((waitNs - waitSinceNs) / 1e9)
  }
}

function round (v: number): number {
  return Math.round(v * 1000) / 1000
}

function rate (count: number, seconds: number): number | null {
  if (count === 0) return 0
  return seconds >= MIN_RATE_WINDOW_S ? Math.round(count / seconds) : null
}

/**
 * The measured span of `count` messages (first to last) and their rate: the span holds
 * count - streams intervals, each stream's first message opening it.
 */
function window (count: number, span: number, streams: number): { seconds: number, perSecond: number | null } {
  if (count === 0) return { seconds: 0, perSecond: 0 }
  const intervals = count - Math.max(1, streams)
  if (span < MIN_RATE_WINDOW_S || intervals <= 0) return { seconds: span, perSecond: null }
  return { seconds: span, perSecond: Math.round(intervals / span) }
}

/** Past this, count / seconds and the rate over the intervals read as different numbers. */
const RATE_NOTE_RATIO = 1.02

/**
 * The rate, and when count / seconds would read otherwise (a few messages per stream), how it
 * was taken: `streams` of them, each opening the span with its first message.
 */
function rateText (perSecond: number | null, count: number, seconds: number, streams: number, streamName: string): string {
  if (perSecond === null) return `n/a msg/s (too few messages, or a window under ${MIN_RATE_WINDOW_S * 1000} ms: nothing to rate)`
  const naive = seconds > 0 ? count / seconds : 0
  const note = perSecond > 0 && naive / perSecond > RATE_NOTE_RATIO
    ? ` (over the ${(count - streams).toLocaleString('en-US')} intervals between the messages of each of ${streams.toLocaleString('en-US')} ${streamName}${streams === 1 ? '' : 's'})`
    : ''
  return `${si(perSecond)} msg/s${note}`
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
  row('connections', `${c.established}/${c.attempted} established${c.established > 1 && c.perSecond !== null ? ` (${si(c.perSecond)}/s)` : ''}, ${c.failed} failed, ${c.cancelled > 0 ? `${c.cancelled} cancelled (the run ended first), ` : ''}${c.lost} lost` +
    (c.connectMs.count > 0 ? `; connect p50 ${ms(c.connectMs.p50)}  p99 ${ms(c.connectMs.p99)}  max ${ms(c.connectMs.max)} ms` : ''))
  // The header names the clients asked for: say when fewer were started.
  if (c.notStarted > 0) row('', `the run ended before the ramp was through: ${c.notStarted.toLocaleString('en-US')} of ${(r.clients + r.subscribers).toLocaleString('en-US')} clients never started`)
  if (r.connRate === 0 && r.maxConnecting === 0 && c.attempted >= BACKLOG_NOTE_CLIENTS) {
    row('', 'all handshakes at once (--max-connecting 0): connect times include each one\'s wait behind the others and, past the broker\'s ' +
      'listen backlog, the kernel\'s SYN retries after 1 s, 3 s...; --max-connecting (100 by default) or -R measures the broker\'s')
  } else if (r.connRate > 0 && r.maxConnecting === 0 && c.connectMs.count > 0 && c.connectMs.p99 >= SYN_RETRY_MS) {
    // An open loop: past the rate the broker completes, handshakes pile up until its backlog overflows.
    row('', `connect p99 over 1 s at -R ${si(r.connRate)}: handshakes pile up once the broker falls behind the rate and, past its listen ` +
      'backlog, wait for the kernel\'s SYN retries (1 s, 3 s...); a lower -R, or --max-connecting to bound those under way, measures the broker\'s')
  }
  if (r.warmup !== undefined && (r.publish !== undefined || r.receive !== undefined)) {
    const w = r.warmup
    const counts = [...(r.publish === undefined ? [] : [`${w.sent.toLocaleString('en-US')} sent`]),
      ...(r.receive === undefined ? [] : [`${w.received.toLocaleString('en-US')} received`])]
    const lossNote = r.receive === undefined ? '' : '; loss is checked over the whole run'
    row('warm-up', `${w.seconds.toFixed(2)} s: ${counts.join(', ')} (not in the counts and rates below${lossNote})`)
  }
  if (r.publish !== undefined) {
    const p = r.publish
    const acked = r.qos === 0 ? '' : `, ${p.acked.toLocaleString('en-US')} acked${p.ackedSeconds === undefined ? '' : ` by ${p.ackedSeconds.toFixed(2)} s`}`
    row('published', `${p.sent.toLocaleString('en-US')} sent over ${p.seconds.toFixed(2)} s (first to last)${acked}: ` +
      rateText(p.perSecond, p.sent, p.seconds, p.streams, 'publisher'))
    // Nothing acknowledges QoS 0: sent is what went into the socket, not what the broker took.
    if (r.qos === 0 && r.mode === 'pub' && p.sent > 0) row('', 'QoS 0: sent is written to the socket; what the broker delivered is what a bench sub (or pubsub) receives')
  }
  if (r.receive !== undefined) {
    const v = r.receive
    row('received', `${v.received.toLocaleString('en-US')} over ${v.seconds.toFixed(2)} s (first to last): ` +
      rateText(v.perSecond, v.received, v.seconds, v.streams, 'publisher-subscriber pair'))
    const noStamps = `no bench stamps: payloads under ${STAMP_BYTES} bytes, or not from petrel bench`
    const otherClock = 'send times this machine\'s clock cannot compare: publishers on another machine?'
    row('latency', v.latencyMs !== null
      ? latencyLine(v.latencyMs)
      : v.received === 0 ? 'n/a (nothing received)' : v.clockNotComparable > 0 ? `n/a (${otherClock})` : v.warmupLatencyMs !== undefined ? 'n/a (nothing after the warm-up)' : `n/a (${noStamps})`)
    // Publishers with no pace send as fast as the sockets take: every queue on the way fills.
    if (r.mode === 'pubsub' && r.rate === 0 && v.latencyMs !== null && v.latencyMs.p50 >= QUEUEING_LATENCY_MS) {
      row('', 'the publishers had no pace (no -I or --rate) and filled every queue on the way: these latencies are mostly that queueing; ' +
        '--rate gives the latency at a chosen load')
    }
    if (v.clockNotComparable > 0) {
      row('', `${v.clockNotComparable.toLocaleString('en-US')} messages with ${otherClock} left out of latency, still checked for loss`)
    } else if (r.mode === 'sub' && v.latencyMs !== null) {
      // A publisher's clock a little off from ours cannot be told apart: say what latency assumes.
      row('', 'latency assumes the publishers run on this machine (one monotonic clock)')
    }
    if (v.warmupLatencyMs !== undefined && v.warmupLatencyMs.count > 0) row('  (warm-up)', latencyLine(v.warmupLatencyMs))
    if (v.checked === 'sequence' && v.unstamped > 0) row('', `${v.unstamped.toLocaleString('en-US')} messages carried no bench stamp (other traffic?): left out of latency and loss`)
    if (v.checked === 'sequence') {
      // A lone subscriber counts from the first message it saw of each publisher.
      const from = r.mode === 'sub' ? ', each from its first message seen' : ''
      const n = v.publisherCount
      row('loss', `${v.missing.toLocaleString('en-US')} missing, ${v.duplicates.toLocaleString('en-US')} duplicated, ${v.outOfOrder.toLocaleString('en-US')} out of order (${n.toLocaleString('en-US')} publisher${n === 1 ? '' : 's'}${from})`)
      if (v.sharedGroups > 0) {
        row('', 'shared subscriptions: each $share group counted as one receiver; order checked within each member only, ' +
          'and not failed there (MQTT orders non-shared subscriptions only)')
      }
    } else if (v.checked === 'count') {
      row('loss', `${v.missing.toLocaleString('en-US')} missing by count (no per-publisher check: ${noStamps})`)
    }
    if (v.shortOfLimit !== undefined) row('', `${shortOfLimitText(v.shortOfLimit)}: what did not come is lost${v.checked === 'sequence' ? ' (the gaps above among it)' : ''}`)
    if (v.missing > 0 && v.stillArriving === true) {
      row('', 'the wait for messages on their way (--drain-timeout) ran out while they still arrived: some of these may be late, not lost (a longer --drain-timeout tells)')
    }
    if (v.missing > 0 && missingMayBeInFlight(r)) {
      row('', 'stopped by the user before what was on its way could arrive: missing counts it too, and does not fail the run')
    }
    // Loss at QoS 1/2 reads as the tool's or the protocol's fault unless it is said where it happened.
    const p = r.publish
    if (r.mode === 'pubsub' && r.qos > 0 && v.missing > 0 && v.stillArriving !== true && p !== undefined && p.sent > 0 && p.acked === p.sent) {
      row('', 'every publish was acknowledged, so the broker dropped these after taking them: a queue limit for a slow ' +
        'subscriber (mosquitto: max_queued_messages, 1000 by default)? --inflight over its max_inflight_messages (3.1.1)? a lower QoS granted?')
    } else if (r.mode === 'sub' && r.qos > 0 && v.missing > 0 && r.connections.lost === 0) {
      // The publishers' acks are not seen here; a subscription that never went away still says where.
      row('', 'no subscriber connection was lost, so the broker never sent these: dropped for a slow subscriber (mosquitto: ' +
        'max_queued_messages, 1000 by default), or never taken from the publishers (are all their publishes acked?)')
    }
    if (v.checked === 'none') {
      row('loss', `not checked (${v.received === 0 ? 'nothing received: is a publisher sending to the filter?' : noStamps})`)
    }
    for (const p of v.publishers.filter((x) => x.missing + x.duplicates + x.outOfOrder > 0).slice(0, 10)) {
      row('', `publisher ${p.publisher} (run ${p.run}): ${p.received} received, ${p.missing} missing, ${p.duplicates} duplicated, ${p.outOfOrder} out of order`)
    }
  }
  const busy = r.cpu.percentOfCore >= CPU_WARNING_PERCENT && r.elapsedSeconds >= MIN_CPU_WARNING_S
  const wait = r.cpu.waitSeconds
  row('load tool', `${r.cpu.percentOfCore}% of one core (user ${r.cpu.userSeconds.toFixed(2)} s, system ${r.cpu.systemSeconds.toFixed(2)} s` +
    (wait === undefined ? '' : `, waited ${wait.toFixed(2)} s for a CPU`) + ')' +
    (busy ? ': the load tool may be the limit; split the clients over several processes' : ''))
  // A low CPU share reads as "the tool kept up", yet off the CPU it reads nothing: measured on a
  // loaded 2-core machine, an 8 KiB x 14k msg/s subscriber using 13% of a core waited as long
  // again, in stalls of up to ~100 ms, and a broker's per-subscriber buffer (petrel's 4 MiB) lasts
  // ~40 ms at that rate: QoS 0 loss whatever the client's speed.
  if (wait !== undefined && r.elapsedSeconds >= MIN_CPU_WARNING_S && wait >= r.elapsedSeconds * WAIT_WARNING_SHARE) {
    row('', `the machine is oversubscribed: this process's event loop was ready to run but waiting for a CPU for ${wait.toFixed(2)} s; ` +
      'meanwhile it reads nothing, and a broker drops QoS 0 messages for a subscriber once its buffer for it is full ' +
      '(petrel: 4 MiB per subscription; mosquitto: 1000 messages): fewer processes on this machine, or the load tool on another')
  }
  const errors = Object.entries(r.errors)
  row('errors', errors.length === 0 ? 'none' : errors.map(([k, n]) => `${k} x${n}`).join(', '))
  // The commonest wall of a first `bench conn -c 10000`: a default soft limit of 1,024 files.
  if (errors.some(([k]) => k.endsWith('EMFILE'))) {
    row('', 'EMFILE: this process ran out of file descriptors (Node already raises its own limit to the hard one, ulimit -Hn): ' +
      'raise that, or split the clients over several processes (-n to offset their indices); the broker needs as many')
  }
  for (const f of r.failures) row('FAILED', f)
  return lines.join('\n')
}
