import type { ConnectPacket, ConnectProperties, ProtocolVersion, PublishProperties, QoS, WillProperties } from '@petrel/wire'
import type { BackoffOptions } from './backoff.js'
import type { QueuePolicy, SessionLostPolicy } from './client-session.js'
import type { ThrottleOptions } from './token-bucket.js'
import type { ReadModerationOptions } from './read-moderation.js'
import type { TlsOptions, TransportFactory } from './transport.js'
import type { PacketTrace } from './connection.js'
import type { ClientOptions as WsClientOptions } from 'ws'
import type { Duplex } from 'node:stream'
import type { PetrelError } from '@petrel/wire'
import type { OverflowPolicy } from './subscription.js'

/** The will message the broker publishes if the connection ends without DISCONNECT. */
export interface WillOptions {
  topic: string
  payload?: string | Uint8Array
  /** Default 0. */
  qos?: QoS
  /** Default false. */
  retain?: boolean
  /** MQTT 5: willDelayInterval, messageExpiryInterval, contentType, responseTopic, ... */
  properties?: WillProperties
}

/** An AUTH challenge from the broker during MQTT 5 enhanced authentication. */
export interface AuthChallenge {
  /** 0x18 Continue authentication (or 0x19 when re-authentication starts from our side). */
  reasonCode: number
  authenticationMethod: string
  authenticationData: Buffer | undefined
}

/** Where a connection attempt goes. */
export interface ConnectAttempt {
  /** 1 for the first attempt after a success (or ever). */
  attempt: number
  url: URL | undefined
}

