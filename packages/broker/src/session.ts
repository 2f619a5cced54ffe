import type { QoS, Will } from '@petrel/wire'
import type { Message } from './message.js'
import { DropReason, type BrokerStats } from './stats.js'
import type { BrokerLimits } from './options.js'

/**
 * Bytes one subscription may hold queued (rumqttd's segments: `max_segment_size x
 * max_segment_count` for its filter). Per subscription, not shared by the filter's
 * subscribers: a shared budget would let one stalled subscriber starve the rest.
 */
export class FilterBudget {
  used = 0
  constructor (
    readonly filter: string,
    readonly limit: number,
    /** The `$share/{group}/{filter}` key when the subscription is a shared one. */
    readonly share: string | undefined = undefined
  ) {}
}

/** A message on its way to one subscriber: queued, or in flight awaiting its ack. */
export class Delivery {
  /** QoS 2 only: PUBREC received, PUBREL sent, awaiting PUBCOMP. */
  released = false
  /** In flight from an earlier connection, not resent on this one yet (the client's Receive Maximum was full). */
  unsent = false
  /** Written to the client at least once (in flight, not merely queued). */
  sent = false
  /** Queued while its session was offline: charged to the broker's `offlineQueuedBytes` until it leaves the queue. */
  offline = false
  constructor (
    readonly message: Message,
    readonly qos: QoS,
    readonly retain: boolean,
    readonly subscriptionIdentifiers: number[] | undefined,
    /** Charged while queued; undefined once it leaves the queue. */
    public budget: FilterBudget | undefined,
    /** The shared subscription it was sent for: another member takes it if this session ends. */
    readonly share: string | undefined
  ) {}
}

/** What a session needs from the connection it is attached to. */
export interface SessionOutlet {
  /** Room on the wire now (socket not backed up). */
  readonly writable: boolean
  /** QoS 1/2 messages allowed in flight: min(client's Receive Maximum, max inflight). */
  readonly sendQuota: number
  /** Writes one PUBLISH; false when it is larger than the client's Maximum Packet Size. */
  sendPublish (message: Message, qos: QoS, retain: boolean, subscriptionIdentifiers: number[] | undefined, packetId: number, dup: boolean): boolean
  sendPubrel (packetId: number): void
}

export interface SessionHost {
  readonly stats: BrokerStats
  readonly limits: BrokerLimits
  /** Bytes queued for sessions while they were offline, over all sessions (max_offline_queued_bytes). */
  offlineQueuedBytes: number
  now (): number
  /** A QoS 1/2 message left this session's queue more than half full: hold its publisher back. */
  notePressure (session: Session): void
  /** A message dropped for this session at one of its bounds (counted, and logged now and then). */
  overflow (session: Session, reason: DropReason, qos: QoS): void
}

/**
 * A subscriber that has made no progress (no ack, nothing taken by its socket) for this long
 * is stalled: it no longer holds publishers back, and its own bounds apply (drops, counted).
 */
export const STALL_MS = 1000

/** Subscription options as stored for one filter of one session. */
export interface SessionSubscription {
  /** As subscribed, `$share/...` included. */
  readonly key: string
  topicFilter: string
  shareName: string | undefined
  qos: QoS
  noLocal: boolean
  retainAsPublished: boolean
  retainHandling: 0 | 1 | 2
  subscriptionIdentifier: number | undefined
  budget: FilterBudget
  /** When the ACL must see each message before it goes out (a filter wider than the read rules, or a deny rule inside it). */
  readable: ((topicName: string) => boolean) | undefined
  readonly session: Session
}

/**
 * The server side of one client's session: what survives a disconnect (subscriptions, QoS 1/2
 * in flight, the queue, incoming QoS 2 ids) and the delivery state machine over it. No socket:
 * it writes through a `SessionOutlet` while a connection is attached, and queues otherwise.
 *
 * Bounded: the queue holds at most `maxQueuedMessages` / `maxQueuedBytes`, and each message
 * queued also draws on its filter's budget. Past a bound the new message is dropped for this
 * session only and counted; QoS 0 is never queued while offline.
 */
