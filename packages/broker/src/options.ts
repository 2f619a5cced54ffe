import type { Logger } from 'pino'
import type { ProtocolVersion, QoS, Subscription } from '@petrel/wire'
import type { AclRule } from './acl.js'

/**
 * Who is asking: handed to `authorizePublish` and `authorizeSubscribe` as `client`. A read-only
 * view of the connection, made once for it: the same object on every call for one connection
 * (a hook may key a WeakMap by it), whose fields read the connection's current values (the user
 * name an authenticate hook set, say). Nothing in it can be changed, and nothing else of the
 * broker is reachable from it.
 */
export interface ClientInfo {
  readonly clientId: string
  /** The user name the session runs as (the CONNECT's, or the one a hook or the certificate set). */
  readonly username: string | undefined
  readonly protocolVersion: ProtocolVersion
  /** Remote address of the connection, when the transport has one. */
  readonly remoteAddress: string | undefined
  /** Common Name of a verified TLS client certificate, as in AuthenticateRequest. */
  readonly certificateIdentity: string | undefined
  /**
   * Aborts when this client's connection goes away (its socket closed, taken over by a new
   * connection for its client id, evicted, the broker closing): a slow hook can stop its work
   * (`fetch(url, { signal })`). Its answer is ignored from then on, whatever it is.
   */
  readonly signal: AbortSignal
}

export interface AuthenticateRequest {
  readonly clientId: string
  readonly username: string | undefined
  readonly password: Buffer | undefined
  readonly protocolVersion: ProtocolVersion
  readonly remoteAddress: string | undefined
  /**
   * Common Name of a verified TLS client certificate, when the listener asked for one
   * (`requireClientCertificate` or `useIdentityAsUsername`; under the latter it is `username` too).
   */
  readonly certificateIdentity: string | undefined
  /**
   * Aborts when the connection goes away (its socket closed, taken over by a new
   * connection for its client id, evicted, the broker closing): a slow hook can stop its work
   * (`fetch(url, { signal })`). Its answer is ignored from then on, whatever it is.
   */
  readonly signal: AbortSignal
}

/**
 * Result of `authenticate`: true/false, or an object carrying the MQTT 5 CONNACK reason code to
 * refuse with (0x86 bad user name or password, 0x87 not authorized, 0x8A banned...) and/or the
 * user name the session runs as (for ACL `%u`).
 */
export type AuthenticateResult = boolean | { ok: boolean, reasonCode?: number, username?: string }

export interface EnhancedAuthRequest {
  readonly clientId: string
  /**
   * The user name the connection claims, which ACL `%u` rules and session ownership go by: the
   * CONNECT's (or the certificate's under `use_identity_as_username`); on re-authentication, the
   * one the session runs as. Unverified unless the hook checks it (or replaces it, see
   * EnhancedAuthResult.username).
   */
  readonly username: string | undefined
  readonly method: string
  readonly data: Buffer | undefined
  /** 0 on CONNECT, then 1, 2, ... for each AUTH the client sends. */
  readonly step: number
  readonly remoteAddress: string | undefined
  /** Common Name of a verified TLS client certificate, as in AuthenticateRequest. */
  readonly certificateIdentity: string | undefined
  /** Aborts when the connection goes away, as in AuthenticateRequest. */
  readonly signal: AbortSignal
}
/**
 * Result of one step of MQTT 5 enhanced authentication (§4.12): `reasonCode` 0x00 success,
 * 0x18 continue (send `data` back in an AUTH packet), or a failure code for CONNACK/DISCONNECT
 * (one the packet cannot carry is sent as CONNACK 0x80, or DISCONNECT 0x87 on re-authentication).
 * With 0x00 ending a CONNECT's exchange, `username` sets the user name the session runs as (for
 * ACL `%u`), as AuthenticateResult's does; it is ignored on re-authentication.
 */
export interface EnhancedAuthResult { reasonCode: number, data?: Buffer, username?: string }

export interface PublishRequest {
  readonly topicName: string
  readonly qos: QoS
  readonly retain: boolean
  readonly payload: Uint8Array
}

