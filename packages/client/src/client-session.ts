import {
  encode, isWellFormedUtf8, MAX_PACKET_SIZE, PetrelError, publishQoS0Size, writePublishQoS0, topicNameProblem, topicFilterProblem, parseSharedSubscription, reasonCodeName, topicMatches, WireErrorCode,
  type AckProperties, type ConnackPacket, type ConnectPacket, type Packet, type ProtocolVersion, type PublishPacket,
  type PublishProperties, type QoS, type Subscription, type SubscribePacket, type UnsubscribePacket
} from '@petrel/wire'
import { PacketIdPool, TopicTrie } from '@petrel/session'
import { ClientErrorCode, clientError } from './errors.js'
import { Deque } from './deque.js'
import { Message, type InboundAck, type InboundAckSink } from './message.js'
import { TokenBucket, type ThrottleOptions } from './token-bucket.js'
import { messageBytes, pins } from './subscription.js'

/** What to do when the request queue is full. */
export type QueuePolicy = 'block' | 'reject' | 'dropOldest'
/** What to do with unacked QoS 1/2 publishes when the broker lost the session. */
export type SessionLostPolicy = 'republish' | 'fail'

export interface ClientSessionOptions {
  protocolVersion: ProtocolVersion
  /** QoS 1/2 publishes in flight at once; under v5 also capped by the broker's Receive Maximum. Default 100. */
  inflightWindow?: number | undefined
  inflightWindowQos2?: number | undefined
  /** Requests waiting for the wire (not yet in flight). Default 1,000. */
  maxQueuedMessages?: number | undefined
  /** Bytes of encoded packets waiting for the wire. Default 16 MiB. */
  maxQueuedBytes?: number | undefined
  /** Default `block`. */
  queuePolicy?: QueuePolicy | undefined
  /** Default `republish`. */
  sessionLostPolicy?: SessionLostPolicy | undefined
  /** Resubscribe after a connection whose session was not present. Default true. */
  resubscribe?: boolean | undefined
  throttle?: ThrottleOptions | undefined
  /**
   * After a CONNACK with Session Present, how long messages that match no local subscription are
   * held (unacknowledged) for a subscription the app has yet to make. Default 2,000 ms; 0: never.
   */
  unroutedHoldMs?: number | undefined
  /** Messages given to the `unrouted` output are acked by their `ack()`, not when it returns. Default false. */
  unroutedManualAck?: boolean | undefined
  /** Bytes of QoS 0 messages the hold keeps (as a subscription's `queueBytes` counts them). Default 16 MiB. */
  unroutedHoldBytes?: number | undefined
  /**
   * The limits past which the decoder marks an inbound PUBLISH for refusal (User Property pairs,
   * Subscription Identifiers), named in the refusal's error. Default: unbounded.
   */
  maxUserProperties?: number | undefined
  maxSubscriptionIdentifiers?: number | undefined
  /**
   * The broker's Maximum Packet Size as the app knows it, for a broker that cannot say (3.1.1) or
   * does not: enforced as the CONNACK's is, the smaller of the two. Default: none.
   */
  brokerMaximumPacketSize?: number | undefined
  /** Milliseconds, monotonic; injected by tests. */
  now: () => number
}

/**
 * QoS 0 messages held after a session-present CONNACK, at most (the oldest goes first), and their
 * bytes when `unroutedHoldBytes` is not set. QoS 1/2 ones are all kept: unacked, the broker's
 * in-flight limit bounds them.
 */
const HOLD_QOS0_MAX = 1000
const HOLD_QOS0_BYTES = 16 * 1024 * 1024

/**
 * Links in a row the broker ended while the same PUBLISH, larger than any it ever took, was the
 * largest unacknowledged on them, after which that PUBLISH is taken as over the broker's packet
 * size limit and fails alone. A 3.1.1 broker cannot announce that limit and closes the link on a
 * larger packet without a word (mosquitto's max_packet_size): replayed on every reconnect, the
 * PUBLISH would end every link, for ever, and hold back all that follows it. One or two drops
 * could be the network's; three in a row, each with that message outstanding, are not.
 */
const OVERSIZE_STRIKES = 3

interface HeldMessage {
  topic: string
  packet: PublishPacket
  record: InboundAck | undefined
  /** QoS 0: what it is charged against the hold's byte bound (see Subscription.push); else 0. */
  charge: number
}

/**
 * The session's output port. Actions go out through it as they happen, rather than as returned
 * arrays, so the hot path allocates nothing for them. Tests record them in tables.
 */
export interface SessionOutput {
  /** Bytes for the wire. Return false when the transport's buffer is full: the session then holds
   * further PUBLISH packets until `drained()` (acks and control packets still go out). */
  write (bytes: Buffer): boolean
  /**
   * In-place writing of a small packet (at most 4 KiB): the session writes `size` bytes into
   * `buffer` at the offset `reserve(size)` returned, then calls `commit(size)` (whose result is
   * `write`'s). The QoS 0 publish fast path uses it: no Buffer per packet.
   */
  reserve (size: number): number
  readonly buffer: Buffer
  commit (size: number): boolean
  /** A message for one local subscription. */
  deliver (message: Message, subscription: SubscriptionEntry): void
  /**
   * The broker broke the protocol (or went past a limit of ours that only closing can end):
   * close the connection with `error.reasonCode`.
   */
  protocolViolation (error: PetrelError): void
  /**
   * A message that no local subscription matches (a subscription of the session from before this
   * client, or one just removed). Return true when the app takes it (acked once this returns);
   * false: the session holds or drops it.
   */
  unrouted (message: Message): boolean
  /** The throttle or a hold needs the session again: call `wake()` at `time` (ms, on the session's clock). */
  wakeAt (time: number): void
  /** A resubscribe the session sent by itself failed. */
  resubscribeFailed (subscription: SubscriptionEntry, error: PetrelError): void
  /** An inbound message was refused (acked with a failure reason code, counted) and not delivered. */
  messageRefused? (error: PetrelError): void
}

/** Outcome of a QoS 1/2 publish: the broker's reason code (0x10: no matching subscribers) and properties. */
export interface PublishResult {
  reasonCode: number
  properties?: AckProperties | undefined
}

/** Where a request is in its life. */
export const RState = { Blocked: 0, Queued: 1, Inflight: 2, Done: 3 } as const
export type RState = typeof RState[keyof typeof RState]

export interface Settleable<T> {
  state: RState
  resolve: ((value: T) => void) | undefined
  reject: ((error: unknown) => void) | undefined
  /** Set when the session settled it before the shell attached resolve/reject. */
  early: { value: unknown } | { error: unknown } | undefined
}

/** One publish from `publish()` until its completion. Not keyed by packet id. */
export class PublishRequest implements Settleable<PublishResult> {
  state: RState = RState.Queued
  resolve: ((value: PublishResult) => void) | undefined = undefined
  reject: ((error: unknown) => void) | undefined = undefined
  early: { value: unknown } | { error: unknown } | undefined = undefined
  packetId = 0
  /** QoS 2 past PUBREC: what is left to send is PUBREL. */
  released = false
  /** QoS 2: the PUBREC's reason code, what the result reports (0x10 No matching subscribers). */
  recReasonCode = 0
  /** The connection epoch it was last written on (0: not on the wire of the current one). */
  sentEpoch = 0
  /**
   * Written once already, then queued again because the broker lost the session: its next send
   * is a replay (counted in publishesReplayed), not a new publish.
   */
  republished = false
  /**
   * Encoded once with packet id 0 for QoS > 0; the id and DUP are patched in place. Empty while
   * the request is blocked (`block` policy, queue full): a caller firing many publishes at a
   * stalled broker then costs us a small object each, not a second copy of every payload.
   */
  bytes: Buffer
  idOffset = 0
  /**
   * Encoded size while blocked, then `bytes.length`: exact for one with properties (encoded once to
   * check them), else an upper bound (3 bytes a topic character, 16 of header), never below what
   * it will charge the queue when admitted.
   */
  size: number
  readonly qos: QoS
  readonly retain: boolean
  readonly topic: string
  /** Kept for QoS 0 (to re-encode with a topic alias) and while blocked (not encoded yet). */
  payload: Uint8Array | undefined
  readonly properties: PublishProperties | undefined

  constructor (topic: string, payload: Uint8Array, qos: QoS, retain: boolean, properties: PublishProperties | undefined,
    bytes: Buffer | undefined) {
    this.topic = topic
    this.qos = qos
    this.retain = retain
    this.payload = payload
    this.properties = properties
    this.bytes = EMPTY
    this.size = 0
    if (bytes !== undefined) this.setBytes(bytes)
    else this.size = payload.length + 3 * topic.length + 16
  }

  /** Installs the encoded packet and finds where the packet id sits (after the topic name). */
  setBytes (bytes: Buffer): void {
    this.bytes = bytes
    this.size = bytes.length
    if (this.qos > 0) {
      let h = 1
      while (((bytes[h++] as number) & 0x80) !== 0);
      this.idOffset = h + 2 + bytes.readUInt16BE(h)
      this.payload = undefined
    }
  }
}

const EMPTY = Buffer.alloc(0)
/** Payloads up to this size take the QoS 0 fast path, encoded in place into the transport's batch. */
const IN_PLACE_MAX = 2048

/** A local subscription: what was asked of the broker and where its messages go. */
export class SubscriptionEntry {
  readonly subscriptions: Subscription[]
  /** Filters used for local matching (`$share/g/f` matches as `f`). */
  readonly matchFilters: string[]
  readonly userProperties: Array<[string, string]> | undefined
  readonly manualAck: boolean
  /** v5 subscription identifier routing inbound messages to this entry. */
  readonly subscriptionIdentifier: number | undefined
  /** Got a successful SUBACK at least once (so a lost session means resubscribe). */
  confirmed = false
  removed = false
  /** Reason codes of the last SUBACK. */
  reasonCodes: number[] = []
  /** The shell's delivery target. */
  sink: unknown

  constructor (subscriptions: Subscription[], manualAck: boolean, subscriptionIdentifier: number | undefined,
    userProperties: Array<[string, string]> | undefined) {
    this.subscriptions = subscriptions
    this.matchFilters = subscriptions.map((s) => parseSharedSubscription(s.topicFilter)?.topicFilter ?? s.topicFilter)
    this.manualAck = manualAck
    this.subscriptionIdentifier = subscriptionIdentifier
    this.userProperties = userProperties
  }
}

/** A SUBSCRIBE or UNSUBSCRIBE waiting for the wire or its ack. */
export class ControlRequest implements Settleable<number[]> {
  state: RState = RState.Queued
  resolve: ((value: number[]) => void) | undefined = undefined
  reject: ((error: unknown) => void) | undefined = undefined
  early: { value: unknown } | { error: unknown } | undefined = undefined
  packetId = 0
  readonly kind: 'subscribe' | 'unsubscribe'
  readonly entry: SubscriptionEntry
  /** An automatic resubscribe: failures go to `resubscribeFailed`. */
  readonly internal: boolean
  readonly topicFilters: string[]
  /** Topic filters in the packet last sent: the SUBACK / UNSUBACK must carry one reason code each. */
  sentFilters = 0

  constructor (kind: 'subscribe' | 'unsubscribe', entry: SubscriptionEntry, internal: boolean, topicFilters: string[]) {
    this.kind = kind
    this.entry = entry
    this.internal = internal
    this.topicFilters = topicFilters
  }
}

/** Limits the broker announced in CONNACK (v5), with 3.1.1 defaults. */
export interface BrokerLimits {
  receiveMaximum: number
  maximumQoS: QoS
  retainAvailable: boolean
  maximumPacketSize: number
  topicAliasMaximum: number
  wildcardSubscriptionAvailable: boolean
  subscriptionIdentifierAvailable: boolean
  sharedSubscriptionAvailable: boolean
}

