import {
  encode, isReasonCodeAllowed, isWellFormedUtf8, PacketType, parseSharedSubscription, WireErrorCode, type PetrelError, type AuthPacket, type ConnectPacket, type DisconnectPacket, type Packet,
  type ProtocolVersion, type PublishPacket, type QoS, type SubscribePacket,
  type UnsubscribePacket, type Will
} from '@petrel/wire'
import { setMaxListeners } from 'node:events'
import type { BrokerCore } from './broker-core.js'
import { runConnectSteps, type ConnectContext } from './connect-steps.js'
import { ClientView } from './client-view.js'
import { fitPacket } from './fit-packet.js'
import { HOOK_ERROR, HOOK_TIMEOUT, isHookFailure, type HookFailure } from './hook-timeout.js'
import { Message } from './message.js'
import { OutboundAliases } from './outbound-aliases.js'
import type { ClientInfo, EnhancedAuthRequest, EnhancedAuthResult } from './options.js'
import type { Session, SessionOutlet, SessionSubscription } from './session.js'
import { DropReason } from './stats.js'
import type { Transport } from './transport.js'

export const ConnectionState = { connecting: 0, authenticating: 1, connected: 2, closed: 3 } as const
export type ConnectionState = typeof ConnectionState[keyof typeof ConnectionState]

const PINGRESP = Buffer.from([0xd0, 0])

const CLOCK_BASE = Date.now()

/**
 * A connection's timestamps as int32 ms since CLOCK_BASE, wrapping every ~24.8 days: an int32
 * is a V8 Smi, held in the object itself, while an epoch-ms double costs a 16-byte heap number
 * per field per connection. Differences are taken with `elapsed`, which is exact across the
 * wrap for any interval under 2^31 ms (keepalive is at most 1.5 x 65,535 s).
 */
function clock (now: number): number {
  return (now - CLOCK_BASE) | 0
}

function elapsed (from: number, to: number): number {
  return (to - from) | 0
}

export interface ConnectionInfo {
  /** Anonymous CONNECT allowed on this listener. */
  allowAnonymous: boolean
  /** CN of a verified client certificate. */
  certificateIdentity?: string | undefined
  /** The listener's use_identity_as_username: `certificateIdentity`, when there is one, is the user name. */
  useIdentityAsUsername?: boolean | undefined
}

/**
 * An inbound alias whose name was not kept (see maxInboundTopicAliasBytes). Empty: a name set
 * with an alias is never empty.
 */
const FORGOTTEN = ''

/**
 * The server side of one network connection: a state machine fed decoded packets and the time
 * (`receive(packet, now)`, `tick(now)`), acting through a `Transport` and the broker core.
 * No socket, no timer: the `Connection` shell owns those.
 *
 *   connecting --CONNECT ok--> connected --DISCONNECT / error / close--> closed
 *        \--AUTH 0x18--> authenticating --AUTH 0x00--/
 */
export class ServerConnection implements SessionOutlet {
  state: ConnectionState = ConnectionState.connecting
  protocolVersion: ProtocolVersion = 4
  clientId = ''
  username: string | undefined
  session: Session | undefined
  /** Enforced keepalive in ms (0: none). */
  keepAliveMs = 0
  /**
   * When the last packet arrived, and when the connection opened (see `clock`); before CONNACK
   * the latter moves on by the time input was held behind a hook (see `resumeInput`).
   */
  lastRx: number
  openedAt: number
  /**
   * Input is held behind an async hook (see Connection): the client's packets wait unread
   * because we chose not to read them, so they cannot count against its keepalive.
   */
  private inputHeld = false
  /** When input was last held (see `clock`). */
  private heldSince = 0
  will: Will | undefined
  /**
   * Client's Receive Maximum [MQTT-3.3.4-7], Maximum Packet Size [MQTT-3.1.2-25], Topic Alias
   * Maximum (capped by limits.maxOutboundTopicAliases: the aliases we use).
   */
  clientReceiveMaximum = 65535
  clientMaximumPacketSize = 0x7fffffff
  clientTopicAliasMaximum = 0
  /** Session Expiry Interval the CONNECT asked for (for [MQTT-3.14.2-2]). */
  connectSessionExpiry = 0
  /** Set during enhanced authentication. */
  authMethod: string | undefined
  /** Steps of a re-authentication under way (0: none). */
  private reauthStep = 0
  /** A re-authentication waits for the client's AUTH since then (our clock; see `tick`). */
  private reauthWaiting = false
  private reauthSince = 0
  pendingConnect: ConnectContext | undefined
  private aliasesIn: Array<string | undefined> | undefined
  /** Length of the topic names in `aliasesIn` (bounded by limits.maxInboundTopicAliasBytes). */
  private aliasesInLength = 0
  private aliasesOut: OutboundAliases | undefined
  /** Acks held for flow control, in order; undefined when none is held. */
  private heldAcks: Buffer[] | undefined
  /** Of `heldAcks`, the PUBACKs: QoS 1 publishes the client still counts against our Receive Maximum. */
  private heldQos1 = 0
  /**
   * PUBLISHes read while acks are held (and while those read before are routed): they wait,
   * unrouted and in order, for the hold to end. Undefined when none waits and none is held.
   */
  private parked: Array<{ p: PublishPacket, at: number }> | undefined
  /** Of `parked`, the QoS 1/2 ones: they count against our Receive Maximum. */
  private parkedQos = 0
  /** What `parked` holds: payloads and topic names (bounded by limits.maxPacketSize, see `park`). */
  private parkedBytes = 0
  /** `routeParked` is waiting on an async authorizePublish: a release must not route around it. */
  private parkedBusy = false
  /** Resumes input paused because `parked` was full. */
  private parkedRoom: (() => void) | undefined
  /** A DISCONNECT read behind parked PUBLISHes: it waits for them (see `disconnectAfterParked`). */
  private parkedDisconnect: { p: DisconnectPacket, done: () => void } | undefined
  /** The client is leaving (DISCONNECT, or its side closed): parked PUBLISHes go, hold or not. */
  private leaving = false
  /** Its side closed while parked PUBLISHes waited on an async hook: closed once they are routed. */
  private closeWhenRouted = false
  /** QoS 0 PUBLISHes read and waiting on an async authorizePublish (see `inputEnded`). */
  private qos0Pending = 0
  private finished = false
  /** Made on the first async hook: aborted at close, so its timeout no longer runs (see withHookTimeout). */
  private hookAbort: AbortController | undefined
  private clientView: ClientView | undefined

  constructor (readonly core: BrokerCore, readonly transport: Transport, readonly info: ConnectionInfo, now: number) {
    this.lastRx = clock(now)
    this.openedAt = this.lastRx
  }

