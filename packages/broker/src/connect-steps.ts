import { randomBytes } from 'node:crypto'
import { isWellFormedUtf8, type ConnackProperties, type ConnectPacket } from '@petrel/wire'
import { HOOK_ERROR, HOOK_TIMEOUT, isHookFailure, type HookFailure } from './hook-timeout.js'
import type { EnhancedAuthResult } from './options.js'
import { Session } from './session.js'
import { DropReason } from './stats.js'
import { ConnectionState, isReservedTopic, tooDeep, type ServerConnection } from './server-connection.js'

/** What the CONNECT steps work out between them. */
export interface ConnectContext {
  readonly packet: ConnectPacket
  readonly now: number
  sessionPresent: boolean
  assignedClientIdentifier: string | undefined
  serverKeepAlive: number | undefined
  /** Authentication Data for the CONNACK (enhanced auth). */
  authData: Buffer | undefined
  authStep: number
  /** Step to continue from once enhanced authentication completes. */
  resumeAt: number
  /** The success CONNACK, Session Present 0, sized for the client (see prepareConnack). */
  connack: Buffer | undefined
}

/**
 * One step of CONNECT handling: true to go on, false when the step has answered (refused,
 * or suspended for an AUTH exchange), or a promise of either.
 */
export interface ConnectStep {
  readonly name: string
  run (c: ServerConnection, ctx: ConnectContext, index: number): boolean | Promise<boolean>
}

/** CONNECT handling as a list of named steps, run in order (aedes style). */
export const connectSteps: readonly ConnectStep[] = [
  { name: 'negotiate', run: negotiate },
  { name: 'validateWill', run: validateWill },
  { name: 'validateClientId', run: validateClientId },
  { name: 'authenticate', run: authenticate },
  { name: 'authorizeWill', run: authorizeWill },
  { name: 'prepareConnack', run: prepareConnack },
  { name: 'limitSessions', run: limitSessions },
  { name: 'takeOver', run: takeOver },
  { name: 'openSession', run: openSession },
  { name: 'sendConnack', run: sendConnack },
  { name: 'resumeSession', run: resumeSession }
]

/** Runs the steps from `from`; synchronous unless a step returns a promise. */
export function runConnectSteps (c: ServerConnection, ctx: ConnectContext, from: number): void | Promise<void> {
  for (let i = from; i < connectSteps.length; i++) {
    if (c.state === ConnectionState.closed) return
    const r = (connectSteps[i] as ConnectStep).run(c, ctx, i)
    if (r === true) continue
    if (r === false) return
    return r.then((ok) => {
      if (ok && c.state !== ConnectionState.closed) return runConnectSteps(c, ctx, i + 1)
    })
  }
}

/** Protocol level, keepalive, the client's limits and its will. */
function negotiate (c: ServerConnection, ctx: ConnectContext): boolean {
  const p = ctx.packet
  const limits = c.core.limits
  c.protocolVersion = p.protocolVersion
  c.clientId = p.clientId
  c.username = p.username
  let ka = p.keepAlive
  if (c.v5 && limits.maxKeepAlive < 65535 && (ka === 0 || ka > limits.maxKeepAlive)) {
    // [MQTT-3.2.2-21] Server Keep Alive: the client must use ours
    ka = limits.maxKeepAlive
    ctx.serverKeepAlive = ka
  }
  c.keepAliveMs = ka * 1000
  const props = p.properties
  if (props !== undefined) {
    c.clientReceiveMaximum = props.receiveMaximum ?? 65535
    c.clientMaximumPacketSize = props.maximumPacketSize ?? 0x7fffffff
    // the broker's own bound on what it keeps for them (see maxOutboundTopicAliases)
    c.clientTopicAliasMaximum = Math.min(props.topicAliasMaximum ?? 0, limits.maxOutboundTopicAliases)
    c.connectSessionExpiry = props.sessionExpiryInterval ?? 0
  }
  c.will = p.will === undefined
    ? undefined
    : { ...p.will, payload: Buffer.from(p.will.payload) } // copied: kept for the whole connection
  return true
}

/**
 * A will whose Payload Format Indicator says UTF-8 but whose payload is not: CONNACK 0x99
 * Payload format invalid. §3.1.3.2.3: "The Server MAY validate that the Will Message is of the
 * format indicated, and if it is not send a CONNACK with the Reason Code of 0x99 (Payload format
 * invalid)". Accepted, it went out as it was (the indicator is forwarded unaltered
 * [MQTT-3.3.2-4]), and a subscriber that checks the format, as Petrel's client does, took it
 * for a malformed packet and dropped its connection; retained, every new subscriber did. A
 * PUBLISH of the same kind is refused in its ack (ServerConnection.onPublish). Checked before
 * authentication: it needs only the packet, and says nothing about credentials.
 */