/**
 * Policy hooks, each sync or async. While an async one is pending its client's input waits
 * (in order), for at most `limits.hookTimeoutMs`; then the request fails (see there). Should
 * the client go away meanwhile (having sent nothing more), its connection is released at once
 * and the `signal` the hook was given (`client.signal`, `request.signal`) aborts; the hook's
 * answer is then ignored. A hook
 * that throws, whose promise rejects, or that answers something its type does not allow
 * (undefined, a number...), fails its request the same way (a warning is logged,
 * `stats.hookErrors` counts it): the connection goes on where a timeout lets it.
 */
export interface BrokerHooks {
  /** Decides whether a CONNECT may proceed. Default: password file if configured, else anonymous per `allowAnonymous`. */
  authenticate?: ((request: AuthenticateRequest) => AuthenticateResult | Promise<AuthenticateResult>) | undefined
  /** MQTT 5 enhanced authentication (AUTH packets). Without it a CONNECT carrying an Authentication Method gets 0x8C. */
  authenticateEnhanced?: ((request: EnhancedAuthRequest) => EnhancedAuthResult | Promise<EnhancedAuthResult>) | undefined
  /**
   * Whether `client` may publish. Also asked for its will, at CONNECT (a refused will is
   * discarded, the connection goes on). Default: the ACL rules, or allow all when there are none.
   */
  authorizePublish?: ((client: ClientInfo, publish: PublishRequest) => boolean | Promise<boolean>) | undefined
  /** Whether `client` may subscribe (filter as sent, `$share/...` included). Default: ACL rules, or allow. */
  authorizeSubscribe?: ((client: ClientInfo, subscription: Subscription) => boolean | Promise<boolean>) | undefined
}