  get remoteAddress (): string | undefined {
    return this.transport.remoteAddress
  }

  get v5 (): boolean {
    return this.protocolVersion === 5
  }

  /**
   * Held back by flow control now: its acks held, or its PUBLISHes waiting unrouted, because a
   * subscriber it reached is behind (see `park`; petrel_publishers_paused).
   */
  get flowControlled (): boolean {
    return this.heldAcks !== undefined || this.parked !== undefined
  }

  /** Made on demand (a hook that reads it, or an async one); aborted once closed (see `closed`). */
  get hookSignal (): AbortSignal {
    let a = this.hookAbort
    if (a === undefined) {
      a = this.hookAbort = new AbortController()
      // one listener per pending hook (a SUBSCRIBE's filters are checked at once): past 10 Node
      // warned of an 'EventTarget memory leak'; each is removed as its hook settles
      setMaxListeners(0, a.signal)
      if (this.finished) a.abort()
    }
    return a.signal
  }

  /**
   * What hooks and the ACL are handed as `client`: made on the first call, then the same one
   * for every message (nothing allocated per publish). Hooks used to get this connection itself
   * and could change its state, its session or its client id, or call `close()`.
   */
  get view (): ClientInfo {
    return (this.clientView ??= new ClientView(this))
  }

  // --- SessionOutlet -------------------------------------------------------------------------

  get writable (): boolean {
    return this.state === ConnectionState.connected && this.transport.writable
  }

  get sendQuota (): number {
    const max = this.core.limits.maxInflightMessages
    return this.clientReceiveMaximum < max ? this.clientReceiveMaximum : max
  }

  sendPublish (message: Message, qos: QoS, retain: boolean, subIds: number[] | undefined, packetId: number, dup: boolean): boolean {
    const v5 = this.protocolVersion === 5
    let alias = 0
    let aliasOnly = false
    if (v5 && this.clientTopicAliasMaximum > 0) {
      // past the bounds a name goes whole: aliases are an optimisation, never owed
      alias = (this.aliasesOut ??= new OutboundAliases(this.clientTopicAliasMaximum, this.core.limits.maxOutboundTopicAliasBytes)).choose(message.topic)
      if (alias < 0) {
        alias = -alias
        aliasOnly = true
      }
    }
    const buf = message.encodeFor(v5, qos, retain, packetId, dup, v5 ? subIds : undefined, this.core.now(), alias, aliasOnly)
    // [MQTT-3.1.2-25] never send more than the client's Maximum Packet Size: drop for this client only
    if (buf.length > this.clientMaximumPacketSize) return false
    if (alias !== 0 && !aliasOnly) this.aliasesOut?.commit(message.topic, alias)
    const stats = this.core.stats
    stats.messagesOut[qos] = (stats.messagesOut[qos] as number) + 1
    stats.bytesOut += buf.length
    this.transport.write(buf)
    return true
  }

  /**
   * A control packet's bytes, sized for the client: never larger than its Maximum Packet Size
   * [MQTT-3.1.2-24], optional properties left out first (see fitPacket). One that cannot fit is
   * discarded and the exchange goes on as if it had been sent [MQTT-3.1.2-25]; counted. (A
   * SUBACK or UNSUBACK that cannot fit ends the connection before anything is done: see
   * `ackTooLarge`.) 3.1.1 has no limit to honour.
   */
  encodeControl (p: Packet): Buffer | undefined {
    const b = fitPacket(p, this.protocolVersion, this.clientMaximumPacketSize)
    if (b !== undefined) return b
    this.core.stats.controlPacketsTooLarge++
    const log = this.core.log
    if (log.isLevelEnabled('info')) log.info({ clientId: this.clientId, type: p.type, maximumPacketSize: this.clientMaximumPacketSize }, 'control packet larger than the client\'s Maximum Packet Size: not sent')
    return undefined
  }

  /** Writes a control packet, unless it cannot fit the client's Maximum Packet Size (see `encodeControl`). */
  sendControl (p: Packet): void {
    const b = this.encodeControl(p)
    if (b !== undefined) this.transport.writeControl(b)
  }

  /**
   * An AUTH of the enhanced authentication exchange. The client cannot go on without it, so one
   * its Maximum Packet Size cannot take ends the exchange with 0x95 Packet too large: CONNACK
   * during CONNECT, DISCONNECT during a re-authentication. Discarded as [MQTT-3.1.2-25] has it,
   * the client waited for it until connect_timeout_ms (or for good, re-authenticating).
   */
  sendAuth (reasonCode: number, authenticationMethod: string, authenticationData: Buffer | undefined): void {
    const b = this.encodeControl({ type: 'auth', reasonCode, properties: { authenticationMethod, authenticationData } })
    if (b !== undefined) this.transport.writeControl(b)
    else if (this.state === ConnectionState.connected) this.fail(0x95, 'AUTH larger than the client\'s Maximum Packet Size')
    else this.refuse(0x95, 5)
  }

  sendPubrel (packetId: number): void {
    this.sendControl({ type: 'pubrel', packetId })
  }

  // --- input ---------------------------------------------------------------------------------

  /**
   * One decoded packet, at `now`, read at `receivedAt` (earlier when it waited behind an async
   * hook). A returned promise means: hold further input until it settles.
   */
  receive (p: Packet, now: number, receivedAt = now): void | Promise<void> {
    this.lastRx = clock(now)
    switch (this.state) {
      case ConnectionState.connecting:
        // [MQTT-3.1.0-1] the first packet must be CONNECT
        if (p.type !== 'connect') { this.close(); return }
        return this.onConnect(p, now)
      case ConnectionState.authenticating:
        if (p.type === 'auth') return this.onAuth(p)
        if (p.type === 'disconnect') { this.close(); return }
        return this.fail(0x82, `${p.type} during authentication`)
      case ConnectionState.closed:
        return
    }
    switch (p.type) {
      case 'publish':
        if (this.parked !== undefined) return this.park(p, receivedAt)
        return this.onPublish(p, now, receivedAt)
      case 'puback': this.session?.puback(p.packetId); return
      case 'pubrec':
        if (this.session?.pubrec(p.packetId, p.reasonCode ?? 0) !== true && (p.reasonCode ?? 0) < 0x80) {
          this.sendControl({ type: 'pubrel', packetId: p.packetId, reasonCode: 0x92 })
        }
        return
      case 'pubcomp': this.session?.pubcomp(p.packetId); return
      case 'pubrel': {
        // [MQTT-4.3.3-11] PUBCOMP; the id may be reused from here [MQTT-4.3.3-12]
        const known = this.session?.incomingQos2?.delete(p.packetId) === true
        this.sendControl({ type: 'pubcomp', packetId: p.packetId, reasonCode: known ? 0 : 0x92 })
        return
      }
      case 'subscribe': return this.onSubscribe(p, now)
      case 'unsubscribe': this.onUnsubscribe(p); return
      case 'pingreq': if (this.clientMaximumPacketSize >= 2) this.transport.writeControl(PINGRESP); return // [MQTT-3.12.4-1]
      case 'disconnect':
        if (this.parked !== undefined) return this.disconnectAfterParked(p)
        this.onDisconnect(p); return
      case 'auth': return this.onAuth(p)
      case 'connect': return this.fail(0x82, 'second CONNECT [MQTT-3.1.0-2]')
      default: return this.fail(0x82, `${p.type} is not sent to a server`)
    }
  }