const DEFAULT_LIMITS: BrokerLimits = {
  receiveMaximum: 65535,
  maximumQoS: 2,
  retainAvailable: true,
  maximumPacketSize: 268_435_460,
  topicAliasMaximum: 0,
  wildcardSubscriptionAvailable: true,
  subscriptionIdentifierAvailable: true,
  sharedSubscriptionAvailable: true
}

/** Counters the session keeps; the shell adds its own. */
export interface SessionCounters {
  publishesSent: number
  publishesAcked: number
  publishesReplayed: number
  messagesReceived: number
  /** Messages no local subscription matched that the app did not take (acked, then dropped). */
  messagesUnrouted: number
  /** Messages refused with a failure ack (v5 0x97) and never delivered: past a limit of ours (User Properties). */
  messagesRefused: number
}

interface InboundQoS2 {
  /** The app acked it: a duplicate PUBLISH is answered with PUBREC at once. */
  acked: boolean
  /** The connection epoch on which it counts against our Receive Maximum (until our PUBCOMP). */
  counted: number
  /** Ack record of a duplicate that arrived on a later connection while the app still held the first. */
  waiter: InboundAck | undefined
}

const PUBREL_FIXED = 0x62
/** PUBACK / PUBREC reason code for a message past a limit of ours (§3.4.2.1). */
const QUOTA_EXCEEDED = 0x97
/**
 * Heap the topic names of inbound topic aliases may hold on one connection, as {@link aliasCost}
 * counts them: 65,535 aliases of 96-character topics fit.
 */
const INBOUND_ALIAS_BYTES = 16 * 1024 * 1024
/** A kept alias's topic name at most (2 bytes a character, beyond Latin-1), with its string header and map entry. */
function aliasCost (topic: string): number {
  return 2 * topic.length + 64
}
/** Topics whose matching subscriptions are remembered; the cache starts over when full. */
const MATCH_CACHE_MAX = 1024
/** Identifiers of ended subscriptions remembered (for copies the broker sent before it knew), at most. */
const RETIRED_IDS_MAX = 1024
const RESOLVED_RESULT: PublishResult = Object.freeze({ reasonCode: 0 })

/** A completed publish's result; the common one (0x00, no properties) is shared, not allocated. */
function publishResult (reasonCode: number, properties: AckProperties | undefined): PublishResult {
  return reasonCode === 0 && properties === undefined ? RESOLVED_RESULT : { reasonCode, properties }
}

/**
 * The client side of an MQTT session, sans I/O: inputs are method calls (a packet arrived, the
 * app asks to publish, subscribe or ack, the connection went up or down), outputs go through
 * {@link SessionOutput}. It owns packet ids, the request queue and its bounds, the inflight
 * window, QoS 1/2 flows in both directions, replay, local subscriptions and topic aliases.
 * It touches no socket and no timer; time comes from the injected `now`.
 */
export class ClientSession implements InboundAckSink {
  readonly protocolVersion: ProtocolVersion
  readonly counters: SessionCounters = { publishesSent: 0, publishesAcked: 0, publishesReplayed: 0, messagesReceived: 0, messagesUnrouted: 0, messagesRefused: 0 }
  limits: BrokerLimits = DEFAULT_LIMITS

  private readonly out: SessionOutput
  private readonly now: () => number
  private readonly v5: boolean
  private readonly window: number
  private readonly maxQueued: number
  private readonly maxQueuedBytes: number
  private readonly policy: QueuePolicy
  private readonly lostPolicy: SessionLostPolicy
  /** Topic aliases the broker may use towards us: what this connection's CONNECT advertised. */
  private inboundAliasMax = 0
  /** Our Receive Maximum, as this connection's CONNECT advertised it (v5; 3.1.1 has none: unbounded). */
  private receiveMaximum = Number.POSITIVE_INFINITY
  /**
   * Inbound QoS 1/2 PUBLISHes of this connection we have not answered with PUBACK / PUBCOMP: what
   * the broker counts against our Receive Maximum [MQTT-3.3.4-9]. Counted from the PUBLISH, not by
   * packet id, for QoS 1: a broker may not resend one on the same connection [MQTT-4.4.0-1].
   */
  private inboundUnanswered = 0
  private readonly resubscribe: boolean
  private readonly bucket: TokenBucket | undefined

  private connected = false
  private writable = false
  private epoch = 0
  private effectiveWindow = 0
  private readonly ids = new PacketIdPool()
  /** Ids of QoS 2 publishes given up unacknowledged: not reused until the broker's session ends. */
  private quarantined: number[] = []

  // Publishes waiting for the wire, oldest first; `blocked` waits for room in `pending`.
  private readonly pending = new Deque<PublishRequest>()
  private readonly blocked = new Deque<PublishRequest>()
  /** Aborted requests still in `blocked` (left there until they reach its head): not counted as blocked. */
  private blockedAborted = 0
  private queued = 0
  private queuedBytes = 0
  /** QoS 1/2 publishes holding a packet id, in send order (Map keeps insertion order). */
  private readonly inflight = new Map<number, PublishRequest>()
  /** Of `inflight`, how many were written on this connection and not completed (the window). */
  private onWire = 0
  /** Of `onWire`, the QoS 2 ones, held to `windowQos2`. */
  private onWireQos2 = 0
  private readonly windowQos2: number
  /** Replay after reconnect with session present: inflight entries still to resend, in order. */
  private resend: PublishRequest[] = []
  private resendIndex = 0

  private readonly control = new Deque<ControlRequest>()
  private readonly controlInflight = new Map<number, ControlRequest>()

  private readonly trie = new TopicTrie<SubscriptionEntry>()
  private readonly bySubscriptionId = new Map<number, SubscriptionEntry>()
  /** Ended subscriptions by identifier, oldest first: the broker may still send copies for them. */
  private readonly retiredIds = new Map<number, SubscriptionEntry>()
  /** Local entries per topic filter as sent; more than one means the broker holds one subscription for them all. */
  private readonly byFilter = new Map<string, SubscriptionEntry[]>()
  private twinFilters = 0
  private readonly entries = new Set<SubscriptionEntry>()
  private nextSubscriptionId = 1
  /**
   * The broker's session predates this client (present on our first CONNACK): its subscriptions
   * carry identifiers a previous process chose, which may equal ours. Inbound identifiers are
   * then checked against the filters they claim to stand for.
   */
  private foreignIdentifiers = false

  private readonly holdMs: number
  /** While `now()` is below it, unmatched messages are held; 0: not holding. */
  private holdUntil = 0
  private held: HeldMessage[] = []
  private heldQoS0 = 0
  /** What the held QoS 0 messages are charged, at most `holdBytes` (one larger is held alone). */
  private heldQoS0Bytes = 0
  /** The buffer the last held QoS 0 payload is a view into: charged once for a run of them. */
  private heldBuffer: ArrayBufferLike | undefined = undefined
  private readonly holdBytes: number
  private rerouting = false
  private rerouteAgain = false
  private readonly unroutedManualAck: boolean
  private readonly maxUserProperties: number
  private readonly maxSubscriptionIdentifiers: number
  private readonly brokerMaximumPacketSize: number
  /** A 3.1.1 broker's limits, which its CONNACK cannot state: the defaults and `brokerMaximumPacketSize`. */
  private readonly assumedLimits: BrokerLimits
  /** The largest PUBLISH the broker acknowledged (PUBACK, PUBREC): a packet it surely reads whole. */
  private largestAccepted = 0
  /** The PUBLISH outstanding on the last links the broker ended (see OVERSIZE_STRIKES), and on how many in a row. */
  private oversizeSuspect: PublishRequest | undefined = undefined
  private oversizeStrikes = 0

  private ackQueue = new Deque<InboundAck>()
  private readonly inboundQoS2 = new Map<number, InboundQoS2>()
  private readonly inboundAliases = new Map<number, string>()
  /** What the topic names in `inboundAliases` hold (see aliasCost), at most INBOUND_ALIAS_BYTES. */
  private inboundAliasBytes = 0
  /** Aliases the broker set past INBOUND_ALIAS_BYTES: their topic names were not kept. */
  private readonly forgottenAliases = new Set<number>()
  private readonly outboundAliases = new Map<string, number>()

  private readonly matchScratch: SubscriptionEntry[] = []
  /** The last topic name that passed validation: a stream of publishes to one topic checks it once. */
  private validTopic: string | undefined = undefined
  /** `validTopic` as UTF-8, made on first use by the QoS 0 fast path. */
  private validTopicBytes: Buffer | undefined = undefined
  /** Topic name -> local subscriptions matching it; cleared whenever a subscription is added or removed. */
  private readonly matchCache = new Map<string, readonly SubscriptionEntry[]>()
  private readonly collect = (entry: SubscriptionEntry): void => {
    if (!entry.removed && !this.matchScratch.includes(entry)) this.matchScratch.push(entry)
  }

  constructor (options: ClientSessionOptions, out: SessionOutput) {
    this.protocolVersion = options.protocolVersion
    this.v5 = options.protocolVersion === 5
    this.out = out
    this.now = options.now
    this.window = options.inflightWindow ?? 100
    // 3.1.1 has no Receive Maximum to learn the broker's limit, and mosquitto (max_inflight_messages,
    // default 20) answers a QoS 2 PUBLISH past it with PUBREC and then discards it: 1,000 fired at
    // once against a stock mosquitto were all acknowledged and 200 delivered. Under 5.0 its
    // Receive Maximum (20) caps the window instead.
    this.windowQos2 = options.inflightWindowQos2 ?? (this.v5 ? 65535 : 20)
    this.maxQueued = options.maxQueuedMessages ?? 1000
    this.maxQueuedBytes = options.maxQueuedBytes ?? 16 * 1024 * 1024
    this.policy = options.queuePolicy ?? 'block'
    this.lostPolicy = options.sessionLostPolicy ?? 'republish'
    this.resubscribe = options.resubscribe ?? true
    this.holdMs = options.unroutedHoldMs ?? 2000
    this.unroutedManualAck = options.unroutedManualAck ?? false
    this.holdBytes = options.unroutedHoldBytes ?? HOLD_QOS0_BYTES
    if (!(this.holdBytes >= 0)) throw clientError(ClientErrorCode.INVALID_ARGUMENT, 'unroutedHoldBytes must be 0 or more')
    this.maxUserProperties = options.maxUserProperties ?? Number.POSITIVE_INFINITY
    this.maxSubscriptionIdentifiers = options.maxSubscriptionIdentifiers ?? Number.POSITIVE_INFINITY
    this.brokerMaximumPacketSize = options.brokerMaximumPacketSize ?? DEFAULT_LIMITS.maximumPacketSize
    if (!(this.brokerMaximumPacketSize >= 2)) throw clientError(ClientErrorCode.INVALID_ARGUMENT, 'brokerMaximumPacketSize must be at least 2 bytes')
    this.limits = this.assumedLimits = { ...DEFAULT_LIMITS, maximumPacketSize: this.brokerMaximumPacketSize }
    this.bucket = options.throttle === undefined ? undefined : new TokenBucket(options.throttle, options.now())
    if (!(this.window >= 1 && this.window <= 65535)) throw clientError(ClientErrorCode.INVALID_ARGUMENT, 'inflightWindow must be 1..65535')
    if (!(this.windowQos2 >= 1 && this.windowQos2 <= 65535)) throw clientError(ClientErrorCode.INVALID_ARGUMENT, 'inflightWindowQos2 must be 1..65535')
  }

  // --- introspection -----------------------------------------------------------------------

