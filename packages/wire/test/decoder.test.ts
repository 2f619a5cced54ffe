import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Decoder, encode, MAX_PACKET_SIZE, PetrelError, WireErrorCode, type Packet, type ProtocolVersion } from '../src/index.js'
import { assertPetrelError, assertSamePacket, hex, type ExpectedError } from './helpers.js'

const MALFORMED: ExpectedError = { code: WireErrorCode.MALFORMED_PACKET, reasonCode: 0x81 }
const PROTOCOL: ExpectedError = { code: WireErrorCode.PROTOCOL_ERROR, reasonCode: 0x82 }
const TOO_LARGE: ExpectedError = { code: WireErrorCode.PACKET_TOO_LARGE, reasonCode: 0x95 }
const UNSUPPORTED: ExpectedError = { code: WireErrorCode.UNSUPPORTED_PROTOCOL_VERSION, reasonCode: 0x84 }
const PAYLOAD_FORMAT: ExpectedError = { code: WireErrorCode.PAYLOAD_FORMAT_INVALID, reasonCode: 0x99 }
const TOPIC_ALIAS: ExpectedError = { code: WireErrorCode.TOPIC_ALIAS_INVALID, reasonCode: 0x94 }

function varint (n: number): string {
  const out: number[] = []
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    out.push(byte)
  } while (n > 0)
  return out.map((x) => x.toString(16).padStart(2, '0')).join(' ')
}

/** A whole packet: first byte, a correct remaining length, then `body` (hex). */
function pkt (b1: number, body: string): string {
  return `${b1.toString(16).padStart(2, '0')} ${varint(hex(body).length)} ${body}`
}

const MQTT4 = '00 04 4d 51 54 54 04'
const MQTT5 = '00 04 4d 51 54 54 05'
const SHARE_G = '24 73 68 61 72 65 2f 67' // "$share/g"

interface Row {
  name: string
  /** Version the decoder is told; undefined: it learns it from a CONNECT. */
  version: ProtocolVersion | undefined
  hex: string
  expected: ExpectedError
  maxPacketSize?: number
}

