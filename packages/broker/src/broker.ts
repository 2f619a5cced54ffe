import type { Duplex } from 'node:stream'
import { pino, type Logger } from 'pino'
import { propertiesCost, type Packet, type PublishProperties, type QoS, type Will } from '@petrel/wire'
import { Acl } from './acl.js'
import type { BrokerCore } from './broker-core.js'
import { Connection, type ConnectionHost } from './connection.js'
import { BrokerErrorCode, brokerError } from './errors.js'
import { HOOK_ERROR, withHookTimeout, type HookCaller, type HookError, type HookFailure } from './hook-timeout.js'
import { openListener, type ListenerAddress, type ListenerOptions, type OpenListener } from './listeners.js'
import { Message } from './message.js'
import { PendingHandshake, type HandshakeOwner } from './pending-handshake.js'
import {
  defaultFilterMemory, defaultLimits, type AuthenticateRequest, type AuthenticateResult, type EnhancedAuthResult, type BrokerLimits,
  type BrokerOptions, type ClientInfo
} from './options.js'
import { PasswordFile } from './password-file.js'
import { RetainedStore } from './retained-store.js'
import { Router } from './router.js'
import type { ServerConnection, ConnectionInfo } from './server-connection.js'
import { STALL_MS, type Session } from './session.js'
import { BrokerStats, DropReason } from './stats.js'
import { SysTopics } from './sys-topics.js'
import { WarningLimiter } from './warning-limiter.js'
import { fileDescriptorAdvice, outOfFileDescriptors, type FileDescriptorError } from './out-of-file-descriptors.js'

/** A message published by the application (not by a client). */
export interface BrokerPublish {
  topic: string
  payload: Uint8Array | string
  qos?: QoS | undefined
  retain?: boolean | undefined
  /**
   * 5.0 properties forwarded to subscribers. Message Expiry Interval starts now; Topic Alias and
   * Subscription Identifiers belong to one connection and are not taken from here.
   */
  properties?: PublishProperties | undefined
}

/**
 * On close(), how long a socket that lingers after our goodbye (DISCONNECT 0x8B) has left to
 * read it before it is cut: plenty on a LAN, and shutdown is not held up for 2 s.
 */
const SHUTDOWN_LINGER_MS = 200

/**
 * The MQTT broker. Every transport sits outside it: `listen()` opens tcp/tls/ws/wss listeners
 * that hand their streams to `handle()`, which takes any Duplex.
 */
export class Broker implements BrokerCore, ConnectionHost, HandshakeOwner {
  readonly limits: BrokerLimits
  readonly stats = new BrokerStats()
  readonly router: Router
  readonly retained: RetainedStore
  readonly sessions = new Map<string, Session>()
  readonly online = new Map<string, ServerConnection>()
  /** Every open connection, CONNECT'd or not: with `handshakes`, what `max_connections` counts. */
  readonly connections = new Set<ServerConnection>()
  /** Sockets accepted by a tls, ws or wss listener, still in their TLS handshake or WebSocket upgrade. */
  readonly handshakes = new Set<PendingHandshake>()
  /**
   * Of `connections` those not CONNACK'd yet, and every handshake, oldest first: the ones a new
   * socket may take the place of.
   */
  private readonly unconnected = new Set<{ close (linger?: boolean): void }>()
  /**
   * Connections we closed whose sockets linger, half-open, while the client reads our last
   * packets (Connection.end): they count against `max_connections` too, and go first.
   */
  private readonly lingering = new Set<Connection>()
  /** While `close` waits for lingering sockets: called when the last one is gone. */
  private lingerGone: (() => void) | undefined
  readonly scratch: Packet[] = []
  readonly responseInformation: string | undefined
  readonly authenticateEnhanced: BrokerCore['authenticateEnhanced']
  readonly authorizePublish: BrokerCore['authorizePublish']
  readonly authorizeSubscribe: BrokerCore['authorizeSubscribe']
  readonly readFilter: ((client: ClientInfo, topicFilter: string) => ((topicName: string) => boolean) | undefined) | undefined
  /** Sessions with a clock running: offline with an expiry, or a delayed will. */
  private readonly offline = new Set<Session>()
  private readonly listeners: OpenListener[] = []
  /** Sessions that fell behind during the current `publish` (QoS 1/2 flow control). */
  private pressured: Session[] = []
  private dirty: Connection[] = []
  private resumes: Connection[] = []
  private flushScheduled = false
  turn = 0
  private inputsThisTurn = 0
  private readonly flushAll = (): void => { this.flush() }
  private sweepTimer: NodeJS.Timeout | undefined
  private closing = false
  private logger: Logger | undefined
  private readonly passwords: PasswordFile | undefined
  private readonly sys: SysTopics | undefined
  /** Bytes queued for sessions while they were offline (max_offline_queued_bytes; see Session.enqueue). */
  offlineQueuedBytes = 0
  /** Bytes of wills waiting out their Will Delay Interval (see `canHoldWill`). */
  delayedWillBytes = 0
  private readonly dropWarning = new WarningLimiter()
  private readonly willWarning = new WarningLimiter()
  private readonly retainWarning = new WarningLimiter()
  private readonly sessionWarning = new WarningLimiter()
  private readonly userPropertiesWarning = new WarningLimiter()
  private readonly hookWarning = new WarningLimiter()
  private readonly hookErrorWarning = new WarningLimiter()
  private readonly fdWarning = new WarningLimiter()
  private readonly certificateWarning = new WarningLimiter()
  /** Out of file descriptors at the last check (see `checkFileDescriptors`), and when that was. */
  private fdExhausted: FileDescriptorError | undefined
  private fdCheckedAt = -Infinity

