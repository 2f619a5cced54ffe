/** Options of {@link TokenBucket}: either rate may be left out (unlimited). */
export interface ThrottleOptions {
  /** Outgoing PUBLISH packets per second. */
  messagesPerSecond?: number
  /** Outgoing PUBLISH bytes per second (whole packets). */
  bytesPerSecond?: number
  /** Burst allowance in seconds of rate. Default 0.1 s (at least one message and one packet's bytes pass). */
  burstSeconds?: number
}

/**
 * Two token buckets (messages and bytes) refilled from an injected clock; pure. `take` either
 * consumes the tokens of one packet or answers when enough will be there.
 */
export class TokenBucket {
  private readonly msgRate: number
  private readonly byteRate: number
  private readonly msgCap: number
  private readonly byteCap: number
  private msgs: number
  private bytes: number
  private last: number

  constructor (options: ThrottleOptions, now: number) {
    this.msgRate = options.messagesPerSecond ?? Infinity
    this.byteRate = options.bytesPerSecond ?? Infinity
    const burst = options.burstSeconds ?? 0.1
    this.msgCap = Math.max(1, this.msgRate * burst)
    this.byteCap = Math.max(1, this.byteRate * burst)
    this.msgs = this.msgCap
    this.bytes = this.byteCap
    this.last = now
  }

  private refill (now: number): void {
    const dt = (now - this.last) / 1000
    if (dt <= 0) return
    this.last = now
    this.msgs = Math.min(this.msgCap, this.msgs + dt * this.msgRate)
    this.bytes = Math.min(this.byteCap, this.bytes + dt * this.byteRate)
  }

  /**
   * Takes one message of `size` bytes: returns 0 when taken, else the ms to wait. A packet
   * bigger than the byte burst passes once the bucket is full (it may go negative), so a large
   * message is slowed, never stuck.
   */
  take (size: number, now: number): number {
    this.refill(now)
    const needBytes = Math.min(size, this.byteCap)
    if (this.msgs >= 1 && this.bytes >= needBytes) {
      this.msgs -= 1
      this.bytes -= size
      return 0
    }
    const waitMsgs = this.msgs >= 1 ? 0 : (1 - this.msgs) / this.msgRate
    const waitBytes = this.bytes >= needBytes ? 0 : (needBytes - this.bytes) / this.byteRate
    return Math.max(1, Math.ceil(Math.max(waitMsgs, waitBytes) * 1000))
  }
}