// One row per validation the decoder performs. Every hex string is a complete packet (or a fixed
// header that already fails), so the error cannot be "need more bytes".
const rows: Row[] = [
  // --- fixed header, §2.1 -------------------------------------------------------------------
  { name: 'packet type 0 is reserved [MQTT-2.1.2]', version: 4, hex: '00 00', expected: MALFORMED },
  ...[1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15].map((type): Row => {
    const required = type === 6 || type === 8 || type === 10 ? 2 : 0
    const b1 = (type << 4) | (required === 2 ? 0 : 1)
    return { name: `reserved flags on packet type ${type} [MQTT-2.1.3-1]`, version: 5, hex: `${b1.toString(16)} 00`, expected: MALFORMED }
  }),
  { name: 'PUBREL with flags 0011 [MQTT-3.6.1-1]', version: 4, hex: '63 02 00 01', expected: MALFORMED },
  { name: 'AUTH before MQTT 5.0 [MQTT-2.1.2]', version: 4, hex: 'f0 00', expected: MALFORMED },
  { name: 'remaining length longer than 4 bytes [MQTT-2.2.3]', version: 4, hex: '30 ff ff ff ff 7f', expected: MALFORMED },
  { name: 'remaining length not minimal: 0 in two bytes [MQTT-1.5.5-1]', version: 4, hex: 'c0 80 00', expected: MALFORMED },
  { name: 'remaining length not minimal: 1 in two bytes [MQTT-1.5.5-1]', version: 4, hex: '40 82 00 00 01', expected: MALFORMED },
  { name: 'packet larger than maxPacketSize', version: 4, hex: pkt(0x30, '00 01 74 61 62 63 64 65 66'), expected: TOO_LARGE, maxPacketSize: 10 },

  // --- PUBLISH, §3.3 ------------------------------------------------------------------------
  { name: 'PUBLISH with QoS 3 [MQTT-3.3.1-4]', version: 4, hex: pkt(0x36, '00 01 74 00 01'), expected: MALFORMED },
  { name: 'DUP on a QoS 0 PUBLISH [MQTT-3.3.1-2]', version: 4, hex: pkt(0x38, '00 01 74'), expected: MALFORMED },
  { name: 'PUBLISH with packet id 0 [MQTT-2.2.1-3]', version: 4, hex: pkt(0x32, '00 01 74 00 00'), expected: MALFORMED },
  { name: 'QoS 1 PUBLISH without a packet id', version: 4, hex: pkt(0x32, '00 01 74'), expected: MALFORMED },
  { name: '+ in a topic name [MQTT-3.3.2-2]', version: 4, hex: pkt(0x30, '00 03 61 2f 2b'), expected: MALFORMED },
  { name: '# in a topic name [MQTT-3.3.2-2]', version: 4, hex: pkt(0x30, '00 01 23'), expected: MALFORMED },
  { name: 'empty topic name in 3.1.1 [MQTT-4.7.3-1]', version: 4, hex: pkt(0x30, '00 00 68'), expected: MALFORMED },
  { name: 'empty topic name without a topic alias in 5.0 [MQTT-3.3.2-1]', version: 5, hex: pkt(0x30, '00 00 00 68'), expected: PROTOCOL },
  { name: 'topic alias 0 [MQTT-3.3.2-8]', version: 5, hex: pkt(0x30, '00 01 74 03 23 00 00'), expected: TOPIC_ALIAS },
  { name: 'topic alias 0 with an empty topic name [MQTT-3.3.2-8]', version: 5, hex: pkt(0x32, '00 00 00 01 03 23 00 00 68'), expected: TOPIC_ALIAS },
  { name: 'topic length runs past the packet', version: 4, hex: pkt(0x30, '00 05 61'), expected: MALFORMED },
  { name: 'payload not UTF-8 although Payload Format Indicator is 1 [MQTT-3.3.2-4]', version: 5, hex: pkt(0x30, '00 01 74 02 01 01 ff'), expected: PAYLOAD_FORMAT },

  // --- UTF-8 strings, §1.5.4 ----------------------------------------------------------------
  { name: 'UTF-8: byte 0xff [MQTT-1.5.4-1]', version: 4, hex: pkt(0x30, '00 01 ff'), expected: MALFORMED },
  { name: 'UTF-8: lone continuation byte [MQTT-1.5.4-1]', version: 4, hex: pkt(0x30, '00 01 80'), expected: MALFORMED },
  { name: 'UTF-8: truncated sequence [MQTT-1.5.4-1]', version: 4, hex: pkt(0x30, '00 02 61 c3'), expected: MALFORMED },
  { name: 'UTF-8: bad continuation inside a sequence [MQTT-1.5.4-1]', version: 4, hex: pkt(0x30, '00 03 e2 28 a1'), expected: MALFORMED },
  { name: 'UTF-8: overlong 2-byte NUL (c0 80) [MQTT-1.5.4-1]', version: 4, hex: pkt(0x30, '00 02 c0 80'), expected: MALFORMED },
  { name: 'UTF-8: overlong 3-byte form [MQTT-1.5.4-1]', version: 4, hex: pkt(0x30, '00 03 e0 80 af'), expected: MALFORMED },
  { name: 'UTF-8: surrogate U+D800 [MQTT-1.5.4-1]', version: 4, hex: pkt(0x30, '00 03 ed a0 80'), expected: MALFORMED },
  { name: 'UTF-8: surrogate U+DFFF [MQTT-1.5.4-1]', version: 4, hex: pkt(0x30, '00 03 ed bf bf'), expected: MALFORMED },
  { name: 'UTF-8: beyond U+10FFFF [MQTT-1.5.4-1]', version: 4, hex: pkt(0x30, '00 04 f4 90 80 80'), expected: MALFORMED },
  { name: 'UTF-8: U+0000 in a topic name [MQTT-1.5.4-2]', version: 4, hex: pkt(0x30, '00 03 61 00 62'), expected: MALFORMED },
  { name: 'UTF-8: U+0000 in a long (non-fast-path) topic [MQTT-1.5.4-2]', version: 4, hex: pkt(0x30, `00 28 ${'61 '.repeat(39)}00`), expected: MALFORMED },
  { name: 'UTF-8: U+0000 in a client id [MQTT-1.5.4-2]', version: undefined, hex: pkt(0x10, `${MQTT4} 02 00 3c 00 02 63 00`), expected: MALFORMED },
  { name: 'UTF-8: ill-formed user property value [MQTT-1.5.4-1]', version: 5, hex: pkt(0x30, '00 01 74 07 26 00 01 61 00 01 fe'), expected: MALFORMED },

  // --- CONNECT, §3.1 (the decoder learns the version from it) -------------------------------
  { name: 'CONNECT: unknown protocol name [MQTT-3.1.2-1]', version: undefined, hex: pkt(0x10, '00 04 4d 51 54 58 04 02 00 3c 00 01 63'), expected: PROTOCOL },
  { name: 'CONNECT: MQTT level 6 [MQTT-3.1.2-2]', version: undefined, hex: pkt(0x10, '00 04 4d 51 54 54 06 02 00 3c 00 01 63'), expected: UNSUPPORTED },
  { name: 'CONNECT: MQTT level 3 [MQTT-3.1.2-2]', version: undefined, hex: pkt(0x10, '00 04 4d 51 54 54 03 02 00 3c 00 01 63'), expected: UNSUPPORTED },
  { name: 'CONNECT: MQIsdp level 4 [MQTT-3.1.2-2]', version: undefined, hex: pkt(0x10, '00 06 4d 51 49 73 64 70 04 02 00 3c 00 01 63'), expected: UNSUPPORTED },
  { name: 'CONNECT: reserved flag [MQTT-3.1.2-3]', version: undefined, hex: pkt(0x10, `${MQTT4} 03 00 3c 00 01 63`), expected: MALFORMED },
  { name: 'CONNECT: will QoS without the will flag [MQTT-3.1.2-11]', version: undefined, hex: pkt(0x10, `${MQTT4} 0a 00 3c 00 01 63`), expected: MALFORMED },
  { name: 'CONNECT: will retain without the will flag [MQTT-3.1.2-13]', version: undefined, hex: pkt(0x10, `${MQTT4} 22 00 3c 00 01 63`), expected: MALFORMED },
  { name: 'CONNECT: will QoS 3 [MQTT-3.1.2-12]', version: undefined, hex: pkt(0x10, `${MQTT4} 1e 00 3c 00 01 63 00 01 74 00 00`), expected: MALFORMED },
  { name: 'CONNECT: password without user name in 3.1.1 [MQTT-3.1.2-22]', version: undefined, hex: pkt(0x10, `${MQTT4} 42 00 3c 00 01 63 00 01 70`), expected: MALFORMED },
  { name: 'CONNECT: empty will topic [MQTT-3.1.3-11]', version: undefined, hex: pkt(0x10, `${MQTT4} 06 00 3c 00 01 63 00 00 00 00`), expected: MALFORMED },
  { name: 'CONNECT: wildcard in the will topic [MQTT-3.1.3-11]', version: undefined, hex: pkt(0x10, `${MQTT4} 06 00 3c 00 01 63 00 01 23 00 00`), expected: MALFORMED },
  { name: 'CONNECT: trailing bytes', version: undefined, hex: pkt(0x10, `${MQTT4} 02 00 3c 00 01 63 00`), expected: MALFORMED },
  { name: 'CONNECT: client id runs past the packet', version: undefined, hex: pkt(0x10, `${MQTT4} 02 00 3c 00 09 63`), expected: MALFORMED },
  { name: 'CONNECT: truncated before the keep alive', version: undefined, hex: pkt(0x10, `${MQTT4} 02 00`), expected: MALFORMED },
  { name: 'CONNECT: authentication data without a method [MQTT-3.1.2.11.10]', version: undefined, hex: pkt(0x10, `${MQTT5} 02 00 3c 03 16 00 00 00 01 63`), expected: PROTOCOL },
  { name: 'CONNECT: Request Problem Information 2', version: undefined, hex: pkt(0x10, `${MQTT5} 02 00 3c 02 17 02 00 01 63`), expected: PROTOCOL },
  { name: 'CONNECT: topic alias is not a CONNECT property', version: undefined, hex: pkt(0x10, `${MQTT5} 02 00 3c 03 23 00 01 00 01 63`), expected: PROTOCOL },
  { name: 'CONNECT: session expiry is not a will property', version: undefined, hex: pkt(0x10, `${MQTT5} 06 00 3c 00 00 01 63 05 11 00 00 00 01 00 01 74 00 00`), expected: PROTOCOL },

  // --- CONNACK, §3.2 ------------------------------------------------------------------------
  { name: 'CONNACK: reserved flags [MQTT-3.2.2-1]', version: 4, hex: pkt(0x20, '02 00'), expected: MALFORMED },
  { name: 'CONNACK: 3.1.1 return code 6', version: 4, hex: pkt(0x20, '00 06'), expected: PROTOCOL },
  { name: 'CONNACK: reason code 0x10 is not a CONNACK code', version: 5, hex: pkt(0x20, '00 10 00'), expected: PROTOCOL },
  { name: 'CONNACK: session present with a refusal [MQTT-3.2.2-6]', version: 4, hex: pkt(0x20, '01 05'), expected: PROTOCOL },
  { name: 'CONNACK: trailing bytes in 3.1.1', version: 4, hex: pkt(0x20, '00 00 00'), expected: MALFORMED },
  { name: 'CONNACK: 5.0 without a property length', version: 5, hex: pkt(0x20, '00 00'), expected: MALFORMED },
  { name: 'CONNACK: Maximum QoS 2', version: 5, hex: pkt(0x20, '00 00 02 24 02'), expected: PROTOCOL },
  { name: 'CONNACK: Receive Maximum 0', version: 5, hex: pkt(0x20, '00 00 03 21 00 00'), expected: PROTOCOL },
  { name: 'CONNACK: Maximum Packet Size 0', version: 5, hex: pkt(0x20, '00 00 05 27 00 00 00 00'), expected: PROTOCOL },

  // --- PUBACK / PUBREC / PUBREL / PUBCOMP, §3.4-3.7 ----------------------------------------
  { name: 'PUBACK: packet id 0 [MQTT-2.2.1-3]', version: 4, hex: '40 02 00 00', expected: MALFORMED },
  { name: 'PUBACK: trailing bytes in 3.1.1', version: 4, hex: pkt(0x40, '00 01 00'), expected: MALFORMED },
  { name: 'PUBACK: reason code 0x92 is not a PUBACK code', version: 5, hex: pkt(0x40, '00 01 92'), expected: PROTOCOL },
  { name: 'PUBREL: reason code 0x10 is not a PUBREL code', version: 5, hex: pkt(0x62, '00 01 10'), expected: PROTOCOL },
  { name: 'PUBREC: content type is not an ack property', version: 5, hex: pkt(0x50, '00 01 00 04 03 00 01 61'), expected: PROTOCOL },
  { name: 'PUBCOMP: truncated packet id', version: 5, hex: pkt(0x70, '00'), expected: MALFORMED },

  // --- SUBSCRIBE, §3.8 ----------------------------------------------------------------------
  { name: 'SUBSCRIBE: no topic filter in 3.1.1 [MQTT-3.8.3-3]', version: 4, hex: pkt(0x82, '00 01'), expected: PROTOCOL },
  { name: 'SUBSCRIBE: no topic filter in 5.0 [MQTT-3.8.3-2]', version: 5, hex: pkt(0x82, '00 01 00'), expected: PROTOCOL },
  { name: 'SUBSCRIBE: packet id 0 [MQTT-2.2.1-3]', version: 4, hex: pkt(0x82, '00 00 00 01 61 00'), expected: MALFORMED },
  { name: 'SUBSCRIBE: QoS 3 [MQTT-3.8.3-4]', version: 4, hex: pkt(0x82, '00 01 00 01 61 03'), expected: MALFORMED },
  { name: 'SUBSCRIBE: reserved option bits in 3.1.1 [MQTT-3.8.3-4]', version: 4, hex: pkt(0x82, '00 01 00 01 61 04'), expected: MALFORMED },
  { name: 'SUBSCRIBE: reserved option bits in 5.0 [MQTT-3.8.3-5]', version: 5, hex: pkt(0x82, '00 01 00 00 01 61 40'), expected: MALFORMED },
  { name: 'SUBSCRIBE: retain handling 3', version: 5, hex: pkt(0x82, '00 01 00 00 01 61 30'), expected: PROTOCOL },
  { name: 'SUBSCRIBE: No Local on a shared subscription [MQTT-3.8.3-4]', version: 5, hex: pkt(0x82, `00 01 00 00 0a ${SHARE_G} 2f 78 04`), expected: PROTOCOL },
  { name: 'SUBSCRIBE: # not last [MQTT-4.7.1-2]', version: 4, hex: pkt(0x82, '00 01 00 05 61 2f 23 2f 62 00'), expected: MALFORMED },
  { name: 'SUBSCRIBE: # not a whole level [MQTT-4.7.1-2]', version: 4, hex: pkt(0x82, '00 01 00 02 61 23 00'), expected: MALFORMED },
  { name: 'SUBSCRIBE: + not a whole level [MQTT-4.7.1-3]', version: 4, hex: pkt(0x82, '00 01 00 02 61 2b 00'), expected: MALFORMED },
  { name: 'SUBSCRIBE: $share without a filter [MQTT-4.8.2-2]', version: 5, hex: pkt(0x82, `00 01 00 00 08 ${SHARE_G} 00`), expected: MALFORMED },
  { name: 'SUBSCRIBE: $share with an empty filter [MQTT-4.8.2-2]', version: 5, hex: pkt(0x82, `00 01 00 00 09 ${SHARE_G} 2f 00`), expected: MALFORMED },
  { name: 'SUBSCRIBE: $share with an empty ShareName [MQTT-4.8.2-1]', version: 5, hex: pkt(0x82, '00 01 00 00 09 24 73 68 61 72 65 2f 2f 78 00'), expected: MALFORMED },
  { name: 'SUBSCRIBE: $share with + in the ShareName [MQTT-4.8.2-2]', version: 5, hex: pkt(0x82, `00 01 00 00 0b ${SHARE_G} 2b 2f 78 00`), expected: MALFORMED },
  { name: 'SUBSCRIBE: empty topic filter [MQTT-4.7.3-1]', version: 4, hex: pkt(0x82, '00 01 00 00 01'), expected: MALFORMED },
  { name: 'SUBSCRIBE: missing subscription options', version: 4, hex: pkt(0x82, '00 01 00 01 61'), expected: MALFORMED },
  { name: 'SUBSCRIBE: subscription identifier 0', version: 5, hex: pkt(0x82, '00 01 02 0b 00 00 01 61 00'), expected: PROTOCOL },
  { name: 'SUBSCRIBE: two subscription identifiers', version: 5, hex: pkt(0x82, '00 01 04 0b 01 0b 02 00 01 61 00'), expected: PROTOCOL },
  { name: 'SUBSCRIBE: subscription identifier not minimally encoded [MQTT-1.5.5-1]', version: 5, hex: pkt(0x82, '00 01 03 0b 81 00 00 01 61 00'), expected: MALFORMED },
  { name: 'SUBSCRIBE: subscription identifier longer than 4 bytes [MQTT-1.5.5]', version: 5, hex: pkt(0x82, '00 01 05 0b ff ff ff ff 00 01 61 00'), expected: MALFORMED },

  // --- SUBACK, §3.9 -------------------------------------------------------------------------
  { name: 'SUBACK: 3.1.1 return code 0x03 [MQTT-3.9.3-2]', version: 4, hex: pkt(0x90, '00 01 03'), expected: PROTOCOL },
  { name: 'SUBACK: reason code 0x04 is not a SUBACK code', version: 5, hex: pkt(0x90, '00 01 00 04'), expected: PROTOCOL },

  // --- UNSUBSCRIBE / UNSUBACK, §3.10-3.11 ---------------------------------------------------
  { name: 'UNSUBSCRIBE: no topic filter in 3.1.1 [MQTT-3.10.3-2]', version: 4, hex: pkt(0xa2, '00 01'), expected: PROTOCOL },
  { name: 'UNSUBSCRIBE: no topic filter in 5.0 [MQTT-3.10.3-2]', version: 5, hex: pkt(0xa2, '00 01 00'), expected: PROTOCOL },
  { name: 'UNSUBSCRIBE: # not last [MQTT-4.7.1-2]', version: 4, hex: pkt(0xa2, '00 01 00 05 61 2f 23 2f 62'), expected: MALFORMED },
  { name: 'UNSUBACK: trailing bytes in 3.1.1', version: 4, hex: pkt(0xb0, '00 01 00'), expected: MALFORMED },
  { name: 'UNSUBACK: reason code 0x01 is not an UNSUBACK code', version: 5, hex: pkt(0xb0, '00 01 00 01'), expected: PROTOCOL },

  // --- PINGREQ, PINGRESP, DISCONNECT, AUTH, §3.12-3.15 --------------------------------------
  { name: 'PINGREQ with a body', version: 4, hex: 'c0 01 00', expected: MALFORMED },
  { name: 'PINGRESP with a body', version: 5, hex: 'd0 01 00', expected: MALFORMED },
  { name: 'DISCONNECT with a body in 3.1.1', version: 4, hex: 'e0 01 00', expected: MALFORMED },
  { name: 'DISCONNECT: reason code 0x01 is not a DISCONNECT code', version: 5, hex: 'e0 01 01', expected: PROTOCOL },
  { name: 'DISCONNECT: topic alias is not a DISCONNECT property', version: 5, hex: pkt(0xe0, '00 03 23 00 01'), expected: PROTOCOL },
  { name: 'AUTH: reason code 0x01 is not an AUTH code', version: 5, hex: 'f0 01 01', expected: PROTOCOL },
  { name: 'AUTH: trailing bytes after the properties', version: 5, hex: pkt(0xf0, '18 00 00'), expected: MALFORMED },

  // --- properties, §2.2.2 (on a 5.0 PUBLISH to topic "t") -----------------------------------
  { name: 'property: unknown identifier 0x05', version: 5, hex: pkt(0x30, '00 01 74 02 05 00'), expected: MALFORMED },
  { name: 'property: unknown identifier 0x7f', version: 5, hex: pkt(0x30, '00 01 74 02 7f 00'), expected: MALFORMED },
  { name: 'property: identifier not minimally encoded [MQTT-1.5.5-1]', version: 5, hex: pkt(0x30, '00 01 74 03 81 00 00'), expected: MALFORMED },
  { name: 'property: session expiry not allowed on PUBLISH', version: 5, hex: pkt(0x30, '00 01 74 05 11 00 00 00 01'), expected: PROTOCOL },
  { name: 'property: content type twice', version: 5, hex: pkt(0x30, '00 01 74 08 03 00 01 61 03 00 01 62'), expected: PROTOCOL },
  { name: 'property: topic alias twice', version: 5, hex: pkt(0x30, '00 01 74 06 23 00 01 23 00 02'), expected: PROTOCOL },
  { name: 'property: length runs past the packet', version: 5, hex: pkt(0x30, '00 01 74 09 01 01'), expected: MALFORMED },
  { name: 'property: a value runs past the property length', version: 5, hex: pkt(0x30, '00 01 74 02 03 00 05 61 62 63 64 65'), expected: MALFORMED },
  { name: 'property: length not minimally encoded [MQTT-1.5.5-1]', version: 5, hex: pkt(0x30, '00 01 74 80 00'), expected: MALFORMED },
  { name: 'property: response topic with a wildcard [MQTT-3.3.2-14]', version: 5, hex: pkt(0x30, '00 01 74 04 08 00 01 23'), expected: MALFORMED },
  { name: 'property: four-byte integer cut short', version: 5, hex: pkt(0x30, '00 01 74 03 02 00 00'), expected: MALFORMED },
  { name: 'property: binary data runs past the packet', version: 5, hex: pkt(0x30, '00 01 74 03 09 00 09'), expected: MALFORMED },
  { name: 'property: user property without a value', version: 5, hex: pkt(0x30, '00 01 74 04 26 00 01 61'), expected: MALFORMED }
]

