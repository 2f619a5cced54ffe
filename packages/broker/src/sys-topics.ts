import type { Broker } from './broker.js'
import { MAX_TIMER_MS } from './max-timer.js'
import { DropReason } from './stats.js'

/**
 * Publishes `$SYS/broker/...` (retained) every interval: clients, subscriptions, retained,
 * messages in/out (total and by QoS), bytes, drops (total and by reason), queue depths. The
 * names follow mosquitto's where it has one. `$` topics are not matched by `#`/`+` [MQTT-4.7.2-1].
 */
export class SysTopics {
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly broker: Broker, private readonly intervalMs: number) {}

  start (): void {
    if (this.timer !== undefined) return
    // past setInterval's range (~24.8 days) it fires every 1 ms: the longest it can wait instead
    this.timer = setInterval(() => { this.publish() }, Math.min(this.intervalMs, MAX_TIMER_MS))
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
    let queued = 0
    let queuedBytes = 0
    let inflight = 0
    for (const session of b.sessions.values()) {
      queued += session.queueLength
      queuedBytes += session.queueBytes
      inflight += session.inflightCount
    }
    const values: Array<[string, number | string]> = [
      ['version', 'petrel 0.1.0'],
      ['uptime', Math.floor((Date.now() - s.startedAt) / 1000)],
      ['clients/connected', b.online.size],
      ['clients/total', b.sessions.size],
      ['clients/disconnected', b.sessions.size - b.online.size],
      ['clients/refused', s.sessionsRefused],
      ['subscriptions/count', b.router.subscriptionCount],
      ['subscriptions/quota_exceeded', s.subscriptionQuotaExceeded],
      ['retained messages/count', b.retained.size],
      ['messages/received', s.messagesIn[0]! + s.messagesIn[1]! + s.messagesIn[2]!],
      ['messages/sent', s.messagesOut[0]! + s.messagesOut[1]! + s.messagesOut[2]!],
      ['messages/dropped', s.dropsTotal],
      ['messages/inflight', inflight],
      ['store/messages/count', queued],
      ['store/messages/bytes', queuedBytes],
      ['bytes/received', s.bytesIn],
      ['bytes/sent', s.bytesOut]
    ]
    for (let q = 0; q < 3; q++) {
      values.push([`messages/received/qos${q}`, s.messagesIn[q]!], [`messages/sent/qos${q}`, s.messagesOut[q]!])
    }
    for (const r of Object.values(DropReason)) values.push([`messages/dropped/${r}`, s.drops[r]])
    for (const [k, v] of values) b.publishMessage({ topic: `$SYS/broker/${k}`, payload: String(v), retain: true })
  }
}