  get isConnected (): boolean { return this.connected }
  /** QoS 1/2 publishes not yet completed (holding a packet id). */
  get inflightCount (): number { return this.inflight.size }
  /** Publishes waiting for the wire (within the queue bounds). */
  get queuedCount (): number { return this.queued }
  get queuedByteCount (): number { return this.queuedBytes }
  /** Publishes waiting for room in the queue (`block` policy). */
  get blockedCount (): number { return this.blocked.length - this.blockedAborted }
  /** Nothing queued, blocked or in flight. */
  get idle (): boolean {
    return this.queued === 0 && this.blocked.length === 0 && this.inflight.size === 0 &&
      this.control.length === 0 && this.controlInflight.size === 0
  }

  // --- connection lifecycle ----------------------------------------------------------------

  /**
   * CONNACK accepted the connection opened with `connect`. Session present: replay unacked
   * publishes (DUP=1, PUBREL past PUBREC) windowed, ahead of new ones. Session lost: republish or
   * fail them per policy, and resubscribe.
   */
  connectionUp (connack: ConnackPacket, connect: ConnectPacket): void {
    // What the broker must respect is what the CONNECT carried (a beforeConnect hook may have
    // rewritten it), not the options it was made from [MQTT-3.3.4-9] [MQTT-3.3.2-11].
    const ours = this.v5 ? connect.properties : undefined
    this.receiveMaximum = this.v5 ? ours?.receiveMaximum ?? 65535 : Number.POSITIVE_INFINITY
    this.inboundAliasMax = ours?.topicAliasMaximum ?? 0
    const p = connack.properties
    this.limits = this.v5 && p !== undefined
      ? {
          receiveMaximum: p.receiveMaximum ?? 65535,
          maximumQoS: p.maximumQoS ?? 2,
          retainAvailable: p.retainAvailable ?? true,
          maximumPacketSize: Math.min(p.maximumPacketSize ?? DEFAULT_LIMITS.maximumPacketSize, this.brokerMaximumPacketSize),
          topicAliasMaximum: p.topicAliasMaximum ?? 0,
          wildcardSubscriptionAvailable: p.wildcardSubscriptionAvailable ?? true,
          subscriptionIdentifierAvailable: p.subscriptionIdentifierAvailable ?? true,
          sharedSubscriptionAvailable: p.sharedSubscriptionAvailable ?? true
        }
      : this.assumedLimits
    this.effectiveWindow = Math.min(this.window, this.limits.receiveMaximum)
    this.epoch++
    this.connected = true
    this.writable = true
    this.onWire = 0
    this.onWireQos2 = 0
    this.inboundUnanswered = 0 // the broker's quota starts again with the connection (§4.9)

    if (connack.sessionPresent) {
      // A session the broker kept from before this client: its subscriptions (and their
      // identifiers) are not ours, and it may deliver for them before the app subscribes again.
      // (Later reconnects resume a session whose subscriptions this client made itself.)
      if (this.epoch === 1) {
        this.foreignIdentifiers = true
        if (this.holdMs > 0) this.holdUntil = this.now() + this.holdMs
      }
      // A hold outlives a link lost during it: the broker resends what was held.
      if (this.holdUntil !== 0) this.out.wakeAt(this.holdUntil)
      this.resend = [...this.inflight.values()]
    } else {
      this.foreignIdentifiers = false
      this.holdUntil = 0
      this.resend = []
      // [MQTT-3.2.2-5] a new session knows none of our QoS 2 receipts
      this.inboundQoS2.clear()
      for (const id of this.quarantined) this.ids.release(id)
      this.quarantined = []
      this.sessionLost()
      if (this.resubscribe) {
        const queued = new Set<SubscriptionEntry>()
        for (const req of this.controlInflightAndQueued()) if (req.kind === 'subscribe') queued.add(req.entry)
        for (const entry of this.entries) {
          if (entry.confirmed && !queued.has(entry)) this.control.push(new ControlRequest('subscribe', entry, true, []))
        }
      }
    }
    this.resendIndex = 0
    this.pump()
  }

  private controlInflightAndQueued (): ControlRequest[] {
    const all = [...this.controlInflight.values(), ...this.control.drain()]
    for (const r of all) if (r.state === RState.Queued) this.control.push(r)
    return all
  }

  /** The broker has no record of our unacked publishes: republish them (new ids, DUP=0) or fail them. */
  private sessionLost (): void {
    if (this.inflight.size === 0) return
    const old = [...this.inflight.values()]
    this.inflight.clear()
    const again: PublishRequest[] = []
    // Settled in the order they were sent.
    for (const req of old) {
      this.ids.release(req.packetId)
      req.packetId = 0
      req.sentEpoch = 0
      if (req.released) {
        // Past PUBREC the broker owned the message: it was delivered, completing it is right
        // (and counting it acked: the PUBREC was the broker's answer).
        this.counters.publishesAcked++
        this.settle(req, publishResult(req.recReasonCode, undefined), undefined)
      } else if (this.lostPolicy === 'fail') {
        this.settle(req, undefined, clientError(ClientErrorCode.SESSION_LOST, 'the broker lost the session while the publish was unacknowledged'))
      } else {
        again.push(req)
      }
    }
    // Back at the head of the queue, still in order.
    for (let i = again.length - 1; i >= 0; i--) {
      const req = again[i] as PublishRequest
      req.bytes[0] = (req.bytes[0] as number) & ~0x08
      req.state = RState.Queued
      req.republished = true
      this.queued++
      this.queuedBytes += req.bytes.length
      this.pending.unshift(req)
    }
  }

  /**
   * The transport closed. Unacked publishes keep their packet ids for replay, except one the
   * broker has now dropped OVERSIZE_STRIKES links in a row for (`brokerDropped`: the broker ended
   * the link, not us), which fails with PETREL_ERR_PACKET_TOO_LARGE.
   */
  connectionDown (brokerDropped = false): void {
    if (!this.connected) return
    this.countOversizeStrike(brokerDropped)
    this.connected = false
    this.writable = false
    this.onWire = 0
    this.onWireQos2 = 0
    this.inboundUnanswered = 0
    this.resend = []
    this.resendIndex = 0
    this.inboundAliases.clear()
    this.inboundAliasBytes = 0
    this.forgottenAliases.clear()
    this.outboundAliases.clear()
    // Acks held for the app belong to this connection; the broker will resend those messages.
    // A QoS 2 one the app already acked (waiting behind an earlier one) is answered at once when resent.
    for (const r of this.ackQueue.drain()) {
      if (r.done && r.qos === 2) {
        const s = this.inboundQoS2.get(r.packetId)
        if (s !== undefined) s.acked = true
      }
    }
    this.ackQueue = new Deque<InboundAck>()
    // Waiters of resends were that connection's; the next resend makes a new one.
    for (const q2 of this.inboundQoS2.values()) q2.waiter = undefined
    // Held messages were never delivered: their resends are new messages, QoS 2 included.
    for (const h of this.held) if (h.packet.qos === 2) this.inboundQoS2.delete(h.packet.packetId as number)
    this.held = []
    this.heldQoS0 = 0
    this.heldQoS0Bytes = 0
    this.heldBuffer = undefined
    const sent = [...this.controlInflight.values()]
    this.controlInflight.clear()
    for (let i = sent.length - 1; i >= 0; i--) {
      const req = sent[i] as ControlRequest
      this.ids.release(req.packetId)
      req.packetId = 0
      req.state = RState.Queued
      this.control.unshift(req)
    }
  }

  private countOversizeStrike (brokerDropped: boolean): void {
    let suspect: PublishRequest | undefined
    if (brokerDropped) {
      // The largest PUBLISH of this link not acknowledged: should the broker have dropped the link
      // over one too large, that one is (anything after it unread, any larger one past the limit
      // too), while the acks of smaller ones before it may have been lost with the link (a reset
      // discards what we had not read yet). It must be larger than any the broker ever took.
      for (const req of this.inflight.values()) {
        if (req.sentEpoch === this.epoch && !req.released && req.bytes.length > (suspect?.bytes.length ?? 0)) suspect = req
      }
      if (suspect !== undefined && suspect.bytes.length <= this.largestAccepted) suspect = undefined
    }
    if (suspect === undefined) {
      this.oversizeSuspect = undefined
      this.oversizeStrikes = 0
      return
    }
    this.oversizeStrikes = suspect === this.oversizeSuspect ? this.oversizeStrikes + 1 : 1
    this.oversizeSuspect = suspect
    if (this.oversizeStrikes < OVERSIZE_STRIKES) return
    this.oversizeSuspect = undefined
    this.oversizeStrikes = 0
    this.inflight.delete(suspect.packetId)
    // As for a publish refused on replay: a QoS 2 id stays taken while the session lives.
    if (suspect.qos === 2) this.quarantined.push(suspect.packetId)
    else this.ids.release(suspect.packetId)
    suspect.sentEpoch = 0
    this.settle(suspect, undefined, clientError(ClientErrorCode.PACKET_TOO_LARGE,
      `the broker closed the connection ${OVERSIZE_STRIKES} times in a row with this PUBLISH of ${suspect.bytes.length} bytes (larger than any it acknowledged, ` +
      `${this.largestAccepted} bytes) unacknowledged: taken as over its packet size limit, which ${this.v5 ? 'it did not announce' : 'MQTT 3.1.1 cannot announce'} ` +
      '(set brokerMaximumPacketSize to refuse such a publish before sending it)', { reasonCode: 0x95 }))
  }

  /** The transport can take more bytes again. */
  drained (): void {
    if (!this.connected || this.writable) return
    this.writable = true
    this.pump()
  }

  // --- requests from the app ---------------------------------------------------------------