  /**
   * Bad bytes from the decoder. Before CONNACK: CONNACK with the reason code (5.0) or 0x01 for an
   * unknown protocol level [MQTT-3.1.2-2]; after: DISCONNECT with it (5.0) [MQTT-4.13.1-1];
   * 3.1.1 just closes [MQTT-4.8.0-1].
   */
  protocolFailure (err: PetrelError, decoderVersion: ProtocolVersion | undefined): void {
    this.core.stats.protocolErrors++
    const rc = err.reasonCode ?? 0x81
    if (this.state === ConnectionState.connecting) {
      if (err.code === WireErrorCode.UNSUPPORTED_PROTOCOL_VERSION) {
        this.transport.writeControl(Buffer.from([0x20, 2, 0, 1]))
      } else if (decoderVersion === 5) {
        this.protocolVersion = 5
        this.transport.writeControl(encode({ type: 'connack', sessionPresent: false, reasonCode: rc }, 5))
      }
      this.close()
      return
    }
    this.fail(rc, err.message)
  }

  /** The shell stops reading this client until a pending hook settles: keepalive waits. */
  holdInput (now: number): void {
    if (this.inputHeld) return // a hook after another, in one hold (see Connection.release)
    this.inputHeld = true
    this.heldSince = clock(now)
  }

  /**
   * The shell reads again: the keepalive window restarts now. What the client sent while held
   * (a PINGREQ, say) is still unread, and a sweep may come before it is. Before CONNACK the
   * connect timeout is moved on by the time held: it bounds the client's time, not our hooks'.
   */
  resumeInput (now: number): void {
    this.inputHeld = false
    const t = clock(now)
    this.lastRx = t
    if (this.state !== ConnectionState.connected) this.openedAt = (this.openedAt + elapsed(this.heldSince, t)) | 0
    // so is a re-authentication's: the client's AUTH may be among what was held, unread
    else if (this.reauthWaiting) this.reauthSince = (this.reauthSince + elapsed(this.heldSince, t)) | 0
  }

  /** Keepalive and connect timeout, called by the broker's sweep. */
  tick (now: number): void {
    const t = clock(now)
    // 0 (or less): no bound, as for hookTimeoutMs and the other limits
    const connectTimeout = this.core.limits.connectTimeoutMs
    if (this.state === ConnectionState.connected) {
      // [MQTT-3.1.2-24] 1.5 x keepalive without a packet: the client is gone. Not while its input
      // is held behind a hook (at most hookTimeoutMs): its PINGREQs are unread, not unsent.
      if (this.keepAliveMs > 0 && !this.inputHeld && elapsed(this.lastRx, t) > this.keepAliveMs * 1.5) {
        this.core.stats.keepaliveTimeouts++
        this.fail(0x8d, 'keepalive timeout')
      } else if (this.reauthWaiting && connectTimeout > 0 && !this.inputHeld && elapsed(this.reauthSince, t) > connectTimeout) {
        // A re-authentication the client leaves unanswered (our AUTH 0x18 sent, none back) has
        // failed: other traffic going on does not make it succeed, and it used to stay open for
        // good. DISCONNECT 0x87 Not authorized [MQTT-4.12.1-2], as HiveMQ ends it; the bound is
        // the one for the client's AUTH answers during CONNECT.
        this.fail(0x87, 're-authentication not continued within connect_timeout_ms')
      }
    } else if (this.state !== ConnectionState.closed && connectTimeout > 0 && !this.inputHeld && elapsed(this.openedAt, t) > connectTimeout) {
      // The connect timeout bounds the client's part: sending CONNECT, then its AUTH answers.
      // Not while a CONNECT waits on our own hook (bounded by hookTimeoutMs, which answers
      // CONNACK 0x88): cutting it there closed the connection with no CONNACK at all.
      if (this.state === ConnectionState.authenticating) {
        // the client did not continue the exchange in time: the authentication failed, and
        // the CONNECT has been read, so it gets a CONNACK before the close [MQTT-4.12.0-4]
        // (0x87 Not authorized, as HiveMQ answers the same timeout)
        this.refuse(0x87, 5)
        return
      }
      this.close(false) // no CONNECT yet: no protocol version to answer in, nothing sent to read
    }
  }

  // --- CONNECT -------------------------------------------------------------------------------

  private onConnect (p: ConnectPacket, now: number): void | Promise<void> {
    return runConnectSteps(this, { packet: p, now, sessionPresent: false, assignedClientIdentifier: undefined, serverKeepAlive: undefined, authData: undefined, authStep: 0, resumeAt: 0, connack: undefined }, 0)
  }

  /** Refuses a CONNECT: CONNACK with the reason (5.0) or return code (3.1.1), then close [MQTT-3.2.2-6]. */
  refuse (v5Reason: number, v3Code: number): void {
    // A hook's success-range code must not reach a refusing CONNACK [MQTT-3.2.2-7], nor one a
    // CONNACK cannot carry (Table 2-6: 0x91, 0x8D..., or not a byte, which made the encoder
    // throw in the socket's handler): 0x80 Unspecified error. Sent as it came, a client's decoder
    // took it for a Protocol Error and never saw the refusal.
    if (v5Reason < 0x80 || !isReasonCodeAllowed(PacketType.connack, v5Reason)) v5Reason = 0x80
    this.core.stats.connectRefused++
    const log = this.core.log
    if (log.isLevelEnabled('info')) log.info({ clientId: this.clientId, remoteAddress: this.remoteAddress, reasonCode: this.v5 ? v5Reason : v3Code }, 'connect refused')
    this.sendControl({ type: 'connack', sessionPresent: false, reasonCode: this.v5 ? v5Reason : v3Code })
    this.close()
  }