export class Session {
  outlet: SessionOutlet | undefined
  subscriptions: Map<string, SessionSubscription> | undefined
  /** Packet id -> delivery in flight, in send order (Map keeps insertion order for resend). */
  inflight: Map<number, Delivery> | undefined
  /** QoS 2 packet ids received and PUBREC'd, awaiting PUBREL [MQTT-4.3.3-9]. */
  incomingQos2: Set<number> | undefined
  /** The user whose connection made or last resumed it: its subscriptions passed that user's ACL. */
  username: string | undefined = undefined
  /** Seconds the session outlives its connection [MQTT-3.1.2-23]. */
  expiryInterval = 0
  /** Epoch ms at which an offline session ends; 0 while online. */
  expiresAt = 0
  /** A will waiting out its Will Delay Interval [MQTT-3.1.3-9]; made a Message when published. */
  delayedWill: Will | undefined
  willAt = 0
  /** Epoch ms of the subscriber's last progress (an ack, or queued bytes taken by its socket). */
  lastProgress = 0
  private queue: Delivery[] | undefined
  /** Publishers held back until this session's queue is under half its bounds again. */
  private drainWaiters: Array<() => void> | undefined
  private queueHead = 0
  /** A pump (or a resume's resend) is running: a flush it causes must not pump again (see `pump`). */
  private pumping = false
  private queuedBytes = 0
  /** `Message.size` of the QoS 1/2 deliveries in flight (max_inflight_bytes). */
  private inflightBytes = 0
  private lastId = 0
  /** Packet ids of `inflight` deliveries still to resend after a reconnect, in send order; `unsent` of them are. */
  private resends: number[] | undefined
  private resendHead = 0
  private unsent = 0

  // Router scratch: merges overlapping subscriptions into one delivery per publish.
  routeEpoch = 0
  routeQos: QoS = 0
  routeRetain = false
  routeSubIds: number[] | undefined
  routeBudget: FilterBudget | undefined
  // A second copy, RETAIN the other way: a retained message matching subscriptions that differ
  // in Retain As Published (one copy cannot carry RETAIN 1 for some and 0 for others).
  routeAlt = false
  routeAltQos: QoS = 0
  routeAltSubIds: number[] | undefined
  routeAltBudget: FilterBudget | undefined

  constructor (readonly clientId: string, private readonly host: SessionHost) {}

  get queueLength (): number {
    return this.queue === undefined ? 0 : this.queue.length - this.queueHead
  }

  get queueBytes (): number {
    return this.queuedBytes
  }

  /** The queue holds all it may: anything more for this session is dropped. */
  get saturated (): boolean {
    const n = this.queueLength
    if (n === 0) return false
    const limits = this.host.limits
    return n >= limits.maxQueuedMessages || this.queuedBytes >= limits.maxQueuedBytes
  }

  get inflightCount (): number {
    return this.inflight?.size ?? 0
  }

  get inflightByteCount (): number {
    return this.inflightBytes
  }

  /**
   * Room in the in-flight window for `message` at `qos` (undefined: one more of no size): under
   * the outlet's count (Receive Maximum, max_inflight_messages) and max_inflight_bytes. The count
   * alone let 100 unacknowledged 15 MB messages pin 1.5 GB for one subscriber. A message goes
   * when nothing is in flight, however large, so no size can block a session for ever. Its size
   * is read only when needed (never for QoS 0).
   */
  private hasRoom (out: SessionOutlet, qos: QoS, message: Message | undefined): boolean {
    if (qos === 0) return true
    if (this.inflightCount >= out.sendQuota) return false
    if (this.inflightBytes === 0) return true
    const max = this.host.limits.maxInflightBytes
    return max === 0 || this.inflightBytes + (message?.size ?? 0) <= max
  }