  /**
   * Validates, encodes once, and sends or queues a publish. Returns null when it completed at once
   * (QoS 0 written), else the request, settled later through its resolve/reject. Throws a
   * PetrelError for invalid arguments, broker limits, or a full queue under `reject`.
   */
  publish (topic: string, payload: Uint8Array, qos: QoS, retain: boolean, properties: PublishProperties | undefined): PublishRequest | null {
    if (qos !== 0 && qos !== 1 && qos !== 2) throw clientError(ClientErrorCode.QOS_NOT_SUPPORTED, `QoS must be 0, 1 or 2, got ${String(qos)}`)
    if (topic !== this.validTopic) {
      const problem = topicNameProblem(topic)
      if (problem !== undefined) throw new PetrelError(WireErrorCode.INVALID_TOPIC_NAME, `invalid topic name ${JSON.stringify(topic)}: ${problem}`, { reasonCode: 0x90 })
      this.validTopic = topic
      this.validTopicBytes = undefined
    }
    if (this.connected) this.checkLimits(qos, retain)
    if (properties?.topicAlias !== undefined) throw clientError(ClientErrorCode.INVALID_ARGUMENT, 'topic aliases are assigned by the client; do not set topicAlias')
    // [MQTT-3.3.4-6] a client's PUBLISH never carries a Subscription Identifier
    if (properties?.subscriptionIdentifiers !== undefined) throw clientError(ClientErrorCode.INVALID_ARGUMENT, 'subscriptionIdentifiers are set by the broker, not in a PUBLISH from a client [MQTT-3.3.4-6]')
    // Past the protocol's limit (a 268 MB packet): too large for any broker, not malformed.
    if (payload.length > MAX_PACKET_SIZE - 9 - 3 * topic.length) throw this.tooLarge(payload.length + topic.length + 4)
    if (!this.v5 && properties !== undefined) properties = undefined
    // The Response Topic is a topic name: no wildcards, not empty (§3.3.2.3.5); a broker ends the
    // connection for one that is not, and would again for every resend.
    const responseTopic = properties?.responseTopic
    if (responseTopic !== undefined) {
      const problem = topicNameProblem(responseTopic)
      if (problem !== undefined) throw new PetrelError(WireErrorCode.INVALID_TOPIC_NAME, `invalid response topic ${JSON.stringify(responseTopic)}: ${problem}`, { reasonCode: 0x90 })
    }
    // A payload declared UTF-8 must be well-formed (§3.3.2.3.2): a broker that checks it ends the connection
    // (0x99), and the resend after reconnecting would be refused the same way, for ever.
    if (properties?.payloadFormatIndicator === true && !isWellFormedUtf8(payload, 0, payload.length)) {
      throw new PetrelError(WireErrorCode.PAYLOAD_FORMAT_INVALID, 'the payload is not well-formed UTF-8 although payloadFormatIndicator is set (§3.3.2.3.2)', { reasonCode: 0x99 })
    }

    // Fast path: QoS 0 with nothing ahead of it goes straight to the wire, with no request object.
    if (qos === 0 && this.connected && this.writable && this.queued === 0 && this.blocked.length === 0 && this.bucket === undefined) {
      const alias = this.outboundAlias(topic)
      if (properties === undefined && payload.length <= IN_PLACE_MAX) {
        this.writeQoS0(payload, retain, alias)
        return null
      }
      let bytes: Buffer
      try {
        bytes = this.encodeQoS0(topic, payload, retain, properties, alias)
      } catch (err) {
        // Never sent: an alias assigned for it must not be taken as known [MQTT-3.3.2-12].
        if (alias < 0) this.outboundAliases.delete(topic)
        throw err
      }
      if (bytes.length > this.limits.maximumPacketSize && alias < 0) {
        // The new alias's property tipped it over the limit: without one it may fit.
        this.outboundAliases.delete(topic)
        bytes = this.encodeQoS0(topic, payload, retain, properties, 0)
      }
      if (bytes.length > this.limits.maximumPacketSize) throw this.tooLarge(bytes.length, topic, alias)
      this.counters.publishesSent++
      if (!this.out.write(bytes)) this.writable = false
      return null
    }

    if (this.policy === 'block' && (this.blocked.length > 0 || !this.hasRoom(payload.length + topic.length))) {
      // Waits for room unencoded; encoded (and size-checked) when admitted.
      const req = new PublishRequest(topic, payload, qos, retain, properties, undefined)
      // Near the broker's limit the estimate is not enough: encode once to check exactly.
      // (Properties beyond the margin are caught on admission by `limitError`.) Properties are
      // checked by encoding them now: a bad one must reject here, not when admitted later. That
      // size is the one it is admitted by: the estimate leaves properties out, and a small payload
      // with 1 MB of them was let into a queue with room for the payload only.
      if (properties !== undefined) req.size = this.encodePublish(topic, payload, qos, retain, properties).length
      if (this.connected && req.size + 1024 > this.limits.maximumPacketSize) {
        const size = this.encodePublish(topic, payload, qos, retain, properties).length
        if (size > this.limits.maximumPacketSize) throw this.tooLarge(size)
      }
      req.state = RState.Blocked
      this.blocked.push(req)
      this.pump()
      return this.handOver(req)
    }
    const bytes = this.encodePublish(topic, payload, qos, retain, properties)
    if (this.connected && bytes.length > this.limits.maximumPacketSize) throw this.tooLarge(bytes.length)
    const req = new PublishRequest(topic, payload, qos, retain, properties, bytes)
    if (this.hasRoom(bytes.length)) {
      this.enqueue(req)
    } else if (this.policy === 'reject') {
      throw clientError(ClientErrorCode.QUEUE_FULL, `request queue full (${this.queued} messages, ${this.queuedBytes} bytes)`)
    } else if (this.policy === 'dropOldest') {
      while (!this.hasRoom(bytes.length) && this.queued > 0) {
        const old = this.pending.shift() as PublishRequest
        if (old.state !== RState.Queued) continue
        this.unqueue(old)
        this.settle(old, undefined, clientError(ClientErrorCode.DROPPED, 'dropped as the oldest request of a full queue (queuePolicy dropOldest)'))
      }
      this.enqueue(req)
    } else {
      req.state = RState.Blocked
      this.blocked.push(req)
    }
    this.pump()
    return this.handOver(req)
  }

  /** Registers a subscription and queues its SUBSCRIBE; the request resolves with the reason codes. */
  subscribe (subscriptions: Subscription[], options: { manualAck?: boolean | undefined, userProperties?: Array<[string, string]> | undefined, sink?: unknown }): { entry: SubscriptionEntry, request: ControlRequest | null } {
    if (subscriptions.length === 0) throw clientError(ClientErrorCode.INVALID_ARGUMENT, 'subscribe needs at least one topic filter')
    for (const s of subscriptions) {
      const problem = topicFilterProblem(s.topicFilter)
      if (problem !== undefined) throw new PetrelError(WireErrorCode.INVALID_TOPIC_FILTER, `invalid topic filter ${JSON.stringify(s.topicFilter)}: ${problem}`, { reasonCode: 0x8f })
      if (s.qos !== 0 && s.qos !== 1 && s.qos !== 2) throw clientError(ClientErrorCode.QOS_NOT_SUPPORTED, `QoS must be 0, 1 or 2, got ${String(s.qos)}`)
      if (s.noLocal === true && s.topicFilter.startsWith('$share/')) {
        throw clientError(ClientErrorCode.INVALID_ARGUMENT, 'noLocal cannot be set on a shared subscription [MQTT-3.8.3-4]')
      }
      if (this.connected) this.checkFilterLimits(s.topicFilter)
    }
    const entry = new SubscriptionEntry(subscriptions, options.manualAck ?? false,
      this.v5 ? this.nextSubscriptionId : undefined, this.v5 ? options.userProperties : undefined)
    const request = new ControlRequest('subscribe', entry, false, [])
    // Encoded once now: what the encoder refuses (a bad user property, retainHandling 3) rejects
    // here, before any state changes, instead of failing on the wire on every connection.
    encode(this.controlPacket(request, 1), this.protocolVersion)
    if (this.v5 && ++this.nextSubscriptionId > 268_435_455) this.nextSubscriptionId = 1
    // Set before held messages can be delivered to it.
    entry.sink = options.sink
    this.addEntry(entry)
    this.control.push(request)
    this.pump()
    return { entry, request: this.handOver(request) }
  }

  /**
   * Stops local delivery to `entry` at once, and sends UNSUBSCRIBE for its filters that no other
   * local subscription uses. Returns null when nothing has to go to the broker.
   */
  unsubscribe (entry: SubscriptionEntry, userProperties?: Array<[string, string]>): ControlRequest | null {
    if (entry.removed) return null
    const before = this.twinFilters > 0 ? entry.subscriptions.map((s) => this.brokerOptions(s)) : undefined
    this.removeEntry(entry)
    const stillUsed = new Set<string>()
    for (const other of this.entries) for (const s of other.subscriptions) stillUsed.add(s.topicFilter)
    if (before !== undefined) {
      // A filter other subscriptions still use keeps one subscription at the broker, with the
      // options the departed one may have raised (QoS): bring them back to what the rest need.
      for (const old of before) {
        const rest = this.byFilter.get(old.topicFilter)
        const keeper = rest?.[rest.length - 1]
        const kept = keeper?.subscriptions.find((x) => x.topicFilter === old.topicFilter)
        if (keeper === undefined || kept === undefined) continue
        const now = this.brokerOptions(kept)
        if (now.qos !== old.qos || now.noLocal !== old.noLocal || now.retainAsPublished !== old.retainAsPublished) {
          this.control.push(new ControlRequest('subscribe', keeper, true, [old.topicFilter]))
        }
      }
      this.pump()
    }
    const filters = entry.subscriptions.map((s) => s.topicFilter).filter((f) => !stillUsed.has(f))
    if (filters.length === 0) return null
    return this.unsubscribeFilters(filters, userProperties)
  }

  /**
   * The options the broker holds for `own`'s filter: one subscription per filter at the broker
   * [MQTT-3.8.4-3] serves every local one to it, so the highest QoS any asks for, no-local only
   * if all ask for it, retain-as-published if any does.
   */
  private brokerOptions (own: Subscription): Subscription {
    const list = this.byFilter.get(own.topicFilter)
    if (list === undefined) return own
    let qos = own.qos
    let noLocal = own.noLocal === true
    let retainAsPublished = own.retainAsPublished === true
    for (const e of list) {
      if (e.removed) continue
      for (const x of e.subscriptions) {
        if (x.topicFilter !== own.topicFilter) continue
        if (x.qos > qos) qos = x.qos
        if (x.noLocal !== true) noLocal = false
        if (x.retainAsPublished === true) retainAsPublished = true
      }
    }
    return { ...own, qos, noLocal, retainAsPublished }
  }

  /**
   * Sends UNSUBSCRIBE for filters no local subscription uses: a subscription the broker's session
   * kept from before this client. Throws PETREL_ERR_INVALID_ARGUMENT for a filter in local use.
   */
  unsubscribeFilters (filters: string[], userProperties?: Array<[string, string]>): ControlRequest {
    if (filters.length === 0) throw clientError(ClientErrorCode.INVALID_ARGUMENT, 'unsubscribe needs at least one topic filter')
    for (const f of filters) {
      const problem = topicFilterProblem(f)
      if (problem !== undefined) throw new PetrelError(WireErrorCode.INVALID_TOPIC_FILTER, `invalid topic filter ${JSON.stringify(f)}: ${problem}`, { reasonCode: 0x8f })
      if (this.byFilter.has(f)) throw clientError(ClientErrorCode.INVALID_ARGUMENT, `a subscription of this client uses ${JSON.stringify(f)}: end it with its own unsubscribe()`)
    }
    const carrier = new SubscriptionEntry([], false, undefined, this.v5 ? userProperties : undefined)
    const request = new ControlRequest('unsubscribe', carrier, false, filters)
    encode(this.controlPacket(request, 1), this.protocolVersion) // refused input rejects now
    this.control.push(request)
    this.pump()
    // Settled by UNSUBACK, after the caller attaches to it; refused at once (over the broker's
    // Maximum Packet Size) it throws here instead.
    return this.handOver(request) ?? request
  }

  /**
   * Removes a request that has not reached the wire and rejects it with `reason`. Returns false
   * when it is already in flight or done (it then completes as usual).
   */
  abort (request: PublishRequest | ControlRequest, reason: unknown): boolean {
    if (request.state === RState.Queued || request.state === RState.Blocked) {
      if (request instanceof PublishRequest) {
        if (request.state === RState.Queued) this.unqueue(request)
        else {
          request.state = RState.Done
          request.payload = undefined // never encoded now: the caller's buffer is not ours to hold
          // Aborted ones leave the waiting list lazily (at its head); one mostly made of them (an
          // abort-and-retry loop through a long outage) is compacted, so it stays bounded by the
          // publishes still waiting.
          if (++this.blockedAborted > 64 && 2 * this.blockedAborted > this.blocked.length) this.compactBlocked()
        }
        this.admitBlocked()
      } else {
        request.state = RState.Done
        if (request.kind === 'subscribe') this.removeEntry(request.entry)
        // Out of the queue now, not when the pump next passes (only once connected): left there,
        // it kept the session from being idle, and a graceful end() waited for a link to send nothing.
        // Few control requests wait at once; the rest keep their order.
        const rest = this.control.drain()
        for (const r of rest) if (r !== request) this.control.push(r)
      }
      this.settle(request, undefined, reason)
      return true
    }
    return false
  }

  /** Rejects everything pending, blocked or in flight (the client is closing). */
  failAll (error: PetrelError): void {
    const all: Array<PublishRequest | ControlRequest> = [...this.blocked.drain(), ...this.pending.drain(), ...this.inflight.values(),
      ...this.control.drain(), ...this.controlInflight.values()]
    this.blockedAborted = 0
    this.inflight.clear()
    this.controlInflight.clear()
    this.ids.clear()
    this.queued = 0
    this.queuedBytes = 0
    this.resend = []
    for (const r of all) if (r.state !== RState.Done) this.settle(r, undefined, error)
  }

  // --- packets from the broker -------------------------------------------------------------