  /**
   * What `authenticateEnhanced` is asked. The user name is in it because ACL `%u` rules and
   * session ownership go by it: without it the hook could not check the one the CONNECT claimed,
   * and a client proving itself as one user ran with the rights of any user it named.
   */
  enhancedAuthRequest (method: string, data: Uint8Array | undefined, step: number): EnhancedAuthRequest {
    const transport = this.transport
    const self = this // eslint-disable-line @typescript-eslint/no-this-alias
    return {
      clientId: this.clientId,
      username: this.username,
      method,
      data: data === undefined ? undefined : Buffer.from(data),
      step,
      // a getter, as for authenticate: reading it makes node cache the socket's peer name
      get remoteAddress (): string | undefined { return transport.remoteAddress },
      certificateIdentity: this.info.certificateIdentity,
      get signal (): AbortSignal { return self.hookSignal }
    }
  }

  /** Enhanced authentication: AUTH during CONNECT (continue) or after it (re-authentication, §4.12.1). */
  private onAuth (p: AuthPacket): void | Promise<void> {
    const hook = this.core.authenticateEnhanced
    const method = p.properties?.authenticationMethod
    // [MQTT-4.12.0-5] [MQTT-4.12.1-1] same method; re-auth only if CONNECT used one
    if (hook === undefined || this.authMethod === undefined || method !== this.authMethod) return this.fail(0x82, 'AUTH without enhanced authentication')
    const rc = p.reasonCode ?? 0
    const during = this.state === ConnectionState.authenticating
    // During CONNECT, or once a re-authentication is under way, the client continues (0x18);
    // otherwise it may start a re-authentication (0x19) [MQTT-4.12.1-1].
    const continuing = during || this.reauthStep > 0
    if (continuing ? rc !== 0x18 : rc !== 0x19) return this.fail(0x82, `AUTH reason 0x${rc.toString(16)} out of sequence`)
    this.reauthWaiting = false
    const ctx = this.pendingConnect
    const step = ctx === undefined ? ++this.reauthStep : ++ctx.authStep
    const go = (r: EnhancedAuthResult): void | Promise<void> => {
      if (this.state === ConnectionState.closed) return
      if (r.reasonCode === 0x18) {
        if (!during) {
          this.reauthWaiting = true
          this.reauthSince = clock(this.core.now())
        }
        this.sendAuth(0x18, method, r.data)
        return
      }
      this.reauthStep = 0
      if (during && ctx !== undefined) {
        if (r.reasonCode !== 0) { this.refuse(r.reasonCode, 5); return }
        ctx.authData = r.data
        if (r.username !== undefined) this.username = r.username
        this.state = ConnectionState.connecting
        this.pendingConnect = undefined
        return runConnectSteps(this, ctx, ctx.resumeAt)
      }
      // [MQTT-4.12.1-2] DISCONNECT with the hook's code when a DISCONNECT can carry it; else (0x86
      // Bad User Name or Password, 0x88, a success-range code, not a byte) 0x87 Not authorized,
      // which a client's decoder would otherwise have taken for a Protocol Error
      if (r.reasonCode !== 0) { this.fail(r.reasonCode >= 0x80 && isReasonCodeAllowed(PacketType.disconnect, r.reasonCode) ? r.reasonCode : 0x87, 're-authentication failed'); return }
      this.sendAuth(0, method, r.data)
    }
    const r = hook(this.enhancedAuthRequest(method, p.properties?.authenticationData, step), this)
    // past hookTimeoutMs, or the hook threw: CONNACK 0x88 Server unavailable before the close
    // [MQTT-4.12.0-4] (a rejection used to close with none), or DISCONNECT 0x83 ending a
    // re-authentication [MQTT-4.12.1-2]
    const failed = { reasonCode: during ? 0x88 : 0x83 }
    return r instanceof Promise ? r.then((x) => go(isHookFailure(x) ? failed : x)) : go(isHookFailure(r) ? failed : r)
  }

  // --- PUBLISH -------------------------------------------------------------------------------

