import { reasonCodeName, type Packet, type ProtocolVersion, type PublishPacket } from '@petrel/wire'
import { AckWriter, PUBACK, PUBCOMP, PUBREC } from './acks.js'
import { BenchError, type BenchConnection, type PacketSink } from './connection.js'
import { SequenceTracker } from './sequence-tracker.js'
import { MAGIC_OFFSET, nowMicros, PUBLISHER_OFFSET, RUN_OFFSET, SENT_AT_OFFSET, SEQUENCE_OFFSET, STAMP_BYTES, STAMP_MAGIC } from './stamp.js'
import type { BenchStats } from './stats.js'

/** Latencies beyond these cannot come from this machine's clock (the same clock goes forward). */
const MAX_AGE_US = 3_600_000_000
const CLOCK_SLACK_US = 1000

/**
 * One subscribing connection: acknowledges QoS 1/2 (all acks of a chunk in one write), records
 * the latency of stamped payloads against one clock reading per chunk, and tracks each
 * publisher's sequence numbers for loss, duplicates and reordering.
 */
export class Subscriber implements PacketSink {
  received = 0
  /** When the last message arrived (performance.now()); 0: none yet. */
  lastReceivedAt = 0
  readonly tracker = new SequenceTracker()
  /** Called once `limit` messages have arrived. */
  onFinished: (() => void) | undefined
  private readonly acks = new AckWriter()

  constructor (readonly conn: BenchConnection, private readonly stats: BenchStats, private readonly limit: number) {}

  /** Subscribes to `topicFilter`; throws a BenchError with the reason when refused (a cancelled one when `signal` aborts first). */
  async subscribe (topicFilter: string, qos: 0 | 1 | 2, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    this.conn.sink = this
    this.conn.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter, qos }] })
    const suback = await this.conn.next('suback', timeoutMs, { signal })
    const rc = suback.reasonCodes[0] ?? 0x80
    if (rc >= 0x80) throw new BenchError(`suback: ${subackFailureName(rc, this.conn.protocolVersion)}`)
  }

  /**
   * From now on, messages are acknowledged but no longer counted: the totals and the sequence
   * reports taken at the end of the run describe the same messages.
   */
  stopCounting (): void {
    this.conn.sink = new AckOnly(this.conn)
  }

  onPackets (packets: readonly Packet[]): void {
    let now = 0
    let got = 0
    for (const p of packets) {
      switch (p.type) {
        case 'publish':
          if (now === 0) now = nowMicros()
          this.receive(p, now)
          got++
          if (p.qos === 1) this.acks.add(PUBACK, p.packetId as number)
          else if (p.qos === 2) this.acks.add(PUBREC, p.packetId as number)
          break
        case 'pubrel':
          this.acks.add(PUBCOMP, p.packetId)
          break
        case 'disconnect':
          this.conn.disconnected(p.reasonCode)
          return
        default:
          break
      }
    }
    const acks = this.acks.take()
    if (acks !== undefined) this.conn.write(acks)
    if (got > 0) {
      const s = this.stats
      const t = performance.now()
      if (s.firstReceivedAt === 0) s.firstReceivedAt = t
      s.lastReceivedAt = t
      this.lastReceivedAt = t
      s.received += got
      const before = this.received
      this.received += got
      if (this.limit > 0 && before < this.limit && this.received >= this.limit) this.onFinished?.()
    }
  }

  private receive (p: PublishPacket, now: number): void {
    const payload = p.payload
    if (payload.length < STAMP_BYTES) {
      this.stats.unstamped++
      return
    }
    const b = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
    // A filter like '#' also catches other traffic: the magic tells a stamp from it.
    if (b.readUInt32BE(MAGIC_OFFSET) !== STAMP_MAGIC) {
      this.stats.unstamped++
      return
    }
    if (!this.tracker.record(b.readUInt32BE(RUN_OFFSET), b.readUInt32BE(PUBLISHER_OFFSET), b.readUInt32BE(SEQUENCE_OFFSET))) this.stats.duplicatesSeen++
    // The send time is the publisher's monotonic clock: on another machine it has another origin,
    // and a latency from it would be noise. Loss is still checked, only the latency sample goes.
    const age = now - b.readDoubleBE(SENT_AT_OFFSET)
    if (age > -CLOCK_SLACK_US && age < MAX_AGE_US) this.stats.latency.record(age)
    else this.stats.clockNotComparable++
  }
}

/** A SUBACK failure as the subscriber's protocol names it: 3.1.1 has one, 0x80 "Failure" [MQTT-3.9.3]. */
export function subackFailureName (reasonCode: number, protocolVersion: ProtocolVersion): string {
  if (protocolVersion === 5) return `${reasonCodeName(reasonCode, 'suback')} (0x${reasonCode.toString(16)})`
  return reasonCode === 0x80 ? 'Failure (0x80)' : `invalid return code 0x${reasonCode.toString(16)}`
}

/** What a subscriber's connection does once the run has stopped counting: acknowledge, count nothing. */
class AckOnly implements PacketSink {
  private readonly acks = new AckWriter()

  constructor (private readonly conn: BenchConnection) {}

  onPackets (packets: readonly Packet[]): void {
    for (const p of packets) {
      if (p.type === 'publish') {
        if (p.qos === 1) this.acks.add(PUBACK, p.packetId as number)
        else if (p.qos === 2) this.acks.add(PUBREC, p.packetId as number)
      } else if (p.type === 'pubrel') {
        this.acks.add(PUBCOMP, p.packetId)
      } else if (p.type === 'disconnect') {
        this.conn.disconnected(p.reasonCode)
        return
      }
    }
    const acks = this.acks.take()
    if (acks !== undefined) this.conn.write(acks)
  }
}