  constructor (readonly options: BrokerOptions = {}) {
    const limits = { ...defaultLimits, ...stripUndefined(options.limits ?? {}) }
    if (options.limits?.maxSessions === undefined) limits.maxSessions = 2 * limits.maxConnections
    this.limits = limits
    const mem = options.memory
    this.router = new Router({
      maxSegmentSize: mem?.maxSegmentSize ?? defaultFilterMemory.maxSegmentSize,
      maxSegmentCount: mem?.maxSegmentCount ?? defaultFilterMemory.maxSegmentCount
    }, mem?.filters ?? [])
    this.retained = new RetainedStore(this.limits.maxRetainedMessages, this.limits.maxRetainedBytes)
    this.responseInformation = options.responseInformation
    const enhanced = options.authenticateEnhanced
    this.authenticateEnhanced = enhanced === undefined ? undefined : (r, caller) => this.timed('authenticateEnhanced', () => enhanced(r), isEnhancedAuthResult, caller)
    this.passwords = options.passwordFile === undefined ? undefined : PasswordFile.load(options.passwordFile)
    const acl = options.acl !== undefined && options.acl.length > 0 ? new Acl(options.acl) : undefined
    const pub = options.authorizePublish
    this.authorizePublish = pub !== undefined
      ? (c, p, caller) => this.timed('authorizePublish', () => pub(c, p), isBoolean, caller)
      : (acl === undefined ? undefined : (c, p) => acl.canPublish(c, p.topicName))
    const sub = options.authorizeSubscribe
    this.authorizeSubscribe = sub !== undefined
      ? (c, s, caller) => this.timed('authorizeSubscribe', () => sub(c, s), isBoolean, caller)
      : (acl === undefined ? undefined : (c, s) => acl.canSubscribe(c, s.topicFilter))
    this.readFilter = acl === undefined || options.authorizeSubscribe !== undefined ? undefined : (c, f) => acl.readFilter(c, f)
    const sysInterval = options.sysInterval ?? 10
    this.sys = sysInterval > 0 ? new SysTopics(this, sysInterval * 1000) : undefined
  }

  get log (): Logger {
    return this.logger ??= this.options.logger ?? pino({ level: this.options.logLevel ?? 'warn' })
  }

  now (): number {
    return Date.now()
  }

  /**
   * Serves one client over any byte stream (socket, TLS, WebSocket stream, in-memory pair).
   * `acceptedAt` (`broker.now()` when its socket was accepted, default now): connect_timeout_ms
   * counts from it, so a slow TLS handshake or WebSocket upgrade leaves less time for CONNECT.
   */
  handle (stream: Duplex, info?: Partial<ConnectionInfo>, acceptedAt?: number): void {
    this.serve(stream, info, acceptedAt, false)
  }