function validateWill (c: ServerConnection): boolean {
  const will = c.will
  if (will?.properties?.payloadFormatIndicator !== true || isWellFormedUtf8(will.payload, 0, will.payload.length)) return true
  c.refuse(0x99, 0x99) // 5.0 only: a 3.1.1 will has no properties
  return false
}

/** [MQTT-3.1.3-6] an empty client id gets one assigned; 3.1.1 only with clean session [MQTT-3.1.3-8]. */
function validateClientId (c: ServerConnection, ctx: ConnectContext): boolean {
  if (c.clientId.length > 0) return true
  if (!c.v5 && !ctx.packet.cleanStart) {
    c.refuse(0x85, 2)
    return false
  }
  c.clientId = 'petrel-' + randomBytes(9).toString('base64url')
  if (c.v5) ctx.assignedClientIdentifier = c.clientId // [MQTT-3.2.2-16]
  return true
}

function authenticate (c: ServerConnection, ctx: ConnectContext, index: number): boolean | Promise<boolean> {
  const p = ctx.packet
  // use_identity_as_username: the verified certificate names the user, whatever user name (and
  // password) the CONNECT carries, as in mosquitto. Taking the CONNECT's when it had one let a
  // client holding any certificate run as the user it claimed (ACL %u included).
  const certificateUser = c.info.useIdentityAsUsername === true ? c.info.certificateIdentity : undefined
  if (c.info.useIdentityAsUsername === true) {
    // No verified certificate (none, or one `ca` did not sign, where one is optional): refused
    // with 0x86 Bad User Name or Password, 3.1.1's 4, as mosquitto does. Falling back to the
    // CONNECT's user name let a client without a certificate, where there is no password file,
    // run as any user it named (ACL %u included).
    if (certificateUser === undefined) {
      c.refuse(0x86, 4)
      return false
    }
    c.username = certificateUser
  }
  const method = p.properties?.authenticationMethod
  if (method !== undefined) {
    const hook = c.core.authenticateEnhanced
    if (hook === undefined) {
      c.refuse(0x8c, 5) // [MQTT-4.12.0-1] Bad authentication method
      return false
    }
    c.authMethod = method
    const data = p.properties?.authenticationData
    const done = (r: EnhancedAuthResult): boolean => {
      if (c.state === ConnectionState.closed) return false
      if (r.reasonCode === 0) {
        ctx.authData = r.data
        if (r.username !== undefined) c.username = r.username
        return true
      }
      if (r.reasonCode === 0x18) {
        // [MQTT-4.12.0-2] continue the exchange with AUTH 0x18
        c.state = ConnectionState.authenticating
        ctx.resumeAt = index + 1
        c.pendingConnect = ctx
        c.sendAuth(0x18, method, r.data)
        return false
      }
      c.refuse(r.reasonCode, 5)
      return false
    }
    const r = hook(c.enhancedAuthRequest(method, data, 0), c)
    // past hookTimeoutMs, or the hook threw: CONNACK 0x88 Server unavailable (a later attempt may
    // succeed) before the close [MQTT-4.12.0-4]; a rejection used to close with no CONNACK at all
    return r instanceof Promise ? r.then((x) => done(isHookFailure(x) ? { reasonCode: 0x88 } : x)) : done(isHookFailure(r) ? { reasonCode: 0x88 } : r)
  }
  const request = {
    clientId: c.clientId,
    username: certificateUser ?? p.username,
    password: certificateUser !== undefined || p.password === undefined ? undefined : Buffer.from(p.password),
    protocolVersion: c.protocolVersion,
    // A getter: reading a socket's remote address makes node cache its peer name (an object
    // and a string, ~90 B) for the socket's life, and only a user hook ever looks at it.
    get remoteAddress (): string | undefined { return c.remoteAddress },
    certificateIdentity: c.info.certificateIdentity,
    get signal (): AbortSignal { return c.hookSignal }
  }
  const done = (r: boolean | { ok: boolean, reasonCode?: number, username?: string } | HookFailure): boolean => {
    if (c.state === ConnectionState.closed) return false
    if (isHookFailure(r)) {
      // past hookTimeoutMs, or the hook threw: 0x88 Server unavailable, 3.1.1's 3 (a later
      // attempt may succeed; 0x86/0x87 would tell the client its credentials are wrong)
      c.refuse(0x88, 3)
      return false
    }
    // A JavaScript hook may answer { reasonCode } without `ok`: a success code (< 0x80) means yes.
    const ok = typeof r === 'boolean' ? r : r.ok ?? (r.reasonCode ?? 0) < 0x80
    if (!ok) {
      const rc = typeof r === 'boolean' ? undefined : r.reasonCode
      // 5.0: the hook's failure code or 0x86; 3.1.1: 4 bad user name or password, 5 not authorized
      c.refuse(rc !== undefined && rc >= 0x80 ? rc : 0x86, rc === 0x87 || rc === 0x8a ? 5 : 4)
      return false
    }
    if (typeof r !== 'boolean' && r.username !== undefined) c.username = r.username
    return true
  }
  const r = c.core.authenticate(request, c.info, c)
  return r instanceof Promise ? r.then(done) : done(r)
}

