import { encode, type ConnectPacket, type PetrelError } from '@petrel/wire'
import { ClientErrorCode, clientError } from './errors.js'

/** The longest a UTF-8 string or binary data with its two-byte length prefix can be (§1.5.4, §1.5.6). */
const MAX_FIELD_BYTES = 65535

/**
 * Why no CONNECT can carry `packet` (undefined when one can): a field with a two-byte length past
 * 65,535 bytes (named, since the codec's message does not say which string it was), or anything
 * else the codec refuses (a User Property that long, a will topic with a wildcard, a keepalive out
 * of range...). Checked once, on the options, when no `beforeConnect` may rewrite the packet:
 * every attempt would send this one, so the client is never created.
 */
export function connectPacketProblem (packet: ConnectPacket): PetrelError | undefined {
  const will = packet.will
  const fields: Array<[string, number]> = [
    ['clientId', Buffer.byteLength(packet.clientId)],
    ['username', packet.username === undefined ? 0 : Buffer.byteLength(packet.username)],
    ['password', packet.password?.length ?? 0],
    ['will.topic', will === undefined ? 0 : Buffer.byteLength(will.topicName)],
    ['will.payload', will?.payload.length ?? 0]
  ]
  for (const [name, bytes] of fields) {
    if (bytes > MAX_FIELD_BYTES) {
      return clientError(ClientErrorCode.INVALID_ARGUMENT,
        `${name} is ${bytes} bytes: a CONNECT field is at most 65,535 bytes (two-byte length, §1.5.4, §1.5.6), so no CONNECT can carry it`)
    }
  }
  try {
    encode(packet, packet.protocolVersion)
  } catch (err) {
    return clientError(ClientErrorCode.INVALID_ARGUMENT, err instanceof Error ? err.message : String(err), { cause: err })
  }
  return undefined
}