  /** `admitted`: counted in connectionsTotal already, at accept (see admitHandshake). */
  private serve (stream: Duplex, info: Partial<ConnectionInfo> | undefined, acceptedAt: number | undefined, admitted: boolean): void {
    if (this.closing) {
      stream.destroy()
      return
    }
    if (!this.makeRoom()) {
      stream.destroy()
      return
    }
    const allowAnonymous = info?.allowAnonymous ?? this.options.allowAnonymous ?? true
    const identity = info?.certificateIdentity
    // without a certificate identity (nor use_identity_as_username) the info is one of two shared
    // objects, not one per connection
    const useIdentityAsUsername = info?.useIdentityAsUsername === true
    const c = new Connection(this, stream, identity === undefined && !useIdentityAsUsername
      ? (allowAnonymous ? ANONYMOUS_ALLOWED : ANONYMOUS_REFUSED)
      : { allowAnonymous, certificateIdentity: identity, useIdentityAsUsername }, acceptedAt)
    this.connections.add(c.protocol)
    this.unconnected.add(c.protocol)
    if (!admitted) this.stats.connectionsTotal++
    this.startClock()
  }

  /**
   * A listener accepted a socket that must finish a TLS handshake or WebSocket upgrade before it
   * reaches `handle()`: it counts against `max_connections` from now. Undefined when there is no
   * room (the listener closes the socket); `abort` closes it should a newer socket take its place.
   * Before, only sockets handed to `handle()` counted, so any number of clients could sit in a
   * handshake until connect_timeout_ms, each holding a socket and TLS state, past the limit.
   */
  admitHandshake (abort: () => void): PendingHandshake | undefined {
    if (this.closing || !this.makeRoom()) return undefined
    const h = new PendingHandshake(this, abort, this.now())
    this.handshakes.add(h)
    this.unconnected.add(h)
    // Counted from here, as its place is: it may be evicted before its handshake is done, and
    // counted only in handle() a flood of such sockets made connections_evicted_total larger
    // than connections_total. Its stream is not counted again there (`admitted`).
    this.stats.connectionsTotal++
    return h
  }

  handshakeEnded (h: PendingHandshake): void {
    this.handshakes.delete(h)
    this.unconnected.delete(h)
  }

  /**
   * Whether one more socket fits under `max_connections`, cutting a lingering one short or
   * evicting the oldest one without CONNACK if need be.
   */
  private makeRoom (): boolean {
    if (this.connections.size + this.handshakes.size + this.lingering.size < this.limits.maxConnections || this.evictUnconnected()) return true
    this.stats.connectionsRejected++
    return false
  }

  /** Opens a listener; resolves with the bound address (port 0 picks one). */
  async listen (options: ListenerOptions = {}): Promise<ListenerAddress> {
    if (this.closing) throw brokerError(BrokerErrorCode.BROKER_CLOSED, 'the broker is closed')
    const l = await openListener(options, this.options.allowAnonymous, this.limits, {
      handle: (s, info, acceptedAt, admitted) => { this.serve(s, info, acceptedAt, admitted) },
      admit: (abort) => this.admitHandshake(abort),
      acceptFailed: (err) => {
        const code = err.code
        if (code === 'EMFILE' || code === 'ENFILE') this.checkFileDescriptors(this.now(), code)
        else this.log.debug({ err }, 'accept failed')
      },
      certificateRefused: (remoteAddress, reason) => {
        const suppressed = this.certificateWarning.due(this.now())
        if (suppressed !== undefined) {
          this.log.warn({ remoteAddress, reason, suppressed }, `a client certificate did not verify (${reason}): connection closed (request_client_certificate)`)
        }
      }
    })
    this.listeners.push(l)
    this.startClock()
    return l.address
  }

  /** Addresses of the open listeners. */
  get addresses (): ListenerAddress[] {
    return this.listeners.map((l) => l.address)
  }

