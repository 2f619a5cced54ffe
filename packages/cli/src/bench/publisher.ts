import { reasonCodeName, type Packet } from '@petrel/wire'
import { AckWriter, PUBREL } from './acks.js'
import type { BenchConnection, PacketSink } from './connection.js'
import type { PublishTemplate } from './publish-template.js'
import { nowMicros } from './stamp.js'
import type { BenchStats } from './stats.js'

/** Bytes per write when the publisher may send as much as it likes. */
const BATCH_BYTES = 64 * 1024

export interface PublisherOptions {
  /** Publisher id carried in the stamp (its client index; the template holds it). */
  id: number
  /** Messages to send; 0: until stopped. */
  limit: number
  /** QoS 1/2 messages in flight at once. */
  window: number
}

/**
 * One publishing connection. `pump(due)` sends what it may at once as one write: up to `due`
 * messages in total, within the window and the batch size, and only while the socket drains.
 * Batches are template copies patched in place, reused once the socket has written them.
 */
export class Publisher implements PacketSink {
  /** Messages sent (the next sequence number). */
  seq = 0
  acked = 0
  /** When this publisher started (performance.now()), the origin of its rate. */
  startedAt = 0
  stopped = false
  onFinished: (() => void) | undefined
  /** Called once the count (-L) has been sent; acknowledgements may still be due. */
  onAllSent: (() => void) | undefined
  private inflight = 0
  private readonly freeIds: number[] = []
  private readonly capacity: number
  private readonly pool: Buffer[] = []
  private readonly acks = new AckWriter()
  private finished = false
  /** The stats phase this publisher last sent in (see BenchStats.sendStreams). */
  private phase = -1

  constructor (readonly conn: BenchConnection, private readonly template: PublishTemplate,
    private readonly stats: BenchStats, private readonly o: PublisherOptions) {
    this.capacity = Math.max(1, Math.floor(BATCH_BYTES / template.length))
    if (template.qos > 0) {
      this.capacity = Math.min(this.capacity, o.window)
      for (let id = o.window; id >= 1; id--) this.freeIds.push(id)
    }
    conn.sink = this
  }

  /** The publisher id carried in its stamps. */
  get id (): number {
    return this.o.id
  }

  /** Whether every message it will send has been sent (and acknowledged, at QoS 1/2). */
  get done (): boolean {
    return this.finished
  }

  get outstanding (): number {
    return this.inflight
  }

  /** Sends up to `due - seq` messages now, as one write. Returns the number sent. */
  pump (due = Number.POSITIVE_INFINITY): number {
    if (this.stopped || !this.conn.open || this.conn.socket.writableNeedDrain) return 0
    let n = Math.min(this.capacity, due - this.seq)
    if (this.o.limit > 0) n = Math.min(n, this.o.limit - this.seq)
    if (this.template.qos > 0) n = Math.min(n, this.freeIds.length)
    if (n <= 0) return 0
    const batch = this.pool.pop() ?? this.template.batch(this.capacity)
    const sentAt = nowMicros()
    const t = this.template
    for (let i = 0; i < n; i++) {
      t.patch(batch, i, sentAt, this.seq++, t.qos > 0 ? this.freeIds.pop() as number : 0)
    }
    this.inflight += t.qos > 0 ? n : 0
    const release = (): void => { this.pool.push(batch) }
    this.conn.write(n === this.capacity ? batch : batch.subarray(0, n * t.length), release)
    const s = this.stats
    const now = performance.now()
    if (this.phase !== s.phase) {
      this.phase = s.phase
      s.sendStreams++
    }
    if (s.firstSentAt === 0) s.firstSentAt = now
    s.lastSentAt = now
    s.sent += n
    if (this.o.limit > 0 && this.seq >= this.o.limit) this.onAllSent?.()
    if (t.qos === 0) {
      s.acked += n
      this.acked += n
      this.checkFinished()
    }
    return n
  }

  /** Stops sending new messages; QoS 1/2 messages in flight still complete. */
  stop (): void {
    this.stopped = true
    this.checkFinished()
  }

  onPackets (packets: readonly Packet[]): void {
    let freed = 0
    for (const p of packets) {
      switch (p.type) {
        case 'puback': case 'pubcomp':
          this.release(p.packetId, p.type, p.reasonCode)
          freed++
          break
        case 'pubrec':
          if ((p.reasonCode ?? 0) >= 0x80) {
            this.release(p.packetId, p.type, p.reasonCode)
            freed++
          } else {
            this.acks.add(PUBREL, p.packetId)
          }
          break
        case 'disconnect':
          this.conn.disconnected(p.reasonCode)
          return
        default:
          break
      }
    }
    const rel = this.acks.take()
    if (rel !== undefined) this.conn.write(rel)
    if (freed > 0) {
      this.stats.lastAckedAt = performance.now()
      this.checkFinished()
    }
    this.onAcked?.()
  }

  /** Called after acknowledgements freed window space (the driver pumps again). */
  onAcked: (() => void) | undefined

  private release (packetId: number, type: 'puback' | 'pubrec' | 'pubcomp', reasonCode: number | undefined): void {
    this.freeIds.push(packetId)
    this.inflight--
    this.acked++
    this.stats.acked++
    if (reasonCode !== undefined && reasonCode >= 0x80) {
      this.stats.publishRefused++
      this.stats.error(`${type}: ${reasonCodeName(reasonCode, type)}`)
    }
  }

  private checkFinished (): void {
    if (this.finished || this.inflight > 0) return
    if (this.stopped || (this.o.limit > 0 && this.seq >= this.o.limit)) {
      this.finished = true
      this.onFinished?.()
    }
  }
}
