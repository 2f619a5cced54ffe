import type { ProtocolVersion } from '@petrel/wire'

/**
 * CONNACK refusals about the CONNECT's own content (§3.2.2.2; 3.1.1 §3.2.2.3): the broker checks
 * what we sent against its fixed configuration, so the same CONNECT is refused again on every
 * attempt, and only other options (or a `beforeConnect` rewrite) can change the answer. Retrying
 * them under `reconnect` or `retryInitialConnect` only loads the broker.
 *
 * Not here, being about the broker's state rather than our packet: 0x80 Unspecified, 0x83
 * Implementation specific, 0x88 Server unavailable, 0x89 Server busy, 0x8A Banned, 0x97 Quota
 * exceeded, 0x9C / 0x9D another server, 0x9F Connection rate exceeded. Nor 0x86 Bad user name or
 * password and 0x87 Not authorized (3.1.1: 4 and 5): the broker's users and ACLs change while it
 * runs (a password file reloaded, an auth service back), so those stay the `reconnect` option's
 * call.
 */
const FINAL_V5 = new Set([
  0x81, // Malformed Packet
  0x82, // Protocol Error
  0x84, // Unsupported Protocol Version
  0x85, // Client Identifier not valid
  0x8c, // Bad authentication method
  0x90, // Topic Name invalid (the will's)
  0x95, // Packet too large (the will, user properties...)
  0x99, // Payload format invalid (the will's)
  0x9a, // Retain not supported (a retained will)
  0x9b // QoS not supported (the will's QoS)
])

/** 3.1.1 return codes 1 Unacceptable protocol version and 2 Identifier rejected. */
const FINAL_V3 = new Set([1, 2])

/** Whether a CONNACK refusal would come again for the same CONNECT whatever the attempt. */
export function isFinalRefusal (reasonCode: number, protocolVersion: ProtocolVersion): boolean {
  return (protocolVersion === 5 ? FINAL_V5 : FINAL_V3).has(reasonCode)
}