  /** Handles PUBLISH and the ack packets; others are the shell's. */
  handlePacket (packet: Packet): void {
    switch (packet.type) {
      case 'publish': this.onPublish(packet); break
      case 'puback': this.onPublishDone(packet.packetId, 1, packet.reasonCode ?? 0, packet.properties); break
      case 'pubcomp': this.onPublishDone(packet.packetId, 2, packet.reasonCode ?? 0, packet.properties); break
      case 'pubrec': this.onPubrec(packet.packetId, packet.reasonCode ?? 0, packet.properties); break
      case 'pubrel': {
        // [MQTT-4.3.3-11] answer PUBREL with PUBCOMP; from here a new PUBLISH with this id is a new message
        const s = this.inboundQoS2.get(packet.packetId)
        if (s !== undefined && !s.acked) {
          // No PUBREC went out for it (the app holds it, or its ack waits behind an earlier one):
          // a broker may only release what we acknowledged [MQTT-4.3.3-1]. Taken as the end of the
          // flow, the PUBREC still owed would later answer whatever the broker next sends on that id.
          return this.violation(`PUBREL for packet id ${packet.packetId}, whose QoS 2 PUBLISH was not acknowledged with PUBREC [MQTT-4.3.3-1]`, 0x82)
        }
        if (s !== undefined && s.counted === this.epoch) this.inboundUnanswered--
        this.inboundQoS2.delete(packet.packetId)
        // An id we hold no state for (a PUBREL resent after our PUBCOMP was lost with the link, or a
        // broker whose session state is not ours): v5 says so, 0x92 Packet Identifier not found
        // (§3.7.2.1), which is no error during recovery; 3.1.1 has only the plain PUBCOMP.
        this.out.write(s === undefined && this.v5 ? ackWithReason(0x70, packet.packetId, 0x92) : ackBytes(0x70, packet.packetId))
        break
      }
      case 'suback': case 'unsuback': this.onControlAck(packet.packetId, packet.type, packet.reasonCodes); break
      default: break
    }
  }

  private onPublish (p: PublishPacket): void {
    let topic = p.topicName
    const alias = p.properties?.topicAlias
    if (alias !== undefined) {
      // [MQTT-3.3.2-11] an alias above what we allowed: 0x94 Topic Alias invalid (alias 0 is the decoder's)
      if (alias > this.inboundAliasMax) return this.violation(`topic alias ${alias} exceeds our Topic Alias Maximum ${this.inboundAliasMax}`, 0x94)
      if (topic.length > 0) this.mapInboundAlias(alias, topic)
      else {
        const known = this.inboundAliases.get(alias)
        if (known === undefined) {
          if (this.forgottenAliases.has(alias)) return this.aliasQuotaExceeded(alias)
          // §3.3.2.3.4: an empty topic name needs a mapping made on this connection; without one, Protocol Error
          return this.violation(`empty topic name with topic alias ${alias}, which was never mapped on this connection (§3.3.2.3.4)`, 0x82)
        }
        topic = known
      }
    }
    const qos = p.qos
    if (qos === 2) {
      const id = p.packetId as number
      const seen = this.inboundQoS2.get(id)
      // [MQTT-3.3.4-9] it counts until our PUBCOMP; a resend on the same connection is the same flow
      if (seen?.counted !== this.epoch) {
        if (this.inboundUnanswered >= this.receiveMaximum) return this.receiveMaximumExceeded()
        this.inboundUnanswered++
      }
      if (seen !== undefined) {
        seen.counted = this.epoch
        // A resend of a message already delivered [MQTT-4.3.3-10]: never deliver twice.
        if (seen.acked) this.out.write(ackBytes(0x50, id))
        else if (seen.waiter === undefined) {
          seen.waiter = { packetId: id, qos: 2, pending: 1, done: false, epoch: this.epoch }
          this.ackQueue.push(seen.waiter)
        }
        return
      }
      this.inboundQoS2.set(id, { acked: false, counted: this.epoch, waiter: undefined })
    } else if (qos === 1) {
      // [MQTT-3.3.4-9] it counts until our PUBACK
      if (this.inboundUnanswered >= this.receiveMaximum) return this.receiveMaximumExceeded()
      this.inboundUnanswered++
    }
    this.counters.messagesReceived++
    if (p.userPropertiesExceeded === true || p.subscriptionIdentifiersExceeded === true) return this.refuse(topic, p)

    const targets = this.matchScratch
    targets.length = 0
    const sids = p.properties?.subscriptionIdentifiers
    if (sids !== undefined) {
      let retired: SubscriptionEntry[] | undefined
      for (const sid of sids) {
        const e = this.bySubscriptionId.get(sid)
        if (e !== undefined) {
          if (!e.removed && !targets.includes(e) && (!this.foreignIdentifiers || entryMatches(e, topic))) targets.push(e)
          continue
        }
        const r = this.retiredIds.get(sid)
        if (r !== undefined && (!this.foreignIdentifiers || entryMatches(r, topic))) (retired ??= []).push(r)
      }
      // Two local subscriptions to the same filter are one subscription at the broker, carrying the
      // identifier of the last SUBSCRIBE [MQTT-3.8.4-3]: the other entries of that filter get it too.
      if (this.twinFilters > 0 && targets.length > 0) this.addTwins(targets, topic, p.retain)
      if (targets.length === 0 && retired !== undefined) {
        // A copy for a subscription of ours that has ended (sent before the broker knew): it is
        // the copy of the twins that still use its filter, or of nobody. Not matched locally: the
        // other subscriptions it matches get copies of their own, with their own identifiers.
        this.addRetiredTwins(retired, topic, p.retain)
        if (targets.length === 0) {
          this.onUnmatched(topic, p)
          return
        }
      }
    }
    let list: readonly SubscriptionEntry[] = targets
    if (targets.length === 0) {
      // Streams repeat topics: remember the trie's answer per topic until a subscription changes.
      const cached = this.matchCache.get(topic)
      if (cached !== undefined) list = cached
      else {
        this.trie.forEachMatch(topic, this.collect)
        if (this.matchCache.size >= MATCH_CACHE_MAX) this.matchCache.clear()
        this.matchCache.set(topic, targets.slice())
      }
    }

    const n = list.length
    if (n === 0) {
      this.onUnmatched(topic, p)
      return
    }
    let record: InboundAck | undefined
    // QoS 1 with no ack held ahead of it and no manual-ack target (the common stream): the PUBACK
    // can go out right after delivery, in arrival order, with no ack record to allocate and queue.
    const directAck = qos === 1 && this.ackQueue.length === 0 && n === 1 && !(list[0] as SubscriptionEntry).manualAck
    const epoch = this.epoch
    if (qos > 0 && !directAck) {
      record = { packetId: p.packetId as number, qos: qos as 1 | 2, pending: n + 1, done: false, epoch }
      this.ackQueue.push(record)
    }
    if (n === 1) {
      const e = list[0] as SubscriptionEntry
      targets.length = 0
      this.deliverTo(e, topic, p, record)
    } else if (n > 1) {
      // A handler may subscribe or unsubscribe: iterate a list nobody mutates (cached lists are replaced, never changed).
      const copy = list === targets ? targets.slice() : list
      targets.length = 0
      for (const e of copy) this.deliverTo(e, topic, p, record)
    }
    // The session's own reference: released now, so an unmatched message is acked at once.
    if (record !== undefined) this.ackInbound(record)
    // A handler may have ended the connection: its acks are never sent on a later one.
    else if (directAck && this.connected && epoch === this.epoch) {
      this.out.write(ackBytes(0x40, p.packetId as number))
      this.inboundUnanswered--
    }
  }

  /**
   * A PUBLISH the decoder marked: more User Properties than we accept (maxUserProperties), or more
   * Subscription Identifiers (maxSubscriptionIdentifiers), so none were kept and it cannot be
   * delivered as sent (without its identifiers it could not even be routed to the subscriptions it
   * was for). Closing the connection (what the decoder does by default) would have a broker send a
   * QoS 1/2 one again on the next connection, for ever; so it is refused alone: PUBACK / PUBREC
   * 0x97 Quota exceeded ("an implementation or administrative imposed limit has been exceeded",
   * §3.4.2.1), in arrival order with the other acks [MQTT-4.6.0-2]. A failure PUBREC ends a QoS 2
   * flow: no PUBREL follows, and a later PUBLISH with that packet id is a new message
   * [MQTT-4.3.3-9]. QoS 0 is just dropped. Only MQTT 5 has either, so only a v5 PUBLISH is ever
   * marked.
   */
  private refuse (topic: string, p: PublishPacket): void {
    const qos = p.qos
    this.counters.messagesRefused++
    if (qos > 0) {
      const packetId = p.packetId as number
      if (qos === 2) this.inboundQoS2.delete(packetId)
      const record: InboundAck = { packetId, qos: qos as 1 | 2, pending: 1, done: false, epoch: this.epoch, reasonCode: QUOTA_EXCEEDED }
      this.ackQueue.push(record)
      this.ackInbound(record)
    }
    this.out.messageRefused?.(clientError(ClientErrorCode.MESSAGE_REFUSED,
      `a QoS ${qos} message to ${JSON.stringify(topic)} was refused${qos > 0 ? ' (0x97 Quota exceeded)' : ''}: it carries ${p.userPropertiesExceeded === true
        ? `more than ${count(this.maxUserProperties)} User Properties (maxUserProperties)`
        : `more than ${count(this.maxSubscriptionIdentifiers)} Subscription Identifiers`}`, { reasonCode: QUOTA_EXCEEDED }))
  }

  /**
   * A message no local subscription matches: the app's `unrouted` listener, else held for a
   * subscription still to come (after a session-present CONNACK), else acked and dropped.
   */
  private onUnmatched (topic: string, p: PublishPacket): void {
    const qos = p.qos
    // Acked through the queue, so that it keeps its place in the arrival order [MQTT-4.6.0-2].
    const record: InboundAck | undefined = qos === 0 ? undefined : { packetId: p.packetId as number, qos, pending: 1, done: false, epoch: this.epoch }
    if (record !== undefined) this.ackQueue.push(record)
    const h: HeldMessage = { topic, packet: p, record, charge: 0 }
    if (this.holdUntil !== 0 && this.now() >= this.holdUntil) this.endHold()
    // Messages held before the app listened go to it first, in arrival order.
    if (this.held.length > 0) this.offerHeld()
    if (this.held.length === 0 && this.offerUnrouted(h)) return
    if (this.holdUntil !== 0) {
      if (qos === 0) {
        // Count alone let 1,000 large messages (256 MiB each at most) wait in the heap: bytes
        // bound them too, charged as a subscription's queue charges them (a payload pinning a
        // much larger read is charged that read, once for a run of them).
        const payload = p.payload as Buffer
        h.charge = messageBytes({ topic, payload, properties: p.properties })
        if (payload.buffer !== this.heldBuffer && pins(payload)) h.charge += payload.buffer.byteLength
        this.heldBuffer = payload.buffer
      }
      this.held.push(h)
      if (qos === 0) this.countHeld(h)
      // Past either bound the oldest QoS 0 one goes as at the end of the hold (one larger than
      // the byte bound is held alone).
      while (this.heldQoS0 > HOLD_QOS0_MAX || (this.heldQoS0Bytes > this.holdBytes && this.heldQoS0 > 1)) {
        const i = this.held.findIndex((x) => x.packet.qos === 0)
        this.releaseHeld(this.unhold(i))
      }
      return
    }
    this.counters.messagesUnrouted++
    if (record !== undefined) this.ackInbound(record)
  }