  private onPublish (p: PublishPacket, now: number, receivedAt: number): void | Promise<void> {
    const stats = this.core.stats
    stats.messagesIn[p.qos] = (stats.messagesIn[p.qos] as number) + 1
    let topic = p.topicName
    let props = p.properties
    if (props !== undefined) {
      // [MQTT-3.3.4-6] Subscription Identifiers go from server to client only: one from a client
      // was forwarded as sent, so subscribers saw identifiers of subscriptions they never made.
      if (props.subscriptionIdentifiers !== undefined) return this.fail(0x82, 'subscription identifier in a PUBLISH from a client [MQTT-3.3.4-6]')
      const alias = props.topicAlias
      if (alias !== undefined) {
        // [MQTT-3.3.2-9] an alias above our Topic Alias Maximum is a Topic Alias invalid error
        if (alias > this.core.limits.topicAliasMaximum) return this.fail(0x94, `topic alias ${alias} above the maximum`)
        const map = this.aliasesIn ??= []
        if (topic.length === 0) {
          const known = map[alias]
          // an alias never set on this connection: a Protocol Error (§3.3.2.3.4)
          if (known === undefined) return this.fail(0x82, `unknown topic alias ${alias}`)
          // set past maxInboundTopicAliasBytes, so not kept (see below)
          if (known === FORGOTTEN) return this.fail(0x97, `topic alias ${alias} was set past max_inbound_topic_alias_bytes`)
          topic = known
        } else {
          // [MQTT-3.3.2-12] every alias up to our maximum must be accepted, so one whose name
          // would pass the bound is not refused: this PUBLISH carries its name and goes on;
          // only a later one relying on it alone cannot, and ends the connection (0x97 Quota
          // exceeded, an administrative limit). The old name goes either way: the client has
          // re-mapped the alias.
          const old = map[alias]
          if (old !== undefined) this.aliasesInLength -= old.length
          const max = this.core.limits.maxInboundTopicAliasBytes
          if (max === 0 || this.aliasesInLength + topic.length <= max) {
            map[alias] = topic
            this.aliasesInLength += topic.length
          } else {
            map[alias] = FORGOTTEN
          }
        }
      }
    }
    // `$SYS/...` is the broker's own, `$share/...` a subscription form no subscriber can receive
    // (as mosquitto: 0x87, the connection stays). One compare for ordinary topics.
    if (topic.charCodeAt(0) === 0x24 && isReservedTopic(topic)) {
      this.finishPublish(p, undefined, false, now)
      return
    }
    // Too many levels: matching walks one level per step, and a topic of 30,000 empty levels
    // against a filter of as many `+` overflowed the stack and killed the process. Refused like
    // a denied publish, with 0x90 Topic Name invalid ("correctly formed but not accepted").
    // Free for ordinary topics: fewer characters than the limit means fewer levels.
    const maxLevels = this.core.limits.maxTopicLevels
    if (topic.length >= maxLevels && tooDeep(topic, maxLevels)) {
      this.finishPublish(p, undefined, false, now, 0x90)
      return
    }
    const session = this.session as Session
    if (p.qos === 2) {
      const q2 = session.incomingQos2
      // [MQTT-4.3.3-10] a duplicate of a QoS 2 publish not yet released: PUBREC again, no onward delivery
      if (q2?.has(p.packetId as number) === true) {
        this.sendControl({ type: 'pubrec', packetId: p.packetId as number })
        return
      }
    }
    // A payload declared UTF-8 that is not: refused in its PUBACK/PUBREC (0x99), so a client that
    // sends it again after a reconnect is not disconnected for ever; QoS 0 has no ack, so
    // DISCONNECT 0x99. §3.3.2.3.2: "The receiver MAY validate that the Payload is of the format
    // indicated, and if it is not send a PUBACK, PUBREC, or DISCONNECT with Reason Code of 0x99";
    // forwarded, the indicator would go out unaltered [MQTT-3.3.2-4] on a payload that belies it.
    if (props?.payloadFormatIndicator === true && !isWellFormedUtf8(p.payload, 0, p.payload.length)) {
      if (p.qos === 0) return this.fail(0x99, 'payload not UTF-8 although its Payload Format Indicator is 1')
      this.finishPublish(p, undefined, false, now, 0x99)
      return
    }
    // More User Property pairs than max_user_properties (decoded without them): refused in its
    // PUBACK/PUBREC with 0x97 Quota exceeded ("an implementation or administrative imposed limit
    // has been exceeded", §3.4.2.1), QoS 0 dropped; the connection stays. Closing it (0x95), as for
    // any other packet past the limit, made a client with a persistent session send the message
    // again on every reconnect, for ever. Its topic alias, above, is still taken.
    if (p.userPropertiesExceeded === true) {
      this.core.userPropertiesExceeded(this.clientId, topic, p.qos)
      this.finishPublish(p, undefined, false, now, 0x97)
      return
    }
    // [MQTT-3.3.4-7] the client sends at most our Receive Maximum QoS 1/2 publishes we have not
    // acknowledged (PUBACK written, or PUBREC until PUBREL); one more is DISCONNECT 0x93 (4.9).
    // PUBACKs are written at once unless flow control holds them, so only held ones count.
    if (p.qos > 0 && this.v5 && this.heldQos1 + (session.incomingQos2?.size ?? 0) >= this.core.limits.receiveMaximum) {
      return this.fail(0x93, 'receive maximum exceeded')
    }
    let expiresAt = 0
    if (props !== undefined) {
      const mei = props.messageExpiryInterval
      // the lifetime runs from receipt [MQTT-3.3.2-6], not from when a held packet gets its turn
      if (mei !== undefined) expiresAt = receivedAt + mei * 1000
      if (props.topicAlias !== undefined || mei !== undefined) {
        props = { ...props }
        delete props.topicAlias
        delete props.messageExpiryInterval
      }
    }
    const auth = this.core.authorizePublish
    if (auth !== undefined) {
      const r = auth(this.view, { topicName: topic, qos: p.qos, retain: p.retain, payload: p.payload }, this)
      if (r instanceof Promise) {
        const msg = new Message(topic, p.payload, p.qos, p.retain, props, expiresAt, session).own()
        if (p.qos === 0) this.qos0Pending++
        return r.then((ok) => {
          // past hookTimeoutMs, or the hook rejected: refused with 0x83 Implementation specific
          // error, counted as hook_timeout / hook_error; the connection goes on
          if (isHookFailure(ok)) this.finishPublish(p, msg, false, this.core.now(), 0x83, ok === HOOK_TIMEOUT ? DropReason.hookTimeout : DropReason.hookError)
          else this.finishPublish(p, msg, ok, this.core.now())
          // its client closed its side meanwhile (see `inputEnded`); parked ones close in `routeParked`
          if (p.qos === 0 && --this.qos0Pending === 0 && this.closeWhenRouted && this.parked === undefined) {
            this.closeWhenRouted = false
            this.close()
          }
        })
      }
      if (r === HOOK_ERROR) { this.finishPublish(p, undefined, false, now, 0x83, DropReason.hookError); return }
      if (!r) { this.finishPublish(p, undefined, false, now); return }
    }
    this.finishPublish(p, new Message(topic, p.payload, p.qos, p.retain, props, expiresAt, session), true, now)
  }

  /**
   * Routes, then acknowledges. The ack is written after routing but still goes out ahead of any
   * copy routed back to this client (control packets are flushed first, see Connection), so a
   * client subscribed to its own topic is not stuck behind Nagle + a delayed ACK.
   *
   * 5.0: a message that matched no subscription is acknowledged with 0x10 No matching
   * subscribers (§3.4.2.1, §3.5.2.1: "accepted but there are no subscribers"; the Server MAY),
   * as mosquitto does in its PUBACK (its PUBREC comes before it routes, so it says 0x00 there;
   * we route at PUBLISH, so the PUBREC says it too, as EMQX's does). Retained or not, as
   * mosquitto: the message is stored, but nobody got it now. Counted when it is routed, so a
   * PUBLISH parked or held behind an async authorizePublish gets the code of its own routing.
   *
   * Flow control: when a subscriber this message reached is behind but still making progress,
   * the ack is held until it catches up (at most STALL_MS), and every later ack of this
   * connection queues behind it, in order [MQTT-4.6.0-2] [MQTT-4.6.0-3], and so do its later
   * PUBLISHes, unrouted (see `park`). The publisher's own window (our Receive Maximum under
   * 5.0) then paces it. Other input is not paused, so its acks for messages routed to it still
   * arrive: a client subscribed to its own topic cannot deadlock.
   *
   * A message whose lifetime ran out before `now` (an async authorizePublish, or input held
   * behind one) is accepted but goes nowhere, counted as expired [MQTT-3.3.2-5]: routed, it went
   * to every ready subscriber with a Message Expiry Interval of 0. One of 0 s that is routed as
   * it arrives still reaches them (see Session.deliver).
   */
  private finishPublish (p: PublishPacket, msg: Message | undefined, allowed: boolean, now: number, refusal = 0x87, reason = refusalReason(refusal)): void {
    if (this.state === ConnectionState.closed) return
    let wait: Promise<void> | undefined
    let matched = true
    if (allowed && msg !== undefined && msg.expiresAt !== 0 && msg.expiresAt < now) {
      this.core.stats.drop(DropReason.expired)
    } else if (allowed && msg !== undefined) {
      matched = this.core.publish(msg) > 0
      // while acks are already held, later ones queue behind them: no second wait to register
      if (p.qos > 0 && this.heldAcks === undefined) wait = this.core.takePressure()
    } else {
      this.core.stats.drop(reason)
    }
    if (p.qos === 0) return
    const packetId = p.packetId as number
    const rc = !this.v5 ? 0 : !allowed ? refusal : matched ? 0 : 0x10
    let ack: Buffer | undefined
    if (p.qos === 1) {
      ack = this.encodeControl({ type: 'puback', packetId, reasonCode: rc }) // [MQTT-4.3.2-4]
    } else {
      // [MQTT-4.3.3-9] keep the id until PUBREL (not on a failure code: that ends the flow)
      if (rc < 0x80) (this.session?.incomingQos2 ?? ((this.session as Session).incomingQos2 = new Set())).add(packetId)
      ack = this.encodeControl({ type: 'pubrec', packetId, reasonCode: rc })
    }
    if (ack === undefined) return // [MQTT-3.1.2-25] as if sent
    if (this.heldAcks !== undefined) {
      this.heldAcks.push(ack)
      if (p.qos === 1) this.heldQos1++
    } else if (wait !== undefined) {
      this.heldAcks = [ack]
      this.parked ??= []
      if (p.qos === 1) this.heldQos1 = 1
      void wait.then(() => { this.releaseAcks() })
    } else {
      this.transport.writeControl(ack)
    }
  }