/**
 * The will is a publish by this client, so it passes the same check (ACL or `authorizePublish`)
 * as any other, once the user name is final: otherwise a client could post to a topic it may not
 * write to just by dropping its connection. A refused will is discarded (counted as
 * not_authorized) and the connection goes on, as with mosquitto: refusing the CONNECT would tell
 * a 3.1.1 client nothing it could act on.
 */
function authorizeWill (c: ServerConnection): boolean | Promise<boolean> {
  const will = c.will
  if (will === undefined) return true
  const auth = c.core.authorizePublish
  // a will deeper than max_topic_levels is refused as a publish there would be (0x90)
  const deep = tooDeep(will.topicName, c.core.limits.maxTopicLevels)
  if (auth === undefined && !deep && !isReservedTopic(will.topicName)) return true
  const done = (ok: boolean | HookFailure): boolean => {
    // closed meanwhile: the abort answered for the hook (HOOK_TIMEOUT), and nothing was decided
    if (c.state === ConnectionState.closed) return false
    if (ok !== true && c.will === will) {
      c.will = undefined
      c.core.stats.drop(deep ? DropReason.topicInvalid : ok === HOOK_TIMEOUT ? DropReason.hookTimeout : ok === HOOK_ERROR ? DropReason.hookError : DropReason.notAuthorized)
      const log = c.core.log
      if (log.isLevelEnabled('info')) log.info({ clientId: c.clientId, username: c.username, topic: will.topicName }, isHookFailure(ok) ? 'will discarded: its check timed out or failed' : 'will refused by the ACL')
    }
    return true
  }
  // a will on $SYS/... or $share/... is refused like a publish there (see isReservedTopic)
  if (auth === undefined || deep || isReservedTopic(will.topicName)) return done(false)
  const r = auth(c.view, { topicName: will.topicName, qos: will.qos, retain: will.retain, payload: will.payload }, c)
  // a will whose check timed out (hookTimeoutMs) or failed (threw, rejected) is discarded
  return r instanceof Promise ? r.then(done) : done(r)
}

/**
 * max_sessions: a CONNECT that would add a session outliving its connection is refused while
 * that many are held, with 0x97 Quota exceeded (3.1.1: 0x03 Server unavailable), as EMQX's
 * session quota answers. Without it, CONNECTs with ever new client ids and a session expiry
 * left one offline session each (up to max_queued_bytes of messages and its subscriptions) for
 * up to max_session_expiry_interval, with no bound on their number. Refusing rather than evicting
 * the offline session closest to expiry (mosquitto, HiveMQ and EMQX do not evict either): an
 * eviction would let such a flood discard real clients' sessions and their queued QoS 1/2
 * messages, which they learn of only from Session Present 0; a refusal costs only new clients,
 * and lifts as the flood's sessions expire. A client id that has a session is never refused
 * (resuming it, or replacing it with clean start, adds none), nor is a session that ends with
 * its connection: max_connections bounds those.
 */
function limitSessions (c: ServerConnection, ctx: ConnectContext): boolean {
  const core = c.core
  const max = core.limits.maxSessions
  if (max === 0 || core.sessions.size < max || core.sessions.has(c.clientId)) return true
  const persistent = c.v5 ? c.connectSessionExpiry > 0 : !ctx.packet.cleanStart
  if (!persistent || core.limits.maxSessionExpiryInterval === 0) return true
  core.sessionQuotaExceeded(c.clientId)
  c.refuse(0x97, 3)
  return false
}

/** [MQTT-3.1.4-3] a second connection with the same client id takes over from the first. */
function takeOver (c: ServerConnection): boolean {
  const old = c.core.online.get(c.clientId)
  if (old !== undefined && old !== c) old.takenOver()
  return true
}