  /**
   * Gives the app's `unrouted` listener a message; false when there is none. Under
   * `unroutedManualAck` the message holds a share of the ack until its `ack()`.
   */
  private offerUnrouted (h: HeldMessage): boolean {
    const p = h.packet
    const record = this.unroutedManualAck ? h.record : undefined
    if (record !== undefined) record.pending++
    const taken = this.out.unrouted(new Message(h.topic, p.payload as Buffer, p.qos, p.retain, p.dup, p.packetId ?? 0, p.properties, record, record === undefined ? undefined : this))
    if (record !== undefined && !taken) record.pending--
    // The session's own share: released now; an auto-acked message is acked once the listener returned.
    if (taken && h.record !== undefined) this.ackInbound(h.record)
    return taken
  }

  /**
   * Held messages go to the app's `unrouted` listener, oldest first, while it takes them (call
   * when the app starts listening).
   */
  offerHeld (): void {
    while (this.held.length > 0 && this.offerOldest()) { /* next */ }
  }

  /** Offers the oldest held message to the `unrouted` listener; true when taken. */
  private offerOldest (): boolean {
    // Out of the list before the app sees it: a listener that drops the link must not make
    // connectionDown forget a QoS 2 message it already has.
    const h = this.unhold(0)
    if (this.offerUnrouted(h)) return true
    this.held.unshift(h)
    if (h.packet.qos === 0) this.countHeld(h)
    return false
  }

  private countHeld (h: HeldMessage): void {
    this.heldQoS0++
    this.heldQoS0Bytes += h.charge
  }

  private unhold (i: number): HeldMessage {
    const h = this.held.splice(i, 1)[0] as HeldMessage
    if (h.packet.qos === 0) {
      this.heldQoS0--
      this.heldQoS0Bytes -= h.charge
      if (this.heldQoS0 === 0) this.heldBuffer = undefined
    }
    return h
  }

  /**
   * Call after `subscribe()` once the shell can take deliveries for the new subscription: held
   * messages it matches go to it, in arrival order. Should the app listen for unrouted messages
   * by now, the others go there (in the same order) instead of waiting for the hold to end. A
   * handler that subscribes during the pass gets another pass.
   */
  deliverHeld (): void {
    if (this.held.length === 0) return
    if (this.rerouting) {
      this.rerouteAgain = true
      return
    }
    this.rerouting = true
    try {
      do {
        this.rerouteAgain = false
        const targets = this.matchScratch
        for (let i = 0; i < this.held.length;) {
          const h = this.held[i] as HeldMessage
          targets.length = 0
          this.trie.forEachMatch(h.topic, this.collect)
          if (targets.length === 0) {
            // Only from the oldest on: a message the listener takes never overtakes one held before it.
            if (i === 0 && this.offerOldest()) continue
            i++
            continue
          }
          const list = targets.slice()
          targets.length = 0
          this.unhold(i)
          if (h.record !== undefined) h.record.pending += list.length
          for (const e of list) this.deliverTo(e, h.topic, h.packet, h.record)
          if (h.record !== undefined) this.ackInbound(h.record)
        }
      } while (this.rerouteAgain)
    } finally {
      this.rerouting = false
    }
  }

  /** The hold is over: what is still held goes to the app's `unrouted` listener or is dropped. */
  private endHold (): void {
    this.holdUntil = 0
    // One at a time: a listener that subscribes meanwhile gets the rest through deliverHeld.
    while (this.held.length > 0) this.releaseHeld(this.unhold(0))
  }

  private releaseHeld (h: HeldMessage): void {
    if (this.offerUnrouted(h)) return
    this.counters.messagesUnrouted++
    if (h.record !== undefined) this.ackInbound(h.record)
  }

  /** The time asked for through `wakeAt` has come (a timer may fire a little early: ask again then). */
  wake (): void {
    if (this.holdUntil !== 0) {
      if (this.now() >= this.holdUntil) this.endHold()
      else this.out.wakeAt(this.holdUntil)
    }
    this.pump()
  }

  private deliverTo (entry: SubscriptionEntry, topic: string, p: PublishPacket, record: InboundAck | undefined): void {
    const msg = new Message(topic, p.payload as Buffer, p.qos, p.retain, p.dup, p.packetId ?? 0, p.properties, record, this)
    this.out.deliver(msg, entry)
    if (!entry.manualAck) msg.ack()
  }

  /** One subscription is done with an inbound message; flush acks that are now due, in arrival order [MQTT-4.6.0-2]. */
  ackInbound (record: InboundAck): void {
    if (--record.pending > 0) return
    record.done = true
    if (record.epoch !== this.epoch || !this.connected) {
      // Its connection is gone; the broker resends it. For QoS 2, answer that resend with PUBREC.
      if (record.qos === 2) {
        const s = this.inboundQoS2.get(record.packetId)
        if (s !== undefined) {
          s.acked = true
          if (s.waiter !== undefined) {
            const w = s.waiter
            s.waiter = undefined
            this.ackInbound(w)
          }
        }
      }
      return
    }
    const q = this.ackQueue
    for (let head = q.peek(); head !== undefined && head.done; head = q.peek()) {
      q.shift()
      if (head.qos === 2) {
        const s = this.inboundQoS2.get(head.packetId)
        if (s !== undefined) {
          s.acked = true
          // A resend that came while the app held the message (DUP on this connection) is
          // answered too, in its own place in the order: it must not hold later acks forever.
          const w = s.waiter
          if (w !== undefined && w !== head) {
            s.waiter = undefined
            w.pending = 0
            w.done = true
          }
        }
      }
      const b1 = head.qos === 1 ? 0x40 : 0x50
      if (head.reasonCode === undefined) this.out.write(ackBytes(b1, head.packetId))
      else this.out.write(ackWithReason(b1, head.packetId, head.reasonCode))
      // PUBREC is not the end of a QoS 2 flow (PUBCOMP is), unless it refuses the message
      if (head.qos === 1 || head.reasonCode !== undefined) this.inboundUnanswered--
    }
  }

  private onPublishDone (id: number, qos: 1 | 2, reasonCode: number, properties: AckProperties | undefined): void {
    const req = this.inflight.get(id)
    if (req === undefined) return // an id not in flight: nothing of ours to settle
    // An ack that does not fit the flow of the publish in flight under that id (PUBACK for QoS 2,
    // PUBCOMP for QoS 1 or before PUBREC) ends nothing [MQTT-4.3.2-1] [MQTT-4.3.3-1]. Ignored, the
    // publish would wait for ever on a broker that thinks it done; as a Protocol Error the link is
    // closed, and the publish is replayed on the next one (DUP), where it can complete.
    if (req.qos !== qos || (qos === 2 && !req.released)) {
      return this.violation(`${qos === 1 ? 'PUBACK' : 'PUBCOMP'} for packet id ${id}, whose QoS ${req.qos} PUBLISH is ${req.released ? 'past PUBREC' : 'waiting for its first ack'} [MQTT-4.3.2-1] [MQTT-4.3.3-1]`, 0x82)
    }
    if (qos === 2) {
      // The PUBREC said whether the broker took the message (0x00, or 0x10 No matching
      // subscribers); PUBCOMP only ends the flow. Its one other code, 0x92 (Packet Identifier not
      // found, §3.7.2.1), answers a PUBREL the broker had already completed: the one resent after
      // a reconnect, whose first PUBCOMP was lost with the link. Delivered either way.
      reasonCode = req.recReasonCode
    }
    this.complete(req, reasonCode, properties)
  }

  private onPubrec (id: number, reasonCode: number, properties: AckProperties | undefined): void {
    const req = this.inflight.get(id)
    if (req === undefined) {
      // Not ours any more (PUBREL 0x92 Packet Identifier not found, §3.6.2.1): release it so the
      // broker can let go of its state
      if (reasonCode < 0x80) this.out.write(pubrelBytes(id, this.v5 ? 0x92 : 0))
      return
    }
    // PUBREC for a QoS 1 publish: a PUBREL would not end its flow (a PUBACK does), and waiting
    // would wait for ever; as for a PUBACK of the wrong kind, close and replay.
    if (req.qos !== 2) return this.violation(`PUBREC for packet id ${id}, whose PUBLISH is QoS 1 [MQTT-4.3.2-1]`, 0x82)
    if (reasonCode >= 0x80) return this.complete(req, reasonCode, properties)
    this.accepted(req)
    req.released = true
    req.recReasonCode = reasonCode
    this.out.write(pubrelBytes(id, 0))
  }

  private complete (req: PublishRequest, reasonCode: number, properties: AckProperties | undefined): void {
    if (!req.released) this.accepted(req)
    this.inflight.delete(req.packetId)
    this.ids.release(req.packetId)
    if (req.sentEpoch === this.epoch && this.onWire > 0) {
      this.onWire--
      if (req.qos === 2 && this.onWireQos2 > 0) this.onWireQos2--
    }
    this.counters.publishesAcked++
    if (reasonCode >= 0x80) {
      this.settle(req, undefined, clientError(ClientErrorCode.PUBLISH_FAILED,
        `the broker refused the publish to ${JSON.stringify(req.topic)} with reason code ${refusalCode(reasonCode, req.qos === 1 ? 'puback' : 'pubrec', this.v5)}${properties?.reasonString === undefined ? '' : `: ${properties.reasonString}`}`, { reasonCode }))
    } else {
      this.settle(req, publishResult(reasonCode, properties), undefined)
    }
    this.pump()
  }

  /** The broker answered the PUBLISH of `req`: it read the whole packet. */
  private accepted (req: PublishRequest): void {
    if (req.bytes.length > this.largestAccepted) this.largestAccepted = req.bytes.length
    if (req === this.oversizeSuspect) {
      this.oversizeSuspect = undefined
      this.oversizeStrikes = 0
    }
  }

  /** `codes` undefined: a 3.1.1 UNSUBACK, which has none. */
  private onControlAck (id: number, type: 'suback' | 'unsuback', codes: number[] | undefined): void {
    const req = this.controlInflight.get(id)
    if (req === undefined || (req.kind === 'subscribe') !== (type === 'suback')) return
    // [MQTT-3.9.3-1] [MQTT-3.11.3-1] one reason code per topic filter, in order: with more or fewer
    // they cannot be matched to the filters. The request stays in flight, so connectionDown queues
    // it again and it is resent on the next connection, neither resolved with wrong codes nor failed.
    if (codes !== undefined && codes.length !== req.sentFilters) {
      return this.violation(`${type.toUpperCase()} with ${codes.length} reason codes for ${req.sentFilters} topic filters`, 0x82)
    }
    const reasonCodes = codes ?? []
    this.controlInflight.delete(id)
    this.ids.release(id)
    req.state = RState.Done
    if (req.kind === 'unsubscribe') {
      const failed = reasonCodes.find((rc) => rc >= 0x80)
      if (failed !== undefined) {
        this.settle(req, undefined, clientError(ClientErrorCode.UNSUBSCRIBE_FAILED, `the broker refused to unsubscribe with reason code ${refusalCode(failed, 'unsuback', this.v5)}`, { reasonCode: failed }))
      } else this.settle(req, reasonCodes, undefined)
      this.pump()
      return
    }
    const entry = req.entry
    if (req.topicFilters.length === 0) entry.reasonCodes = reasonCodes // not for a refresh of some filters
    const failed = reasonCodes.find((rc) => rc >= 0x80)
    if (failed !== undefined && reasonCodes.every((rc) => rc >= 0x80)) {
      const err = clientError(ClientErrorCode.SUBSCRIBE_FAILED,
        `the broker refused the subscription to ${entry.subscriptions.map((s) => JSON.stringify(s.topicFilter)).join(', ')} with reason code ${refusalCode(failed, 'suback', this.v5)}`, { reasonCode: failed })
      this.removeEntry(entry)
      if (req.internal) this.out.resubscribeFailed(entry, err)
      else this.settle(req, undefined, err)
    } else {
      if (!entry.removed) entry.confirmed = true
      if (!req.internal) this.settle(req, reasonCodes, undefined)
    }
    this.pump()
  }

