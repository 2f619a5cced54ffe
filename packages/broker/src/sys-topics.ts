import type { Broker } from './broker.js'

/**
 * Publishes `$SYS/broker/...` (retained) every interval: clients, subscriptions, retained,
 * messages and bytes in/out, drops. `$` topics are not matched by `#`/`+` [MQTT-4.7.2-1].
 */
export class SysTopics {
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly broker: Broker, private readonly intervalMs: number) {}

  start (): void {
    if (this.timer !== undefined) return
    this.timer = setInterval(() => { this.publish() }, this.intervalMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  /** Publishes every value now. */
  publish (): void {
    const b = this.broker
    const s = b.stats
    const values: Array<[string, number | string]> = [
      ['version', 'petrel 0.1.0'],
      ['uptime', Math.floor((Date.now() - s.startedAt) / 1000)],
      ['clients/connected', b.online.size],
      ['clients/total', b.sessions.size],
      ['subscriptions/count', b.router.subscriptionCount],
      ['retained messages/count', b.retained.size],
      ['messages/received', s.messagesIn[0]! + s.messagesIn[1]! + s.messagesIn[2]!],
      ['messages/sent', s.messagesOut[0]! + s.messagesOut[1]! + s.messagesOut[2]!],
      ['messages/dropped', s.dropsTotal],
      ['bytes/received', s.bytesIn],
      ['bytes/sent', s.bytesOut]
    ]
    for (const [k, v] of values) b.publishMessage({ topic: `$SYS/broker/${k}`, payload: String(v), retain: true })
  }
}
