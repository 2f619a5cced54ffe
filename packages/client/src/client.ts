import { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import type { Duplex } from 'node:stream'
import {
  connackReturnCodeName, PetrelError, reasonCodeName, WireErrorCode,
  type AuthPacket, type ConnackPacket, type ConnectPacket, type DisconnectPacket, type Packet, type ProtocolVersion, type QoS
} from '@petrel/wire'
import { Backoff } from './backoff.js'
import { ClientSession, type ControlRequest, type PublishRequest, type PublishResult, type SessionOutput, type SubscriptionEntry } from './client-session.js'
import { Connection, MAX_SUBSCRIPTION_IDENTIFIERS, MAX_TIMER_MS, type ConnectionHandler } from './connection.js'
import { ClientErrorCode, clientError } from './errors.js'
import { connectPacketProblem } from './connect-packet-problem.js'
import { isFinalRefusal } from './final-refusal.js'
import type { Message } from './message.js'
import type { ClientOptions, PublishOptions, SubscribeOptions } from './options.js'
import { renderMetrics, type ClientStats } from './stats.js'
import { Subscription, type MessageHandler, type SubscriptionOwner } from './subscription.js'
import { checkTlsOptions, isSupportedProtocol, maxWebSocketMessage, openingSteps, openTransport, usesTls } from './transport.js'

/** Payload of the `connect` event. */
export interface ConnectEvent {
  url: URL | undefined
  sessionPresent: boolean
  /** The CONNACK, with the broker's v5 properties (limits, assigned client id...). */
  connack: ConnackPacket
  /** False for the first connection of this client. */
  reconnected: boolean
}

/** Payload of the `disconnect` event: an accepted connection ended. */
export interface DisconnectEvent {
  /** Why, undefined when we closed it on purpose (`end()`, `disconnect()`). */
  error: PetrelError | undefined
}

/** Payload of the `reconnect` event: another attempt comes after `delayMs`. */
export interface ReconnectEvent {
  /** The attempt about to be made once `delayMs` passed: 1 after a lost link, then 2, 3... while they fail. */
  attempt: number
  delayMs: number
  error: PetrelError
}

/** Typed events of {@link MqttClient}. */
export interface ClientEventMap {
  connect: [ConnectEvent]
  reconnect: [ReconnectEvent]
  disconnect: [DisconnectEvent]
  /**
   * Non-fatal trouble: a failed attempt, a failed resubscribe, a throwing message handler or
   * listener of the other events (PETREL_ERR_HANDLER_FAILED). Only emitted when listened to.
   */
  error: [PetrelError]
  /** The broker named another server (CONNACK or DISCONNECT with 0x9C/0x9D and Server Reference). */
  serverReference: [{ serverReference: string, reasonCode: number }]
  /** The client is closed for good (`end()`, or reconnecting stopped). */
  close: [PetrelError | undefined]
  /**
   * A message no subscription of this client matches: one for a subscription the broker's
   * session kept from an earlier connection (the app has not subscribed again, or not yet), or
   * one in flight when its subscription ended. Acked when the listeners return (or by
   * `msg.ack()` under `unroutedManualAck`). With no listener, such messages are acked and
   * counted as `messagesUnrouted`, except when the first connection resumed a session: then they
   * wait (`unroutedHoldMs`) for a subscription the app is about to make, or for a listener.
   */
  unrouted: [Message]
}

/** Options of `client.end()`. */
export interface EndOptions {
  /** Close at once: pending requests reject with PETREL_ERR_CLIENT_CLOSED; no wait for requests, a link or the broker's close. */
  force?: boolean
  /** Graceful: wait at most this long for queued and in-flight requests (and, while the link is down, for the next one). Default 5,000 ms. */
  timeoutMs?: number
}

/** Options of `client.request()`. */
export interface RequestOptions extends PublishOptions {
  /** Reject with PETREL_ERR_REQUEST_TIMEOUT after this long. Default 10,000 ms. */
  timeoutMs?: number
}

type Phase = 'idle' | 'connecting' | 'connected'

/**
 * How long a graceful end() waits, after DISCONNECT, for the broker to close the connection: as
 * long as the connection lets the socket linger once our bytes are flushed.
 */
const CLOSE_WAIT_MS = 1000
/** Largest inbound packet when `maximumPacketSize` is not set. */
const DEFAULT_MAX_PACKET_SIZE = 256 * 1024 * 1024
/** Bytes a subscription's iterator queue holds when `queueBytes` is not set. */
const DEFAULT_QUEUE_BYTES = 64 * 1024 * 1024
/** User Property pairs accepted in one inbound packet when `maxUserProperties` is not set. */
const DEFAULT_MAX_USER_PROPERTIES = 1024


/** Where in-place writes go when there is no connection (never sent). */
const NOWHERE = Buffer.allocUnsafeSlow(8 * 1024)
const RESOLVED: Promise<PublishResult> = Promise.resolve(Object.freeze({ reasonCode: 0 }))
const clock = (): number => performance.now()
/** Where {@link capture} leaves a new promise's resolvers (the executor runs synchronously). */
const captured: { resolve: ((value: never) => void) | undefined, reject: ((error: unknown) => void) | undefined } = { resolve: undefined, reject: undefined }
function capture (resolve: (value: never) => void, reject: (error: unknown) => void): void {
  captured.resolve = resolve
  captured.reject = reject
}

/**
 * An MQTT 3.1.1 / 5.0 client. Create it with `connect()` (resolves once connected) or
 * `createClient()` (returns at once; requests queue until the first connection). It runs its
 * own loop: reconnects with backoff, replays and resubscribes; nothing to pump.
 */
export class MqttClient extends EventEmitter<ClientEventMap> {
  /** The client identifier: the one the last CONNECT carried (as `beforeConnect` left it), or the broker's assigned one under v5 when that was empty. */
  clientId: string
  readonly protocolVersion: ProtocolVersion

  private readonly options: ClientOptions
  private readonly urls: Array<URL | undefined>
  private urlIndex = 0
  private readonly session: ClientSession
  private readonly backoff: Backoff
  private conn: Connection | undefined
  private phase: Phase = 'idle'
  private closed = false
  private closing = false
  private paused = false
  private everConnected = false
  /** The first end() call's work; later calls wait for it (a forced one cuts it short). */
  private ending: Promise<void> | undefined
  /** Ends a graceful end()'s wait for the broker to close the link (see brokerClosed). */
  private cutCloseWait: (() => void) | undefined
  /** Ends the supervisor's wait: a backoff pause, or offline after disconnect(). */
  private wake: (() => void) | undefined
  /** Aborts the connection attempt under way (set only while one is). */
  private cancelAttempt: (() => void) | undefined
  /** reconnect() or disconnect() cut the attempt under way short: its end is no failure. */
  private attemptAbandoned = false
  /**
   * The failed attempt's CONNECT would fail the same way on every attempt, with no `beforeConnect`
   * to change it: not encodable (the client stops), or refused for its content by that broker
   * (the client stops once every URL in turn has refused it so; `finalRefusals` counts them).
   */
  private attemptFinal: 'no' | 'refused' | 'unencodable' = 'no'
  private finalRefusals = 0
  /** reconnect() was called with no wait to end yet (from a 'disconnect' listener, say): the next one is skipped. */
  private dialNow = false
  private connackWaiter: { resolve: () => void, reject: (e: PetrelError) => void, url: URL | undefined, packet: ConnectPacket } | undefined
  private linkEnded: ((error: PetrelError | undefined) => void) | undefined
  private firstConnect: { resolve: () => void, reject: (e: PetrelError) => void } | undefined
  private wakeTimer: NodeJS.Timeout | undefined
  private wakeTime = 0
  private reauthWaiter: { resolve: () => void, reject: (e: PetrelError) => void } | undefined
  /** The last re-authentication asked for: the next one starts once it has settled. */
  private reauthTail: Promise<void> = Promise.resolve()
  /** The Authentication Method of the CONNECT sent on the current link (undefined: none, no AUTH allowed). */
  private authMethod: string | undefined
  private readonly subscriptions = new Map<Subscription, SubscriptionEntry>()
  private readonly counters = { connects: 0, connectFailures: 0, disconnects: 0, pingTimeouts: 0, protocolErrors: 0, messagesDropped: 0, bytesIn: 0, bytesOut: 0 }
  /** The link ended before the supervisor waited for it to (undefined error: on purpose). */
  private endedEarly: { error: PetrelError | undefined } | undefined
  private responses: { topic: string, sub: Promise<Subscription>, waiters: Map<string, ResponseWaiter>, next: number, cancel: AbortController } | undefined
  private readonly handler: ConnectionHandler
  private readonly owner: SubscriptionOwner

  /** @internal Use `connect()` or `createClient()`. */
  constructor (urls: Array<URL | undefined>, options: ClientOptions) {
    super()
    this.options = options
    this.urls = urls
    this.protocolVersion = options.protocolVersion ?? 5
    this.clientId = options.clientId ?? `petrel-${randomBytes(6).toString('hex')}`
    // Checked once, here: a bad key or certificate fails every dial the same way.
    if (options.transport === undefined && urls.some((u) => u !== undefined && usesTls(u))) checkTlsOptions(options.tls)
    if (options.beforeConnect === undefined) {
      // Every attempt would send this CONNECT (a URL's credentials aside): one no CONNECT can carry
      // (a will payload over 65,535 bytes...) would fail each dial alike, so no client is made.
      for (const url of urls) {
        const problem = connectPacketProblem(this.connectPacket(url, 0))
        if (problem !== undefined) throw problem
      }
    }
    this.backoff = new Backoff(options.backoff)
    const live = (): Connection | undefined => this.phase === 'connected' ? this.conn : undefined
    const output: SessionOutput = {
      write: (bytes) => live()?.write(bytes) ?? false,
      // The session writes in place only while connected; should the link be gone, the bytes land
      // in a scratch buffer and commit reports the transport full (as write would).
      reserve: (size) => live()?.reserve(size) ?? 0,
      get buffer () { return live()?.buffer ?? NOWHERE },
      commit: (size) => live()?.commit(size) ?? false,
      deliver: (message, entry) => { (entry.sink as Subscription).push(message) },
      protocolViolation: (error) => { this.conn?.closeForProtocolError(error, error.reasonCode ?? 0x82) },
      unrouted: (message) => {
        if (this.listenerCount('unrouted') === 0) return false
        try {
          this.emit('unrouted', message)
        } catch (err) {
          this.owner.handlerFailed(err)
        }
        return true
      },
      wakeAt: (time) => { this.scheduleWake(time) },
      resubscribeFailed: (entry, error) => {
        (entry.sink as Subscription).end()
        this.emitError(error)
      },
      messageRefused: (error) => { this.emitError(error) }
    }
    this.session = new ClientSession({
      protocolVersion: this.protocolVersion,
      inflightWindow: options.inflightWindow,
      inflightWindowQos2: options.inflightWindowQos2,
      maxQueuedMessages: options.maxQueuedMessages,
      maxQueuedBytes: options.maxQueuedBytes,
      queuePolicy: options.queuePolicy,
      sessionLostPolicy: options.sessionLostPolicy,
      resubscribe: options.resubscribe,
      throttle: options.throttle,
      unroutedHoldMs: options.unroutedHoldMs,
      unroutedManualAck: options.unroutedManualAck,
      unroutedHoldBytes: options.unroutedHoldBytes,
      // What the Connection's decoder marks past: named in the refusal's error.
      maxUserProperties: options.maxUserProperties ?? DEFAULT_MAX_USER_PROPERTIES,
      maxSubscriptionIdentifiers: MAX_SUBSCRIPTION_IDENTIFIERS,
      brokerMaximumPacketSize: options.brokerMaximumPacketSize,
      now: clock
    }, output)
    this.handler = {
      onPacket: (packet) => { this.onPacket(packet) },
      onClose: (error) => { this.onLinkClosed(error) },
      onDrain: () => { this.session.drained() },
      onPing: () => {},
      // Pausing reads while publishes wait for a window slot would hold back the acks that free one.
      readsMayPause: () => this.session.queuedCount === 0
    }
    // A listener added while messages are held takes them now (they wait for nothing else).
    ;(this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'unrouted') queueMicrotask(() => { this.session.offerHeld() })
    })
    this.owner = {
      unsubscribeEntry: async (sub) => { await this.unsubscribeEntry(sub) },
      messageDropped: () => { this.counters.messagesDropped++ },
      // Always wrapped: a handler's own failure (a PetrelError from a publish it awaited, say) must
      // not pass for the client's (a failed connection attempt, a refused resubscribe).
      handlerFailed: (err) => { this.emitError(clientError(ClientErrorCode.HANDLER_FAILED, `a message handler threw: ${String(err)}`, { cause: err })) }
    }
  }

  /** @internal Starts the supervisor; resolves on the first accepted connection. */
  start (waitForFirst: boolean): Promise<void> {
    const first = waitForFirst
      ? new Promise<void>((resolve, reject) => { this.firstConnect = { resolve, reject } })
      : Promise.resolve()
    void this.supervise().catch((err: unknown) => {
      // Only app code can throw in there (the `reconnect` callback, an `error` listener): the loop
      // cannot go on, so the client closes saying why, rather than linger unsupervised.
      this.shutdown(clientError(ClientErrorCode.HANDLER_FAILED, `the supervisor stopped: ${String(err)}`, { cause: err }))
    })
    return first
  }

  /** Whether a connection is up (CONNACK accepted). */
  get connected (): boolean {
    return this.phase === 'connected'
  }

  /** Whether `end()` was called or reconnecting stopped. */
  get isClosed (): boolean {
    return this.closed
  }

  // --- requests ----------------------------------------------------------------------------

  /**
   * Publishes a message. Resolves when written (QoS 0), on PUBACK (1) or PUBCOMP (2) with the
   * broker's reason code: the PUBACK's, or for QoS 2 the PUBREC's (0x00, or 0x10 No matching
   * subscribers; a PUBCOMP 0x92 to a PUBREL resent after a reconnect means the broker had
   * completed it already, so it resolves too). Rejects with PETREL_ERR_INVALID_TOPIC_NAME, PETREL_ERR_QOS_NOT_SUPPORTED,
   * PETREL_ERR_RETAIN_NOT_SUPPORTED, PETREL_ERR_PACKET_TOO_LARGE, PETREL_ERR_PAYLOAD_FORMAT_INVALID
   * (a payload declared UTF-8 that is not) (nothing sent), PETREL_ERR_QUEUE_FULL
   * / PETREL_ERR_DROPPED (queue policy), PETREL_ERR_PUBLISH_FAILED (reason code >= 0x80),
   * PETREL_ERR_SESSION_LOST, PETREL_ERR_CLIENT_CLOSED, or the signal's abort reason.
   * The payload may be read until this settles (one waiting for queue room is encoded only when
   * admitted): do not change a Buffer you reuse before then.
   */
  publish (topic: string, payload: string | Uint8Array, options?: PublishOptions): Promise<PublishResult> {
    if (this.closed || this.closing) return Promise.reject(clientError(ClientErrorCode.CLIENT_CLOSED, 'the client is closed'))
    const signal = options?.signal
    if (signal?.aborted === true) return Promise.reject(abortReason(signal))
    if (typeof topic !== 'string') return Promise.reject(new PetrelError(WireErrorCode.INVALID_TOPIC_NAME, `the topic name must be a string, got ${typeof topic}`, { reasonCode: 0x90 }))
    if (typeof payload !== 'string' && !(payload instanceof Uint8Array)) {
      return Promise.reject(clientError(ClientErrorCode.INVALID_ARGUMENT, `the payload must be a string, a Buffer or a Uint8Array, got ${payload === null ? 'null' : typeof payload}`))
    }
    const data = typeof payload === 'string' ? Buffer.from(payload) : payload
    let req: PublishRequest | null
    try {
      req = this.session.publish(topic, data, options?.qos ?? 0, options?.retain ?? false, options?.properties)
    } catch (err) {
      return Promise.reject(asPetrelError(err))
    }
    if (req === null) return RESOLVED
    // A shared executor: no closure per publish (a burst of 50,000 waiting publishes is 50,000
    // promises held in memory; each closure would be one more object to scavenge and promote).
    const promise = new Promise<PublishResult>(capture)
    const resolve = captured.resolve as (value: PublishResult) => void
    const reject = captured.reject as (error: unknown) => void
    if (signal === undefined) {
      req.resolve = resolve
      req.reject = reject
      return promise
    }
    const r = req
    const onAbort = (): void => { this.session.abort(r, abortReason(signal)) }
    signal.addEventListener('abort', onAbort, { once: true })
    r.resolve = (v) => { signal.removeEventListener('abort', onAbort); resolve(v) }
    r.reject = (e) => { signal.removeEventListener('abort', onAbort); reject(e) }
    return promise
  }

  /**
   * Subscribes to one or more filters. Resolves with a {@link Subscription} (async iterable, or
   * fed to `handler`) once the broker answered; `sub.reasonCodes` holds the per-filter codes.
   * Rejects with PETREL_ERR_INVALID_TOPIC_FILTER, PETREL_ERR_WILDCARD_NOT_SUPPORTED,
   * PETREL_ERR_SHARED_NOT_SUPPORTED, PETREL_ERR_PACKET_TOO_LARGE (over the broker's Maximum Packet Size; nothing sent), PETREL_ERR_SUBSCRIBE_FAILED (every filter
   * refused), PETREL_ERR_CLIENT_CLOSED, or the signal's abort reason.
   */
  subscribe (topicFilter: string | string[], options?: SubscribeOptions | MessageHandler, handler?: MessageHandler): Promise<Subscription> {
    if (typeof options === 'function') {
      handler = options
      options = undefined
    }
    if (this.closed || this.closing) return Promise.reject(clientError(ClientErrorCode.CLIENT_CLOSED, 'the client is closed'))
    const o = options ?? {}
    const signal = o.signal
    if (signal?.aborted === true) return Promise.reject(abortReason(signal))
    const filters = typeof topicFilter === 'string' ? [topicFilter] : topicFilter
    if (!Array.isArray(filters) || !filters.every((f) => typeof f === 'string')) {
      return Promise.reject(new PetrelError(WireErrorCode.INVALID_TOPIC_FILTER, 'topic filters must be strings', { reasonCode: 0x8f }))
    }
    const qos: QoS = o.qos ?? 0
    const sub = new Subscription(this.owner, filters, handler, o.queueSize ?? 10_000, o.overflow ?? 'dropOldest', o.queueBytes ?? DEFAULT_QUEUE_BYTES)
    let result
    try {
      result = this.session.subscribe(filters.map((f) => ({
        topicFilter: f,
        qos,
        noLocal: o.noLocal,
        retainAsPublished: o.retainAsPublished,
        retainHandling: o.retainHandling
      })), { manualAck: o.manualAck, userProperties: o.userProperties, sink: sub })
    } catch (err) {
      return Promise.reject(asPetrelError(err))
    }
    const { entry, request } = result
    this.subscriptions.set(sub, entry)
    // Messages a resumed session brought for it before it existed (handlers may run before SUBACK).
    this.session.deliverHeld()
    if (request === null) return Promise.resolve(sub)
    return new Promise<Subscription>((resolve, reject) => {
      const onAbort = signal === undefined ? undefined : (): void => { this.session.abort(request, abortReason(signal)) }
      if (onAbort !== undefined) signal?.addEventListener('abort', onAbort, { once: true })
      request.resolve = (codes) => {
        if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
        sub.reasonCodes = codes
        resolve(sub)
      }
      request.reject = (err) => {
        if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
        this.subscriptions.delete(sub)
        sub.end()
        reject(err)
      }
    })
  }

  /**
   * Unsubscribes from filters that no subscription of this client holds: subscriptions the
   * broker's session kept from an earlier connection (`clean: false`). A subscription made here
   * ends with its own `sub.unsubscribe()`. Resolves with the UNSUBACK reason codes (none under
   * 3.1.1). Rejects with PETREL_ERR_INVALID_TOPIC_FILTER, PETREL_ERR_PACKET_TOO_LARGE, PETREL_ERR_INVALID_ARGUMENT (a filter in
   * use here), PETREL_ERR_UNSUBSCRIBE_FAILED, PETREL_ERR_CLIENT_CLOSED, or the signal's reason.
   */
  unsubscribe (topicFilter: string | string[], options: { userProperties?: Array<[string, string]>, signal?: AbortSignal } = {}): Promise<number[]> {
    if (this.closed || this.closing) return Promise.reject(clientError(ClientErrorCode.CLIENT_CLOSED, 'the client is closed'))
    const signal = options.signal
    if (signal?.aborted === true) return Promise.reject(abortReason(signal))
    let request: ControlRequest
    try {
      request = this.session.unsubscribeFilters(typeof topicFilter === 'string' ? [topicFilter] : topicFilter, options.userProperties)
    } catch (err) {
      return Promise.reject(asPetrelError(err))
    }
    return new Promise<number[]>((resolve, reject) => {
      const onAbort = signal === undefined ? undefined : (): void => { this.session.abort(request, abortReason(signal)) }
      if (onAbort !== undefined) signal?.addEventListener('abort', onAbort, { once: true })
      request.resolve = (codes) => {
        if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
        resolve(codes)
      }
      request.reject = (err) => {
        if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
        reject(err)
      }
    })
  }

  private async unsubscribeEntry (sub: Subscription): Promise<void> {
    const entry = this.subscriptions.get(sub)
    if (entry === undefined) return
    this.subscriptions.delete(sub)
    if (this.closed || this.closing) return
    const request = this.session.unsubscribe(entry)
    if (request === null) return
    await new Promise<void>((resolve, reject) => {
      request.resolve = () => { resolve() }
      request.reject = reject
    })
  }

  /**
   * MQTT 5 request/response: publishes with a Response Topic and Correlation Data and resolves
   * with the first message answering it. The client subscribes once to its own response topic.
   * `timeoutMs` and `signal` bound the whole request, that subscription (which waits for a link
   * while offline) and the publish included: they end it even while the broker has not
   * acknowledged the PUBLISH yet (which then still completes or is replayed as any publish); a
   * signal aborted already rejects at once, nothing sent. Rejects with PETREL_ERR_REQUEST_TIMEOUT,
   * the signal's reason, PETREL_ERR_INVALID_ARGUMENT under 3.1.1, or what `publish()` rejects with.
   */
  async request (topic: string, payload: string | Uint8Array, options: RequestOptions = {}): Promise<Message> {
    if (this.protocolVersion !== 5) throw clientError(ClientErrorCode.INVALID_ARGUMENT, 'request/response needs MQTT 5 (responseTopic and correlationData)')
    const signal = options.signal
    if (signal?.aborted === true) throw abortReason(signal)
    if (this.responses === undefined) {
      // A client id may hold `+` or `#` (not allowed in a topic name); the filter names the one
      // topic, so it needs no Wildcard Subscription Available.
      const base = `petrel/responses/${this.clientId.replace(/[+#]/g, encodeURIComponent)}/${randomBytes(4).toString('hex')}`
      const waiters = new Map<string, ResponseWaiter>()
      // end() cancels it while it has not reached the wire (see endOnce).
      const cancel = new AbortController()
      const sub = this.subscribe(`${base}/r`, { qos: 1, signal: cancel.signal }, (m) => {
        const cd = m.properties?.correlationData
        if (cd === undefined) return
        const key = Buffer.from(cd).toString('hex')
        const w = waiters.get(key)
        if (w !== undefined) {
          waiters.delete(key)
          w.resolve(m)
        }
      })
      this.responses = { topic: base, sub, waiters, next: 1, cancel }
      sub.catch(() => { this.responses = undefined })
    }
    const r = this.responses
    const correlation = Buffer.from(`${(r.next++).toString(16)}-${randomBytes(4).toString('hex')}`)
    const key = correlation.toString('hex')
    const timeoutMs = options.timeoutMs ?? 10_000
    // The wait for the response is the client's alone: the signal and end() cancel it too. It
    // starts now: the subscription to the response topic may itself wait (for a link, say).
    const answer = new Promise<Message>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer)
        r.waiters.delete(key)
        signal?.removeEventListener('abort', onAbort)
      }
      const onAbort = (): void => {
        done()
        reject(abortReason(signal as AbortSignal))
      }
      const timer = setTimeout(() => {
        done()
        reject(clientError(ClientErrorCode.REQUEST_TIMEOUT, `no response to the request on ${JSON.stringify(topic)} within ${timeoutMs} ms`))
      }, Math.min(timeoutMs, MAX_TIMER_MS)) // past a timer's range: no bound, not 1 ms
      signal?.addEventListener('abort', onAbort, { once: true })
      r.waiters.set(key, {
        resolve: (m) => { done(); resolve(m) },
        reject: (err) => { done(); reject(err) }
      })
    })
    answer.catch(() => {})
    try {
      await Promise.race([r.sub, answer])
    } catch (err) {
      r.waiters.get(key)?.reject(err) // a failed subscription: clears the timer too
      throw err
    }
    const sent = this.publish(topic, payload, {
      ...options,
      properties: { ...options.properties, responseTopic: `${r.topic}/r`, correlationData: correlation }
    })
    // The timeout or the signal may end the wait while the PUBLISH is still unacknowledged (a
    // stalled broker): the request rejects then, not when the publish settles, and whichever
    // promise loses the race must not surface as an unhandled rejection (a crash by default).
    sent.catch(() => {})
    try {
      await Promise.race([sent, answer])
    } catch (err) {
      r.waiters.get(key)?.reject(err) // a failed publish: clears the timer too
      throw err
    }
    return await answer
  }

  /**
   * MQTT 5 re-authentication: sends AUTH 0x19 with the Authentication Method of the CONNECT the
   * connection was made with (after `beforeConnect`) and `authenticationData`; further challenges
   * go to the `auth` hook. Resolves on AUTH Success. Calls made while one is under way wait for
   * it: one exchange at a time. Rejects with PETREL_ERR_INVALID_ARGUMENT (3.1.1, or that CONNECT
   * carried no method), PETREL_ERR_CONNECTION_FAILED (not connected), PETREL_ERR_CLIENT_CLOSED
   * (`end()` was called), or the error the link ended with.
   */
  async reauthenticate (authenticationData?: Uint8Array): Promise<void> {
    if (this.protocolVersion !== 5) throw clientError(ClientErrorCode.INVALID_ARGUMENT, 're-authentication needs MQTT 5')
    const run = this.reauthTail.then(async () => { await this.reauthOnce(authenticationData) })
    this.reauthTail = run.catch(() => {})
    await run
  }

  private async reauthOnce (authenticationData: Uint8Array | undefined): Promise<void> {
    if (this.closed || this.closing) throw clientError(ClientErrorCode.CLIENT_CLOSED, 'the client is closed')
    const conn = this.conn
    if (conn === undefined || this.phase !== 'connected') throw clientError(ClientErrorCode.CONNECTION_FAILED, 'not connected')
    // [MQTT-4.12.1-1] the method this connection was authenticated with: its CONNECT's, as sent.
    const method = this.authMethod
    if (method === undefined) {
      throw clientError(ClientErrorCode.INVALID_ARGUMENT, 're-authentication needs an Authentication Method in the CONNECT (properties.authenticationMethod, or set by beforeConnect)')
    }
    await new Promise<void>((resolve, reject) => {
      this.reauthWaiter = { resolve, reject }
      conn.writePacket({ type: 'auth', reasonCode: 0x19, properties: { authenticationMethod: method, authenticationData } })
    })
  }

  // --- lifecycle ---------------------------------------------------------------------------

  /**
   * Closes the client. Graceful by default: waits (at most `timeoutMs`) for queued and in-flight
   * requests, and for the bytes of written ones (QoS 0) to leave the transport's buffers, then
   * sends DISCONNECT 0x00. While the link is down (between attempts, or during one), it waits
   * within the same bound for the next link to send them on, dialling at once rather than after
   * the backoff delay, then again at the backoff's first step (`initialDelayMs`) rather than its
   * grown delay; not after `disconnect()`. With nothing to send it does not wait
   * for a link: an attempt under way is ended at once, with DISCONNECT when its CONNECT was
   * written (waiting for the broker's close, as below). Whatever is still pending rejects with
   * PETREL_ERR_CLIENT_CLOSED. Resolves once the broker has closed the connection after the
   * DISCONNECT (at most 1 s later): it has then read our last acks, so a client taking the
   * session over next is not sent those messages again. `force` closes at once, without waiting
   * for anything, and cuts short a graceful end() still waiting. Either way a link still writing
   * 1 s after the client closed (a broker that stopped reading) is cut: it does not hold the
   * process. Called (graceful) from a message handler, the auto-ack of that message goes out
   * before the DISCONNECT. Idempotent.
   */
  async end (options: EndOptions = {}): Promise<void> {
    if (this.ending !== undefined) {
      if (options.force === true) {
        // A forced end() cuts short a graceful one still waiting (for requests, a link, or the
        // broker's close): that one sees `closed` on its next check, so both settle now.
        this.shutdown(undefined)
        this.cutCloseWait?.()
      }
      await this.ending
      return
    }
    if (this.closed) return
    this.ending = this.endOnce(options)
    await this.ending
  }

  private async endOnce (options: EndOptions): Promise<void> {
    this.closing = true
    if (options.force === true) {
      this.shutdown(undefined)
      return
    }
    const deadline = clock() + (options.timeoutMs ?? 5000)
    // Called from a message handler, end() runs within the delivery: the auto-ack of that message
    // comes once the handler returns. Closing before it, the broker would send the message again.
    await Promise.resolve()
    // No response can come once closed: a response subscription still queued (made offline) is
    // dropped, its requests reject with PETREL_ERR_CLIENT_CLOSED. Left queued, it had end() dial
    // a link only to send it, or wait its whole timeout for one.
    this.responses?.cancel.abort(clientError(ClientErrorCode.CLIENT_CLOSED, 'the client was closed'))
    if (this.phase !== 'connected' && this.endMustWait) this.wake?.()
    while (!this.closed && this.endMustWait && clock() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    if (this.closed) return
    this.conn?.flush()
    // The one to get DISCONNECT: the live link, or an attempt whose CONNECT was written (a client
    // may send DISCONNECT before the CONNACK, §3.1.4; the broker then ends it without the will).
    const conn = this.phase === 'connected' || this.phase === 'connecting' ? this.conn : undefined
    this.shutdown(undefined)
    if (conn !== undefined) await this.brokerClosed(conn.stream)
  }

  /**
   * After our DISCONNECT, waits (at most CLOSE_WAIT_MS) for the broker to close the connection, as
   * the receiver of a DISCONNECT should (§3.14.4). Then it has read all we sent before it, our
   * last PUBACK/PUBREC/PUBCOMP included: resolving earlier, a client taking the session over at
   * once could be served first and be sent those messages again.
   */
  private async brokerClosed (stream: Duplex): Promise<void> {
    if (stream.destroyed || stream.readableEnded) return
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        stream.off('end', done)
        stream.off('close', done)
        this.cutCloseWait = undefined
        resolve()
      }
      const timer = setTimeout(done, CLOSE_WAIT_MS)
      stream.once('end', done)
      stream.once('close', done)
      this.cutCloseWait = () => {
        stream.destroy()
        done()
      }
    })
  }

  /**
   * Whether a graceful end() has something to wait for: requests to finish on the live link; or,
   * offline, requests the supervisor's next link will carry. Not an attempt with nothing to carry:
   * waiting for its CONNACK waited out the whole timeout on a broker that never answers. One whose
   * CONNECT was written is ended with DISCONNECT, and end() resolves once the broker closed it (at
   * most CLOSE_WAIT_MS), so a client taking the id over next is not taken over by that CONNECT.
   * Offline on purpose (disconnect()), no link is coming.
   */
  private get endMustWait (): boolean {
    // Connected, also for bytes not yet handed to the OS (QoS 0 publishes resolve when written):
    // they go before the DISCONNECT, and the link is cut soon after it (see shutdown).
    if (this.phase === 'connected') return !this.session.idle || (this.conn?.unsentBytes ?? 0) > 0
    if (this.paused) return false
    return !this.session.idle
  }

  /**
   * Closes the connection (DISCONNECT 0x00) and stays offline until `reconnect()`. Requests keep
   * queuing. Called before the first connection of `connect()` was made (from `beforeConnect`, or
   * a `reconnect` listener), it rejects that `connect()` with PETREL_ERR_ABORTED and closes the
   * client, as `end({ force: true })` does: `connect()` hands the client to nobody, so nobody could
   * `reconnect()` it, and left offline it would take requests that never go out.
   */
  disconnect (): void {
    if (this.closed) return
    this.paused = true
    this.conn?.close(undefined, this.closeOnPurpose)
    this.abandonAttempt()
    this.wake?.()
    if (this.firstConnect !== undefined) {
      this.firstConnect.reject(clientError(ClientErrorCode.ABORTED, 'disconnect() was called before the first connection was made'))
      this.firstConnect = undefined
      this.closing = true
      this.shutdown(undefined)
    }
  }

  /**
   * Reconnects now: ends a `disconnect()`, skips a backoff wait (the one under way, or the next
   * when called from a `disconnect`, `error` or `reconnect` listener), or drops the current link
   * and dials again. Called on every `error`, it dials without any backoff against a broker that
   * keeps refusing: leave retries to the supervisor unless something has changed.
   */
  reconnect (): void {
    if (this.closed || this.closing) return
    this.paused = false
    if (this.conn !== undefined && !this.conn.isClosed) this.conn.close(undefined, this.closeOnPurpose)
    this.abandonAttempt()
    if (this.wake !== undefined) this.wake()
    else this.dialNow = true
  }

  /**
   * How the app closes the link on purpose (disconnect(), reconnect(), end()): with DISCONNECT
   * 0x00 once the CONNECT is written, CONNACK or not. The broker may have accepted the connection
   * already (its CONNACK on the way): closed without DISCONNECT, it would publish the will. A
   * client may send DISCONNECT before the CONNACK (§3.1.4), even during an AUTH exchange [MQTT-3.1.2-30].
   */
  private get closeOnPurpose (): { reasonCode: number } | undefined {
    return this.phase === 'connected' || this.phase === 'connecting' ? { reasonCode: 0 } : undefined
  }

  /**
   * Drops the attempt under way, on the app's request: it is not a failure of the broker (no
   * connectFailures, no backoff growth, no `error`). Called after the link is closed, so an
   * attempt whose CONNACK just came ends as a connection, with its DISCONNECT.
   */
  private abandonAttempt (): void {
    if (this.cancelAttempt === undefined) return
    this.attemptAbandoned = true
    this.cancelAttempt()
  }

  /** A snapshot of the counters. Cheap: no allocation beyond the returned object. */
  stats (): ClientStats {
    const c = this.session.counters
    const conn = this.conn
    return {
      connects: this.counters.connects,
      connectFailures: this.counters.connectFailures,
      disconnects: this.counters.disconnects,
      pingTimeouts: this.counters.pingTimeouts,
      protocolErrors: this.counters.protocolErrors,
      publishesSent: c.publishesSent,
      publishesAcked: c.publishesAcked,
      inflight: this.session.inflightCount,
      publishesReplayed: c.publishesReplayed,
      queued: this.session.queuedCount,
      blocked: this.session.blockedCount,
      messagesReceived: c.messagesReceived,
      messagesDropped: this.counters.messagesDropped,
      messagesUnrouted: c.messagesUnrouted,
      messagesRefused: c.messagesRefused,
      bytesIn: this.counters.bytesIn + (conn?.bytesIn ?? 0),
      bytesOut: this.counters.bytesOut + (conn?.bytesOut ?? 0)
    }
  }

  /** The stats in Prometheus text format, labelled with the client id. */
  metrics (): string {
    return renderMetrics(this.stats(), { client_id: this.clientId })
  }

  // --- supervisor --------------------------------------------------------------------------

  private async supervise (): Promise<void> {
    let attempt = 0
    // A graceful end() (closing) may be waiting for the next link: the loop runs until closed.
    while (!this.closed) {
      if (this.paused) {
        await new Promise<void>((resolve) => { this.wake = resolve })
        this.wake = undefined
        continue
      }
      attempt++
      this.endedEarly = undefined
      this.attemptAbandoned = false
      this.attemptFinal = 'no'
      this.dialNow = false
      const url = this.urls[this.urlIndex % this.urls.length]
      let error: PetrelError | undefined
      try {
        await this.establish(url, attempt)
      } catch (err) {
        error = toPetrelError(err)
      }
      if (this.closed) return
      if (error !== undefined && this.attemptAbandoned) {
        // reconnect() or disconnect() cut it short: the loop does what was asked (dial again at
        // once, or wait offline); the next attempt takes this one's number.
        attempt--
        continue
      }
      if (error !== undefined) {
        this.counters.connectFailures++
        this.urlIndex++
        if (this.firstConnect !== undefined && !this.everConnected && this.options.retryInitialConnect !== true) {
          // Each URL gets one try before connect() gives up.
          if (attempt < this.urls.length) continue
          this.shutdown(error)
          return
        }
        this.emitError(error)
        // Set during the attempt (TypeScript still sees the 'no' of before it).
        const why = this.attemptFinal as MqttClient['attemptFinal']
        this.finalRefusals = why === 'refused' ? this.finalRefusals + 1 : 0
        const final = why === 'unencodable' || this.finalRefusals >= this.urls.length
        if (!this.canRedial || final || !this.shouldReconnect(attempt, error)) { this.shutdown(error); return }
        await this.pause(this.nextDelay(), attempt + 1, error)
        continue
      }
      attempt = 0
      this.finalRefusals = 0
      const upAt = clock()
      const reason = await new Promise<PetrelError | undefined>((resolve) => {
        // The link may have ended before we got here (reconnect() right after connect()).
        const early = this.endedEarly
        this.endedEarly = undefined
        if (early !== undefined) resolve(early.error)
        else if (this.conn === undefined || this.conn.isClosed) resolve(clientError(ClientErrorCode.CONNECTION_FAILED, 'the connection closed'))
        else this.linkEnded = resolve
      })
      this.backoff.connectionEnded(clock() - upAt)
      if (this.closed) return
      if (!this.canRedial) { this.shutdown(reason ?? oneShotEnded()); return }
      if (this.paused) continue
      const e = reason ?? clientError(ClientErrorCode.CONNECTION_FAILED, 'the connection closed')
      if (!this.shouldReconnect(1, e)) { this.shutdown(e); return }
      if (reason === undefined) continue // reconnect() on demand: dial at once
      await this.pause(this.nextDelay(), 1, e)
    }
  }

  /**
   * The wait before the next attempt. While a graceful end() waits for a link, at most the first
   * backoff step: end() has its own deadline, and a delay grown by earlier failures (up to 30 s)
   * would outlast it, the broker back long before the next dial.
   */
  private nextDelay (): number {
    const delay = this.backoff.next()
    return this.closing ? Math.min(delay, this.backoff.initialDelay) : delay
  }

  /** A stream given as `transport` carries one connection: once it ended there is nothing to dial. */
  private get canRedial (): boolean {
    return typeof this.options.transport !== 'object'
  }

  private shouldReconnect (attempt: number, error: PetrelError): boolean {
    const r = this.options.reconnect ?? true
    return typeof r === 'function' ? r(attempt, error) : r
  }

  private async pause (delayMs: number, attempt: number, error: PetrelError): Promise<void> {
    if (this.dialNow) return // reconnect() asked for the next attempt at once
    let timer: NodeJS.Timeout | undefined
    const slept = new Promise<void>((resolve) => {
      timer = setTimeout(() => { this.wake = undefined; resolve() }, Math.min(delayMs, MAX_TIMER_MS))
      this.wake = () => { clearTimeout(timer); this.wake = undefined; resolve() }
    })
    // The wait is set first: a listener calling end(), disconnect() or reconnect() ends it (a
    // timer left behind would hold the process open for the whole delay, up to 30 s).
    this.notify('reconnect', { attempt, delayMs, error })
    await slept
  }

  /** One attempt: dial, CONNECT (through `beforeConnect`), AUTH exchange, CONNACK; all within the connect timeout. */
  private async establish (url: URL | undefined, attempt: number): Promise<void> {
    const timeoutMs = this.options.connectTimeoutMs ?? 10_000
    const ac = new AbortController()
    let step: 'dial' | 'beforeConnect' | 'connack' = 'dial'
    const timer = setTimeout(() => {
      // Said as it is: a TLS handshake, WebSocket upgrade or beforeConnect that never ended was "no CONNACK".
      const what = step === 'beforeConnect'
        ? 'beforeConnect did not return (no CONNECT sent)'
        : step === 'connack' || url === undefined || this.options.transport !== undefined
          ? `no CONNACK from ${url?.host ?? 'the transport'}`
          : `${openingSteps(url)} with ${url.host} not done`
      ac.abort(clientError(ClientErrorCode.CONNECT_TIMEOUT, `${what} within ${timeoutMs} ms`))
    }, Math.min(timeoutMs, MAX_TIMER_MS)) // past a timer's range (Infinity): no bound, not 1 ms
    this.cancelAttempt = () => { ac.abort(clientError(ClientErrorCode.CONNECTION_FAILED, 'connection attempt cancelled')) }
    try {
      const stream = await this.dial(url, ac.signal)
      step = 'connack'
      if (ac.signal.aborted || this.closed) {
        stream.destroy()
        throw ac.signal.reason instanceof PetrelError ? ac.signal.reason : clientError(ClientErrorCode.CLIENT_CLOSED, 'the client is closed')
      }
      let packet = this.connectPacket(url, attempt)
      const hook = this.options.beforeConnect
      if (hook !== undefined) {
        // The hook runs within the connect timeout, and a failed one leaves no socket behind.
        try {
          step = 'beforeConnect'
          packet = await untilAborted(async () => await hook(packet, { attempt, url }), ac.signal)
          step = 'connack'
          // The codec, the session and the decoder of this client are set for one protocol version.
          if (packet?.type !== 'connect') throw clientError(ClientErrorCode.INVALID_ARGUMENT, 'beforeConnect must return a CONNECT packet')
          if (packet.protocolVersion !== this.protocolVersion) {
            throw clientError(ClientErrorCode.INVALID_ARGUMENT, `beforeConnect cannot change the protocol version (this client speaks ${this.protocolVersion === 5 ? '5.0' : '3.1.1'}: set protocolVersion when creating it)`)
          }
        } catch (err) {
          stream.destroy()
          throw err
        }
      }
      // Inbound limit: what the CONNECT advertised (maximumPacketSize or properties.maximumPacketSize,
      // or a beforeConnect rewrite), which the broker must respect [MQTT-3.1.2-24]; 3.1.1 advertises
      // nothing, so there only the option bounds what we buffer.
      const advertised = this.protocolVersion === 5 ? packet.properties?.maximumPacketSize : undefined
      const conn = new Connection(stream, this.protocolVersion, advertised ?? this.options.maximumPacketSize ?? DEFAULT_MAX_PACKET_SIZE, this.handler, this.options.trace,
        this.options.maxUserProperties ?? DEFAULT_MAX_USER_PROPERTIES)
      this.conn = conn
      this.authMethod = packet.properties?.authenticationMethod
      this.phase = 'connecting'
      // The CONNACK is handled synchronously in onPacket: packets behind it in the same chunk
      // (a resumed session's messages) must find the session already up.
      const accepted = new Promise<void>((resolve, reject) => { this.connackWaiter = { resolve, reject, url, packet } })
      const onAbort = (): void => { conn.close(toPetrelError(ac.signal.reason)) }
      ac.signal.addEventListener('abort', onAbort, { once: true })
      try {
        conn.writePacket(packet)
      } catch (err) {
        // A CONNECT the codec refuses (a will topic with a wildcard, a beforeConnect rewrite):
        // nobody will await `accepted`, so closing must not reject it.
        this.connackWaiter = undefined
        conn.close(toPetrelError(err))
        this.attemptFinal = hook === undefined ? 'unencodable' : 'no'
        throw err
      }
      try {
        await accepted
      } finally {
        ac.signal.removeEventListener('abort', onAbort)
      }
    } finally {
      clearTimeout(timer)
      this.cancelAttempt = undefined
    }
  }

  private async dial (url: URL | undefined, signal: AbortSignal): Promise<Duplex> {
    const t = this.options.transport
    if (t !== undefined && typeof t !== 'function') {
      // Used once: reading a second CONNACK from an ended stream would wait for the connect timeout.
      if (t.destroyed || t.readableEnded || t.writableEnded || this.everConnected) throw oneShotEnded()
      return t
    }
    if (t !== undefined) {
      // The connect timeout (and end(), reconnect()...) bound the factory even when it ignores the
      // signal; a stream it hands over late is closed.
      const opening = Promise.resolve().then(async () => await t(url, signal))
      try {
        return await untilAborted(async () => await opening, signal)
      } catch (err) {
        if (signal.aborted) opening.then((stream) => { stream.destroy() }, () => {})
        throw err
      }
    }
    if (url === undefined) throw clientError(ClientErrorCode.INVALID_ARGUMENT, 'no broker URL and no transport')
    // A WebSocket message is buffered whole before the decoder sees it: bound it by the inbound
    // packet limit (a beforeConnect rewrite of that limit comes after the dial: the option rules).
    const o = this.options
    const maxPacket = o.maximumPacketSize ?? (this.protocolVersion === 5 ? o.properties?.maximumPacketSize : undefined) ?? DEFAULT_MAX_PACKET_SIZE
    return await openTransport(url, {
      tls: o.tls, ws: o.ws, readModeration: o.readModeration, localAddress: o.localAddress, maxMessageBytes: maxWebSocketMessage(maxPacket)
    }, signal)
  }

  private connectPacket (url: URL | undefined, attempt: number): ConnectPacket {
    const o = this.options
    const v5 = this.protocolVersion === 5
    const clean = o.clean ?? true
    // Clean Start only on the very first connection: later ones resume the session (if it lives).
    const cleanStart = this.protocolVersion === 5 ? clean && !this.everConnected : clean
    const username = o.username ?? (url !== undefined && url.username !== '' ? decodeURIComponent(url.username) : undefined)
    const pw = o.password ?? (url !== undefined && url.password !== '' ? decodeURIComponent(url.password) : undefined)
    const password = pw === undefined ? undefined : typeof pw === 'string' ? Buffer.from(pw) : pw
    const will = o.will === undefined
      ? undefined
      : {
          topicName: o.will.topic,
          payload: typeof o.will.payload === 'string' ? Buffer.from(o.will.payload) : o.will.payload ?? Buffer.alloc(0),
          qos: o.will.qos ?? 0,
          retain: o.will.retain ?? false,
          properties: v5 ? o.will.properties : undefined
        }
    void attempt
    // Either spelling: the option, or the CONNECT property as for every other property.
    const aliasMaximum = o.topicAliasMaximum ?? o.properties?.topicAliasMaximum ?? 0
    return {
      type: 'connect',
      protocolVersion: this.protocolVersion,
      clientId: this.clientId,
      cleanStart,
      keepAlive: o.keepalive ?? 60,
      username,
      password,
      will,
      properties: v5
        ? {
            ...o.properties,
            sessionExpiryInterval: o.sessionExpiryInterval ?? o.properties?.sessionExpiryInterval ?? (clean ? undefined : 300),
            topicAliasMaximum: aliasMaximum > 0 ? aliasMaximum : undefined,
            maximumPacketSize: o.maximumPacketSize ?? o.properties?.maximumPacketSize
          }
        : undefined
    }
  }

  private accepted (connack: ConnackPacket, conn: Connection, url: URL | undefined, packet: ConnectPacket): void {
    const rc = connack.reasonCode
    const props = connack.properties
    if (rc !== 0) {
      const v5 = this.protocolVersion === 5
      const name = v5 ? reasonCodeName(rc, 'connack') : connackReturnCodeName(rc)
      const denied = v5 ? rc === 0x86 || rc === 0x87 || rc === 0x8c : rc === 4 || rc === 5
      // With no beforeConnect to rewrite it, the next attempt's CONNECT is this one: so is the answer.
      this.attemptFinal = isFinalRefusal(rc, this.protocolVersion) && this.options.beforeConnect === undefined ? 'refused' : 'no'
      if (v5 && (rc === 0x9c || rc === 0x9d) && props?.serverReference !== undefined) {
        this.notify('serverReference', { serverReference: props.serverReference, reasonCode: rc })
      }
      const err = clientError(denied ? ClientErrorCode.NOT_AUTHORIZED : ClientErrorCode.CONNECTION_REFUSED,
        `the broker refused the connection: ${name} (${v5 ? `0x${rc.toString(16)}` : rc})${props?.reasonString === undefined ? '' : `: ${props.reasonString}`}${serverReferenceText(props?.serverReference)}` +
        (this.attemptFinal === 'no'
          ? ''
          : this.urls.length === 1
            ? '; not retried: the broker refuses this CONNECT whatever the attempt, only other options can change it'
            : '; this broker refuses this CONNECT whatever the attempt: the client stops once each of its servers in turn has refused it so'), { reasonCode: rc })
      conn.close(err)
      throw err
    }
    if (connack.sessionPresent && packet.cleanStart) {
      // [MQTT-3.2.2-2] a server accepting Clean Start sets Session Present 0 (3.1.1: [MQTT-3.2.2-1]);
      // [MQTT-3.2.2-4] a client without that session state closes the connection.
      throw this.protocolError(conn, 'the broker accepted a clean start with Session Present set [MQTT-3.2.2-2]')
    }
    const method = props?.authenticationMethod
    const ours = packet.properties?.authenticationMethod
    if (method !== undefined && method !== ours) {
      // [MQTT-4.12.0-5] a successful CONNACK carries the CONNECT's method; [MQTT-4.12.0-6] none when
      // the CONNECT had none. One without a method is accepted: §3.2.2.3.17 makes only a repeated
      // one a Protocol Error, and it names no other method to be taken as agreed.
      throw this.protocolError(conn, `the broker accepted the connection with Authentication Method ${JSON.stringify(method)}, ` +
        (ours === undefined ? 'but the CONNECT carried none [MQTT-4.12.0-6]' : `but the CONNECT's was ${JSON.stringify(ours)} [MQTT-4.12.0-5]`))
    }
    const assigned = props?.assignedClientIdentifier
    if (assigned === '') {
      // §3.2.2.3.7: an Assigned Client Identifier is the one the broker gave because the CONNECT's
      // was empty, a new Client Identifier [MQTT-3.2.2-16]; an empty one is none (sent back, it asks
      // for a new one), so no session could be resumed under it. A Protocol Error, not ignored: the
      // broker says the session lives under no id we could name.
      throw this.protocolError(conn, 'the broker assigned an empty Client Identifier (§3.2.2.3.7) [MQTT-3.2.2-16]')
    }
    // The id the session lives under: the one sent (beforeConnect may have rewritten it), or the broker's.
    this.clientId = assigned ?? packet.clientId
    this.phase = 'connected'
    this.counters.connects++
    const reconnected = this.everConnected
    this.everConnected = true
    const ka = props?.serverKeepAlive ?? packet.keepAlive // [MQTT-3.2.2-21] the server's keepalive wins
    conn.startKeepalive(ka * 1000, this.options.pingTimeoutMs)
    if (this.firstConnect !== undefined) {
      this.firstConnect.resolve()
      this.firstConnect = undefined
    }
    this.session.connectionUp(connack, packet)
    this.notify('connect', { url, sessionPresent: connack.sessionPresent, connack, reconnected })
  }

  // --- inbound -----------------------------------------------------------------------------

  private onPacket (packet: Packet): void {
    if (this.phase === 'connected') {
      switch (packet.type) {
        case 'publish': case 'puback': case 'pubrec': case 'pubrel': case 'pubcomp': case 'suback': case 'unsuback':
          this.session.handlePacket(packet)
          return
        case 'pingresp': return
        case 'disconnect': this.onDisconnect(packet); return
        case 'auth': void this.onAuth(packet); return
        default: break
      }
    } else if (this.phase === 'connecting') {
      if (packet.type === 'connack') {
        const w = this.connackWaiter
        const conn = this.conn
        this.connackWaiter = undefined
        if (w === undefined || conn === undefined) return
        try {
          this.accepted(packet, conn, w.url, w.packet)
          w.resolve()
        } catch (err) {
          w.reject(toPetrelError(err))
        }
        return
      }
      if (packet.type === 'auth') { void this.onAuth(packet); return }
      if (packet.type === 'disconnect') { this.onDisconnect(packet); return }
    }
    this.protocolError(this.conn, `unexpected ${packet.type.toUpperCase()} from the broker`)
  }

  /** The broker broke the protocol: closes `conn` (v5: DISCONNECT 0x82) and returns the error it was closed with. */
  private protocolError (conn: Connection | undefined, message: string, cause?: PetrelError): PetrelError {
    const err = clientError(ClientErrorCode.PROTOCOL_ERROR, message, { reasonCode: 0x82, cause })
    conn?.closeForProtocolError(err, 0x82)
    return err
  }

  private onDisconnect (packet: DisconnectPacket): void {
    const reasonCode = packet.reasonCode ?? 0
    const serverReference = packet.properties?.serverReference
    const reasonString = packet.properties?.reasonString
    if (serverReference !== undefined) this.notify('serverReference', { serverReference, reasonCode })
    const err = clientError(ClientErrorCode.DISCONNECTED_BY_BROKER,
      `the broker disconnected: ${reasonCodeName(reasonCode, 'disconnect')} (0x${reasonCode.toString(16)})${reasonString === undefined ? '' : `: ${reasonString}`}${serverReferenceText(serverReference)}`, { reasonCode })
    if (packet.properties?.sessionExpiryInterval !== undefined) {
      // [MQTT-3.14.2-2] only a client sets the Session Expiry Interval in DISCONNECT. The link is
      // closing anyway; say why (0x82) and report the typed error, the broker's reason as its cause.
      this.protocolError(this.conn, `the broker's DISCONNECT carries a Session Expiry Interval [MQTT-3.14.2-2]; its reason: ${err.message}`, err)
      return
    }
    this.conn?.close(err)
  }

  private async onAuth (packet: AuthPacket): Promise<void> {
    const conn = this.conn
    const rc = packet.reasonCode ?? 0
    // An exchange is under way while connecting with a method, or after our AUTH 0x19: the broker
    // then answers with Continue (0x18), and ends a re-authentication with Success. Without a
    // method in the CONNECT it must send no AUTH at all [MQTT-4.12.0-6]; it never sends 0x19.
    const ours = this.authMethod
    const exchange = this.phase === 'connecting' || this.reauthWaiter !== undefined
    if (ours === undefined || !exchange || (rc === 0 ? this.phase !== 'connected' : rc !== 0x18)) {
      const why = ours === undefined ? 'the CONNECT carried no Authentication Method [MQTT-4.12.0-6]' : 'no authentication exchange is in progress'
      this.protocolError(conn, `unexpected AUTH 0x${rc.toString(16)} from the broker: ${why}`)
      return
    }
    // [MQTT-4.12.0-5] every AUTH carries the CONNECT's method; omitting it is a Protocol Error
    // (§3.15.2.2.2). The hook is never asked to answer for a method we did not choose.
    const method = packet.properties?.authenticationMethod
    if (method !== ours) {
      this.protocolError(conn, `AUTH 0x${rc.toString(16)} from the broker ${method === undefined ? 'without an Authentication Method' : `with Authentication Method ${JSON.stringify(method)}`}, ` +
        `the CONNECT's was ${JSON.stringify(ours)} [MQTT-4.12.0-5]`)
      return
    }
    if (rc === 0) {
      const w = this.reauthWaiter
      this.reauthWaiter = undefined
      w?.resolve()
      return
    }
    const hook = this.options.auth
    if (hook === undefined) {
      conn?.close(clientError(ClientErrorCode.AUTH_FAILED, 'the broker sent AUTH but no auth hook is configured', { reasonCode: 0x82 }),
        { reasonCode: 0x82 })
      return
    }
    try {
      const data = await hook({ reasonCode: rc, authenticationMethod: method, authenticationData: packet.properties?.authenticationData as Buffer | undefined })
      if (conn === undefined || conn.isClosed) return
      conn.writePacket({ type: 'auth', reasonCode: 0x18, properties: { authenticationMethod: method, authenticationData: data } })
    } catch (err) {
      const e = clientError(ClientErrorCode.AUTH_FAILED, `the auth hook failed: ${String(err)}`, { cause: err, reasonCode: 0x87 })
      conn?.close(e, { reasonCode: 0x87 })
    }
  }

  private onLinkClosed (error: PetrelError | undefined): void {
    const conn = this.conn
    if (conn !== undefined) {
      this.counters.bytesIn += conn.bytesIn
      this.counters.bytesOut += conn.bytesOut
    }
    this.conn = undefined
    const was = this.phase
    this.phase = 'idle'
    if (error?.code === ClientErrorCode.PING_TIMEOUT) this.counters.pingTimeouts++
    // Counted here, once per link, whichever check ended it (connecting or connected).
    if (error?.code === ClientErrorCode.PROTOCOL_ERROR || conn?.decodeFailed === true) this.counters.protocolErrors++
    if (was === 'connecting') {
      const w = this.connackWaiter
      this.connackWaiter = undefined
      w?.reject(error ?? clientError(ClientErrorCode.CONNECTION_FAILED, 'the connection closed before CONNACK'))
      return
    }
    if (was !== 'connected') return
    this.counters.disconnects++
    // The broker ended the link (closed it, or said 0x95 Packet too large), not us: the session
    // watches for a PUBLISH it keeps ending links over.
    this.session.connectionDown(error?.code === ClientErrorCode.CONNECTION_FAILED ||
      (error?.code === ClientErrorCode.DISCONNECTED_BY_BROKER && error.reasonCode === 0x95))
    const rw = this.reauthWaiter
    this.reauthWaiter = undefined
    rw?.reject(error ?? clientError(ClientErrorCode.CONNECTION_FAILED, 'the connection closed'))
    this.notify('disconnect', { error })
    const ended = this.linkEnded
    this.linkEnded = undefined
    if (ended !== undefined) ended(error)
    else this.endedEarly = { error }
  }

  /** One timer for the session's wake-ups (throttle, hold): the earliest asked for. */
  private scheduleWake (time: number): void {
    if (this.wakeTimer !== undefined) {
      if (this.wakeTime <= time) return
      clearTimeout(this.wakeTimer)
    }
    this.wakeTime = time
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined
      this.session.wake()
    }, Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(time - clock()))))
  }

  /**
   * Emits a lifecycle event. A listener that throws is reported as an `error` event
   * (PETREL_ERR_HANDLER_FAILED), as a message handler is: let through, it would unwind the
   * supervisor mid-step (a 'connect' listener's throw failed an accepted connection and left its
   * socket open beside the next one; a 'reconnect' listener's killed the reconnect loop).
   */
  private notify<K extends 'connect' | 'reconnect' | 'disconnect' | 'close' | 'serverReference'> (event: K, ...args: ClientEventMap[K]): void {
    try {
      (this.emit as (event: K, ...args: ClientEventMap[K]) => boolean)(event, ...args)
    } catch (err) {
      this.emitError(clientError(ClientErrorCode.HANDLER_FAILED, `a '${event}' listener threw: ${String(err)}`, { cause: err }))
    }
  }

  private emitError (error: PetrelError): void {
    if (this.listenerCount('error') > 0) this.emit('error', error)
  }

  private shutdown (error: PetrelError | undefined): void {
    if (this.closed) return
    this.closed = true
    this.closing = true
    if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer)
    const closedError = clientError(ClientErrorCode.CLIENT_CLOSED, error === undefined ? 'the client was closed' : `the client stopped: ${error.message}`, { cause: error })
    this.session.failAll(closedError)
    if (this.responses !== undefined) for (const w of [...this.responses.waiters.values()]) w.reject(closedError)
    const rw = this.reauthWaiter
    this.reauthWaiter = undefined
    rw?.reject(closedError)
    for (const sub of this.subscriptions.keys()) sub.end()
    this.subscriptions.clear()
    const conn = this.conn
    if (conn !== undefined) {
      conn.close(undefined, this.closeOnPurpose)
      // Closed for good, the link gets as long as a graceful end() waits for the broker's close to
      // hand over what it still holds (the DISCONNECT). A broker that stopped reading would keep the
      // socket writing, and a write waiting on the OS keeps Node's loop (the process) alive, until
      // the Connection's own cut 10 s later.
      const stream = conn.stream
      setTimeout(() => { if (!stream.writableFinished) stream.destroy() }, CLOSE_WAIT_MS).unref()
    }
    this.cancelAttempt?.()
    this.wake?.()
    const ended = this.linkEnded
    this.linkEnded = undefined
    ended?.(undefined)
    if (this.firstConnect !== undefined) {
      this.firstConnect.reject(error ?? closedError)
      this.firstConnect = undefined
    }
    this.notify('close', error)
  }
}

