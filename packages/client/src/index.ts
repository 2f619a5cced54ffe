// @petrel/client public API. Everything exported is listed here by name.
export { connect, createClient } from './connect.js'
export {
  MqttClient, type ClientEventMap, type ConnectEvent, type DisconnectEvent, type ReconnectEvent,
  type EndOptions, type RequestOptions
} from './client.js'
export type {
  ClientOptions, PublishOptions, SubscribeOptions, WillOptions, AuthChallenge, ConnectAttempt
} from './options.js'
export { Subscription, type OverflowPolicy, type MessageHandler } from './subscription.js'
export { Message } from './message.js'
export { ClientErrorCode } from './errors.js'
export { renderMetrics, type ClientStats } from './stats.js'
export type { TlsOptions, TransportFactory, TransportOptions } from './transport.js'
export type { PacketTrace } from './connection.js'
export type { PublishResult, QueuePolicy, SessionLostPolicy, BrokerLimits } from './client-session.js'
export type { ThrottleOptions } from './token-bucket.js'
export type { BackoffOptions } from './backoff.js'
// The sans-I/O pieces, for tests and for embedding in other shells.
export { ClientSession, PublishRequest, ControlRequest, SubscriptionEntry, type ClientSessionOptions, type SessionOutput } from './client-session.js'
export { Backoff } from './backoff.js'
export { Keepalive, KeepaliveAction } from './keepalive.js'
export { TokenBucket } from './token-bucket.js'
export { ReadModeration, type ReadModerationOptions } from './read-moderation.js'
export { connectDirect, directReaderOf, DirectReader } from './direct-read.js'
export { joinWebSocketWrites } from '@petrel/wire'
