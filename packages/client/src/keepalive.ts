/** What {@link Keepalive.poll} asks the shell to do. */
export const KeepaliveAction = { none: 0, ping: 1, timeout: 2 } as const
export type KeepaliveAction = typeof KeepaliveAction[keyof typeof KeepaliveAction]

/**
 * Keepalive deadlines, pure: the shell reports traffic with the time it happened and polls at
 * `nextDeadline()`. A PINGREQ is due when either direction has been idle for the interval (the
 * broker drops a client silent for 1.5 x keepalive [MQTT-3.1.2-24]; a link that delivers nothing
 * may be dead). After a ping, no inbound packet within the ping timeout means the link is dead,
 * so a blackholed link is detected within keepalive + ping timeout.
 */
export class Keepalive {
  readonly intervalMs: number
  readonly pingTimeoutMs: number
  private lastSent: number
  private lastReceived: number
  private pingSentAt = -1

  /** `intervalMs` 0 disables keepalive. Ping timeout default: min(10 s, interval / 2). */
  constructor (intervalMs: number, now: number, pingTimeoutMs?: number) {
    this.intervalMs = intervalMs
    this.pingTimeoutMs = pingTimeoutMs ?? Math.min(10_000, Math.floor(intervalMs / 2))
    this.lastSent = now
    this.lastReceived = now
  }

  sent (now: number): void {
    this.lastSent = now
  }

  /** Any inbound packet proves the link is alive, not just PINGRESP. */
  received (now: number): void {
    this.lastReceived = now
    this.pingSentAt = -1
  }

  /** Time at which `poll` has something to do (Infinity when disabled). */
  nextDeadline (): number {
    if (this.intervalMs === 0) return Infinity
    if (this.pingSentAt >= 0) return this.pingSentAt + this.pingTimeoutMs
    return Math.min(this.lastSent, this.lastReceived) + this.intervalMs
  }

  /** `ping`: send PINGREQ now (the deadline moves to the ping timeout); `timeout`: the link is dead. */
  poll (now: number): KeepaliveAction {
    if (this.intervalMs === 0) return KeepaliveAction.none
    if (this.pingSentAt >= 0) {
      return now >= this.pingSentAt + this.pingTimeoutMs ? KeepaliveAction.timeout : KeepaliveAction.none
    }
    if (now >= Math.min(this.lastSent, this.lastReceived) + this.intervalMs) {
      this.pingSentAt = now
      this.lastSent = now
      return KeepaliveAction.ping
    }
    return KeepaliveAction.none
  }
}
