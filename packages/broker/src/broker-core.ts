import type { Logger } from 'pino'
import type { QoS, Subscription, Will } from '@petrel/wire'
import type { Message } from './message.js'
import type { RetainedStore } from './retained-store.js'
import type { Router } from './router.js'
import type { Session, SessionHost } from './session.js'
import type { HookCaller, HookError, HookFailure } from './hook-timeout.js'
import type {
  AuthenticateRequest, AuthenticateResult, ClientInfo, EnhancedAuthRequest, EnhancedAuthResult, PublishRequest
} from './options.js'
import type { ConnectionInfo, ServerConnection } from './server-connection.js'

/**
 * What a connection's protocol logic sees of the broker: shared state and policy. The broker
 * implements it; unit tests can stub it.
 */
export interface BrokerCore extends SessionHost {
  readonly router: Router
  readonly retained: RetainedStore
  /** Every session by client id, online or offline. */
  readonly sessions: Map<string, Session>
  /** Connected (CONNACK'd) clients by client id. */
  readonly online: Map<string, ServerConnection>
  readonly responseInformation: string | undefined
  // The hooks as the connection sees them: a promise settles to HOOK_TIMEOUT past hookTimeoutMs;
  // a hook that throws or rejects answers HOOK_ERROR.
  // `caller`: the connection asking; once it closes its pending hook is no longer timed.
  readonly authenticateEnhanced: ((request: EnhancedAuthRequest, caller?: HookCaller) => EnhancedAuthResult | HookError | Promise<EnhancedAuthResult | HookFailure>) | undefined
  /** Undefined when every publish is allowed (the fast path skips the call). */
  readonly authorizePublish: ((client: ClientInfo, publish: PublishRequest, caller?: HookCaller) => boolean | HookError | Promise<boolean | HookFailure>) | undefined
  readonly authorizeSubscribe: ((client: ClientInfo, subscription: Subscription, caller?: HookCaller) => boolean | HookError | Promise<boolean | HookFailure>) | undefined
  /** The per-message read check for an allowed subscription, when the ACL needs one (Acl.readFilter). */
  readonly readFilter: ((client: ClientInfo, topicFilter: string) => ((topicName: string) => boolean) | undefined) | undefined
  authenticate (request: AuthenticateRequest, info: ConnectionInfo, caller?: HookCaller): AuthenticateResult | HookError | Promise<AuthenticateResult | HookFailure>
  /** Routes a message (and stores it when retained); returns the number of sessions it reached. */
  publish (message: Message): number
  /** Flow control after a client's QoS 1/2 publish: hold its acks until this settles (see Broker). */
  takePressure (): Promise<void> | undefined
  /** A session lost its connection: start its expiry (or end it now), and its will (published now or after its Will Delay Interval). */
  sessionOffline (session: Session, will: Will | undefined): void
  /** Takes a session's delayed will off it (a connection for its client id arrived, or the will is due). */
  takeDelayedWill (session: Session): Will | undefined
  /** Ends a session: its subscriptions go, a delayed will is sent [MQTT-3.1.3-9]. */
  endSession (session: Session): void
  /** A CONNECT was refused at max_sessions (counted, and logged now and then). */
  sessionQuotaExceeded (clientId: string): void
  /** A PUBLISH past max_user_properties was refused (logged now and then; counted by the caller). */
  userPropertiesExceeded (clientId: string, topicName: string, qos: QoS): void
  connectionClosed (connection: ServerConnection): void
  /** CONNACK sent: the connection is a client's, no longer one a new socket may replace. */
  connectionReady (connection: ServerConnection): void
  readonly log: Logger
}
