import { PetrelError } from '@petrel/wire'

/**
 * Every error code `@petrel/client` raises, in one place. Callers match on `err.code`; the
 * meaning of each code is documented in packages/client/ERRORS.md (a test keeps the two in sync).
 * Codes raised by the codec (`PETREL_ERR_INVALID_TOPIC_NAME`, ...) come from `WireErrorCode`.
 */
export const ClientErrorCode = {
  /** The broker refused the connection (CONNACK reason code >= 0x80, or 3.1.1 return code 1-3). */
  CONNECTION_REFUSED: 'PETREL_ERR_CONNECTION_REFUSED',
  /** The broker refused the credentials or the client is not authorized (0x86, 0x87, 3.1.1 codes 4-5). */
  NOT_AUTHORIZED: 'PETREL_ERR_NOT_AUTHORIZED',
  /** The transport could not be opened (ECONNREFUSED, DNS, TLS handshake) or closed unexpectedly. */
  CONNECTION_FAILED: 'PETREL_ERR_CONNECTION_FAILED',
  /**
   * The `tls` options cannot make a TLS context (a key or certificate that is not PEM, a key that
   * does not belong to the certificate, a wrong passphrase, no cipher matching `ciphers`): no
   * retry can mend that, so the client is not created; `cause` is Node's error.
   */
  TLS_CONFIG: 'PETREL_ERR_TLS_CONFIG',
  /** Dial + CONNECT/CONNACK took longer than `connectTimeoutMs`. */
  CONNECT_TIMEOUT: 'PETREL_ERR_CONNECT_TIMEOUT',
  /** No PINGRESP (or any other packet) within the ping timeout: the link is considered dead. */
  PING_TIMEOUT: 'PETREL_ERR_PING_TIMEOUT',
  /** The broker sent DISCONNECT; `reasonCode` is its reason. */
  DISCONNECTED_BY_BROKER: 'PETREL_ERR_DISCONNECTED_BY_BROKER',
  /** The request queue is full and the policy is `reject`. */
  QUEUE_FULL: 'PETREL_ERR_QUEUE_FULL',
  /** The request was the oldest in a full queue under the `dropOldest` policy. */
  DROPPED: 'PETREL_ERR_DROPPED',
  /**
   * Rejection of an aborted request whose signal carries no reason (normally the rejection is
   * `signal.reason` itself), or of `connect()` when `disconnect()` was called before the first
   * connection (the client is then closed).
   */
  ABORTED: 'PETREL_ERR_ABORTED',
  /** `end()` was called, or the client stopped reconnecting, while the request was pending. */
  CLIENT_CLOSED: 'PETREL_ERR_CLIENT_CLOSED',
  /** The broker lost the session while the request was in flight and `sessionLostPolicy` is `fail`. */
  SESSION_LOST: 'PETREL_ERR_SESSION_LOST',
  /** QoS above the broker's Maximum QoS, or not 0, 1 or 2. */
  QOS_NOT_SUPPORTED: 'PETREL_ERR_QOS_NOT_SUPPORTED',
  /** Retain requested but the broker's Retain Available is 0. */
  RETAIN_NOT_SUPPORTED: 'PETREL_ERR_RETAIN_NOT_SUPPORTED',
  /**
   * The packet would exceed the broker's Maximum Packet Size (or `brokerMaximumPacketSize`, or the
   * protocol's limit), or a QoS 1/2 publish the broker ended 3 links in a row over. Inbound: a
   * packet, or a WebSocket message, from the broker went past our `maximumPacketSize` (link closed, 0x95).
   */
  PACKET_TOO_LARGE: 'PETREL_ERR_PACKET_TOO_LARGE',
  /** A wildcard filter, but the broker's Wildcard Subscription Available is 0. */
  WILDCARD_NOT_SUPPORTED: 'PETREL_ERR_WILDCARD_NOT_SUPPORTED',
  /** A `$share/` filter, but the broker's Shared Subscription Available is 0. */
  SHARED_NOT_SUPPORTED: 'PETREL_ERR_SHARED_NOT_SUPPORTED',
  /** The broker answered a PUBLISH with a failure reason code (>= 0x80); `reasonCode` carries it. */
  PUBLISH_FAILED: 'PETREL_ERR_PUBLISH_FAILED',
  /** The broker refused every filter of a SUBSCRIBE; `reasonCode` is the first failure. */
  SUBSCRIBE_FAILED: 'PETREL_ERR_SUBSCRIBE_FAILED',
  /** The broker answered an UNSUBSCRIBE with a failure reason code. */
  UNSUBSCRIBE_FAILED: 'PETREL_ERR_UNSUBSCRIBE_FAILED',
  /** An argument is invalid (QoS 3, bad URL, option out of range, feature needing MQTT 5). */
  INVALID_ARGUMENT: 'PETREL_ERR_INVALID_ARGUMENT',
  /**
   * The broker broke the protocol (a topic alias never mapped or above our maximum, an unexpected
   * packet); the connection is closed (v5: DISCONNECT with `reasonCode`) and the client reconnects.
   */
  PROTOCOL_ERROR: 'PETREL_ERR_CLIENT_PROTOCOL_ERROR',
  /**
   * An inbound message was refused and not delivered: it carried more User Properties than
   * `maxUserProperties`, or more than 65,535 Subscription Identifiers. Acked with 0x97 Quota
   * exceeded (QoS 1/2; `reasonCode`), so the broker does not send it again; counted in
   * `messagesRefused`. Reported as an `error` event; the link stays up.
   */
  MESSAGE_REFUSED: 'PETREL_ERR_MESSAGE_REFUSED',
  /**
   * The broker's traffic went past a limit of ours that only closing the link can end: it used an
   * inbound topic alias whose topic name was not kept, the names mapped on the connection having
   * passed 16 MiB. Closed with DISCONNECT 0x97 (`reasonCode`); the client reconnects.
   */
  QUOTA_EXCEEDED: 'PETREL_ERR_QUOTA_EXCEEDED',
  /** No response to `client.request()` within its timeout. */
  REQUEST_TIMEOUT: 'PETREL_ERR_REQUEST_TIMEOUT',
  /** Enhanced authentication failed or no `auth` hook could answer the broker's AUTH. */
  AUTH_FAILED: 'PETREL_ERR_AUTH_FAILED',
  /**
   * A message handler (a callback subscription's, an `unrouted` listener) threw or rejected, or a
   * listener of `connect`, `reconnect`, `disconnect`, `close` or `serverReference` threw; `cause` is what it threw.
   * Also the reason the client closed when the `reconnect` callback (or an `error` listener) threw.
   */
  HANDLER_FAILED: 'PETREL_ERR_HANDLER_FAILED'
} as const
export type ClientErrorCode = typeof ClientErrorCode[keyof typeof ClientErrorCode]

/** A PetrelError with one of the client's codes. */
export function clientError (code: ClientErrorCode, message: string,
  options?: { reasonCode?: number | undefined, cause?: unknown }): PetrelError {
  return new PetrelError(code, message, options)
}