  /**
   * Hands a message to this session: sent now when there is room, else queued within bounds.
   *
   * Sent now, its onward delivery starts as it arrives, so its lifetime has not passed
   * [MQTT-3.3.2-5]: every caller hands over a message just published or, from the retained
   * store or a shared member's ended session (Broker.endSession), one checked alive at that
   * moment. Checking here dropped every message with a Message Expiry Interval of 0 (a lifetime
   * of 0 s, not "no expiry"), even for subscribers ready to take it, while its publisher got
   * PUBACK 0x00. Copies that wait (queued) are checked when they leave the queue, so such a
   * message reaches whoever can take it now, and nobody later.
   */
  deliver (message: Message, qos: QoS, retain: boolean, subIds: number[] | undefined, budget: FilterBudget | undefined): void {
    const out = this.outlet
    if (out !== undefined && this.queueLength === 0 && out.writable && this.hasRoom(out, qos, message)) {
      this.transmit(out, message, qos, retain, subIds, undefined, budget?.share)
      return
    }
    this.enqueue(message, qos, retain, subIds, budget)
  }

  private enqueue (message: Message, qos: QoS, retain: boolean, subIds: number[] | undefined, budget: FilterBudget | undefined): void {
    const stats = this.host.stats
    if (this.outlet === undefined && qos === 0) {
      stats.drop(DropReason.offline)
      return
    }
    const size = message.size
    const limits = this.host.limits
    if (this.queueLength >= limits.maxQueuedMessages || this.queuedBytes + size > limits.maxQueuedBytes) {
      this.host.overflow(this, DropReason.queueFull, qos)
      return
    }
    // Each offline session's queue is bounded, but not their number times that bound: with many
    // sessions offline (max_sessions of them, each up to max_queued_bytes) the broker could hold
    // tens of GB. Their total has its own budget; a connected subscriber's queue is not charged.
    const offline = this.outlet === undefined
    const maxOffline = limits.maxOfflineQueuedBytes
    if (offline && maxOffline > 0 && this.host.offlineQueuedBytes + size > maxOffline) {
      this.host.overflow(this, DropReason.offlineLimit, qos)
      return
    }
    if (budget !== undefined) {
      if (budget.used + size > budget.limit) {
        this.host.overflow(this, DropReason.filterLimit, qos)
        return
      }
      budget.used += size
    }
    this.queuedBytes += size
    const d = new Delivery(message.own(), qos, retain, subIds, budget, budget?.share)
    if (offline) {
      d.offline = true
      this.host.offlineQueuedBytes += size
    }
    ;(this.queue ??= []).push(d)
    // QoS 1/2 to a connected subscriber that is falling behind: flow-control the publisher
    // rather than run into the bounds and drop (the publisher's window then paces it).
    if (qos > 0 && this.outlet !== undefined && this.overHalf(budget)) this.host.notePressure(this)
  }

  /** The queue is at least half full (of its count or bytes bound, or of `budget`). */
  overHalf (budget: FilterBudget | undefined): boolean {
    const limits = this.host.limits
    return this.queueLength * 2 >= limits.maxQueuedMessages || this.queuedBytes * 2 >= limits.maxQueuedBytes ||
      (budget !== undefined && budget.used * 2 >= budget.limit)
  }

  /**
   * Whether a message at `qos` would go on the wire now instead of waiting in the queue: what a
   * shared group asks before choosing a member.
   */
  ready (qos: QoS): boolean {
    const out = this.outlet
    return out !== undefined && this.queueLength === 0 && out.writable && this.hasRoom(out, qos, undefined)
  }

  /** Whether a publisher should wait for this session: it is behind, but still making progress. */
  holdsBack (now: number): boolean {
    return this.outlet !== undefined && this.queueLength > 0 && now - this.lastProgress < STALL_MS
  }

  /** Resolves when the queue is under half its bounds (or the session ends). */
  async whenDrained (): Promise<void> {
    await new Promise<void>((resolve) => { (this.drainWaiters ??= []).push(resolve) })
  }

  private wakeWaiters (): void {
    const w = this.drainWaiters
    if (w === undefined) return
    this.drainWaiters = undefined
    for (const resolve of w) resolve()
  }