/** A request() waiting for its response. */
interface ResponseWaiter {
  resolve: (m: Message) => void
  reject: (err: unknown) => void
}

/**
 * The Server Reference in an error's message: `connect()` rejects before the app could listen for
 * the `serverReference` event, so the error is where it learns where to go.
 */
function serverReferenceText (serverReference: string | undefined): string {
  return serverReference === undefined ? '' : ` (server reference: ${serverReference})`
}

/** `run()`'s result, or a rejection with `signal.reason` as soon as the signal aborts. */
async function untilAborted<T> (run: () => Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) throw signal.reason
  let onAbort: (() => void) | undefined
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => { reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([run(), aborted])
  } finally {
    signal.removeEventListener('abort', onAbort as () => void)
  }
}

function abortReason (signal: AbortSignal): unknown {
  return signal.reason ?? clientError(ClientErrorCode.ABORTED, 'the request was aborted')
}

/** An argument the encoder refused with a plain TypeError/RangeError (a property of the wrong type): PETREL_ERR_INVALID_ARGUMENT. */
function asPetrelError (err: unknown): PetrelError {
  if (err instanceof PetrelError) return err
  return clientError(ClientErrorCode.INVALID_ARGUMENT, err instanceof Error ? err.message : String(err), { cause: err })
}