describe('Decoder rejects bad input with the right code and reason code', () => {
  for (const row of rows) {
    it(row.name, () => {
      const bytes = hex(row.hex)
      const options = { protocolVersion: row.version, maxPacketSize: row.maxPacketSize }
      assertPetrelError(() => new Decoder(options).push(bytes), row.expected, 'whole')
      // The same error, however the bytes are split.
      const dec = new Decoder(options)
      assertPetrelError(() => { for (let i = 0; i < bytes.length; i++) dec.push(bytes.subarray(i, i + 1)) }, row.expected, 'one byte at a time')
    })
  }
})

describe('Decoder', () => {
  it('checkPayloadFormat: false delivers a payload declared UTF-8 that is not, as received', () => {
    const bytes = hex(pkt(0x32, '00 01 74 00 07 02 01 01 ff fe'))
    const [p] = new Decoder({ protocolVersion: 5, checkPayloadFormat: false }).push(bytes)
    assert.equal(p?.type, 'publish')
    assert.deepEqual(p.type === 'publish' ? [...p.payload] : [], [0xff, 0xfe])
    assertPetrelError(() => new Decoder({ protocolVersion: 5 }).push(bytes), PAYLOAD_FORMAT, 'checked by default')
  })

  it('decodes what encode() writes, for a stream of packets in one chunk', () => {
    const packets: Packet[] = [
      { type: 'publish', topicName: 'a', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 1 },
      { type: 'puback', packetId: 1 },
      { type: 'pingreq' }
    ]
    const bytes = Buffer.concat(packets.map((p) => encode(p, 4)))
    assertSamePacket(new Decoder({ protocolVersion: 4 }).push(bytes), packets)
  })

  it('accepts plain Uint8Array chunks and empty chunks', () => {
    const dec = new Decoder({ protocolVersion: 4 })
    assert.deepEqual(dec.push(new Uint8Array(0)), [])
    const out = dec.push(new Uint8Array([0xd0, 0x00, 0xc0]))
    assert.deepEqual(out, [{ type: 'pingresp' }])
    assert.equal(dec.bufferedBytes, 1)
    assert.deepEqual(dec.push(new Uint8Array([0x00])), [{ type: 'pingreq' }])
    assert.equal(dec.bufferedBytes, 0)
  })

  it('learns the protocol version from the CONNECT it decodes, in the same chunk', () => {
    const connect = encode({ type: 'connect', protocolVersion: 5, clientId: 'c', cleanStart: true, keepAlive: 0 }, 5)
    const publish = encode({ type: 'publish', topicName: 't', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false, properties: { contentType: 'x' } }, 5)
    const auth = hex('f0 00')
    const dec = new Decoder()
    assert.equal(dec.protocolVersion, undefined)
    const out = dec.push(Buffer.concat([connect, publish, auth]))
    assert.equal(dec.protocolVersion, 5)
    assert.deepEqual(out.map((p) => p.type), ['connect', 'publish', 'auth'])
    assert.equal(out[1]?.type === 'publish' ? out[1].properties?.contentType : undefined, 'x')
  })

  it('reads 3.1.1 until it has seen a CONNECT', () => {
    // A 5.0 PUBLISH read as 3.1.1: the property length byte becomes part of the payload.
    const out = new Decoder().push(hex('30 06 00 01 74 00 68 69'))
    assert.equal(out[0]?.type === 'publish' ? out[0].payload.length : -1, 3)
  })

  it('does not copy the payload of a packet that arrives whole', () => {
    const chunk = hex('30 07 00 03 61 2f 62 68 69')
    const [p] = new Decoder({ protocolVersion: 4 }).push(chunk)
    assert.ok(p?.type === 'publish')
    assert.equal(p.payload.buffer, chunk.buffer)
    assert.equal(p.payload.byteOffset, chunk.byteOffset + 7)
  })

  it('accepts U+0000 in a payload declared UTF-8 (it is character data, not a UTF-8 String)', () => {
    const [p] = new Decoder({ protocolVersion: 5 }).push(hex(pkt(0x30, '00 01 74 02 01 01 61 00 c3 a9')))
    assert.ok(p?.type === 'publish')
    assert.equal(Buffer.from(p.payload).toString('utf8'), 'a\u0000é')
  })

  it('stays failed after an error, and pushInto keeps the packets decoded before it', () => {
    const dec = new Decoder({ protocolVersion: 4 })
    const out: Packet[] = []
    const first = assertPetrelError(() => { dec.pushInto(hex('d0 00 c0 00 36 00'), out) }, MALFORMED)
    assert.deepEqual(out, [{ type: 'pingresp' }, { type: 'pingreq' }])
    const again = assertPetrelError(() => dec.push(hex('d0 00')), MALFORMED)
    assert.equal(again, first)
  })

  describe('maximum packet size', () => {
    it('rejects a header claiming 256 MiB as soon as the 5 header bytes are in', () => {
      const dec = new Decoder({ protocolVersion: 4, maxPacketSize: 1 << 20 })
      assertPetrelError(() => dec.push(hex('30 ff ff ff 7f')), TOO_LARGE)
    })

    it('rejects it on the last header byte when the header arrives byte by byte', () => {
      const dec = new Decoder({ protocolVersion: 4, maxPacketSize: 1 << 20 })
      for (const byte of ['30', 'ff', 'ff', 'ff']) assert.deepEqual(dec.push(hex(byte)), [])
      assertPetrelError(() => dec.push(hex('7f')), TOO_LARGE)
    })

    it('accepts a packet of exactly maxPacketSize bytes and rejects one byte more', () => {
      const packet = hex(pkt(0x30, '00 01 74 61 62 63 64 65 66'))
      assert.equal(new Decoder({ protocolVersion: 4, maxPacketSize: packet.length }).push(packet).length, 1)
      assertPetrelError(() => new Decoder({ protocolVersion: 4, maxPacketSize: packet.length - 1 }).push(packet), TOO_LARGE)
    })

    it('bounds CONNECT and AUTH by maxConnectPacketSize (from the header), other packets by maxPacketSize', () => {
      const connect = encode({ type: 'connect', protocolVersion: 5, clientId: 'x'.repeat(200), cleanStart: true, keepAlive: 0 }, 5)
      const publish = encode({ type: 'publish', topicName: 't', payload: Buffer.alloc(300), qos: 0, retain: false, dup: false }, 5)
      const opts = { maxPacketSize: 1000, maxConnectPacketSize: 100 }
      assertPetrelError(() => new Decoder(opts).push(connect.subarray(0, 4)), TOO_LARGE)
      assert.equal(new Decoder({ ...opts, protocolVersion: 5 }).push(publish).length, 1)
      assertPetrelError(() => new Decoder({ ...opts, protocolVersion: 5 }).push(hex('f0 ff 01')), TOO_LARGE) // AUTH of 258 bytes
      assert.equal(new Decoder({ maxPacketSize: 1000 }).push(connect).length, 1, 'default: maxPacketSize')
      assert.equal(new Decoder({ maxPacketSize: 50, maxConnectPacketSize: 5000 }).maxConnectPacketSize, 50, 'capped at maxPacketSize')
    })

    it('an oversized CONNECT leaves its protocol level in protocolVersion when the bytes naming it came with its header (a server can answer 5.0 CONNACK 0x95)', () => {
      const opts = { maxPacketSize: 1000, maxConnectPacketSize: 100 }
      for (const v of [3, 4, 5] as const) {
        const connect = encode({ type: 'connect', protocolVersion: v, clientId: 'x'.repeat(200), cleanStart: true, keepAlive: 0 }, v)
        const d = new Decoder(opts)
        assertPetrelError(() => d.push(connect), TOO_LARGE)
        assert.equal(d.protocolVersion, v)
        // past maxPacketSize too
        const e = new Decoder({ maxPacketSize: 100 })
        assertPetrelError(() => e.push(connect), TOO_LARGE)
        assert.equal(e.protocolVersion, v)
        // not there yet (header alone; name cut short): unknown, refused as before
        for (const cut of [3, 8]) {
          const f = new Decoder(opts)
          assertPetrelError(() => f.push(connect.subarray(0, cut)), TOO_LARGE)
          assert.equal(f.protocolVersion, undefined, `${cut} bytes`)
        }
      }
      // an unknown name or level is no level
      const odd = Buffer.from(encode({ type: 'connect', protocolVersion: 5, clientId: 'x'.repeat(200), cleanStart: true, keepAlive: 0 }, 5))
      odd[9] = 6
      const d = new Decoder(opts)
      assertPetrelError(() => d.push(odd), TOO_LARGE)
      assert.equal(d.protocolVersion, undefined)
    })

    it('bounds the User Property pairs of one packet by maxUserProperties (a CONNECT\'s and its will\'s together), before decoding the one too many', () => {
      const pairs = (n: number): Array<[string, string]> => Array.from({ length: n }, (_, i) => [`k${i}`, 'v'])
      const publish = (n: number): Buffer => encode({ type: 'publish', topicName: 't', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false, properties: { userProperties: pairs(n) } }, 5)
      const dec = new Decoder({ protocolVersion: 5, maxUserProperties: 3 })
      // The count starts again with each packet.
      const two = dec.push(Buffer.concat([publish(3), publish(3)]))
      assert.equal(two.length, 2)
      assert.deepEqual(two[1]?.type === 'publish' ? two[1].properties?.userProperties : undefined, pairs(3))
      assertPetrelError(() => new Decoder({ protocolVersion: 5, maxUserProperties: 3 }).push(publish(4)), TOO_LARGE)
      const connect = encode({
        type: 'connect', protocolVersion: 5, clientId: 'c', cleanStart: true, keepAlive: 0, properties: { userProperties: pairs(2) },
        will: { topicName: 'w', payload: Buffer.alloc(0), qos: 0, retain: false, properties: { userProperties: pairs(2) } }
      }, 5)
      assertPetrelError(() => new Decoder({ maxUserProperties: 3 }).push(connect), TOO_LARGE)
      assert.equal(new Decoder({ maxUserProperties: 4 }).push(connect).length, 1)
      // Default: no limit (what the spec sets).
      assert.equal(new Decoder({ protocolVersion: 5 }).push(publish(5000)).length, 1)
      // 200,000 empty pairs (1 MB) fail at the first one past the limit: cheap, whatever comes after.
      const flood = Buffer.concat([hex('00 01 74'), hex(varint(1_000_000)), Buffer.alloc(1_000_000).fill(hex('26 00 00 00 00'))])
      const packet = Buffer.concat([hex(`30 ${varint(flood.length)}`), flood])
      assertPetrelError(() => new Decoder({ protocolVersion: 5, maxUserProperties: 1024 }).push(packet), TOO_LARGE)
    })

    it('userPropertiesOverflow \'mark\': a PUBLISH past maxUserProperties decodes whole but for its User Properties (none kept, the rest still checked) and is marked; other packets still fail; the decoder goes on', () => {
      const pairs = (n: number): Array<[string, string]> => Array.from({ length: n }, (_, i) => [`k${i}`, 'v'])
      const publish = (n: number): Buffer => encode({
        type: 'publish', topicName: 'a/b', payload: Buffer.from('x'), qos: 2, retain: true, dup: true, packetId: 7,
        properties: { topicAlias: 3, correlationData: Buffer.from('c'), userProperties: pairs(n) }
      }, 5)
      const dec = new Decoder({ protocolVersion: 5, maxUserProperties: 3, userPropertiesOverflow: 'mark' })
      const [over, within] = dec.push(Buffer.concat([publish(4), publish(3)]))
      assertSamePacket(over as Packet, {
        type: 'publish', topicName: 'a/b', payload: Buffer.from('x'), qos: 2, retain: true, dup: true, packetId: 7,
        properties: { topicAlias: 3, correlationData: Buffer.from('c') }, userPropertiesExceeded: true
      })
      assert.equal(over?.type === 'publish' ? Object.hasOwn(over.properties ?? {}, 'userProperties') : undefined, false)
      assert.equal(within?.type === 'publish' ? within.userPropertiesExceeded : 'none', undefined, 'the next one is whole again')
      assert.deepEqual(within?.type === 'publish' ? within.properties?.userProperties : undefined, pairs(3))
      // Strict still: a pair past the limit that is not a UTF-8 string pair is Malformed.
      const bad = Buffer.concat([hex('00 01 74'), hex(varint(21)), Buffer.alloc(15).fill(hex('26 00 00 00 00')), hex('26 00 01 00 00 00')])
      assertPetrelError(() => new Decoder({ protocolVersion: 5, maxUserProperties: 2, userPropertiesOverflow: 'mark' }).push(Buffer.concat([hex(`30 ${varint(bad.length)}`), bad])), MALFORMED)
      // Only a PUBLISH is marked: a PUBACK (or CONNECT, SUBACK...) past the limit is Packet Too Large.
      const puback = encode({ type: 'puback', packetId: 1, reasonCode: 0, properties: { userProperties: pairs(4) } }, 5)
      assertPetrelError(() => new Decoder({ protocolVersion: 5, maxUserProperties: 3, userPropertiesOverflow: 'mark' }).push(puback), TOO_LARGE)
      // 200,000 empty pairs (1 MB): decoded, none kept.
      const flood = Buffer.concat([hex('00 01 74'), hex(varint(1_000_000)), Buffer.alloc(1_000_000).fill(hex('26 00 00 00 00'))])
      const [big] = new Decoder({ protocolVersion: 5, maxUserProperties: 1024, userPropertiesOverflow: 'mark' }).push(Buffer.concat([hex(`30 ${varint(flood.length)}`), flood]))
      assert.equal(big?.type === 'publish' && big.userPropertiesExceeded === true && big.properties?.userProperties === undefined, true)
      // 'error' is the default.
      assertPetrelError(() => new Decoder({ protocolVersion: 5, maxUserProperties: 3 }).push(publish(4)), TOO_LARGE)
    })

    it('bounds the Subscription Identifiers of one PUBLISH by maxSubscriptionIdentifiers', () => {
      const publish = (n: number): Buffer => encode({ type: 'publish', topicName: 't', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false, properties: { subscriptionIdentifiers: Array.from({ length: n }, (_, i) => i + 1) } }, 5)
      const dec = new Decoder({ protocolVersion: 5, maxSubscriptionIdentifiers: 3 })
      assert.equal(dec.push(Buffer.concat([publish(3), publish(3)])).length, 2)
      assertPetrelError(() => new Decoder({ protocolVersion: 5, maxSubscriptionIdentifiers: 3 }).push(publish(4)), TOO_LARGE)
      assert.equal(new Decoder({ protocolVersion: 5 }).push(publish(5000)).length, 1, 'default: no limit')
    })

    it('subscriptionIdentifiersOverflow \'mark\': a PUBLISH past maxSubscriptionIdentifiers decodes whole but for its Subscription Identifiers (none kept, the rest still checked) and is marked; the decoder goes on', () => {
      const publish = (ids: number[], userProperties?: Array<[string, string]>): Buffer => encode({
        type: 'publish', topicName: 'a/b', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 9,
        properties: { subscriptionIdentifiers: ids, contentType: 'text/plain', userProperties }
      }, 5)
      const dec = new Decoder({ protocolVersion: 5, maxSubscriptionIdentifiers: 3, subscriptionIdentifiersOverflow: 'mark' })
      const [over, within] = dec.push(Buffer.concat([publish([1, 2, 3, 4, 5], [['k', 'v']]), publish([7, 8, 9])]))
      assertSamePacket(over as Packet, {
        type: 'publish', topicName: 'a/b', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 9,
        properties: { contentType: 'text/plain', userProperties: [['k', 'v']] }, subscriptionIdentifiersExceeded: true
      })
      assert.equal(over?.type === 'publish' ? Object.hasOwn(over.properties ?? {}, 'subscriptionIdentifiers') : undefined, false)
      assert.equal(within?.type === 'publish' ? within.subscriptionIdentifiersExceeded : 'none', undefined, 'the next one is whole again')
      assert.deepEqual(within?.type === 'publish' ? within.properties?.subscriptionIdentifiers : undefined, [7, 8, 9])
      // Strict still: an identifier 0 past the limit is a Protocol Error.
      const zero = Buffer.concat([hex('00 01 74'), hex('0a 0b 01 0b 02 0b 03 0b 04 0b 00')])
      assertPetrelError(() => new Decoder({ protocolVersion: 5, maxSubscriptionIdentifiers: 2, subscriptionIdentifiersOverflow: 'mark' }).push(Buffer.concat([hex(`30 ${varint(zero.length)}`), zero])), PROTOCOL)
      // 500,000 identifiers (1 MB): decoded, none kept.
      const flood = Buffer.concat([hex('00 01 74'), hex(varint(1_000_000)), Buffer.alloc(1_000_000).fill(hex('0b 01'))])
      const [big] = new Decoder({ protocolVersion: 5, maxSubscriptionIdentifiers: 65_535, subscriptionIdentifiersOverflow: 'mark' }).push(Buffer.concat([hex(`30 ${varint(flood.length)}`), flood]))
      assert.equal(big?.type === 'publish' && big.subscriptionIdentifiersExceeded === true && big.properties?.subscriptionIdentifiers === undefined, true)
      // userPropertiesOverflow does not cover them, nor the reverse: 'error' is the default.
      assertPetrelError(() => new Decoder({ protocolVersion: 5, maxSubscriptionIdentifiers: 3, userPropertiesOverflow: 'mark' }).push(publish([1, 2, 3, 4])), TOO_LARGE)
      assertPetrelError(() => new Decoder({ protocolVersion: 5, maxUserProperties: 0, subscriptionIdentifiersOverflow: 'mark' }).push(publish([1], [['k', 'v']])), TOO_LARGE)
    })

    it('defaults to the largest packet the spec allows', () => {
      assert.equal(new Decoder().maxPacketSize, MAX_PACKET_SIZE)
      assert.equal(MAX_PACKET_SIZE, 1 + 4 + 268_435_455)
    })

    it('does not allocate for a 200 MB packet whose bytes have not arrived', () => {
      const dec = new Decoder({ protocolVersion: 4 })
      ;(globalThis as { gc?: () => void }).gc?.()
      const before = process.memoryUsage()
      assert.deepEqual(dec.push(hex(`30 ${varint(200_000_000)} 00 01 74`)), [])
      for (let i = 0; i < 10; i++) dec.push(Buffer.alloc(1024, 0x61))
      const after = process.memoryUsage()
      assert.equal(dec.bufferedBytes, 1 + 4 + 3 + 10 * 1024)
      assert.ok(after.arrayBuffers - before.arrayBuffers < 16 * 1024 * 1024, `arrayBuffers grew by ${after.arrayBuffers - before.arrayBuffers}`)
      assert.ok(after.rss - before.rss < 64 * 1024 * 1024, `rss grew by ${after.rss - before.rss}`)
    })
  })

  describe('a packet split across chunks', () => {
    it('gives the same packet for every single cut point', () => {
      const bytes = hex(pkt(0x32, '00 03 61 2f 62 00 07 70 61 79 6c 6f 61 64'))
      const whole = new Decoder({ protocolVersion: 4 }).push(bytes)
      for (let cut = 1; cut < bytes.length; cut++) {
        const dec = new Decoder({ protocolVersion: 4 })
        assert.deepEqual(dec.push(bytes.subarray(0, cut)), [])
        assert.equal(dec.bufferedBytes, cut)
        assertSamePacket(dec.push(bytes.subarray(cut)), whole, `cut at ${cut}`)
      }
    })

    it('decodes a packet completed by a chunk that also holds the next packets', () => {
      const a = hex(pkt(0x30, '00 01 74 61 62 63'))
      const dec = new Decoder({ protocolVersion: 4 })
      assert.deepEqual(dec.push(a.subarray(0, 4)), [])
      const out = dec.push(Buffer.concat([a.subarray(4), hex('c0 00 d0 00')]))
      assert.deepEqual(out.map((p) => p.type), ['publish', 'pingreq', 'pingresp'])
    })

    it('is not corrupted when a chunk held back is one the caller keeps for itself', () => {
      // The decoder keeps views of partial chunks; it must not write into them.
      const bytes = hex(pkt(0x30, '00 01 74 61 62 63'))
      const copy = Buffer.from(bytes)
      const dec = new Decoder({ protocolVersion: 4 })
      dec.push(bytes.subarray(0, 3))
      dec.push(bytes.subarray(3))
      assert.deepEqual(bytes, copy)
    })
  })

  it('errors are PetrelErrors that carry a message', () => {
    const err = assertPetrelError(() => new Decoder({ protocolVersion: 4 }).push(hex('36 03 00 01 74')), MALFORMED)
    assert.ok(err instanceof PetrelError)
    assert.equal(err.name, 'PetrelError')
    assert.match(err.message, /QoS 3/)
  })
})
