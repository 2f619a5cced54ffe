import type { Writable } from 'node:stream'
import type { BenchMode } from './options.js'
import type { BenchStats } from './stats.js'
import { ms, si } from './format.js'

const INTERVAL_MS = 1000

/**
 * The live progress line: redrawn in place on a terminal, one plain line per second otherwise.
 * Shows the rate over the last second, totals, errors and that second's latency percentiles.
 */
export class Progress {
  private timer: NodeJS.Timeout | undefined
  private last = { at: 0, sent: 0, acked: 0, received: 0, connected: 0 }
  private readonly tty: boolean
  private drawn = false

  constructor (private readonly stats: BenchStats, private readonly mode: BenchMode,
    private readonly out: Writable & { isTTY?: boolean }, private readonly clients: number) {
    this.tty = out.isTTY === true
  }

  start (): void {
    this.last = { at: performance.now(), sent: 0, acked: 0, received: 0, connected: 0 }
    this.timer = setInterval(() => { this.tick() }, INTERVAL_MS)
    this.timer.unref()
  }

  /** Stops the display; on a terminal, moves past the progress line. */
  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    if (this.tty && this.drawn) this.out.write('\n')
  }

  private tick (): void {
    const s = this.stats
    const now = performance.now()
    const secs = (now - this.last.at) / 1000
    const parts = [`${((now - s.startedAt) / 1000).toFixed(0).padStart(4)}s`]
    parts.push(`conns ${s.connected - s.lost}/${this.clients}`)
    if (this.mode !== 'conn' && this.mode !== 'sub') {
      parts.push(`sent ${si((s.sent - this.last.sent) / secs)}/s (${si(s.sent)})`)
      // QoS 1/2: the broker's acks are what the publishers really got through.
      if (s.acked !== s.sent) parts.push(`acked ${si((s.acked - this.last.acked) / secs)}/s`)
    }
    if (this.mode === 'sub' || this.mode === 'pubsub') {
      parts.push(`recv ${si((s.received - this.last.received) / secs)}/s (${si(s.received)})`)
      const lat = s.latency.roll()
      if (lat.count > 0) parts.push(`lat p50 ${ms(lat.p50)} p99 ${ms(lat.p99)} ms`)
    }
    // Connect times of the connections made during this second (a rate ramp shows up here).
    const conn = s.connectTime.roll()
    if (s.connected !== this.last.connected) parts.push(`${si((s.connected - this.last.connected) / secs)} conn/s`)
    if (this.mode === 'conn' && conn.count > 0) parts.push(`connect p50 ${ms(conn.p50)} p99 ${ms(conn.p99)} ms`)
    parts.push(`errors ${s.errorCount}`)
    this.last = { at: now, sent: s.sent, acked: s.acked, received: s.received, connected: s.connected }
    const line = parts.join('  ')
    if (this.tty) {
      this.out.write(`\r${line}\x1b[K`)
      this.drawn = true
    } else {
      this.out.write(`${line}\n`)
    }
  }
}