  /**
   * Stops listening and closes every connection: 5.0 clients get DISCONNECT 0x8B Server
   * shutting down. Resolves when the connections are gone (about 0.2 s for those that keep
   * their side open; a listener's own close may take longer).
   *
   * Sockets that linger half-open after our goodbye (Connection.end) are given
   * SHUTDOWN_LINGER_MS to read it, then cut: each lingered its full 2 s, so one client that
   * keeps its side open (a raw socket, half-open allowed) made close() and Ctrl-C take 2 s.
   */
  async close (): Promise<void> {
    if (this.closing) return
    this.closing = true
    const listeners = this.listeners.splice(0)
    const closingListeners = Promise.all(listeners.map(async (l) => { await l.close() }))
    for (const c of [...this.connections]) c.shutdown()
    // Sockets still in a handshake would otherwise hold the listeners open until connect_timeout_ms.
    for (const h of [...this.handshakes]) h.close()
    this.flush()
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer)
    this.sweepTimer = undefined
    this.sys?.stop()
    if (this.lingering.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, SHUTDOWN_LINGER_MS)
        this.lingerGone = () => { clearTimeout(timer); resolve() }
      })
      this.lingerGone = undefined
      for (const c of [...this.lingering]) c.stopLingering()
    }
    await Promise.race([closingListeners, new Promise((resolve) => setTimeout(resolve, 2000).unref())])
  }

  /** Publishes from the application, as if from a client without a session. */
  publishMessage (m: BrokerPublish): number {
    const payload = typeof m.payload === 'string' ? Buffer.from(m.payload) : m.payload
    let props = m.properties
    let expiresAt = 0
    if (props !== undefined) {
      // A Topic Alias or Subscription Identifiers given here went out to every 5.0 subscriber as
      // they were: an alias above a client's Topic Alias Maximum (0 unless it asked for more)
      // [MQTT-3.3.2-11], one that remapped an alias the broker had given that client to another
      // topic, identifiers of subscriptions it never made. The router sets both per subscriber.
      const { topicAlias: _a, subscriptionIdentifiers: _s, messageExpiryInterval: mei, ...rest } = props
      props = Object.keys(rest).length > 0 ? rest : undefined
      if (mei !== undefined) expiresAt = this.now() + mei * 1000
    }
    return this.publish(new Message(m.topic, payload, m.qos ?? 0, m.retain ?? false, props, expiresAt, undefined))
  }

  // --- BrokerCore ---------------------------------------------------------------------------

  publish (message: Message): number {
    if (this.pressured.length > 0) this.pressured.length = 0
    if (message.retain && !this.retained.set(message)) this.retainRefused(message)
    return this.router.route(message)
  }

  /**
   * A retained message the store had no room for: still routed (the publish itself is fine, as
   * the store is the broker's own budget), counted, and logged now and then with how many
   * were refused since.
   */
  private retainRefused (message: Message): void {
    this.stats.retainedRefused++
    const suppressed = this.retainWarning.due(this.now())
    if (suppressed === undefined) return
    const limit = this.retained.size >= this.limits.maxRetainedMessages ? 'max_retained_messages' : 'max_retained_bytes'
    this.log.warn({ topic: message.topic, bytes: message.size, limit, suppressed },
      `retained store full (${limit}); message not retained`)
  }

  /**
   * A message dropped at a session's bound (queue or filter budget): counted as always, and
   * logged with the client id now and then with how many drops it stands for, so an operator
   * can tell which subscriber loses messages (a persistent session offline past
   * max_queued_messages loses QoS 1/2), not only that some do.
   */
  overflow (s: Session, reason: DropReason, qos: QoS): void {
    this.stats.drop(reason)
    const suppressed = this.dropWarning.due(this.now())
    if (suppressed === undefined) return
    const limit = reason === DropReason.filterLimit
      ? 'max_segment_size x max_segment_count'
      : reason === DropReason.offlineLimit ? 'max_offline_queued_bytes' : 'max_queued_messages / max_queued_bytes'
    this.log.warn({ clientId: s.clientId, online: s.outlet !== undefined, reason, qos, queued: s.queueLength, queuedBytes: s.queueBytes, suppressed },
      `session queue full (${limit}); message dropped for this client`)
  }

  /**
   * A CONNECT refused because it would create one more session that outlives its connection
   * while max_sessions are held: counted, and logged now and then with how many were refused
   * since (a burst of made-up client ids logs one line per 10 s, not one per CONNECT).
   */
  sessionQuotaExceeded (clientId: string): void {
    this.stats.sessionsRefused++
    const suppressed = this.sessionWarning.due(this.now())
    if (suppressed === undefined) return
    this.log.warn({ clientId, sessions: this.sessions.size, limit: this.limits.maxSessions, suppressed },
      'sessions at max_sessions: a CONNECT for a new persistent session refused')
  }

  /**
   * A PUBLISH refused for carrying more User Property pairs than max_user_properties: logged now
   * and then with how many were refused since (a client resending it on every reconnect, or a
   * flood, logs one line per 10 s); the caller counts the drop.
   */
  userPropertiesExceeded (clientId: string, topicName: string, qos: QoS): void {
    const suppressed = this.userPropertiesWarning.due(this.now())
    if (suppressed === undefined) return
    this.log.warn({ clientId, topic: topicName, qos, limit: this.limits.maxUserProperties, suppressed },
      'PUBLISH with more user properties than max_user_properties refused')
  }

  notePressure (s: Session): void {
    if (!this.pressured.includes(s)) this.pressured.push(s)
  }

  /**
   * After a client's QoS 1/2 publish: a promise to hold that client's acks on while a
   * subscriber it reached is behind but still making progress; undefined (the usual case) when
   * none is. A stalled subscriber holds nobody back, and no hold lasts longer than STALL_MS,
   * so a frozen client never stops a publisher (its own bounds and drop counters apply).
   */
  takePressure (): Promise<void> | undefined {
    const list = this.pressured
    if (list.length === 0) return undefined
    this.pressured = []
    const now = this.now()
    const waits: Array<Promise<void>> = []
    for (const s of list) if (s.holdsBack(now)) waits.push(s.whenDrained())
    if (waits.length === 0) return undefined
    this.stats.flowControlHolds++
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, STALL_MS) })
    return Promise.race([Promise.all(waits), timeout]).then(() => { clearTimeout(timer) })
  }

  /**
   * A hook's answer. A promise one settles to HOOK_TIMEOUT past hookTimeoutMs; a hook that throws,
   * or whose promise rejects, answers HOOK_ERROR. Either fails only the request asked about (see
   * ServerConnection); both are counted and warned about now and then. A throw used to reach the
   * socket's 'data' handler and kill the process, and a rejection closed the connection (0x80),
   * so a client with a persistent session sent the same QoS 1 message again on every reconnect.
   *
   * An answer that is not one `valid` takes (undefined from a hook that forgot a `return`, a
   * number...) is a hook error too, so nothing downstream guesses: a subscription hook answering
   * undefined used to grant the filter, and an authenticate one crashed the process. Any
   * thenable is awaited: a promise of another realm (a `vm` context, Jest's test environment)
   * or library is not `instanceof Promise`, and was taken for a truthy answer: allowed, whatever
   * it resolved to.
   */
  private timed<T> (hook: string, call: () => T | Promise<T>, valid: (r: unknown) => r is T, caller: HookCaller | undefined): T | HookError | Promise<T | HookFailure> {
    let r: T | Promise<T>
    try {
      r = call()
    } catch (err) {
      this.hookError(hook, err)
      return HOOK_ERROR
    }
    if (valid(r)) return r
    if (!isThenable(r)) {
      this.hookError(hook, invalidAnswer(hook, r))
      return HOOK_ERROR
    }
    const answer = Promise.resolve(r).then((v: unknown) => {
      if (valid(v)) return v
      throw invalidAnswer(hook, v)
    })
    const ms = this.limits.hookTimeoutMs
    return withHookTimeout(answer, ms, () => {
      this.stats.hookTimeouts++
      const suppressed = this.hookWarning.due(this.now())
      if (suppressed !== undefined) this.log.warn({ hook, hookTimeoutMs: ms, suppressed }, `${hook} did not settle within hook_timeout_ms; the request failed`)
    }, (err) => { this.hookError(hook, err) }, caller?.hookSignal)
  }

  private hookError (hook: string, err: unknown): void {
    this.stats.hookErrors++
    const suppressed = this.hookErrorWarning.due(this.now())
    if (suppressed !== undefined) this.log.warn({ hook, err, suppressed }, `${hook} threw, rejected or gave no usable answer; the request failed`)
  }

  authenticate (request: AuthenticateRequest, info: ConnectionInfo, caller?: HookCaller): AuthenticateResult | HookError | Promise<AuthenticateResult | HookFailure> {
    return this.timed(this.options.authenticate === undefined ? 'password check' : 'authenticate', () => this.checkCredentials(request, info), isAuthenticateResult, caller)
  }

  private checkCredentials (request: AuthenticateRequest, info: ConnectionInfo): AuthenticateResult | Promise<AuthenticateResult> {
    const hook = this.options.authenticate
    if (hook !== undefined) return hook(request)
    const pw = this.passwords
    const allowAnonymous = info.allowAnonymous
    // use_identity_as_username: the verified certificate is the credential (the user name is its CN already)
    if (info.useIdentityAsUsername === true && request.certificateIdentity !== undefined) return true
    if (pw !== undefined && request.username !== undefined) {
      return pw.verify(request.username, request.password)
    }
    if (request.username === undefined && allowAnonymous) return true
    if (pw === undefined && allowAnonymous) return true // no user database: a user name is just a label
    return { ok: false, reasonCode: request.username === undefined ? 0x87 : 0x86 }
  }

  sessionOffline (s: Session, will: Will | undefined): void {
    const now = this.now()
    if (will !== undefined) {
      const willDelay = will.properties?.willDelayInterval ?? 0
      // [MQTT-3.1.3-9] the will waits min(Will Delay, Session Expiry); sent at once otherwise
      if (willDelay > 0 && s.expiryInterval > 0 && this.canHoldWill(will)) {
        // its own copy: a view into the CONNECT's socket chunk would hold the whole chunk (the
        // Correlation Data too: a few bytes counted, the whole CONNECT kept alive)
        const p = will.properties
        const cd = p?.correlationData
        s.delayedWill = { ...will, payload: Buffer.from(will.payload), properties: cd === undefined ? p : { ...p, correlationData: Buffer.from(cd) } }
        s.willAt = now + Math.min(willDelay, s.expiryInterval) * 1000
        this.delayedWillBytes += willCost(will)
      } else {
        this.publish(Message.fromWill(will, now, s))
      }
    }
    if (s.expiryInterval === 0) {
      this.endSession(s)
      return
    }
    s.expiresAt = s.expiryInterval >= 0xffffffff ? 0 : now + s.expiryInterval * 1000
    this.offline.add(s)
  }

  /**
   * Whether a will may wait out its delay within max_delayed_will_bytes. Each waits in an
   * offline session for up to the session's expiry (a day by default), so a client connecting
   * with a new client id, a will delay and a 60 KiB will, then dropping, again and again, grew
   * the heap by 60 KiB a time with nothing to stop it. Past the bound the will is sent at once,
   * as if it had no delay (the client has gone: its will is due, only sooner), and counted.
   */
  private canHoldWill (will: Will): boolean {
    const max = this.limits.maxDelayedWillBytes
    if (max === 0 || this.delayedWillBytes + willCost(will) <= max) return true
    this.stats.willsSentEarly++
    const suppressed = this.willWarning.due(this.now())
    if (suppressed !== undefined) {
      this.log.warn({ bytes: this.delayedWillBytes, limit: max, suppressed },
        'delayed wills at max_delayed_will_bytes: a will is sent without its delay')
    }
    return false
  }

  takeDelayedWill (s: Session): Will | undefined {
    const will = s.delayedWill
    if (will === undefined) return undefined
    s.delayedWill = undefined
    s.willAt = 0
    this.delayedWillBytes -= willCost(will)
    return will
  }

  endSession (s: Session): void {
    const will = this.takeDelayedWill(s)
    if (will !== undefined) this.publish(Message.fromWill(will, this.now(), s))
    this.router.unsubscribeAll(s)
    // What it still held: a shared subscription's messages go to another member of the group
    // (4.8.2: SHOULD for QoS 1), except a QoS 2 one already sent, which no other client may get
    // [MQTT-4.8.2-5]; the rest end with the session, counted (QoS 0 promised nothing).
    const now = this.now()
    for (const d of s.clear()) {
      if (d.share !== undefined && !(d.qos === 2 && d.sent)) {
        // Held since it was published, it may have expired meanwhile: Session.deliver sends at
        // once without checking (it takes messages just published) [MQTT-3.3.2-5].
        if (d.message.expiresAt !== 0 && d.message.expiresAt <= now) {
          this.stats.drop(DropReason.expired)
          continue
        }
        if (this.router.deliverShared(d.share, d.message, d.qos)) continue
      }
      if (d.qos > 0) this.stats.drop(DropReason.sessionEnded)
    }
    if (this.sessions.get(s.clientId) === s) this.sessions.delete(s.clientId)
    this.offline.delete(s)
  }

  connectionClosed (c: ServerConnection): void {
    this.connections.delete(c)
    this.unconnected.delete(c)
  }

  connectionReady (c: ServerConnection): void {
    this.unconnected.delete(c)
  }

  /**
   * Sockets count against `max_connections` from accept, as in mosquitto: counting only
   * CONNACK'd clients let any number of sockets sit without CONNECT until connect_timeout_ms,
   * each buffering a partial CONNECT. At the limit a new socket takes the place of the oldest
   * one still without CONNACK or still in its TLS handshake or WebSocket upgrade (a flood of idle
   * sockets then only churns among itself instead of locking every client out); when all are
   * CONNACK'd clients, the new socket is closed.
   */
  private evictUnconnected (): boolean {
    // A socket lingering after we closed it is no connection any more: it goes first, uncounted.
    const closing = this.lingering.values().next()
    if (closing.done !== true) {
      closing.value.stopLingering() // -> lingerEnded: counted out now
      return true
    }
    const oldest = this.unconnected.values().next()
    if (oldest.done === true) return false
    this.stats.connectionsEvicted++
    // -> connectionClosed / handshakeEnded: counted out now, not when its socket is gone; no
    // lingering (it has sent no CONNECT, or had no answer yet: nothing to read from us)
    oldest.value.close(false)
    return true
  }

  lingerStarted (c: Connection): void {
    this.lingering.add(c)
  }

  lingerEnded (c: Connection): void {
    this.lingering.delete(c)
    if (this.lingering.size === 0) this.lingerGone?.()
  }

  scheduleFlush (c: Connection): void {
    this.dirty.push(c)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(this.flushAll)
    }
  }

  scheduleResume (c: Connection): void {
    this.resumes.push(c)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(this.flushAll)
    }
  }

  /**
   * The first input chunk of an event-loop turn writes what it routed at once; later ones in the
   * same turn batch until its end. A lone message (a quiet broker) skips the hop to the end of
   * the turn; under load, inputs still share writes.
   */
  inputDone (): void {
    if (this.inputsThisTurn++ > 0) return
    const list = this.dirty
    if (list.length > 0) {
      this.dirty = []
      for (const c of list) c.flush()
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(this.flushAll)
    }
  }

  /** End of an event-loop turn: write every batch, then let budget-paused readers go on. */
  private flush (): void {
    this.flushScheduled = false
    this.inputsThisTurn = 0
    this.turn++
    const list = this.dirty
    this.dirty = []
    for (const c of list) c.flush()
    if (this.resumes.length > 0) {
      const r = this.resumes
      this.resumes = []
      for (const c of r) c.resumeReading()
    }
  }

  /** One timer for every connection and session: keepalive, connect timeout, will delay, expiry. */
  private startClock (): void {
    if (this.sweepTimer !== undefined || this.closing) return
    this.sweepTimer = setInterval(() => { this.sweep() }, this.options.sweepIntervalMs ?? 250)
    this.sweepTimer.unref()
    this.sys?.start()
  }

  /**
   * Out of file descriptors, every new client is closed as it is accepted (by libuv, unseen: see
   * outOfFileDescriptors) and the operator saw nothing. Checked once a second while listening:
   * counted each time, warned about at most once per 10 s, and the recovery is said once.
   */
  private checkFileDescriptors (now: number, code: FileDescriptorError | undefined): void {
    this.fdCheckedAt = now
    const open = this.connections.size + this.handshakes.size
    if (code === undefined) {
      if (this.fdExhausted !== undefined) this.log.warn({ connections: open }, 'file descriptors available again: new clients are accepted')
      this.fdExhausted = undefined
      return
    }
    this.fdExhausted = code
    this.stats.fdExhausted++
    const suppressed = this.fdWarning.due(now)
    if (suppressed === undefined) return
    this.log.warn({ code, connections: open, maxConnections: this.limits.maxConnections, suppressed },
      `out of file descriptors (${code}): new clients are closed as they connect; ${fileDescriptorAdvice(code)}`)
  }

  private sweep (): void {
    const now = this.now()
    if (now - this.fdCheckedAt >= 1000 && this.listeners.length > 0) this.checkFileDescriptors(now, outOfFileDescriptors())
    for (const c of this.connections) c.tick(now)
    // Oldest first, on one deadline from accept. Node's HTTP check (connectionsCheckingInterval,
    // set in listeners.ts) also strikes a silent ws/wss socket, with a 408, but at its own
    // interval, up to about twice the deadline: this sweep is what keeps to it.
    const handshakeDeadline = this.limits.connectTimeoutMs > 0 ? now - this.limits.connectTimeoutMs : -Infinity
    for (const h of this.handshakes) {
      if (h.startedAt > handshakeDeadline) break
      h.close()
    }
    for (const s of this.offline) {
      if (s.outlet !== undefined) {
        this.offline.delete(s)
        continue
      }
      if (s.delayedWill !== undefined && now >= s.willAt) this.publish(Message.fromWill(this.takeDelayedWill(s) as Will, now, s))
      if (s.expiresAt !== 0 && now >= s.expiresAt) this.endSession(s)
    }
  }
}

