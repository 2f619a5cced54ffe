/**
 * One error class for every Petrel package. Callers match on `code` (stable, documented in
 * packages/wire/ERRORS.md), never on `message`. Where the MQTT 5 spec has a reason code for the failure,
 * `reasonCode` carries it: the code a broker or client must close the connection with.
 */
export class PetrelError extends Error {
  override readonly name = 'PetrelError'
  readonly code: string
  readonly reasonCode: number | undefined

  constructor (code: string, message: string, options?: { reasonCode?: number | undefined, cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.reasonCode = options?.reasonCode
  }
}

/** Codes raised by `@petrel/wire`. */
export const WireErrorCode = {
  /** Bytes that cannot be parsed as the spec says: close with 0x81 Malformed Packet. */
  MALFORMED_PACKET: 'PETREL_ERR_MALFORMED_PACKET',
  /** A well-formed packet that breaks a protocol rule: close with 0x82 Protocol Error. */
  PROTOCOL_ERROR: 'PETREL_ERR_PROTOCOL_ERROR',
  /** Larger than the Maximum Packet Size: close with 0x95 Packet Too Large. */
  PACKET_TOO_LARGE: 'PETREL_ERR_PACKET_TOO_LARGE',
  /** A PUBLISH with Topic Alias 0 [MQTT-3.3.2-8]: close with 0x94 Topic Alias invalid. */
  TOPIC_ALIAS_INVALID: 'PETREL_ERR_TOPIC_ALIAS_INVALID',
  /** CONNECT with a protocol name or level we do not speak: CONNACK 0x01 (3.1.1) or 0x84 (5.0). */
  UNSUPPORTED_PROTOCOL_VERSION: 'PETREL_ERR_UNSUPPORTED_PROTOCOL_VERSION',
  /** A topic name that is empty, holds a wildcard or U+0000, or is longer than 65,535 bytes. */
  INVALID_TOPIC_NAME: 'PETREL_ERR_INVALID_TOPIC_NAME',
  /** A topic filter whose wildcards are misplaced, or a malformed `$share/` filter. */
  INVALID_TOPIC_FILTER: 'PETREL_ERR_INVALID_TOPIC_FILTER',
  /**
   * A PUBLISH whose Payload Format Indicator says UTF-8 but whose payload is not well-formed
   * UTF-8 [MQTT-3.3.2-4]: close (or acknowledge) with 0x99 Payload format invalid.
   */
  PAYLOAD_FORMAT_INVALID: 'PETREL_ERR_PAYLOAD_FORMAT_INVALID',
  /** `encode()` was handed a packet that cannot be put on the wire (QoS 3, packet id 0, ...). */
  INVALID_PACKET: 'PETREL_ERR_INVALID_PACKET'
} as const
export type WireErrorCode = typeof WireErrorCode[keyof typeof WireErrorCode]

export function malformed (message: string): PetrelError {
  return new PetrelError(WireErrorCode.MALFORMED_PACKET, message, { reasonCode: 0x81 })
}

export function protocolError (message: string): PetrelError {
  return new PetrelError(WireErrorCode.PROTOCOL_ERROR, message, { reasonCode: 0x82 })
}

export function invalidPacket (message: string): PetrelError {
  return new PetrelError(WireErrorCode.INVALID_PACKET, message)
}