  /** Sends queued messages while the outlet has room and the inflight window allows. */
  pump (): void {
    const out = this.outlet
    const q = this.queue
    // Not re-entered: a write of 64 KiB or more flushes at once, and a flush the socket takes
    // pumps the session again. The inner pump sent the queue ahead of the outer one and, once it
    // had emptied it, the outer one read a slot already taken (TypeError: the process died).
    // The outer loop sends what the inner one would have.
    if (out === undefined || this.pumping) return
    this.pumping = true
    try {
      if (this.unsent > 0 && !this.resendPending(out)) return
      if (q === undefined) return
      this.pumpFrom(out, q)
    } finally {
      this.pumping = false
    }
  }

  private pumpFrom (out: SessionOutlet, q: Delivery[]): void {
    const now = this.host.now()
    const before = this.queueHead
    while (this.queueHead < q.length && out.writable) {
      const d = q[this.queueHead] as Delivery
      if (!this.hasRoom(out, d.qos, d.message)) break
      q[this.queueHead++] = undefined as unknown as Delivery
      this.release(d)
      if (d.message.expiresAt !== 0 && d.message.expiresAt <= now) {
        this.host.stats.drop(DropReason.expired)
        continue
      }
      this.transmit(out, d.message, d.qos, d.retain, d.subscriptionIdentifiers, d, d.share)
    }
    if (this.queueHead !== before) this.lastProgress = now
    if (this.queueHead === q.length) {
      this.queue = undefined
      this.queueHead = 0
      this.wakeWaiters()
    } else if (this.queueHead > 1024 && this.queueHead * 2 > q.length) {
      this.queue = q.slice(this.queueHead)
      this.queueHead = 0
    }
    if (this.drainWaiters !== undefined && !this.overHalf(undefined)) this.wakeWaiters()
  }

  private release (d: Delivery): void {
    const size = d.message.size
    this.queuedBytes -= size
    if (d.offline) {
      d.offline = false
      this.host.offlineQueuedBytes -= size
    }
    if (d.budget !== undefined) {
      d.budget.used -= size
      d.budget = undefined
    }
  }

  private transmit (out: SessionOutlet, message: Message, qos: QoS, retain: boolean, subIds: number[] | undefined, d: Delivery | undefined, share: string | undefined): void {
    if (qos === 0) {
      if (!out.sendPublish(message, 0, retain, subIds, 0, false)) this.host.stats.drop(DropReason.packetTooLarge)
      return
    }
    const id = this.nextPacketId()
    if (!out.sendPublish(message, qos, retain, subIds, id, false)) {
      this.host.stats.drop(DropReason.packetTooLarge)
      return
    }
    message.own()
    const sent = d ?? new Delivery(message, qos, retain, subIds, undefined, share)
    sent.sent = true
    ;(this.inflight ??= new Map()).set(id, sent)
    this.inflightBytes += message.size
  }

  /**
   * A free packet id, walking forward so a just-released id is not reused at once. The inflight
   * map is the pool (bounded by the window), so an idle session carries no 64 KiB bitmap.
   */
  private nextPacketId (): number {
    const inflight = this.inflight
    let id = this.lastId
    do {
      id = id === 65535 ? 1 : id + 1
    } while (inflight?.has(id) === true)
    this.lastId = id
    return id
  }

  /**
   * Resends, in order, deliveries from an earlier connection that the client's Receive Maximum
   * had no room for at `resume`; true once none is left. Like `resume`, not held for a backed-up
   * socket: the window bounds it, and the acks that open the window are what call it.
   */
  private resendPending (out: SessionOutlet): boolean {
    const ids = this.resends as number[]
    const inflight = this.inflight as Map<number, Delivery>
    while (this.resendHead < ids.length && inflight.size - this.unsent < out.sendQuota) {
      const id = ids[this.resendHead++] as number
      const d = inflight.get(id)
      if (d === undefined || !d.unsent) continue // acknowledged meanwhile (see settle)
      d.unsent = false
      this.unsent--
      if (!out.sendPublish(d.message, d.qos, d.retain, d.subscriptionIdentifiers, id, true)) this.tooLarge(id, d)
    }
    if (this.unsent > 0) return false
    this.resends = undefined
    this.resendHead = 0
    return true
  }

  /** A delivery's ack arrived: one not resent yet no longer waits to be. */
  private settle (d: Delivery): void {
    if (!d.unsent) return
    d.unsent = false
    this.unsent--
  }