/** Options of `connect()` / `createClient()`. Every one has a default. */
export interface ClientOptions {
  /** Default: `petrel-` and 12 random hex digits. Under MQTT 5 an empty id lets the broker assign one. */
  clientId?: string
  /** 4 = MQTT 3.1.1, 5 = MQTT 5.0 (3 = 3.1). Default 5. */
  protocolVersion?: ProtocolVersion
  /**
   * Start with a clean session (Clean Start / Clean Session). Default true. With false, the
   * session survives disconnects: under 3.1.1 until the broker expires it, under 5.0 for
   * `sessionExpiryInterval` (default 300 s then).
   */
  clean?: boolean
  /** MQTT 5 Session Expiry Interval in seconds. Default: 0 when `clean`, else 300. */
  sessionExpiryInterval?: number
  /**
   * Keepalive in seconds (0: off). Default 60. A v5 Server Keep Alive overrides it, 0 included
   * [MQTT-3.2.2-21]: a broker that sends 0 turns our PINGREQs off, and a link that dies without
   * a FIN or RST is then noticed only when a write fails.
   */
  keepalive?: number
  /** Wait for PINGRESP before the link counts as dead. Default min(10 s, keepalive / 2). */
  pingTimeoutMs?: number
  username?: string
  password?: string | Uint8Array
  /**
   * With no `beforeConnect` to rewrite the CONNECT, options no CONNECT can carry (a will payload,
   * will topic, client id, user name, password or User Property over 65,535 bytes, a will topic
   * with a wildcard...) throw PETREL_ERR_INVALID_ARGUMENT from `createClient()` (`connect()` rejects
   * with it) before anything is dialled.
   */
  will?: WillOptions
  /**
   * Extra MQTT 5 CONNECT properties (receiveMaximum, userProperties, authenticationMethod...). The
   * Receive Maximum (default 65,535) is enforced: a broker with more QoS 1/2 messages outstanding
   * than that (manual acks not yet given count) is disconnected with 0x93.
   */
  properties?: ConnectProperties
  /**
   * MQTT 5: topic aliases the broker may use towards us (inbound, opt-in). Default 0. The topic
   * names it maps are kept for the connection, at most 16 MiB of them (a name may be 64 KiB, and
   * a broker may alias each topic it forwards, as Petrel's does); past that a message is still
   * delivered but its name not kept, and should the broker use that alias the link is closed with
   * 0x97 (PETREL_ERR_QUOTA_EXCEEDED) and the client reconnects.
   */
  topicAliasMaximum?: number
  /**
   * Largest inbound packet accepted; a bigger one closes the link (v5: DISCONNECT 0x95). MQTT 5
   * tells the broker, in the CONNECT's Maximum Packet Size (`properties.maximumPacketSize` does the
   * same). Default 256 MiB. Over WebSocket it also bounds a message (twice this plus 64 KiB: a
   * message may hold several packets); ws refuses a bigger one from its frame header (close 1009,
   * PETREL_ERR_PACKET_TOO_LARGE) instead of buffering it (ws's own default is 100 MiB).
   */
  maximumPacketSize?: number
  /**
   * MQTT 5: User Property pairs accepted in one inbound packet; past it none is kept. A PUBLISH
   * with more is refused alone (PUBACK / PUBREC 0x97, counted in `messagesRefused`, an `error` event
   * with PETREL_ERR_MESSAGE_REFUSED), since a broker would send a QoS 1/2 one again on every
   * reconnect; any other packet with more closes the link (DISCONNECT 0x95,
   * PETREL_ERR_PACKET_TOO_LARGE). A pair costs 5 bytes on
   * the wire but some 75 bytes of heap, so without a bound a broker could make one packet cost 15
   * times `maximumPacketSize` (4 GB for 256 MiB), and each queued message as much. Brokers and
   * clouds allow 10 to 100 (EMQX on CONNECT, Alibaba IoT: 20). Default 1,024; `Infinity`: no limit.
   */
  maxUserProperties?: number
  /**
   * The broker's limit on the packets it takes, for a broker that cannot announce it: MQTT 3.1.1
   * has no Maximum Packet Size in CONNACK, and a 3.1.1 broker closes the link on a larger packet
   * without a word (mosquitto's `max_packet_size`). Set to that limit, a larger PUBLISH, SUBSCRIBE
   * or UNSUBSCRIBE rejects with PETREL_ERR_PACKET_TOO_LARGE, nothing sent, as under 5.0 with the
   * CONNACK's limit (under 5.0 the smaller of the two applies). Without it, a QoS 1/2 PUBLISH the
   * broker ends 3 links in a row over (the largest unacknowledged when each ended, larger than
   * any the broker acknowledged) rejects with PETREL_ERR_PACKET_TOO_LARGE after the third, instead
   * of being replayed on every reconnect for ever ahead of all that follows it. Default: none.
   */
  brokerMaximumPacketSize?: number
  /**
   * Dial (TCP connect, TLS handshake, WebSocket upgrade) + CONNECT/CONNACK; past it the attempt
   * fails with PETREL_ERR_CONNECT_TIMEOUT, whose message names the step. Default 10,000 ms.
   */
  connectTimeoutMs?: number
  /**
   * Reconnect after a lost connection: true (default), false, or a callback deciding per attempt.
   * Not asked after a refusal the same CONNECT would get again (0x95 Packet too large, 0x9A Retain
   * not supported...; see ERRORS.md) without a `beforeConnect` to change it: the client closes.
   * A callback that throws stops the client as false does, the `close` event and pending requests
   * saying why (PETREL_ERR_HANDLER_FAILED, what it threw as `cause`).
   */
  reconnect?: boolean | ((attempt: number, error: PetrelError) => boolean)
  /** Reconnect delays. Default 1 s -> 30 s, x2, +/-20%. */
  backoff?: BackoffOptions
  /** `connect()` keeps retrying (with backoff) when the first attempt fails, instead of rejecting. Default false. */
  retryInitialConnect?: boolean
  /** More broker URLs, tried in turn after the first. */
  servers?: string[]
  /** QoS 1/2 publishes in flight at once (under v5 also capped by the broker's Receive Maximum). Default 100. */
  inflightWindow?: number
  /**
   * Of those, QoS 2 publishes in flight at once. Default: 20 under MQTT 3.1.1 / 3.1, where the
   * broker cannot tell us its limit and mosquitto (max_inflight_messages, default 20) acknowledges
   * a QoS 2 PUBLISH past it and then discards it; no further limit under 5.0 (Receive Maximum).
   */
  inflightWindowQos2?: number
  /** Publishes waiting for the wire. Default 1,000. */
  maxQueuedMessages?: number
  /** Bytes waiting for the wire. Default 16 MiB. */
  maxQueuedBytes?: number
  /** When the queue is full: `block` (publish waits, default), `reject` (PETREL_ERR_QUEUE_FULL) or `dropOldest` (the oldest rejects with PETREL_ERR_DROPPED). */
  queuePolicy?: QueuePolicy
  /** Unacked publishes when the broker lost the session: `republish` (default) or `fail` (PETREL_ERR_SESSION_LOST). */
  sessionLostPolicy?: SessionLostPolicy
  /** Resubscribe after reconnecting to a broker that lost the session. Default true. */
  resubscribe?: boolean
  /**
   * After a CONNACK with Session Present (`clean: false`), the broker may deliver messages for
   * the subscriptions it kept before the app has subscribed again: messages no subscription
   * matches are held this long (QoS 1/2 unacknowledged, so the broker keeps them; at most
   * 1,000 QoS 0, and `unroutedHoldBytes` of them) and go to the
   * subscriptions made that match them; then to the `unrouted` event, or dropped. Acks of
   * later messages wait behind a held one (in order, [MQTT-4.6.0-2]). Only on the first
   * connection: later ones resume a session whose subscriptions this client made. Default
   * 2,000 ms; 0: off.
   */
  unroutedHoldMs?: number
  /**
   * Bytes of QoS 0 messages the hold (`unroutedHoldMs`) keeps, counted as a subscription's
   * `queueBytes` counts them; past it, or past 1,000 of them, the oldest goes as at the end of the
   * hold (the `unrouted` event, or counted in `messagesUnrouted`); one larger is held alone.
   * Default 16 MiB: the count alone let 1,000 large messages wait in the heap.
   */
  unroutedHoldBytes?: number
  /**
   * Messages of the `unrouted` event are acknowledged by `msg.ack()` instead of when the
   * listeners return (as `manualAck` does for a subscription). Default false.
   */
  unroutedManualAck?: boolean
  /** Rate limit over all outgoing PUBLISH, replays included. Default off. */
  throttle?: ThrottleOptions
  /**
   * For `mqtts://` and `wss://`. A key or certificate that cannot make a TLS context (not PEM, a
   * key not matching its certificate, a wrong passphrase) throws PETREL_ERR_TLS_CONFIG from
   * `createClient()` (`connect()` rejects with it) before anything is dialled: no retry could pass it.
   */
  tls?: TlsOptions
  /**
   * Plain TCP (`mqtt://`): read interrupt moderation. While a stream keeps the socket busy with
   * small back-to-back reads, reading pauses for about 1 ms at a time so each read takes many
   * packets: far fewer syscalls per message, at the cost of up to ~1 ms latency while that busy.
   * Quiet or big-chunk streams are never delayed. Default on; `false` reads eagerly (latency
   * measurement); an object tunes it.
   */
  readModeration?: ReadModerationOptions | false
  /** Options for the `ws` WebSocket (headers...). */
  ws?: WsClientOptions
  /** The local address to connect from (a multi-homed host picking its interface). Default: the OS's choice. */
  localAddress?: string
  /**
   * A stream, or a factory opening one per attempt, instead of dialing the URL. A stream carries
   * one connection: when it ends, for whatever reason (`disconnect()` and `reconnect()` included),
   * the client closes (`close` event, pending requests rejected with PETREL_ERR_CLIENT_CLOSED).
   * Give a factory to reconnect: it gets a signal that aborts at the connect timeout (or on
   * `end()`, `reconnect()`...), and the attempt ends then even if the factory ignores it.
   * The client closes a stream with `end()` after its DISCONNECT, and `destroy()` 1 s later (at
   * once for a link it gives up on): the stream must then let go of what it holds (its socket,
   * timers), which only it can. `end()` resolves within its bounds whatever the stream does, and
   * the client leaves nothing running after it, but a stream that ignores `destroy()` keeps its
   * own socket open, and the process with it.
   */
  transport?: Duplex | TransportFactory
  /**
   * Per attempt: may rewrite the CONNECT packet (rotating a JWT password, ...). The packet it
   * returns is what the connection holds to: the Receive Maximum, Topic Alias Maximum and Maximum
   * Packet Size enforced on the broker, and the Authentication Method of AUTH exchanges and
   * `reauthenticate()`, are the ones it carries.
   */
  beforeConnect?: (packet: ConnectPacket, attempt: ConnectAttempt) => ConnectPacket | Promise<ConnectPacket>
  /**
   * Sees every packet, decoded, as it is read (`in`) or written (`out`): for debugging (it
   * decodes what is sent a second time). Must not throw.
   */
  trace?: PacketTrace
  /** MQTT 5 enhanced authentication: answers each AUTH challenge with authentication data. */
  auth?: (challenge: AuthChallenge) => Uint8Array | undefined | Promise<Uint8Array | undefined>
}

