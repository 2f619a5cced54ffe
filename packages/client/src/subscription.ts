import { propertiesCost, type QoS } from '@petrel/wire'
import { Deque } from './deque.js'
import type { Message } from './message.js'

/** What a full subscription queue does with one more message (the dropped message is acked and counted). */
export type OverflowPolicy = 'dropNewest' | 'dropOldest'

/**
 * A callback subscription's handler; a returned promise is not awaited. A throw or a rejection is
 * reported as an `error` event with PETREL_ERR_HANDLER_FAILED (`cause`: what was thrown).
 */
export type MessageHandler = (message: Message) => void | Promise<void>

/** The client side a subscription needs. */
export interface SubscriptionOwner {
  unsubscribeEntry (subscription: Subscription): Promise<void>
  messageDropped (): void
  handlerFailed (error: unknown): void
}

/**
 * What a queued message holds: payload, topic and, for one with properties, what they hold in
 * the heap once decoded ({@link propertiesCost}, the estimate the broker's queues use too).
 */
export function messageBytes (m: Pick<Message, 'payload' | 'topic' | 'properties'>): number {
  const n = m.payload.length + m.topic.length
  return m.properties === undefined ? n : n + propertiesCost(m.properties)
}

/**
 * Whether `view` keeps alive a buffer far larger than itself (a socket read, a WebSocket message
 * holding other packets). Node's 8 KiB pool slabs are left out: shared anyway.
 */
export function pins (view: Uint8Array): boolean {
  return view.buffer.byteLength > 2 * view.byteLength + 16 * 1024
}

/**
 * Messages of one `subscribe()` call: an async iterable (`for await`) over a bounded queue, or a
 * callback. Each subscription has its own queue, so a slow consumer here never holds back
 * keepalive, acks or other subscriptions; when the queue is full (by count, or by bytes: one
 * message bigger than the byte bound is still queued alone) the overflow policy drops a
 * message (acked, counted in `dropped` and in the client's stats). Breaking out of a
 * `for await` loop (or a throw in its body) unsubscribes at once, without waiting for the
 * broker; messages still queued then will never be read, so they are acked and counted as
 * dropped (with `manualAck`, left unacked they would hold back every later ack [MQTT-4.6.0-2]).
 * Several `next()` calls may wait at once (several loops over one subscription share its
 * messages); each is answered in turn.
 */
export class Subscription implements AsyncIterableIterator<Message> {
  /** The filters as requested. */
  readonly topicFilters: readonly string[]
  /** Per-filter SUBACK reason codes: the granted QoS (0-2) or a failure code (>= 0x80). */
  reasonCodes: readonly number[] = []
  /** Messages dropped because the queue was full. */
  dropped = 0
  private readonly owner: SubscriptionOwner
  private readonly handler: MessageHandler | undefined
  private readonly limit: number
  private readonly byteLimit: number
  private readonly overflow: OverflowPolicy
  private readonly queue = new Deque<Message>()
  /** What each queued message is charged against `byteLimit`, in queue order. */
  private readonly charges = new Deque<number>()
  private queueBytes = 0
  /** The buffer the last queued payload is a view into. */
  private lastBuffer: ArrayBufferLike | undefined = undefined
  private readonly waiters = new Deque<(result: IteratorResult<Message>) => void>()
  private ended = false

  /** @internal Created by `client.subscribe()`. */
  constructor (owner: SubscriptionOwner, topicFilters: string[], handler: MessageHandler | undefined, limit: number, overflow: OverflowPolicy,
    byteLimit = Number.POSITIVE_INFINITY) {
    this.owner = owner
    this.topicFilters = topicFilters
    this.handler = handler
    this.limit = limit
    this.byteLimit = byteLimit
    this.overflow = overflow
  }

  /** Granted QoS per filter (failures as reported by the broker). */
  get grantedQoS (): readonly QoS[] {
    return this.reasonCodes.map((rc) => (rc < 3 ? rc : 0) as QoS)
  }

  /** Whether the subscription still receives messages. */
  get active (): boolean {
    return !this.ended
  }

  /** Messages waiting in the queue. */
  get queued (): number {
    return this.queue.length
  }

  /** @internal A message for this subscription. */
  push (message: Message): void {
    if (this.ended) {
      message.ack()
      return
    }
    const handler = this.handler
    if (handler !== undefined) {
      try {
        const r = handler(message)
        if (r !== undefined && typeof (r as Promise<void>).then === 'function') (r as Promise<void>).then(undefined, (err: unknown) => { this.owner.handlerFailed(err) })
      } catch (err) {
        this.owner.handlerFailed(err)
      }
      return
    }
    const waiter = this.waiters.shift()
    if (waiter !== undefined) {
      waiter({ value: message, done: false })
      return
    }
    // A payload is a view into the bytes read with it (zero-copy), which it keeps alive while it
    // waits: the first message queued from a large buffer is charged that buffer, those after it
    // from the same buffer only their own size. So a tiny message read alongside a large one for
    // someone else counts as what it holds (accurate within one buffer), without a copy.
    let size = messageBytes(message)
    const buffer = message.payload.buffer
    if (buffer !== this.lastBuffer && pins(message.payload)) size += buffer.byteLength
    while (this.queue.length > 0 && (this.queue.length >= this.limit || this.queueBytes + size > this.byteLimit)) {
      this.dropped++
      this.owner.messageDropped()
      if (this.overflow === 'dropNewest') {
        message.ack()
        return
      }
      this.take()?.ack()
    }
    this.queue.push(message)
    this.charges.push(size)
    this.queueBytes += size
    this.lastBuffer = buffer
  }

  /** Bytes of the messages waiting in the queue (as {@link messageBytes} counts them). */
  get queuedBytes (): number {
    return this.queueBytes
  }

  private take (): Message | undefined {
    const m = this.queue.shift()
    if (m === undefined) return undefined
    this.queueBytes -= this.charges.shift() as number
    if (this.queue.length === 0) this.lastBuffer = undefined
    return m
  }

  async next (): Promise<IteratorResult<Message>> {
    const m = this.take()
    if (m !== undefined) return { value: m, done: false }
    if (this.ended) return { value: undefined, done: true }
    return await new Promise<IteratorResult<Message>>((resolve) => { this.waiters.push(resolve) })
  }

  /**
   * Called when a `for await` loop exits early (break, return, throw): ends the subscription at
   * once and unsubscribes in the background (never waits for the broker, never throws).
   */
  async return (): Promise<IteratorResult<Message>> {
    if (!this.ended) {
      this.end()
      for (let m = this.take(); m !== undefined; m = this.take()) {
        this.dropped++
        this.owner.messageDropped()
        m.ack()
      }
      this.owner.unsubscribeEntry(this).catch(() => {})
    }
    return { value: undefined, done: true }
  }

  [Symbol.asyncIterator] (): AsyncIterableIterator<Message> {
    return this
  }

  /**
   * Stops delivery at once and sends UNSUBSCRIBE for filters no other subscription of this
   * client uses. Queued messages stay readable; the iterator then ends. Idempotent.
   */
  async unsubscribe (): Promise<void> {
    if (this.ended) return
    this.end()
    await this.owner.unsubscribeEntry(this)
  }

  /** @internal Ends iteration (unsubscribed, refused, or the client closed). */
  end (): void {
    if (this.ended) return
    this.ended = true
    for (let w = this.waiters.shift(); w !== undefined; w = this.waiters.shift()) w({ value: undefined, done: true })
  }
}
