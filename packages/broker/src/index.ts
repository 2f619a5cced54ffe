// @petrel/broker public API. Everything exported is listed here by name.
export { Broker, createBroker, type BrokerPublish } from './broker.js'
export { BrokerErrorCode } from './errors.js'
export {
  defaultLimits, defaultFilterMemory,
  type BrokerOptions, type BrokerLimits, type BrokerHooks, type ClientInfo, type AuthenticateRequest,
  type AuthenticateResult, type EnhancedAuthRequest, type EnhancedAuthResult, type PublishRequest,
  type FilterMemory, type FilterMemoryOverride
} from './options.js'
export type { ListenerOptions, ListenerAddress, ListenerType } from './listeners.js'
export type { AclRule } from './acl.js'
export { BrokerStats, DropReason } from './stats.js'
export { PasswordFile, hashPassword, removeUser, setPassword } from './password-file.js'
export { ServerConnection, ConnectionState, type ConnectionInfo } from './server-connection.js'
export type { Transport } from './transport.js'
export { parseConfig, loadConfig, type BrokerConfig, type MetricsOptions } from './config.js'
export { createMetricsRegistry, startMetricsServer, type MetricsServer } from './metrics.js'
export { isLoopback } from './listeners.js'