/** Options of `client.publish()`. */
export interface PublishOptions {
  /** Default 0. */
  qos?: QoS
  /** Default false. */
  retain?: boolean
  /** MQTT 5 properties (messageExpiryInterval, responseTopic, correlationData, userProperties, contentType...). */
  properties?: PublishProperties
  /**
   * Aborting before the PUBLISH reached the wire (queued, blocked, or behind a full inflight
   * window) removes it and rejects with the abort reason. Once written it cannot be taken back:
   * the abort is ignored and the promise settles on the broker's answer, as without a signal.
   */
  signal?: AbortSignal
}

/** Options of `client.subscribe()`. */
export interface SubscribeOptions {
  /** Maximum QoS. Default 0. */
  qos?: QoS
  /** MQTT 5: do not receive our own publishes. */
  noLocal?: boolean
  /** MQTT 5: keep the RETAIN flag as published. */
  retainAsPublished?: boolean
  /** MQTT 5: 0 send retained (default), 1 only for a new subscription, 2 never. */
  retainHandling?: 0 | 1 | 2
  /** MQTT 5 user properties of the SUBSCRIBE. */
  userProperties?: Array<[string, string]>
  /**
   * Hold PUBACK/PUBREC until `msg.ack()`. Default false (acked on arrival). Acks go out in arrival
   * order [MQTT-4.6.0-2]: until it is acked, a message holds back the acks of every later QoS 1/2
   * message of the client, other subscriptions' included, and so, at the broker's in-flight
   * limit, their delivery.
   */
  manualAck?: boolean
  /** Messages the iterator queue holds. Default 10,000. */
  queueSize?: number
  /**
   * Bytes the iterator queue holds (payload, topic, and properties as they cost in the heap once
   * decoded: a User Property pair 72 bytes more than its strings, the properties object 64; a
   * payload that is a view into a much larger socket read or WebSocket message counts that
   * buffer, once for the messages queued from it in a row). Default 64 MiB; one message bigger
   * than this is still queued alone. Past it, `overflow` drops as for `queueSize`: the count
   * alone let a broker sending large messages to a slow reader fill 10,000 x its packet size
   * (2.6 GB at 256 KiB each).
   */
  queueBytes?: number
  /** When the queue is full. Default `dropOldest`. */
  overflow?: OverflowPolicy
  signal?: AbortSignal
}