/** Clean start discards the old session [MQTT-3.1.2-4]; else the stored one resumes [MQTT-3.1.2-5]. */
function openSession (c: ServerConnection, ctx: ConnectContext): boolean {
  const core = c.core
  const limits = core.limits
  let s = core.sessions.get(c.clientId)
  // [MQTT-3.1.2-8] [MQTT-3.1.3-9] a will waiting out its delay is not sent once a new connection
  // for its client id arrives, whether or not that connection resumes the session: ending the
  // session below (clean start) published it at once
  if (s !== undefined) core.takeDelayedWill(s)
  // Another user's session is not resumed: its subscriptions and queued messages passed that
  // user's ACL, checked when made, so taking it over would read with the other user's rights.
  const foreign = s !== undefined && s.username !== c.username
  if (s !== undefined && (ctx.packet.cleanStart || foreign)) {
    if (foreign && !ctx.packet.cleanStart && core.log.isLevelEnabled('info')) {
      core.log.info({ clientId: c.clientId, username: c.username }, 'the session of this client id belongs to another user: starting a new one')
    }
    core.endSession(s)
    s = undefined
  }
  if (s === undefined) {
    s = new Session(c.clientId, core)
    s.username = c.username
    core.sessions.set(c.clientId, s)
  } else {
    ctx.sessionPresent = true
    s.expiresAt = 0
  }
  // 3.1.1 clean session 0: the session lasts until the maximum; 5.0: as asked, within the maximum
  const asked = c.v5 ? c.connectSessionExpiry : ctx.packet.cleanStart ? 0 : 0xffffffff
  s.expiryInterval = Math.min(asked, limits.maxSessionExpiryInterval)
  c.session = s
  return true
}

/**
 * The success CONNACK, made before anything changes (takeover, session), so that a client whose
 * Maximum Packet Size it cannot fit is refused with nothing done: it is never sent a larger
 * packet [MQTT-3.1.2-24], and a CONNACK it never got would have left it waiting, its session
 * opened. Response Information (and any Reason String or User Property) is left out first (see
 * fitPacket); the rest is what the client must know (our limits, its assigned client id, Server
 * Keep Alive, authentication data), so without room for it the CONNECT is refused with 0x95
 * Packet too large, if even that fits.
 */
function prepareConnack (c: ServerConnection, ctx: ConnectContext): boolean {
  let properties: ConnackProperties | undefined
  if (c.v5) {
    const core = c.core
    const limits = core.limits
    properties = {
      receiveMaximum: limits.receiveMaximum < 65535 ? limits.receiveMaximum : undefined,
      maximumPacketSize: limits.maxPacketSize,
      topicAliasMaximum: limits.topicAliasMaximum > 0 ? limits.topicAliasMaximum : undefined,
      assignedClientIdentifier: ctx.assignedClientIdentifier,
      serverKeepAlive: ctx.serverKeepAlive,
      // tell the client when its Session Expiry Interval was cut (§3.2.2.3.2)
      sessionExpiryInterval: c.connectSessionExpiry > limits.maxSessionExpiryInterval ? limits.maxSessionExpiryInterval : undefined,
      responseInformation: ctx.packet.properties?.requestResponseInformation === true && core.responseInformation !== undefined
        ? core.responseInformation.replaceAll('%c', c.clientId)
        : undefined,
      authenticationMethod: c.authMethod,
      authenticationData: ctx.authData
    }
  }
  ctx.connack = c.encodeControl({ type: 'connack', sessionPresent: false, reasonCode: 0, properties })
  if (ctx.connack !== undefined) return true
  c.refuse(0x95, 3)
  return false
}

function sendConnack (c: ServerConnection, ctx: ConnectContext): boolean {
  const connack = ctx.connack as Buffer
  ctx.connack = undefined
  // [MQTT-3.2.2-2] [MQTT-3.2.2-3] session present reflects what we kept: bit 0 of the byte after
  // the fixed header
  if (ctx.sessionPresent) {
    let i = 1
    while (((connack[i++] as number) & 0x80) !== 0);
    connack[i] = 1
  }
  c.state = ConnectionState.connected
  c.core.online.set(c.clientId, c)
  c.core.connectionReady(c)
  const log = c.core.log
  if (log.isLevelEnabled('info')) log.info({ clientId: c.clientId, protocolVersion: c.protocolVersion, username: c.username, remoteAddress: c.remoteAddress, sessionPresent: ctx.sessionPresent }, 'client connected')
  c.transport.writeControl(connack)
  return true
}

/** Resend in-flight messages and the queue [MQTT-4.4.0-1]. */
function resumeSession (c: ServerConnection): boolean {
  const s = c.session as Session
  s.outlet = c
  s.resume()
  return true
}