  /**
   * Keeps the broker's mapping of `alias` to `topic` (§3.3.2.3.4), within INBOUND_ALIAS_BYTES: a
   * topic name may be 65,535 bytes, and a broker may map every alias up to our Topic Alias
   * Maximum (65,535) to one, 4 GB held for the connection. A broker that gives aliases to the
   * topics it forwards first come, first served (Petrel's does) lets any publisher choose those
   * names. Past the bound the message is still delivered (it carries its topic name), but the
   * name is not kept: only if the broker later uses that alias does the link end
   * (see {@link aliasQuotaExceeded}).
   */
  private mapInboundAlias (alias: number, topic: string): void {
    const old = this.inboundAliases.get(alias)
    if (old === topic) return
    if (old !== undefined) this.inboundAliasBytes -= aliasCost(old)
    const cost = aliasCost(topic)
    if (this.inboundAliasBytes + cost > INBOUND_ALIAS_BYTES) {
      // Its old name is no longer the broker's either.
      if (old !== undefined) this.inboundAliases.delete(alias)
      this.forgottenAliases.add(alias)
      return
    }
    this.inboundAliases.set(alias, topic)
    this.inboundAliasBytes += cost
    if (this.forgottenAliases.size > 0) this.forgottenAliases.delete(alias)
  }

  /**
   * The broker used an alias whose topic name we did not keep (past INBOUND_ALIAS_BYTES): the
   * message cannot be delivered, and dropping it silently is no answer for QoS 1/2. The link is
   * closed with 0x97 Quota exceeded (a limit of ours, not the broker's error); the next
   * connection starts with no aliases.
   */
  private aliasQuotaExceeded (alias: number): void {
    this.out.protocolViolation(clientError(ClientErrorCode.QUOTA_EXCEEDED,
      `topic alias ${alias} was used, but its topic name was not kept: the topic names mapped to inbound topic aliases passed ${count(INBOUND_ALIAS_BYTES)} bytes`, { reasonCode: QUOTA_EXCEEDED }))
  }

  private receiveMaximumExceeded (): void {
    this.violation(`more than our Receive Maximum of ${this.receiveMaximum} QoS 1/2 PUBLISH packets without PUBACK / PUBCOMP [MQTT-3.3.4-9]`, 0x93)
  }

  /** The broker broke the protocol: the shell closes the link with `reasonCode` (v5 DISCONNECT). */
  private violation (message: string, reasonCode: number): void {
    this.out.protocolViolation(clientError(ClientErrorCode.PROTOCOL_ERROR, message, { reasonCode }))
  }

  // --- the pump ----------------------------------------------------------------------------

  /**
   * Writes what may go now: control packets (not subject to the publish window), then replays,
   * then new publishes, while the transport accepts bytes, the window has room and the throttle
   * allows. Replays and new traffic share the same window, so neither waits for the other to end.
   */
  pump (): void {
    if (!this.connected) return
    while (this.control.length > 0) {
      const req = this.control.peek() as ControlRequest
      if (req.state !== RState.Queued) { this.control.shift(); continue }
      // A SUBSCRIBE made before this CONNACK (or a resubscribe) meets its limits here, before the
      // wire: the broker would end the connection for it (Protocol Error 0xA2 / 0x9E, §3.2.2.3).
      const refused = req.kind === 'subscribe' && !req.entry.removed ? this.filterLimitError(req.entry) : undefined
      if (refused !== undefined) {
        this.control.shift()
        req.state = RState.Done
        this.removeEntry(req.entry)
        if (req.internal) this.out.resubscribeFailed(req.entry, refused)
        else this.settle(req, undefined, refused)
        continue
      }
      const id = this.ids.allocate()
      if (id === undefined) break
      this.control.shift()
      if (req.kind === 'subscribe' && req.entry.removed) { this.ids.release(id); req.state = RState.Done; this.settle(req, [], undefined); continue }
      let bytes: Buffer
      try {
        const packet = this.controlPacket(req, id)
        req.sentFilters = packet.type === 'subscribe' ? packet.subscriptions.length : packet.topicFilters.length
        bytes = encode(packet, this.protocolVersion)
        // [MQTT-3.2.2-15] never past the broker's Maximum Packet Size: it would end the link, and
        // the request, queued again, would end every later one.
        if (bytes.length > this.limits.maximumPacketSize) {
          throw clientError(ClientErrorCode.PACKET_TOO_LARGE, `a${packet.type === 'subscribe' ? ' SUBSCRIBE' : 'n UNSUBSCRIBE'} of ${bytes.length} bytes exceeds the broker's Maximum Packet Size of ${this.limits.maximumPacketSize}`, { reasonCode: 0x95 })
        }
      } catch (err) {
        // Checked when made; should the encoder still refuse it (or the broker's Maximum Packet
        // Size, lower on this link), it fails alone (left queued, it would fail again on every connection).
        this.ids.release(id)
        req.state = RState.Done
        if (req.kind === 'subscribe') this.removeEntry(req.entry)
        if (req.internal) this.out.resubscribeFailed(req.entry, err as PetrelError)
        else this.settle(req, undefined, err)
        continue
      }
      req.packetId = id
      req.state = RState.Inflight
      this.controlInflight.set(id, req)
      this.out.write(bytes)
    }
    while (this.writable) {
      if (this.resendIndex < this.resend.length) {
        if (this.onWire >= this.effectiveWindow) break
        const req = this.resend[this.resendIndex] as PublishRequest
        if (req.state !== RState.Inflight) { this.resendIndex++; continue }
        if (req.qos === 2 && this.onWireQos2 >= this.windowQos2) break
        const refused = req.released ? undefined : this.limitError(req)
        if (refused !== undefined) {
          // The broker's limits are lower than on the link it was sent on (Maximum Packet Size
          // [MQTT-3.2.2-15], Maximum QoS [MQTT-3.2.2-11], Retain Available [MQTT-3.2.2-14]):
          // resent, it would end this link and every later one. It fails alone (never acked).
          this.resendIndex++
          this.inflight.delete(req.packetId)
          // A QoS 2 id stays taken while the session lives: the broker may hold it as received
          // (its PUBREC lost), and would take a new PUBLISH with it for a duplicate.
          if (req.qos === 2) this.quarantined.push(req.packetId)
          else this.ids.release(req.packetId)
          this.settle(req, undefined, refused)
          continue
        }
        if (!req.released && this.throttled(req.bytes.length)) break
        this.resendIndex++
        req.sentEpoch = this.epoch
        this.onWire++
        if (req.qos === 2) this.onWireQos2++
        this.counters.publishesReplayed++
        if (req.released) {
          this.out.write(pubrelBytes(req.packetId, 0))
        } else {
          req.bytes[0] = (req.bytes[0] as number) | 0x08 // DUP on resend [MQTT-3.3.1-1]
          if (!this.out.write(req.bytes)) this.writable = false
        }
        continue
      }
      const req = this.pending.peek()
      if (req === undefined) break
      if (req.state !== RState.Queued) { this.pending.shift(); continue }
      if (req.qos > 0) {
        // A free place is refilled at once, not after waiting for more acks: the transport already
        // sends all that one event-loop turn wrote in one write, so the acks of one read refill in
        // one syscall. Waiting longer (for a quarter of the window, at most 1 ms) cost a timer
        // wait per window: a broker with Nagle on (mosquitto's default) sends the first ack of a
        // burst and holds the rest until our next segment, so nearly every window waited, and
        // petrel pub -l -q 1 against mosquitto (Receive Maximum 20) ran ~5x slower than mosquitto_pub.
        if (this.onWire >= this.effectiveWindow) break
        if (req.qos === 2 && this.onWireQos2 >= this.windowQos2) break
      }
      const limitError = this.limitError(req)
      if (limitError !== undefined) {
        this.pending.shift()
        this.unqueue(req)
        this.settle(req, undefined, limitError)
        continue
      }
      // The throttle first (on the size without an alias): an alias assigned for a PUBLISH that
      // then waits would be taken as known by the next one, sent without its topic name.
      if (this.throttled(req.bytes.length)) break
      let bytes = req.bytes
      // The alias is added here, as the publish leaves the queue: the queue (admission, and
      // queuedBytes until unqueue below) only ever counts `req.bytes`, encoded without one, so the
      // 3 bytes of a new alias never take it past maxQueuedBytes.
      if (req.qos === 0 && this.limits.topicAliasMaximum > 0) {
        const alias = this.outboundAlias(req.topic)
        if (alias !== 0) {
          bytes = this.encodeQoS0(req.topic, req.payload as Uint8Array, req.retain, req.properties, alias)
          // A new alias adds a property: never past the broker's Maximum Packet Size [MQTT-3.2.2-15].
          if (bytes.length > this.limits.maximumPacketSize && alias < 0) {
            this.outboundAliases.delete(req.topic)
            bytes = req.bytes
          }
        }
      }
      let id = 0
      if (req.qos > 0) {
        const got = this.ids.allocate()
        if (got === undefined) break
        id = got
      }
      this.pending.shift()
      this.unqueue(req)
      // A republish after a lost session sends a message the app published once already.
      if (req.republished) this.counters.publishesReplayed++
      else this.counters.publishesSent++
      if (req.qos === 0) {
        if (!this.out.write(bytes)) this.writable = false
        this.settle(req, RESOLVED_RESULT, undefined)
      } else {
        req.packetId = id
        bytes[req.idOffset] = id >> 8
        bytes[req.idOffset + 1] = id & 0xff
        req.state = RState.Inflight
        req.sentEpoch = this.epoch
        this.inflight.set(id, req)
        this.onWire++
        if (req.qos === 2) this.onWireQos2++
        if (!this.out.write(bytes)) this.writable = false
      }
    }
  }

  private throttled (size: number): boolean {
    if (this.bucket === undefined) return false
    const now = this.now()
    const wait = this.bucket.take(size, now)
    if (wait === 0) return false
    this.out.wakeAt(now + wait)
    return true
  }

  private controlPacket (req: ControlRequest, packetId: number): SubscribePacket | UnsubscribePacket {
    if (req.kind === 'unsubscribe') {
      const up = req.entry.userProperties
      return { type: 'unsubscribe', packetId, topicFilters: req.topicFilters, properties: up === undefined ? undefined : { userProperties: up } }
    }
    const e = req.entry
    const sid = this.limits.subscriptionIdentifierAvailable ? e.subscriptionIdentifier : undefined
    const properties = sid === undefined && e.userProperties === undefined ? undefined : { subscriptionIdentifier: sid, userProperties: e.userProperties }
    let subscriptions = e.subscriptions
    if (req.topicFilters.length > 0) {
      // A refresh of some filters' options (a twin left): no retained messages again (v5).
      subscriptions = subscriptions.filter((x) => req.topicFilters.includes(x.topicFilter)).map((x) => ({ ...this.brokerOptions(x), retainHandling: 2 }))
    } else if (this.twinFilters > 0) {
      subscriptions = subscriptions.map((x) => this.brokerOptions(x))
    }
    return { type: 'subscribe', packetId, subscriptions, properties }
  }

  // --- helpers -----------------------------------------------------------------------------

  /**
   * The outbound Topic Alias of a QoS 0 publish to `topic` (QoS 0 only: an alias dies with the
   * connection, a QoS 1/2 resend needs the topic name): 0 none, > 0 an alias the broker knows
   * (sent without the topic name), < 0 the negated alias assigned now (sent with the name).
   */
  private outboundAlias (topic: string): number {
    const max = this.limits.topicAliasMaximum
    if (max === 0) return 0
    const known = this.outboundAliases.get(topic)
    if (known !== undefined) return known
    if (this.outboundAliases.size >= max || topic.length <= 2) return 0
    const alias = this.outboundAliases.size + 1
    this.outboundAliases.set(topic, alias)
    return -alias
  }

