/** Options of {@link Backoff}. */
export interface BackoffOptions {
  /** First delay in ms. Default 1,000. */
  initialDelayMs?: number
  /** Largest delay in ms. Default 30,000. */
  maxDelayMs?: number
  /** Growth factor per failed attempt. Default 2. */
  factor?: number
  /** Relative jitter: each delay is multiplied by a random value in [1 - jitter, 1 + jitter]. Default 0.2. */
  jitter?: number
  /** Source of randomness in [0, 1); injected by tests. Default Math.random. */
  random?: () => number
}

/**
 * Reconnect delays: exponential with jitter (1 s -> 30 s, x2, +/-20% by default). Pure: no
 * timer, no clock of its own. The backoff resets only when a connection stayed up longer than the
 * last delay, so a broker that accepts and drops at once cannot cause a tight reconnect loop.
 */
export class Backoff {
  private readonly initial: number
  private readonly max: number
  private readonly factor: number
  private readonly jitter: number
  private readonly random: () => number
  private base: number
  private last = 0

  constructor (options: BackoffOptions = {}) {
    this.initial = options.initialDelayMs ?? 1000
    this.max = options.maxDelayMs ?? 30_000
    this.factor = options.factor ?? 2
    this.jitter = options.jitter ?? 0.2
    this.random = options.random ?? Math.random
    this.base = this.initial
  }

  /** The delay before the next attempt; each call grows the following one. */
  next (): number {
    const base = Math.min(this.base, this.max)
    this.base = Math.min(this.base * this.factor, this.max)
    const spread = 1 - this.jitter + 2 * this.jitter * this.random()
    this.last = Math.round(base * spread)
    return this.last
  }

  /** The first delay (before jitter): the quickest pace of retries. */
  get initialDelay (): number {
    return this.initial
  }

  /** The delay most recently returned by `next()` (0 before the first). */
  get lastDelay (): number {
    return this.last
  }

  /** A connection ended after being up `uptimeMs`: reset only if it outlived the last delay. */
  connectionEnded (uptimeMs: number): void {
    if (uptimeMs > this.last) this.reset()
  }

  reset (): void {
    this.base = this.initial
    this.last = 0
  }
}
