/**
 * One kind of warning at most once per `intervalMs`: a warning per event (a refused retained
 * message, a dropped delivery) let a client fill the log as fast as it could publish.
 */
export class WarningLimiter {
  private warnedAt = -Infinity
  private suppressed = 0

  constructor (private readonly intervalMs = 10_000) {}

  /**
   * Whether to log now: the number of warnings suppressed since the last one (to log with it),
   * or undefined (this one is counted as suppressed).
   */
  due (now: number): number | undefined {
    if (now - this.warnedAt < this.intervalMs) {
      this.suppressed++
      return undefined
    }
    const n = this.suppressed
    this.warnedAt = now
    this.suppressed = 0
    return n
  }
}
