import { topicMatches } from '@petrel/wire'
import type { Message } from './message.js'

/**
 * Retained messages by topic [MQTT-3.3.1-5]. Payloads are owned copies. A filter without
 * wildcards is a single lookup; a wildcard filter scans the store (subscribe is rare next to
 * publish, and the store is bounded by `maxRetainedMessages`).
 */
export class RetainedStore {
  private readonly byTopic = new Map<string, Message>()
  bytes = 0

  constructor (private readonly max: number) {}

  get size (): number {
    return this.byTopic.size
  }

  /** Stores, replaces, or (empty payload) clears [MQTT-3.3.1-6] [MQTT-3.3.1-7]; false when full. */
  set (message: Message): boolean {
    const old = this.byTopic.get(message.topic)
    if (message.payload.length === 0) {
      if (old !== undefined) {
        this.byTopic.delete(message.topic)
        this.bytes -= old.size
      }
      return true
    }
    if (old === undefined && this.byTopic.size >= this.max) return false
    if (old !== undefined) this.bytes -= old.size
    this.byTopic.set(message.topic, message.own())
    this.bytes += message.size
    return true
  }

  /** Calls `fn` for each unexpired retained message matching a plain filter. */
  forEachMatch (filter: string, now: number, fn: (m: Message) => void): void {
    if (!filter.includes('+') && !filter.includes('#')) {
      const m = this.byTopic.get(filter)
      if (m !== undefined && this.alive(m, now)) fn(m)
      return
    }
    for (const m of [...this.byTopic.values()]) {
      if (topicMatches(filter, m.topic) && this.alive(m, now)) fn(m)
    }
  }

  private alive (m: Message, now: number): boolean {
    if (m.expiresAt === 0 || m.expiresAt > now) return true
    this.byTopic.delete(m.topic) // [MQTT-3.3.2-5] an expired retained message is not sent
    this.bytes -= m.size
    return false
  }
}