/** What a delayed will holds: payload, topic and properties as queues count a message's, plus the objects themselves. */
function willCost (will: Will): number {
  const p = will.properties
  return will.payload.byteLength + will.topicName.length + (p === undefined ? 0 : propertiesCost(p)) + 256
}

const ANONYMOUS_ALLOWED: ConnectionInfo = Object.freeze({ allowAnonymous: true, certificateIdentity: undefined })
const ANONYMOUS_REFUSED: ConnectionInfo = Object.freeze({ allowAnonymous: false, certificateIdentity: undefined })

function stripUndefined<T extends object> (o: T): Partial<T> {
  const out: Partial<T> = {}
  for (const k in o) if (o[k] !== undefined) out[k] = o[k]
  return out
}

/** Creates a broker; nothing listens until `listen()` (or streams are passed to `handle()`). */
export function createBroker (options?: BrokerOptions): Broker {
  return new Broker(options)
}

function isThenable (r: unknown): r is PromiseLike<unknown> {
  return (typeof r === 'object' || typeof r === 'function') && r !== null && typeof (r as { then?: unknown }).then === 'function'
}

function isBoolean (r: unknown): r is boolean {
  return typeof r === 'boolean'
}

/** true/false, or an object saying yes or no: `ok`, or a `reasonCode` (see AuthenticateResult). */
function isAuthenticateResult (r: unknown): r is AuthenticateResult {
  if (typeof r === 'boolean') return true
  if (typeof r !== 'object' || r === null || isThenable(r)) return false
  const { ok, reasonCode, username } = r as { ok?: unknown, reasonCode?: unknown, username?: unknown }
  // the user name is what ACL %u rules and session ownership go by: a string or none
  return (typeof ok === 'boolean' || (ok === undefined && typeof reasonCode === 'number')) && (username === undefined || typeof username === 'string')
}

function isEnhancedAuthResult (r: unknown): r is EnhancedAuthResult {
  if (typeof r !== 'object' || r === null || isThenable(r)) return false
  const { reasonCode, username, data } = r as { reasonCode?: unknown, username?: unknown, data?: unknown }
  // `data` goes into an AUTH or CONNACK as bytes: a number made the encoder throw in the socket's
  // handler (the process died), a string went out as zeros
  return typeof reasonCode === 'number' && (username === undefined || typeof username === 'string') && (data === undefined || data instanceof Uint8Array)
}

function invalidAnswer (hook: string, r: unknown): TypeError {
  const what = r === null || r === undefined ? String(r) : Array.isArray(r) ? 'an array' : typeof r === 'object' ? 'an object without a usable ok / reasonCode / username / data' : `${typeof r} ${String(r)}`
  return new TypeError(`${hook} answered ${what}; expected ${hook === 'authenticateEnhanced' ? '{ reasonCode, data?: Buffer, username?: string }' : hook === 'authenticate' || hook === 'password check' ? 'a boolean or { ok, reasonCode?, username?: string }' : 'a boolean'}`)
}