  private releaseAcks (): void {
    const acks = this.heldAcks
    this.heldAcks = undefined
    this.heldQos1 = 0
    if (acks === undefined || this.state === ConnectionState.closed) return
    for (const a of acks) this.transport.writeControl(a)
    this.routeParked()
  }

  /**
   * A PUBLISH read while this connection's acks are held waits for the hold to end. Routed at
   * once, as before, every message the publisher's window let through went into the queue of
   * the subscriber holding it back: ten 5.0 publishers (window 100 each) added up to 1,000 to
   * a queue already half full (max_queued_messages 1,000) and the broker dropped acknowledged
   * QoS 1/2 messages (queue_full) for a subscriber that was keeping up at its pace. Parked, a
   * publisher adds at most one message past the half before it waits again. Acks and other
   * packets are still read, so a client subscribed to its own topic cannot deadlock.
   *
   * Bounded: QoS 1/2 ones count against our Receive Maximum [MQTT-3.3.4-7] like held acks; a
   * client that does not keep to it (a 3.1.1 one, or QoS 0) has its input paused once its
   * Receive Maximum of PUBLISHes wait, or max_packet_size bytes of them (see `parkedFull`),
   * until they are routed (TCP then pushes back on it). Only
   * a client that also subscribes to what it floods can then wait on itself, and only until
   * its hold ends (STALL_MS at most, see Broker.takePressure).
   */
  private park (p: PublishPacket, receivedAt: number): void | Promise<void> {
    const parked = this.parked as Array<{ p: PublishPacket, at: number }>
    if (p.qos > 0) {
      const session = this.session as Session
      if (this.v5 && this.heldQos1 + (session.incomingQos2?.size ?? 0) + this.parkedQos >= this.core.limits.receiveMaximum) {
        return this.fail(0x93, 'receive maximum exceeded')
      }
      this.parkedQos++
    }
    parked.push({ p, at: receivedAt })
    this.parkedBytes += parkedCost(p)
    if (this.parkedFull()) {
      return new Promise<void>((resolve) => { this.parkedRoom = resolve })
    }
  }

  /**
   * Input waits once this many are parked: receive_maximum PUBLISHes, or max_packet_size bytes
   * of them. By number alone one held-back connection could make the broker hold
   * receive_maximum x max_packet_size of read input (100 MiB with the defaults) where it held
   * about one packet before.
   */
  private parkedFull (): boolean {
    const limits = this.core.limits
    return (this.parked?.length ?? 0) >= limits.receiveMaximum || this.parkedBytes >= limits.maxPacketSize
  }

  /** Routes parked PUBLISHes in order until one is held back again, or an async authorizePublish waits. */
  private routeParked (): void {
    const parked = this.parked
    if (parked === undefined || this.parkedBusy) return
    let i = 0
    // leaving, the publisher has nothing left to pace: what it sent before goes, hold or not
    while (i < parked.length && (this.heldAcks === undefined || this.leaving)) {
      if (this.state === ConnectionState.closed) return
      const { p, at } = parked[i++] as { p: PublishPacket, at: number }
      if (p.qos > 0) this.parkedQos--
      this.parkedBytes -= parkedCost(p)
      const r = this.onPublish(p, this.core.now(), at)
      if (r !== undefined) {
        parked.splice(0, i)
        this.parkedBusy = true
        r.then(() => {
          this.parkedBusy = false
          this.routeParked()
        }, (err: unknown) => {
          this.core.log.error({ err }, 'handling a packet failed; closing the connection')
          this.fail(0x80, 'internal error')
        })
        return
      }
    }
    parked.splice(0, i)
    if (parked.length === 0 && this.heldAcks === undefined) {
      this.parked = undefined
      this.parkedQos = 0
      this.parkedBytes = 0
    }
    this.roomForParked()
    // a DISCONNECT read before the close goes first: closed as for a close alone, it was dropped
    // and the will went out though the client had sent DISCONNECT 0x00 [MQTT-3.1.2-8]
    const d = this.parkedDisconnect
    if (d !== undefined && parked.length === 0) {
      this.parkedDisconnect = undefined
      this.closeWhenRouted = false
      this.onDisconnect(d.p)
      d.done()
      return
    }
    if (this.closeWhenRouted && parked.length === 0) {
      this.closeWhenRouted = false
      this.close()
    }
  }

  /**
   * A DISCONNECT read while PUBLISHes are parked: they were read before it, so they are routed
   * first, in order, whether or not the hold has ended; input waits meanwhile (nothing may follow
   * a DISCONNECT). Closing at once dropped them: a QoS 0 message sent just before a normal
   * DISCONNECT (as mosquitto_pub does) was lost whenever the publisher was being held back.
   */
  private disconnectAfterParked (p: DisconnectPacket): Promise<void> {
    return new Promise<void>((resolve) => {
      this.parkedDisconnect = { p, done: resolve }
      this.leaving = true
      this.routeParked()
    })
  }

  /**
   * The client closed its side of the connection (FIN) without DISCONNECT: what it sent before
   * is routed now, parked or not, as it was before PUBLISHes were parked; its will follows when
   * the connection closes. Dropped, a QoS 0 message read before the close was lost while the will
   * went out. True when routing waits on an async authorizePublish (parked PUBLISHes, or a QoS 0
   * one read last): the connection is then closed once it is done (see Connection.onEnd), not at
   * once, which dropped them.
   */
  inputEnded (): boolean {
    if (this.state !== ConnectionState.connected) return false
    // A QoS 0 PUBLISH waiting on an async authorizePublish, the last thing read before the
    // close: closed at once, its answer found the connection gone and the message was dropped
    // while the will went out. (A QoS 1/2 one still goes with its connection: its client never
    // saw the ack and sends it again, as for a close behind any other pending hook.)
    if (this.parked === undefined) {
      if (this.qos0Pending === 0) return false
      this.closeWhenRouted = true
      return true
    }
    this.leaving = true
    this.routeParked()
    if (this.state !== ConnectionState.connected || !this.parkedBusy) return false
    this.closeWhenRouted = true
    return true
  }