  /** A delivery in flight is done with (acknowledged, refused, or cannot be resent). */
  private finish (packetId: number, d: Delivery): void {
    this.inflight?.delete(packetId)
    this.inflightBytes -= d.message.size
  }

  /** An in-flight message the client no longer takes: it reconnected with a smaller Maximum Packet Size [MQTT-3.1.2-25]. */
  private tooLarge (packetId: number, d: Delivery): void {
    this.finish(packetId, d)
    this.host.stats.drop(DropReason.packetTooLarge)
  }

  /** PUBACK [MQTT-4.3.2-5]; false when the id is not a QoS 1 in flight. */
  puback (packetId: number): boolean {
    const d = this.inflight?.get(packetId)
    if (d === undefined || d.qos !== 1) return false
    this.settle(d)
    this.finish(packetId, d)
    this.lastProgress = this.host.now()
    this.pump()
    return true
  }

  /** PUBREC: answer PUBREL and keep the id until PUBCOMP [MQTT-4.3.3-4]. A failure code ends the flow. */
  pubrec (packetId: number, reasonCode: number): boolean {
    const d = this.inflight?.get(packetId)
    if (d === undefined || d.qos !== 2) return false
    this.settle(d)
    if (reasonCode >= 0x80) {
      this.finish(packetId, d)
      this.pump()
      return true
    }
    d.released = true
    this.outlet?.sendPubrel(packetId)
    return true
  }

  pubcomp (packetId: number): boolean {
    const d = this.inflight?.get(packetId)
    if (d === undefined || d.qos !== 2) return false
    this.finish(packetId, d)
    this.lastProgress = this.host.now()
    this.pump()
    return true
  }

  /**
   * After reconnect with the session present: resend unacknowledged PUBLISH with DUP set and
   * PUBREL for those past PUBREC, in the original order [MQTT-4.4.0-1] [MQTT-4.6.0-1], then the queue.
   *
   * Resent PUBLISHes count against the new connection's Receive Maximum like new ones
   * [MQTT-3.3.4-9] (the quota starts afresh on each connection, §4.9): a client reconnecting
   * with a smaller one than it had got every message in flight at once. Those past it are
   * resent, still in order and before anything queued, as acks make room (`resendPending`).
   */
  resume (): void {
    const out = this.outlet
    if (out === undefined) return
    this.lastProgress = this.host.now()
    // the queue waits for the resends: a flush during them must not pump it ahead [MQTT-4.6.0-1]
    this.pumping = true
    this.resends = undefined
    this.resendHead = 0
    this.unsent = 0
    const inflight = this.inflight
    if (inflight !== undefined) {
      const quota = out.sendQuota
      let sent = 0
      for (const [id, d] of inflight) {
        d.unsent = false
        if (d.released) {
          out.sendPubrel(id) // awaiting PUBCOMP: still counts against the quota
          sent++
        } else if (sent < quota) {
          if (out.sendPublish(d.message, d.qos, d.retain, d.subscriptionIdentifiers, id, true)) sent++
          else this.tooLarge(id, d)
        } else {
          d.unsent = true
          this.unsent++
          ;(this.resends ??= []).push(id)
        }
      }
    }
    this.pumping = false
    this.pump()
  }

  /**
   * Empties the session (it ends): releases filter budgets and returns what it still held, in
   * flight first (oldest), then queued, for the broker to hand on or count.
   */
  clear (): Delivery[] {
    const left: Delivery[] = []
    if (this.inflight !== undefined) for (const d of this.inflight.values()) left.push(d)
    const q = this.queue
    if (q !== undefined) {
      for (let i = this.queueHead; i < q.length; i++) {
        const d = q[i] as Delivery
        this.release(d)
        left.push(d)
      }
    }
    this.queue = undefined
    this.queueHead = 0
    this.inflight = undefined
    this.inflightBytes = 0
    this.incomingQos2 = undefined
    this.resends = undefined
    this.resendHead = 0
    this.unsent = 0
    this.wakeWaiters()
    return left
  }
}