function oneShotEnded (): PetrelError {
  return clientError(ClientErrorCode.CONNECTION_FAILED, 'the transport stream has ended and cannot be dialled again (pass a factory as `transport` to reconnect)')
}

function toPetrelError (err: unknown): PetrelError {
  if (err instanceof PetrelError) return err
  return clientError(ClientErrorCode.CONNECTION_FAILED, err instanceof Error ? err.message : String(err), { cause: err })
}

/** Parses broker URLs; throws PETREL_ERR_INVALID_ARGUMENT for a malformed or unsupported one. */
export function parseBrokerUrls (url: string | string[] | undefined, servers: string[] | undefined): Array<URL | undefined> {
  const list = [...(url === undefined ? [] : Array.isArray(url) ? url : [url]), ...(servers ?? [])]
  if (list.length === 0) return [undefined]
  return list.map((u) => {
    let parsed: URL
    try {
      parsed = new URL(u)
    } catch (err) {
      throw clientError(ClientErrorCode.INVALID_ARGUMENT, `invalid broker URL ${JSON.stringify(u)}`, { cause: err })
    }
    if (!isSupportedProtocol(parsed.protocol)) throw clientError(ClientErrorCode.INVALID_ARGUMENT, `unsupported URL protocol ${parsed.protocol} in ${u} (use mqtt, mqtts, ws, wss, tcp or tls)`)
    try {
      decodeURIComponent(parsed.username)
      decodeURIComponent(parsed.password)
    } catch (err) {
      // Decoded into the CONNECT on every attempt: a URIError there would fail each one alike. The
      // message leaves the credentials out.
      throw clientError(ClientErrorCode.INVALID_ARGUMENT, `the user name or password of broker URL ${parsed.protocol}//${parsed.host} is not valid percent-encoding`, { cause: err })
    }
    return parsed
  })
}