export interface BrokerLimits {
  /**
   * Open connections at once, counted from accept (CONNECT sent or not). Past it a new socket
   * first takes the place of the oldest one still without CONNACK, else is closed at once. Default 10,000.
   */
  maxConnections: number
  /** Largest packet accepted from a client, and announced as Maximum Packet Size (5.0). Default 1 MiB. */
  maxPacketSize: number
  /**
   * Largest CONNECT (or AUTH) accepted, will included: what a client can make the broker buffer
   * before it is authenticated. Capped at `maxPacketSize`. Default 64 KiB.
   */
  maxConnectPacketSize: number
  /**
   * User Property pairs accepted in one packet (5.0). A pair is 5 bytes on the wire but ~75 bytes
   * decoded, so a 1 MiB packet of them held ~15 MB of heap. One more in a PUBLISH: that message is
   * refused (PUBACK/PUBREC 0x97, QoS 0 dropped), the connection stays; in any other packet:
   * DISCONNECT 0x95. Default 1,024.
   */
  maxUserProperties: number
  /** QoS 1/2 messages in flight to one subscriber (also capped by its Receive Maximum). Default 100. */
  maxInflightMessages: number
  /**
   * Bytes of QoS 1/2 messages in flight to one subscriber (`Message.size`, as the queue counts);
   * past it the next waits in the queue until acks free room. One message always goes, however
   * large. 0: no bound (mosquitto's default). Default 16 MiB.
   */
  maxInflightBytes: number
  /** Messages queued for one session (offline or slow). Default 1,000. */
  maxQueuedMessages: number
  /** Bytes queued for one session (`Message.size`: payload, topic, properties' heap cost). Default 4 MiB. */
  maxQueuedBytes: number
  /** Receive Maximum announced to 5.0 clients: QoS 2 publishes awaiting PUBREL. Default 100. */
  receiveMaximum: number
  /** Topic Alias Maximum announced to 5.0 clients (inbound aliases). Default 16. */
  topicAliasMaximum: number
  /**
   * Length (UTF-16 code units: bytes, for ASCII names) of the topic names one connection's
   * inbound aliases keep. An alias set past it is not kept: its PUBLISH goes on (it carries its
   * name), but a later one using that alias alone ends the connection with DISCONNECT 0x97 Quota
   * exceeded. Without it a client kept up to `topicAliasMaximum` names of 64 KiB each (1 MiB by
   * default, 4 GB at 65,535). 0: no bound. Default 1 MiB: every name the default
   * `topicAliasMaximum` (16) allows fits, so only a raised maximum can reach it.
   */
  maxInboundTopicAliasBytes: number
  /**
   * Topic aliases the broker uses toward one 5.0 client (outbound), within the Topic Alias
   * Maximum the client announced; 0 uses none. Topic names are chosen by any publisher: the
   * client's maximum alone let one subscriber hold up to 65,535 names of up to 64 KiB each
   * (~4 GB). Once all are taken, a topic seen a second time takes over the least recently used
   * alias (see OutboundAliases). Default 16.
   */
  maxOutboundTopicAliases: number
  /**
   * Length (UTF-16 code units: bytes, for ASCII names) of the topic names one connection keeps
   * for its outbound aliases. A name that would go past it is sent whole, without an alias.
   * 0 keeps none: no alias is used (not 'no bound', as 0 is for maxInboundTopicAliasBytes).
   * Default 4,096.
   */
  maxOutboundTopicAliasBytes: number
  /** Largest keepalive accepted; 5.0 clients asking for more (or 0) get Server Keep Alive. Default 65,535 s. */
  maxKeepAlive: number
  /**
   * Milliseconds a connection may take to send its CONNECT (and, under enhanced authentication,
   * its AUTH answers: then CONNACK 0x87; in a re-authentication, DISCONNECT 0x87). Time spent
   * waiting on a hook is not counted (see `hookTimeoutMs`). Also the bound on a TLS handshake
   * and WebSocket upgrade, from accept. 0: no bound (it used to close every connection at the
   * first check), as for `hookTimeoutMs`; a client that never sends CONNECT then keeps its
   * socket (see `maxConnections`). Default 10,000.
   */
  connectTimeoutMs: number
  /**
   * Milliseconds an async hook (or the password file check) may take. The client's input waits
   * meanwhile, its keepalive too; past it the request fails: CONNACK 0x88 Server unavailable
   * (3.1.1: 3), PUBACK/PUBREC 0x83, SUBACK 0x83 (3.1.1: 0x80), a will is discarded, a
   * re-authentication ends with DISCONNECT 0x83. 0: no bound (a hook that never settles then
   * holds its client's connection for good). Default 30,000.
   */
  hookTimeoutMs: number
  /** Longest session expiry granted (s); also the expiry of 3.1.1 clean-session-0 sessions. Default 86,400. */
  maxSessionExpiryInterval: number
  /** Bytes buffered on one connection's socket before it counts as slow and its queue takes over. Default 256 KiB. */
  writeHighWaterMark: number
  /** Retained messages kept; past this, new retained topics are not stored (counted). Default 100,000. */
  maxRetainedMessages: number
  /**
   * Bytes of retained messages kept (payload + topic, as queue budgets count them); a retained
   * publish that would go past it is not stored, but still delivered (counted). Default 256 MiB.
   */
  maxRetainedBytes: number
  /**
   * Levels a client's topic name or filter may have (`a/b/c`: 3). Deeper publishes are refused
   * (0x90), deeper subscriptions get 0x8F / 0x80 in SUBACK. Default 200, as mosquitto.
   */
  maxTopicLevels: number
  /**
   * Subscriptions one session may hold: each costs about 550 bytes of heap (more for long
   * filters), and without a cap every SUBSCRIBE of 100,000 new short filters added 53 MB. A
   * new filter beyond gets 0x97 / 0x80 in SUBACK; replacing one does not count. 0 refuses
   * every subscription. Default 10,000.
   */
  maxSubscriptionsPerSession: number
  /**
   * Bytes of wills waiting out their Will Delay Interval, over all sessions (each counts its
   * payload, topic and properties plus 256). A will that would go past it is sent at once,
   * without its delay, and counted. 0: no bound. Default 64 MiB.
   */
  maxDelayedWillBytes: number
  /**
   * Sessions held at once, connected or not. When there are this many, a CONNECT that would
   * create a new session that outlives its connection (5.0 Session Expiry Interval > 0, 3.1.1
   * clean session 0) is refused: CONNACK 0x97 Quota exceeded (3.1.1: 0x03 Server unavailable).
   * A client id that has a session is never refused, nor is a session that ends with its
   * connection (bounded by `maxConnections`). 0: no bound. Default: twice `maxConnections`.
   */
  maxSessions: number
  /**
   * Bytes of messages queued for sessions while they were offline, over all sessions (each
   * counted as `maxQueuedBytes` counts it, until it leaves the queue). Past it a message for an
   * offline session is dropped for that session (`offline_limit`); connected subscribers are not
   * affected. 0: no bound. Default 1 GiB.
   */
  maxOfflineQueuedBytes: number
}

