import { encode, type Packet, type ProtocolVersion } from '@petrel/wire'

/**
 * The bytes of a control packet for a client whose Maximum Packet Size is `max`, or undefined
 * when it cannot fit: the server never sends a packet larger than that [MQTT-3.1.2-24], and
 * discards one too large to send [MQTT-3.1.2-25]. What is optional goes first: Reason String and
 * User Properties, which the sender must not add if they would take a packet past the limit
 * (CONNACK [MQTT-3.2.2-19] [MQTT-3.2.2-20], PUBACK [MQTT-3.4.2-2] [MQTT-3.4.2-3], SUBACK
 * [MQTT-3.9.2-1] [MQTT-3.9.2-2], UNSUBACK [MQTT-3.11.2-1] [MQTT-3.11.2-2], DISCONNECT
 * [MQTT-3.14.2-3] [MQTT-3.14.2-4], AUTH [MQTT-3.15.2-2] [MQTT-3.15.2-3], and so on), then a
 * CONNACK's Response Information, which "the Server can choose not to include" (§3.1.2.11.6).
 * Everything else carries what the client must know or act on, so it is never left out.
 */
export function fitPacket (p: Packet, version: ProtocolVersion, max: number): Buffer | undefined {
  const b = encode(p, version)
  if (b.length <= max) return b
  if (version !== 5 || !('properties' in p) || p.properties === undefined) return undefined
  const { reasonString: _r, userProperties: _u, ...rest } = p.properties as { reasonString?: string, userProperties?: unknown }
  let properties: Record<string, unknown> = rest
  if (p.type === 'connack') {
    const { responseInformation: _i, ...essential } = rest as { responseInformation?: string }
    properties = essential
  }
  const smaller = encode({ ...p, properties } as Packet, version)
  return smaller.length <= max ? smaller : undefined
}
