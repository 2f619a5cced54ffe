import { build, type Histogram } from 'hdr-histogram-js'

/** Percentiles of a set of durations, in milliseconds. */
export interface LatencySummary {
  count: number
  min: number
  mean: number
  p50: number
  p95: number
  p99: number
  max: number
}

// 1 µs .. 1 h at 3 significant digits; values past that are clamped, not lost.
const HIGHEST_US = 3_600_000_000

function histogram (): Histogram {
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_US, numberOfSignificantValueDigits: 3, bitBucketSize: 32, useWebAssembly: false })
}

function summarize (h: Histogram): LatencySummary {
  const ms = (us: number): number => Math.round(us) / 1000
  if (h.totalCount === 0) return { count: 0, min: 0, mean: 0, p50: 0, p95: 0, p99: 0, max: 0 }
  const max = ms(h.maxValue)
  // A percentile is its bucket's highest equivalent value, which can lie past the exact maximum.
  const at = (p: number): number => Math.min(ms(h.getValueAtPercentile(p)), max)
  return { count: h.totalCount, min: ms(h.minNonZeroValue), mean: ms(h.mean), p50: at(50), p95: at(95), p99: at(99), max }
}

/**
 * Durations recorded in microseconds into an HdrHistogram. Values go to an interval histogram
 * (what the progress line shows), folded into the total once per interval: one record per value.
 *
 * Runs of equal values are recorded as one (value, count): messages that left in one batch and
 * arrived in one chunk share both clock readings, and recording is the subscriber's hottest step.
 */
export class LatencyRecorder {
  private readonly interval = histogram()
  private readonly total = histogram()
  private runValue = 0
  private runCount = 0
  /** What the warm-up recorded, once it ended. */
  warmup: LatencySummary | undefined

  /** Records one duration in microseconds (clamped to 1 µs .. 1 h). */
  record (us: number): void {
    const v = us < 1 ? 1 : us > HIGHEST_US ? HIGHEST_US : Math.round(us)
    if (v === this.runValue) {
      this.runCount++
      return
    }
    if (this.runCount > 0) this.interval.recordValueWithCount(this.runValue, this.runCount)
    this.runValue = v
    this.runCount = 1
  }

  /** Ends the current interval: returns its summary and adds it to the total. */
  roll (): LatencySummary {
    if (this.runCount > 0) {
      this.interval.recordValueWithCount(this.runValue, this.runCount)
      this.runCount = 0
      this.runValue = 0
    }
    const s = summarize(this.interval)
    if (s.count > 0) {
      this.total.add(this.interval)
      this.interval.reset()
    }
    return s
  }

  /**
   * Ends the warm-up: what was recorded so far is summarized apart (`warmup`) and left out of
   * `summary()` from now on.
   */
  endWarmup (): void {
    if (this.warmup !== undefined) return
    this.roll()
    this.warmup = summarize(this.total)
    this.total.reset()
  }

  /** Everything recorded so far (the current interval included). */
  summary (): LatencySummary {
    this.roll()
    return summarize(this.total)
  }
}