  /**
   * The QoS 0 fast path for `validTopic` without properties: encoded in place into the
   * transport's batch (`reserve`/`commit`), no packet object, no Buffer per publish.
   */
  private writeQoS0 (payload: Uint8Array, retain: boolean, alias: number): void {
    const topic = this.validTopic as string
    const topicBytes = alias > 0 ? EMPTY : this.validTopicBytes ??= Buffer.from(topic)
    let size = publishQoS0Size(topicBytes.length, payload.length, this.v5, Math.abs(alias))
    if (size > this.limits.maximumPacketSize && alias < 0) {
      // The new alias's property tipped it over the limit: without one it may fit.
      this.outboundAliases.delete(topic)
      alias = 0
      size = publishQoS0Size(topicBytes.length, payload.length, this.v5, 0)
    }
    if (size > this.limits.maximumPacketSize) throw this.tooLarge(size, topic, alias)
    const out = this.out
    if (size > IN_PLACE_MAX + 1024) {
      // A long topic name: too big to write in place.
      const bytes = Buffer.allocUnsafe(size)
      writePublishQoS0(bytes, 0, topicBytes, payload, retain, this.v5, Math.abs(alias))
      this.counters.publishesSent++
      if (!out.write(bytes)) this.writable = false
      return
    }
    const at = out.reserve(size) // before `out.buffer`: reserving may start a new one
    writePublishQoS0(out.buffer, at, topicBytes, payload, retain, this.v5, Math.abs(alias))
    this.counters.publishesSent++
    if (!out.commit(size)) this.writable = false
  }

  /** A QoS 0 PUBLISH with `alias` from {@link outboundAlias}. */
  private encodeQoS0 (topic: string, payload: Uint8Array, retain: boolean, properties: PublishProperties | undefined, alias: number): Buffer {
    if (alias === 0) return encode({ type: 'publish', topicName: topic, payload, qos: 0, retain, dup: false, properties }, this.protocolVersion)
    return encode({
      type: 'publish', topicName: alias > 0 ? '' : topic, payload, qos: 0, retain, dup: false, properties: { ...properties, topicAlias: Math.abs(alias) }
    }, 5)
  }

  private encodePublish (topic: string, payload: Uint8Array, qos: QoS, retain: boolean, properties: PublishProperties | undefined): Buffer {
    return encode({ type: 'publish', topicName: topic, payload, qos, retain, dup: false, packetId: qos === 0 ? undefined : 1, properties }, this.protocolVersion)
  }

  private checkLimits (qos: QoS, retain: boolean): void {
    if (qos > this.limits.maximumQoS) {
      throw clientError(ClientErrorCode.QOS_NOT_SUPPORTED, `the broker's Maximum QoS is ${this.limits.maximumQoS}, publish asked for ${qos}`, { reasonCode: 0x9b })
    }
    if (retain && !this.limits.retainAvailable) throw clientError(ClientErrorCode.RETAIN_NOT_SUPPORTED, 'the broker does not support retained messages', { reasonCode: 0x9a })
  }

  private limitError (req: PublishRequest): PetrelError | undefined {
    try {
      this.checkLimits(req.qos, req.retain)
    } catch (err) {
      return err as PetrelError
    }
    if (req.bytes.length > this.limits.maximumPacketSize) return this.tooLarge(req.bytes.length)
    return undefined
  }

  private filterLimitError (entry: SubscriptionEntry): PetrelError | undefined {
    try {
      for (const s of entry.subscriptions) this.checkFilterLimits(s.topicFilter)
    } catch (err) {
      return err as PetrelError
    }
    return undefined
  }

  private checkFilterLimits (filter: string): void {
    if (filter.startsWith('$share/')) {
      if (!this.limits.sharedSubscriptionAvailable) throw clientError(ClientErrorCode.SHARED_NOT_SUPPORTED, 'the broker does not support shared subscriptions', { reasonCode: 0x9e })
    }
    if ((filter.includes('+') || filter.includes('#')) && !this.limits.wildcardSubscriptionAvailable) {
      throw clientError(ClientErrorCode.WILDCARD_NOT_SUPPORTED, 'the broker does not support wildcard subscriptions', { reasonCode: 0xa2 })
    }
  }

  /** The error for a PUBLISH over the broker's limit; a Topic Alias assigned for it (`alias` < 0) was never sent and is freed. */
  private tooLarge (size: number, topic?: string, alias = 0): PetrelError {
    if (alias < 0 && topic !== undefined) this.outboundAliases.delete(topic)
    return clientError(ClientErrorCode.PACKET_TOO_LARGE, `a PUBLISH of ${size} bytes exceeds the broker's Maximum Packet Size of ${this.limits.maximumPacketSize}`, { reasonCode: 0x95 })
  }

  private hasRoom (size: number): boolean {
    if (this.queued === 0) return true // one message larger than the byte bound still goes
    return this.queued < this.maxQueued && this.queuedBytes + size <= this.maxQueuedBytes
  }

  private enqueue (req: PublishRequest): void {
    req.state = RState.Queued
    this.queued++
    this.queuedBytes += req.bytes.length
    this.pending.push(req)
  }

  private unqueue (req: PublishRequest): void {
    req.state = RState.Done
    this.queued--
    this.queuedBytes -= req.bytes.length
    this.admitBlocked()
  }

  private compactBlocked (): void {
    for (const r of this.blocked.drain()) if (r.state === RState.Blocked) this.blocked.push(r)
    this.blockedAborted = 0
  }

  private admitBlocked (): void {
    while (this.blocked.length > 0) {
      const next = this.blocked.peek() as PublishRequest
      if (next.state !== RState.Blocked) {
        this.blocked.shift()
        this.blockedAborted--
        continue
      }
      if (!this.hasRoom(next.size)) return
      this.blocked.shift()
      let bytes: Buffer
      try {
        bytes = this.encodePublish(next.topic, next.payload as Uint8Array, next.qos, next.retain, next.properties)
      } catch (err) {
        // Validated when made; should the encoder still refuse it, it is rejected, not thrown into I/O.
        next.state = RState.Done
        this.settle(next, undefined, err)
        continue
      }
      next.setBytes(bytes)
      this.enqueue(next)
    }
  }

  /**
   * `retained`: the message has RETAIN set. Unless the subscription asked for Retain As Published,
   * the broker clears RETAIN on what it forwards [MQTT-3.3.1-12], so a retained one was sent
   * because of that SUBSCRIBE and is the subscribing entry's alone (a twin that chose
   * retainHandling 2, or had its own retained copy, must not get it).
   */
  private addTwins (targets: SubscriptionEntry[], topic: string, retained: boolean): void {
    const n = targets.length
    for (let i = 0; i < n; i++) {
      const e = targets[i] as SubscriptionEntry
      for (let j = 0; j < e.subscriptions.length; j++) {
        const sub = e.subscriptions[j] as Subscription
        if (retained && sub.retainAsPublished !== true) continue
        const twins = this.byFilter.get(sub.topicFilter)
        if (twins === undefined || twins.length < 2 || !topicMatches(e.matchFilters[j] as string, topic)) continue
        for (const t of twins) if (!t.removed && !targets.includes(t)) targets.push(t)
      }
    }
  }

  /** Live entries sharing a filter of an ended one (`retired`) that matches `topic`; see {@link addTwins}. */
  private addRetiredTwins (retired: SubscriptionEntry[], topic: string, retained: boolean): void {
    const targets = this.matchScratch
    for (const e of retired) {
      for (let j = 0; j < e.subscriptions.length; j++) {
        const sub = e.subscriptions[j] as Subscription
        if (retained && sub.retainAsPublished !== true) continue
        const twins = this.byFilter.get(sub.topicFilter)
        if (twins === undefined || !topicMatches(e.matchFilters[j] as string, topic)) continue
        for (const t of twins) if (!t.removed && !targets.includes(t)) targets.push(t)
      }
    }
  }

  private addEntry (entry: SubscriptionEntry): void {
    this.matchCache.clear()
    for (const s of entry.subscriptions) {
      const list = this.byFilter.get(s.topicFilter)
      if (list === undefined) this.byFilter.set(s.topicFilter, [entry])
      else {
        list.push(entry)
        if (list.length === 2) this.twinFilters++
      }
    }
    this.entries.add(entry)
    for (const f of entry.matchFilters) this.trie.add(f, entry)
    if (entry.subscriptionIdentifier !== undefined) {
      this.bySubscriptionId.set(entry.subscriptionIdentifier, entry)
      this.retiredIds.delete(entry.subscriptionIdentifier)
    }
  }

  private removeEntry (entry: SubscriptionEntry): void {
    if (entry.removed) return
    entry.removed = true
    this.matchCache.clear()
    for (const s of entry.subscriptions) {
      const list = this.byFilter.get(s.topicFilter)
      if (list === undefined) continue
      const i = list.indexOf(entry)
      if (i >= 0) list.splice(i, 1)
      if (list.length === 1) this.twinFilters--
      if (list.length === 0) this.byFilter.delete(s.topicFilter)
    }
    this.entries.delete(entry)
    for (const f of entry.matchFilters) this.trie.remove(f, entry)
    const sid = entry.subscriptionIdentifier
    if (sid !== undefined && this.bySubscriptionId.get(sid) === entry) {
      this.bySubscriptionId.delete(sid)
      this.retiredIds.set(sid, entry)
      if (this.retiredIds.size > RETIRED_IDS_MAX) this.retiredIds.delete(this.retiredIds.keys().next().value as number)
    }
  }

  private handOver<T extends Settleable<never>>(req: T): T | null {
    const early = req.early
    if (early === undefined) return req
    if ('error' in early) throw early.error
    return null
  }

  private settle (req: Settleable<never>, value: unknown, error: unknown): void {
    req.state = RState.Done
    if (req.resolve === undefined) {
      req.early = error === undefined ? { value } : { error }
      return
    }
    if (error === undefined) req.resolve(value as never)
    else (req.reject as (e: unknown) => void)(error)
  }
}

/** PUBACK (0x40) / PUBREC (0x50) / PUBCOMP (0x70) with reason Success: 4 bytes, valid in 3.1.1 and 5.0 [MQTT-3.4.2.1]. */
function ackBytes (b1: number, id: number): Buffer {
  const b = Buffer.allocUnsafe(4)
  b[0] = b1
  b[1] = 2
  b[2] = id >> 8
  b[3] = id & 0xff
  return b
}

function pubrelBytes (id: number, reasonCode: number): Buffer {
  return reasonCode === 0 ? ackBytes(PUBREL_FIXED, id) : ackWithReason(PUBREL_FIXED, id, reasonCode)
}

/** A v5 PUBACK / PUBREC / PUBREL / PUBCOMP (`b1`) with a reason code and no properties: 5 bytes. */
function ackWithReason (b1: number, id: number, reasonCode: number): Buffer {
  const b = Buffer.allocUnsafe(5)
  b[0] = b1
  b[1] = 3
  b[2] = id >> 8
  b[3] = id & 0xff
  b[4] = reasonCode
  return b
}

/** A limit as the messages print it: 65,535. */
function count (n: number): string {
  return n.toLocaleString('en-US')
}

/** Whether one of the entry's filters matches `topic`. */
function entryMatches (entry: SubscriptionEntry, topic: string): boolean {
  for (const f of entry.matchFilters) if (topicMatches(f, topic)) return true
  return false
}

/**
 * A refusal's code as a person reads it, `0x87 (Not authorized)`, as mosquitto_pub prints the
 * name. 3.1.1 has one failure code, SUBACK's 0x80, which its spec calls Failure.
 */
function refusalCode (code: number, packet: 'puback' | 'pubrec' | 'suback' | 'unsuback', v5: boolean): string {
  return `0x${code.toString(16)} (${v5 ? reasonCodeName(code, packet) : 'Failure'})`
}