  /** Input paused for a full `parked` goes on once there is room (or the connection is gone). */
  private roomForParked (): void {
    const resume = this.parkedRoom
    if (resume === undefined || (this.parkedFull() && this.state !== ConnectionState.closed)) return
    this.parkedRoom = undefined
    resume()
  }

  // --- SUBSCRIBE / UNSUBSCRIBE ---------------------------------------------------------------

  /**
   * Whether the SUBACK or UNSUBACK for `n` topic filters cannot fit the client's Maximum Packet
   * Size even bare (one reason code each, no properties), so that the SUBSCRIBE or UNSUBSCRIBE
   * is answered with DISCONNECT 0x95 Packet too large, nothing done. Discarded as if sent
   * [MQTT-3.1.2-25] (that statement's "Application Message" is a PUBLISH), it left a client
   * waiting for its acknowledgement for good, its filters subscribed without its knowing;
   * mosquitto, too, ends a connection whose CONNACK or AUTH it cannot send. 3.1.1 has no limit.
   */
  private ackTooLarge (n: number): boolean {
    if (!this.v5) return false
    const remaining = 3 + n // packet id, properties length 0, the codes
    const size = 1 + (remaining < 128 ? 1 : remaining < 16384 ? 2 : remaining < 2097152 ? 3 : 4) + remaining
    if (size <= this.clientMaximumPacketSize) return false
    this.core.stats.controlPacketsTooLarge++
    this.fail(0x95, `a ${n}-filter acknowledgement (${size} bytes) larger than the client's Maximum Packet Size`)
    return true
  }

  private onSubscribe (p: SubscribePacket, now: number): void | Promise<void> {
    if (this.ackTooLarge(p.subscriptions.length)) return
    const auth = this.core.authorizeSubscribe
    if (auth === undefined) { this.finishSubscribe(p, undefined, now); return }
    let pending = false
    const results = p.subscriptions.map((s) => {
      const r = auth(this.view, s, this)
      if (r instanceof Promise) pending = true
      return r
    })
    if (pending) return Promise.all(results).then((r) => { this.finishSubscribe(p, r, this.core.now()) })
    this.finishSubscribe(p, results as Array<boolean | HookFailure>, now)
  }

  private finishSubscribe (p: SubscribePacket, allowed: Array<boolean | HookFailure> | undefined, now: number): void {
    if (this.state === ConnectionState.closed) return
    const session = this.session as Session
    const sid = p.properties?.subscriptionIdentifier
    const codes: number[] = []
    let retainedFor: SessionSubscription[] | undefined
    const maxLevels = this.core.limits.maxTopicLevels
    const maxSubs = this.core.limits.maxSubscriptionsPerSession
    p.subscriptions.forEach((s, i) => {
      const a = allowed?.[i]
      if (a !== undefined && a !== true) {
        // denied (or its check passed hookTimeoutMs or failed: 0x83): failure code in SUBACK [MQTT-3.9.3-2]
        codes.push(this.v5 ? (isHookFailure(a) ? 0x83 : 0x87) : 0x80)
        return
      }
      // deeper than max_topic_levels: 0x8F Topic Filter invalid, "correctly formed but not
      // accepted by this Server" (the filter of a shared subscription is what is counted)
      if (s.topicFilter.length >= maxLevels && tooDeep(parseSharedSubscription(s.topicFilter)?.topicFilter ?? s.topicFilter, maxLevels)) {
        codes.push(this.v5 ? 0x8f : 0x80)
        return
      }
      // Each subscription holds a trie entry, a budget and its filter for the session's life, so a
      // client repeating SUBSCRIBEs of thousands of new filters grew the heap without bound. Past
      // the cap a new filter is refused with 0x97 Quota exceeded (3.1.1: 0x80 Failure); the
      // others in the packet are still processed as separate SUBSCRIBEs would be [MQTT-3.8.4-5]
      // (3.1.1: [MQTT-3.8.4-4]). Replacing an existing filter adds nothing [MQTT-3.8.4-3].
      const subs = session.subscriptions
      if ((subs?.size ?? 0) >= maxSubs && subs?.has(s.topicFilter) !== true) {
        this.core.stats.subscriptionQuotaExceeded++
        codes.push(this.v5 ? 0x97 : 0x80) // a Subscribe Reason Code [MQTT-3.9.3-2]
        return
      }
      const { entry, existed } = this.core.router.subscribe(session, s, sid, this.core.readFilter?.(this.view, s.topicFilter))
      codes.push(s.qos) // [MQTT-3.8.4-7] granted QoS: we support up to 2
      // [MQTT-3.3.1-9..11] retain handling 0: send, 1: only on a new subscription, 2: never;
      // never for a shared subscription (§3.3.1.3: a new non-shared subscription gets them)
      if (entry.shareName === undefined && (entry.retainHandling === 0 || (entry.retainHandling === 1 && !existed))) {
        (retainedFor ??= []).push(entry)
      }
    })
    // [MQTT-3.8.4-1] SUBACK with the same packet id, one code per filter [MQTT-3.8.4-6]
    this.sendControl({ type: 'suback', packetId: p.packetId, reasonCodes: codes })
    if (retainedFor === undefined) return
    // Once the session's queue is full, what is left would only be dropped: the walk stops
    // there, so a SUBSCRIBE of `#` repeated (or of thousands of filters) costs what the
    // subscriber can hold, not filters x retained messages.
    for (const entry of retainedFor) {
      if (session.saturated) break
      const sids = entry.subscriptionIdentifier === undefined ? undefined : [entry.subscriptionIdentifier]
      // retained messages sent because of a new subscription carry RETAIN 1 (§3.3.1.3; 3.1.1's [MQTT-3.3.1-8])
      this.core.retained.forEachMatch(entry.topicFilter, now, (m) => {
        if (entry.readable !== undefined && !entry.readable(m.topic)) return true
        session.deliver(m, (m.qos < entry.qos ? m.qos : entry.qos) as QoS, true, sids, entry.budget)
        return !session.saturated
      })
    }
  }

  private onUnsubscribe (p: UnsubscribePacket): void {
    if (this.ackTooLarge(p.topicFilters.length)) return
    const session = this.session as Session
    const codes = p.topicFilters.map((f) => this.core.router.unsubscribe(session, f) ? 0 : 0x11)
    // [MQTT-3.10.4-4] UNSUBACK even when nothing matched
    this.sendControl({ type: 'unsuback', packetId: p.packetId, reasonCodes: this.v5 ? codes : undefined })
  }

