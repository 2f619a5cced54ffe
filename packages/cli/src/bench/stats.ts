import { readFileSync } from 'node:fs'
import { LatencyRecorder } from './latency.js'

/** Counters of one bench run, shared by every connection; read by the progress line and the summary. */
export class BenchStats {
  readonly startedAt = performance.now()
  /** CPU time used before the run (start-up, module loading): left out of the run's CPU share. */
  readonly startCpu = process.cpuUsage()
  /** The main thread's run-queue wait before the run, in ns (Linux; undefined elsewhere). */
  readonly startWaitNs = runQueueWaitNs()
  connectAttempts = 0
  connected = 0
  connectFailed = 0
  /** Of connectFailed, those whose CONNACK refused the credentials. */
  connectNotAuthorized = 0
  /** Handshakes still under way when the run ended (Ctrl-C, --duration): neither made nor failed. */
  connectCancelled = 0
  /** Established connections that ended without us asking. */
  lost = 0
  /** Subscriptions granted, and refused or unanswered (a SUBACK failure fails the run). */
  subscribed = 0
  subscribeFailed = 0
  sent = 0
  acked = 0
  /** Of acked, publishes the broker refused (PUBACK or PUBREC reason code 0x80 or above). */
  publishRefused = 0
  received = 0
  /**
   * Of received, stamped messages a subscriber had already had: what pubsub's wait for messages
   * on their way leaves out (members of one share group are told apart only at the end).
   */
  duplicatesSeen = 0
  /** Received messages that carried no bench stamp (payload too short for one, or other traffic). */
  unstamped = 0
  /**
   * Stamped messages whose send time this machine's monotonic clock cannot compare (in the
   * future, or over an hour old: a publisher on another machine): checked for loss, no latency.
   */
  clockNotComparable = 0
  /** performance.now() of the first connection attempt and of the last CONNACK. */
  firstConnectAt = 0
  lastConnectedAt = 0
  /**
   * Publishers that sent in this phase (the warm-up, then the measured part): a publisher's N
   * messages span N - 1 of its intervals, so the rate is taken over N - streams intervals.
   */
  sendStreams = 0
  /** Bumped when the warm-up ends, so that each publisher counts itself once per phase. */
  phase = 0
  /** performance.now() of the first and last publish sent and received. */
  firstSentAt = 0
  lastSentAt = 0
  firstReceivedAt = 0
  lastReceivedAt = 0
  /** performance.now() of the last QoS 1/2 acknowledgement (PUBACK, or PUBCOMP and failed PUBREC). */
  lastAckedAt = 0
  readonly errors = new Map<string, number>()
  /** End-to-end latency of stamped messages, µs. */
  readonly latency = new LatencyRecorder()
  /** Dial to CONNACK (and SUBACK for subscribers), µs. */
  readonly connectTime = new LatencyRecorder()

  /** What the warm-up sent, acknowledged and received: left out of the totals and rates. Set when it ends. */
  warmup: { seconds: number, sent: number, acked: number, received: number } | undefined

  /** Ends the warm-up: its counts and latencies are kept apart, and the rate windows start again. */
  endWarmup (): void {
    if (this.warmup !== undefined) return
    this.latency.endWarmup()
    this.warmup = { seconds: (performance.now() - this.startedAt) / 1000, sent: this.sent, acked: this.acked, received: this.received }
    this.firstSentAt = this.lastSentAt = this.firstReceivedAt = this.lastReceivedAt = this.lastAckedAt = 0
    this.sendStreams = 0
    this.phase++
  }

  /** Counts `n` occurrences of `reason` (printed as "reason xN"). */
  error (reason: string, n = 1): void {
    this.errors.set(reason, (this.errors.get(reason) ?? 0) + n)
  }

  get errorCount (): number {
    let n = 0
    for (const c of this.errors.values()) n += c
    return n
  }
}

/**
 * How long this process's main thread (the event loop) has been runnable but not running, in ns:
 * the second field of /proc/self/schedstat. Undefined where that file does not exist (not Linux).
 */
export function runQueueWaitNs (): number | undefined {
  try {
    const wait = Number(readFileSync('/proc/self/schedstat', 'latin1').split(' ')[1])
    return Number.isFinite(wait) ? wait : undefined
  } catch {
    return undefined
  }
}