/** Memory budget per subscription filter, rumqttd style: bytes = max_segment_size x max_segment_count. */
export interface FilterMemory {
  maxSegmentSize: number
  maxSegmentCount: number
}
export interface FilterMemoryOverride extends FilterMemory {
  /** A topic filter pattern: applies to subscription filters it matches (`+`/`#` match levels of the filter). */
  pattern: string
}

export interface BrokerOptions extends BrokerHooks {
  limits?: Partial<BrokerLimits> | undefined
  /** Default per-filter budget (1 MiB x 4) and overrides, first match wins. */
  memory?: { maxSegmentSize?: number | undefined, maxSegmentCount?: number | undefined, filters?: FilterMemoryOverride[] | undefined } | undefined
  /** Anonymous CONNECT allowed. Default: only on loopback listeners and for `handle()` streams without a listener. */
  allowAnonymous?: boolean | undefined
  /** Path of a password file (`petrel passwd`); when set, users must authenticate against it. */
  passwordFile?: string | undefined
  /** ACL rules; when any are given, anything not allowed by a rule is denied. */
  acl?: AclRule[] | undefined
  /** Response Information returned to 5.0 clients that request it; `%c` is replaced by the client id. Default: none. */
  responseInformation?: string | undefined
  /** Seconds between `$SYS/broker/...` updates; 0 turns them off. Default 10. */
  sysInterval?: number | undefined
  /** A pino logger; default: pino at `logLevel`. */
  logger?: Logger | undefined
  /** Default 'warn' (quiet). */
  logLevel?: string | undefined
  /** Timer granularity for keepalive, connect timeout, will delay and session expiry. Default 250 ms. */
  sweepIntervalMs?: number | undefined
}

export const defaultLimits: Readonly<BrokerLimits> = {
  maxConnections: 10_000,
  maxPacketSize: 1024 * 1024,
  maxConnectPacketSize: 64 * 1024,
  maxUserProperties: 1024,
  maxInflightMessages: 100,
  maxInflightBytes: 16 * 1024 * 1024,
  maxQueuedMessages: 1000,
  maxQueuedBytes: 4 * 1024 * 1024,
  receiveMaximum: 100,
  topicAliasMaximum: 16,
  maxInboundTopicAliasBytes: 1024 * 1024,
  maxOutboundTopicAliases: 16,
  maxOutboundTopicAliasBytes: 4096,
  maxKeepAlive: 65535,
  connectTimeoutMs: 10_000,
  hookTimeoutMs: 30_000,
  maxSessionExpiryInterval: 86_400,
  writeHighWaterMark: 256 * 1024,
  maxRetainedMessages: 100_000,
  maxRetainedBytes: 256 * 1024 * 1024,
  maxTopicLevels: 200,
  maxSubscriptionsPerSession: 10_000,
  maxDelayedWillBytes: 64 * 1024 * 1024,
  maxSessions: 20_000,
  maxOfflineQueuedBytes: 1024 * 1024 * 1024
}

export const defaultFilterMemory: Readonly<FilterMemory> = { maxSegmentSize: 1024 * 1024, maxSegmentCount: 4 }