  // --- DISCONNECT and closing ----------------------------------------------------------------

  private onDisconnect (p: DisconnectPacket): void {
    if (this.v5) {
      const sei = p.properties?.sessionExpiryInterval
      if (sei !== undefined && this.session !== undefined) {
        // [MQTT-3.14.2-2] a session that expired at close cannot be given an expiry at DISCONNECT
        if (this.connectSessionExpiry === 0 && sei !== 0) return this.fail(0x82, 'session expiry set on DISCONNECT after 0 on CONNECT')
        this.session.expiryInterval = Math.min(sei, this.core.limits.maxSessionExpiryInterval)
      }
      // [MQTT-3.14.4-3] only 0x00 Normal disconnection discards the will; with any other code
      // (0x04 Disconnect with Will Message, or an error such as 0x80) it goes out [MQTT-3.1.2-8]
      // (§3.14: "closed without the Client first sending a DISCONNECT packet with Reason Code
      // 0x00 ... the Will Message is published"), as mosquitto 2.0 does.
      if ((p.reasonCode ?? 0) === 0x00) this.will = undefined
    } else {
      this.will = undefined // [MQTT-3.1.2-10]
    }
    this.close()
  }

  /** Server-side error: DISCONNECT with `reasonCode` (5.0, after CONNACK) then close; the will goes out [MQTT-3.1.2-8]. */
  fail (reasonCode: number, why: string): void {
    if (this.state === ConnectionState.closed) return
    const log = this.core.log
    if (log.isLevelEnabled('info')) log.info({ clientId: this.clientId, remoteAddress: this.remoteAddress, reasonCode, why }, 'closing connection')
    if (this.state === ConnectionState.authenticating) {
      // within a CONNECT's enhanced authentication (a packet other than AUTH or DISCONNECT
      // [MQTT-3.1.2-30], an AUTH of another method or out of sequence): the CONNECT has been
      // read, so it gets its CONNACK before the close [MQTT-4.12.0-4]; it used to get nothing
      this.refuse(reasonCode, 5)
      return
    }
    if (this.v5 && this.state === ConnectionState.connected) {
      this.sendControl({ type: 'disconnect', reasonCode })
    }
    this.close()
  }

  /** Graceful server shutdown: 5.0 clients get DISCONNECT 0x8B Server shutting down (§3.14.2.1). Wills are not sent. */
  shutdown (): void {
    if (this.state === ConnectionState.closed) return
    if (this.v5 && this.state === ConnectionState.connected) this.sendControl({ type: 'disconnect', reasonCode: 0x8b })
    this.will = undefined
    this.close()
  }

  /**
   * Another connection took this client id [MQTT-3.1.4-3]: 5.0 gets DISCONNECT 0x8E. The will
   * goes out now, unless it has a delay: the new connection for the client id arrived within
   * it, so it is not sent at all [MQTT-3.1.2-8], clean start or not (as mosquitto).
   */
  takenOver (): void {
    if (this.state === ConnectionState.closed) return
    if (this.v5) this.sendControl({ type: 'disconnect', reasonCode: 0x8e })
    const will = this.will
    this.will = undefined
    if (will !== undefined && (will.properties?.willDelayInterval ?? 0) === 0) {
      this.core.publish(Message.fromWill(will, this.core.now(), this.session))
    }
    const s = this.session
    if (this.core.online.get(this.clientId) === this) this.core.online.delete(this.clientId)
    if (s !== undefined && s.outlet === this) {
      s.outlet = undefined
      // This connection is closed, so its session goes offline as at any close: one that ends
      // with its connection (Session Expiry Interval 0, 3.1.1 clean session) ends now
      // [MQTT-4.1.0-2]. Left as it was, the new connection resumed it with clean start 0,
      // Session Present 1 and the old subscriptions, where mosquitto starts a new one.
      this.core.sessionOffline(s, undefined)
    }
    this.session = undefined
    this.close()
  }

  /**
   * Ends the connection (flushing first); the rest happens in `closed()`. `linger`: see
   * Transport.end (false: the client has nothing to read from us, as when evicted).
   */
  close (linger = true): void {
    if (this.state !== ConnectionState.closed) this.state = ConnectionState.closed
    this.transport.end(linger)
    this.closed()
  }

  /** The stream is gone (or we closed it): detach from the session; a will unless DISCONNECT 0x00. */
  closed (): void {
    this.state = ConnectionState.closed
    this.roomForParked()
    const d = this.parkedDisconnect
    if (d !== undefined) {
      this.parkedDisconnect = undefined
      d.done()
    }
    if (this.finished) return
    this.finished = true
    this.hookAbort?.abort()
    const core = this.core
    core.connectionClosed(this)
    const s = this.session
    if (s === undefined || s.outlet !== this) return
    if (core.log.isLevelEnabled('info')) core.log.info({ clientId: this.clientId }, 'client disconnected')
    s.outlet = undefined
    if (core.online.get(this.clientId) === this) core.online.delete(this.clientId)
    const will = this.will
    this.will = undefined
    core.sessionOffline(s, will)
  }
}

/**
 * Topics a client may not publish to (nor leave a will on): `$SYS` (the broker's statistics, which
 * a client could otherwise overwrite, retained, for every reader) and `$share` (a shared
 * subscription's prefix: a filter starting with it is never a plain subscription, so no one could
 * receive the message). Topics starting with `$` are for the server's own use [MQTT-4.7.2-1].
 */
export function isReservedTopic (topic: string): boolean {
  return ((topic.startsWith('$SYS') && (topic.length === 4 || topic.charCodeAt(4) === 0x2f)) ||
    (topic.startsWith('$share') && (topic.length === 6 || topic.charCodeAt(6) === 0x2f)))
}

/** Whether `topic` has more than `max` levels (`/`-separated parts). */
export function tooDeep (topic: string, max: number): boolean {
  let levels = 1
  for (let i = topic.indexOf('/'); i !== -1; i = topic.indexOf('/', i + 1)) {
    if (++levels > max) return true
  }
  return false
}

/** What a parked PUBLISH holds, as `ServerConnection.parkedBytes` counts it. */
function parkedCost (p: PublishPacket): number {
  return p.payload.length + p.topicName.length
}

/** What a publisher-side refusal, by its reason code, is counted as. */
function refusalReason (reasonCode: number): DropReason {
  switch (reasonCode) {
    case 0x99: return DropReason.payloadFormatInvalid
    case 0x90: return DropReason.topicInvalid
    case 0x97: return DropReason.userPropertiesExceeded
    default: return DropReason.notAuthorized
  }
}
