import { invalidPacket } from './errors.js'
import { PacketType } from './packet-type.js'
import { topicFilterProblem } from './topic.js'
import { properties as propertyTable, WILL, type Properties } from './property.js'
import type {
  ConnackPacket, ConnectPacket, Packet, ProtocolVersion, PublishPacket, SubscribePacket,
  SubackPacket, UnsubscribePacket, UnsubackPacket
} from './packet.js'

const MAX_REMAINING_LENGTH = 268_435_455
const MAX_VARINT = 268_435_455
const enum Wire { Byte, Two, Four, Varint, String, Binary, Pair }
interface EncodeInfo { readonly id: number, readonly mask: number, readonly wire: Wire }
const wireOf: Record<string, Wire> = {
  byte: Wire.Byte, twoByteInteger: Wire.Two, fourByteInteger: Wire.Four, variableByteInteger: Wire.Varint,
  utf8String: Wire.String, binaryData: Wire.Binary, utf8StringPair: Wire.Pair
}
// Property name -> what the encoder needs, in a prototype-less object (no Map or string switch
// on the hot path). The two forms of identifier 0x0B get their own masks: the single
// `subscriptionIdentifier` only in SUBSCRIBE, the list `subscriptionIdentifiers` only in PUBLISH.
const encodeInfo: Record<string, EncodeInfo | undefined> = Object.create(null) as Record<string, EncodeInfo | undefined>
for (const p of propertyTable) {
  encodeInfo[p.name] = { id: p.id, mask: p.id === 0x0b ? 1 << PacketType.subscribe : p.mask, wire: wireOf[p.wireType] as Wire }
}
encodeInfo.subscriptionIdentifiers = { id: 0x0b, mask: 1 << PacketType.publish, wire: Wire.Varint }

/**
 * Encodes one packet for `protocolVersion` (3, 4 or 5). Sizes the packet once and allocates
 * once. Throws PETREL_ERR_INVALID_PACKET for a packet that cannot go on the wire.
 */
export function encode (packet: Packet, protocolVersion: ProtocolVersion = 4): Buffer {
  const v5 = protocolVersion === 5
  switch (packet.type) {
    case 'publish': return encodePublish(packet, v5)
    case 'puback': case 'pubrec': case 'pubrel': case 'pubcomp': {
      const type = PacketType[packet.type]
      checkPacketId(packet.packetId)
      const rc = packet.reasonCode ?? 0
      const pl = v5 ? propertiesLength(packet.properties, type) : -1
      // [MQTT-3.4.2.1] reason code 0x00 with no properties may be left out
      const rl = !v5 || (rc === 0 && pl === 0) ? 2 : pl === 0 ? 3 : 3 + varintSize(pl) + pl
      const w = new Writer(type === 6 ? 0x62 : type << 4, rl)
      w.u16(packet.packetId)
      if (rl > 2) w.u8(checkByte(rc, 'reasonCode'))
      if (rl > 3) w.properties(packet.properties, pl)
      return w.buf
    }
    case 'connect': return encodeConnect(packet, protocolVersion)
    case 'connack': return encodeConnack(packet, v5)
    case 'subscribe': return encodeSubscribe(packet, v5)
    case 'suback': return encodeSuback(packet, v5)
    case 'unsubscribe': return encodeUnsubscribe(packet, v5)
    case 'unsuback': return encodeUnsuback(packet, v5)
    case 'pingreq': return Buffer.from([0xc0, 0])
    case 'pingresp': return Buffer.from([0xd0, 0])
    case 'disconnect': case 'auth': {
      const type = PacketType[packet.type]
      if (!v5) {
        if (type === 15) throw invalidPacket('AUTH exists only in MQTT 5.0')
        return Buffer.from([0xe0, 0])
      }
      const rc = packet.reasonCode ?? 0
      const pl = propertiesLength(packet.properties, type)
      // [MQTT-3.14.2.1] [MQTT-3.15.2.1] reason 0x00 and no properties: remaining length 0
      const rl = rc === 0 && pl === 0 ? 0 : pl === 0 ? 1 : 1 + varintSize(pl) + pl
      const w = new Writer(type << 4, rl)
      if (rl > 0) w.u8(checkByte(rc, 'reasonCode'))
      if (rl > 1) w.properties(packet.properties, pl)
      return w.buf
    }
    default: throw invalidPacket(`unknown packet type ${JSON.stringify((packet as { type: unknown }).type)}`)
  }
}

function encodePublish (p: PublishPacket, v5: boolean): Buffer {
  const qos = p.qos
  if (qos !== 0 && qos !== 1 && qos !== 2) throw invalidPacket(`QoS must be 0, 1 or 2, got ${String(qos)} [MQTT-3.3.1-4]`)
  if (p.dup && qos === 0) throw invalidPacket('DUP must be 0 on a QoS 0 PUBLISH [MQTT-3.3.1-2]')
  const topicLen = topicNameLength(p.topicName)
  // An empty topic name is only allowed with a Topic Alias (5.0) [MQTT-3.3.2-1] [MQTT-4.7.3-1]
  if (topicLen === 0 && !(v5 && p.properties?.topicAlias !== undefined)) throw invalidPacket('PUBLISH needs a topic name (or, in 5.0, a topic alias) [MQTT-4.7.3-1]')
  const payload = p.payload
  let rl = 2 + topicLen + payload.length
  if (qos > 0) {
    checkPacketId(p.packetId)
    rl += 2
  }
  let pl = 0
  if (v5) {
    pl = propertiesLength(p.properties, 3)
    rl += varintSize(pl) + pl
  }
  const w = new Writer(0x30 | (p.dup ? 8 : 0) | (qos << 1) | (p.retain ? 1 : 0), rl)
  w.string(p.topicName, topicLen)
  if (qos > 0) w.u16(p.packetId as number)
  if (v5) w.properties(p.properties, pl)
  w.bytes(payload)
  return w.buf
}

/**
 * Size on the wire of a QoS 0 PUBLISH with no properties beyond an optional Topic Alias (5.0):
 * the fast path of a client publishing, sized without building a packet object.
 */
export function publishQoS0Size (topicBytes: number, payloadBytes: number, v5: boolean, topicAlias: number): number {
  const rl = publishQoS0RemainingLength(topicBytes, payloadBytes, v5, topicAlias)
  return 1 + varintSize(rl) + rl
}

/** Topic name (with its length), properties (5.0: their length, and 3 bytes for an alias), payload. */
function publishQoS0RemainingLength (topicBytes: number, payloadBytes: number, v5: boolean, topicAlias: number): number {
  return 2 + topicBytes + payloadBytes + (v5 ? (topicAlias > 0 ? 4 : 1) : 0)
}

/**
 * Writes a QoS 0 PUBLISH (see {@link publishQoS0Size}) into `target` at `offset`, where the caller
 * made room; returns the offset after it. `topic` is the topic name as UTF-8, already validated
 * by the caller, and may be empty only with a Topic Alias [MQTT-3.3.2-1] [MQTT-4.7.3-1].
 */
export function writePublishQoS0 (target: Uint8Array, offset: number, topic: Uint8Array, payload: Uint8Array, retain: boolean,
  v5: boolean, topicAlias: number): number {
  const topicLen = topic.length
  if (topicLen > 65535) throw invalidPacket('a UTF-8 string is at most 65,535 bytes [MQTT-1.5.4]')
  if (topicLen === 0 && topicAlias === 0) throw invalidPacket('PUBLISH needs a topic name (or, in 5.0, a topic alias) [MQTT-4.7.3-1]')
  const rl = publishQoS0RemainingLength(topicLen, payload.length, v5, topicAlias)
  if (rl > MAX_REMAINING_LENGTH) throw invalidPacket(`packet too large: remaining length ${rl} exceeds 268,435,455`)
  let pos = offset
  target[pos++] = retain ? 0x31 : 0x30
  pos = writeVarint(target, pos, rl)
  target[pos++] = topicLen >>> 8
  target[pos++] = topicLen & 0xff
  pos = copyInto(target, pos, topic)
  if (v5) {
    if (topicAlias > 0) {
      target[pos++] = 3
      target[pos++] = 0x23 // Topic Alias
      target[pos++] = topicAlias >>> 8
      target[pos++] = topicAlias & 0xff
    } else {
      target[pos++] = 0
    }
  }
  return copyInto(target, pos, payload)
}

function writeVarint (target: Uint8Array, pos: number, v: number): number {
  do {
    let byte = v % 128
    v = Math.floor(v / 128)
    if (v > 0) byte |= 0x80
    target[pos++] = byte
  } while (v > 0)
  return pos
}

/** Short copies byte by byte (cheaper than a call into the runtime), long ones with `set`. */
function copyInto (target: Uint8Array, pos: number, b: Uint8Array): number {
  const n = b.length
  if (n < 32) {
    for (let i = 0; i < n; i++) target[pos++] = b[i] as number
    return pos
  }
  target.set(b, pos)
  return pos + n
}

function encodeConnect (p: ConnectPacket, version: ProtocolVersion): Buffer {
  const v5 = version === 5
  const name = version === 3 ? 'MQIsdp' : 'MQTT'
  const clientIdLen = utf8Length(p.clientId)
  let rl = 2 + name.length + 1 + 1 + 2 + 2 + clientIdLen
  const pl = v5 ? propertiesLength(p.properties, 1) : 0
  if (v5) rl += varintSize(pl) + pl
  const will = p.will
  let wpl = 0
  let willTopicLen = 0
  if (will !== undefined) {
    if (will.qos !== 0 && will.qos !== 1 && will.qos !== 2) throw invalidPacket('will QoS must be 0, 1 or 2 [MQTT-3.1.2-12]')
    willTopicLen = topicNameLength(will.topicName)
    if (willTopicLen === 0) throw invalidPacket('the will topic must not be empty [MQTT-4.7.3-1]')
    rl += 2 + willTopicLen + 2 + checkBinary(will.payload, 'will payload')
    if (v5) {
      wpl = propertiesLength(will.properties, WILL)
      rl += varintSize(wpl) + wpl
    }
  }
  let usernameLen = 0
  if (p.username !== undefined) {
    usernameLen = utf8Length(p.username)
    rl += 2 + usernameLen
  }
  if (p.password !== undefined) {
    if (!v5 && p.username === undefined) throw invalidPacket('MQTT 3.1.1 cannot send a password without a user name [MQTT-3.1.2-22]')
    rl += 2 + checkBinary(p.password, 'password')
  }
  const ka = p.keepAlive
  if (!Number.isInteger(ka) || ka < 0 || ka > 65535) throw invalidPacket(`keepAlive must be 0..65535 seconds, got ${ka}`)
  const w = new Writer(0x10, rl)
  w.string(name, name.length)
  w.u8(version)
  let flags = p.cleanStart ? 2 : 0
  if (will !== undefined) flags |= 4 | (will.qos << 3) | (will.retain ? 0x20 : 0)
  if (p.password !== undefined) flags |= 0x40
  if (p.username !== undefined) flags |= 0x80
  w.u8(flags)
  w.u16(ka)
  if (v5) w.properties(p.properties, pl)
  w.string(p.clientId, clientIdLen)
  if (will !== undefined) {
    if (v5) w.properties(will.properties, wpl)
    w.string(will.topicName, willTopicLen)
    w.binary(will.payload)
  }
  if (p.username !== undefined) w.string(p.username, usernameLen)
  if (p.password !== undefined) w.binary(p.password)
  return w.buf
}

function encodeConnack (p: ConnackPacket, v5: boolean): Buffer {
  const pl = v5 ? propertiesLength(p.properties, 2) : 0
  const w = new Writer(0x20, v5 ? 2 + varintSize(pl) + pl : 2)
  w.u8(p.sessionPresent ? 1 : 0)
  w.u8(checkByte(p.reasonCode, 'reasonCode'))
  if (v5) w.properties(p.properties, pl)
  return w.buf
}

function encodeSubscribe (p: SubscribePacket, v5: boolean): Buffer {
  checkPacketId(p.packetId)
  if (p.subscriptions.length === 0) throw invalidPacket('SUBSCRIBE needs at least one topic filter (3.1.1 [MQTT-3.8.3-3]; 5.0 [MQTT-3.8.3-2])')
  const pl = v5 ? propertiesLength(p.properties, 8) : 0
  let rl = 2 + (v5 ? varintSize(pl) + pl : 0)
  const lens: number[] = []
  for (const s of p.subscriptions) {
    const len = topicFilterLength(s.topicFilter)
    lens.push(len)
    rl += 3 + len
  }
  const w = new Writer(0x82, rl)
  w.u16(p.packetId)
  if (v5) w.properties(p.properties, pl)
  p.subscriptions.forEach((s, i) => {
    if (s.qos !== 0 && s.qos !== 1 && s.qos !== 2) throw invalidPacket(`subscription QoS must be 0, 1 or 2, got ${String(s.qos)}`)
    w.string(s.topicFilter, lens[i] as number)
    let options: number = s.qos
    if (v5) {
      const rh = s.retainHandling ?? 0
      if (rh !== 0 && rh !== 1 && rh !== 2) throw invalidPacket('retainHandling must be 0, 1 or 2')
      options |= (s.noLocal === true ? 4 : 0) | (s.retainAsPublished === true ? 8 : 0) | (rh << 4)
    }
    w.u8(options)
  })
  return w.buf
}

function encodeSuback (p: SubackPacket, v5: boolean): Buffer {
  checkPacketId(p.packetId)
  const pl = v5 ? propertiesLength(p.properties, 9) : 0
  const w = new Writer(0x90, 2 + (v5 ? varintSize(pl) + pl : 0) + p.reasonCodes.length)
  w.u16(p.packetId)
  if (v5) w.properties(p.properties, pl)
  for (const rc of p.reasonCodes) w.u8(checkByte(rc, 'reasonCode'))
  return w.buf
}

function encodeUnsubscribe (p: UnsubscribePacket, v5: boolean): Buffer {
  checkPacketId(p.packetId)
  if (p.topicFilters.length === 0) throw invalidPacket('UNSUBSCRIBE needs at least one topic filter [MQTT-3.10.3-2]')
  const pl = v5 ? propertiesLength(p.properties, 10) : 0
  let rl = 2 + (v5 ? varintSize(pl) + pl : 0)
  const lens = p.topicFilters.map(topicFilterLength)
  for (const len of lens) rl += 2 + len
  const w = new Writer(0xa2, rl)
  w.u16(p.packetId)
  if (v5) w.properties(p.properties, pl)
  p.topicFilters.forEach((f, i) => { w.string(f, lens[i] as number) })
  return w.buf
}

function encodeUnsuback (p: UnsubackPacket, v5: boolean): Buffer {
  checkPacketId(p.packetId)
  if (!v5) {
    const w = new Writer(0xb0, 2)
    w.u16(p.packetId)
    return w.buf
  }
  const codes = p.reasonCodes ?? []
  const pl = propertiesLength(p.properties, 11)
  const w = new Writer(0xb0, 2 + varintSize(pl) + pl + codes.length)
  w.u16(p.packetId)
  w.properties(p.properties, pl)
  for (const rc of codes) w.u8(checkByte(rc, 'reasonCode'))
  return w.buf
}

// --- sizes ------------------------------------------------------------------------------------

function checkPacketId (id: number | undefined): void {
  if (id === undefined || !Number.isInteger(id) || id < 1 || id > 65535) {
    throw invalidPacket(`packetId must be 1..65535, got ${String(id)} [MQTT-2.2.1-3]`)
  }
}

function checkByte (v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 255) throw invalidPacket(`${what} must be a byte, got ${v}`)
  return v
}

function checkBinary (b: Uint8Array, what: string): number {
  if (b.length > 65535) throw invalidPacket(`${what} is longer than 65,535 bytes`)
  return b.length
}

export function varintSize (v: number): number {
  return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4
}

/** UTF-8 byte length of `s`; throws for strings the spec forbids or that do not fit 65,535 bytes. */
function utf8Length (s: string): number {
  const n = s.length
  let len = n
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) {
      if (c === 0) throw invalidPacket('a UTF-8 string must not contain U+0000 [MQTT-1.5.4-2]')
      continue
    }
    if (c < 0x800) len += 1
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) { len += 2; i++ } else if (c >= 0xd800 && c <= 0xdfff) throw invalidPacket('a UTF-8 string must not contain a lone surrogate [MQTT-1.5.4-1]')
    else len += 2
  }
  if (len > 65535) throw invalidPacket('a UTF-8 string is at most 65,535 bytes [MQTT-1.5.4]')
  return len
}

/** UTF-8 length of a topic name; throws for wildcards, which a receiver treats as malformed [MQTT-3.3.2-2]. */
function topicNameLength (s: string): number {
  const n = s.length
  // One pass for the common case, short ASCII; anything else takes the full checks.
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x80 || c === 0x23 || c === 0x2b || c === 0) return topicNameLengthSlow(s)
  }
  if (n > 65535) throw invalidPacket('a UTF-8 string is at most 65,535 bytes [MQTT-1.5.4]')
  return n
}

function topicNameLengthSlow (s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x23 || c === 0x2b) throw invalidPacket(`topic name ${JSON.stringify(s)} contains a wildcard [MQTT-3.3.2-2] [MQTT-4.7.1-1]`)
  }
  return utf8Length(s)
}

function topicFilterLength (s: string): number {
  const problem = topicFilterProblem(s)
  if (problem !== undefined) throw invalidPacket(`invalid topic filter ${JSON.stringify(s)}: ${problem}`)
  return utf8Length(s)
}

function propertiesLength (props: Properties | undefined, packetType: number): number {
  if (props === undefined) return 0
  let len = 0
  const bit = 1 << packetType
  for (const key in props) {
    const value = props[key as keyof Properties]
    if (value === undefined) continue
    const info = encodeInfo[key]
    if (info === undefined) throw invalidPacket(`unknown property ${key}`)
    if ((info.mask & bit) === 0) throw invalidPacket(`property ${key} is not allowed in this packet`)
    switch (info.wire) {
      case Wire.Byte: len += 2; break
      case Wire.Two: len += 3; break
      case Wire.Four: len += 5; break
      case Wire.Varint:
        if (Array.isArray(value)) for (const v of value as number[]) len += 1 + varintSize(checkVarint(v))
        else len += 1 + varintSize(checkVarint(value as number))
        break
      case Wire.String: len += 3 + utf8Length(value as string); break
      case Wire.Binary: len += 3 + checkBinary(value as Uint8Array, key); break
      case Wire.Pair:
        for (const [k, v] of value as Array<[string, string]>) len += 5 + utf8Length(k) + utf8Length(v)
        break
    }
  }
  if (len > MAX_VARINT) throw invalidPacket('properties are too long')
  return len
}

function checkVarint (v: number): number {
  if (!Number.isInteger(v) || v < 1 || v > MAX_VARINT) throw invalidPacket(`subscription identifier must be 1..268,435,455, got ${v}`)
  return v
}

// --- writer -----------------------------------------------------------------------------------

/** Writes one packet into a buffer allocated once at its final size. */
class Writer {
  readonly buf: Buffer
  private pos: number

  constructor (b1: number, rl: number) {
    if (rl > MAX_REMAINING_LENGTH) throw invalidPacket(`packet too large: remaining length ${rl} exceeds 268,435,455`)
    const buf = Buffer.allocUnsafe(1 + varintSize(rl) + rl)
    buf[0] = b1
    this.buf = buf
    this.pos = writeVarint(buf, 1, rl)
  }

  u8 (v: number): void {
    this.buf[this.pos++] = v
  }

  u16 (v: number): void {
    this.buf[this.pos++] = v >>> 8
    this.buf[this.pos++] = v & 0xff
  }

  u32 (v: number): void {
    this.buf.writeUInt32BE(v, this.pos)
    this.pos += 4
  }

  varint (v: number): void {
    this.pos = writeVarint(this.buf, this.pos, v)
  }

  /** `len` is the UTF-8 byte length, computed by the caller while sizing. */
  string (s: string, len: number): void {
    this.u16(len)
    const buf = this.buf
    if (len === s.length && len < 48) {
      let pos = this.pos
      for (let i = 0; i < len; i++) buf[pos++] = s.charCodeAt(i)
      this.pos = pos
    } else {
      this.pos += buf.write(s, this.pos, len, 'utf8')
    }
  }

  binary (b: Uint8Array): void {
    this.u16(b.length)
    this.bytes(b)
  }

  bytes (b: Uint8Array): void {
    this.pos = copyInto(this.buf, this.pos, b)
  }

  properties (props: Properties | undefined, len: number): void {
    this.varint(len)
    if (props === undefined || len === 0) return
    for (const key in props) {
      const value = props[key as keyof Properties]
      if (value === undefined) continue
      const info = encodeInfo[key] as EncodeInfo
      switch (info.wire) {
        case Wire.Byte:
          this.u8(info.id)
          this.u8(typeof value === 'boolean' ? (value ? 1 : 0) : checkByte(value as number, key))
          break
        case Wire.Two: {
          const v = value as number
          if (!Number.isInteger(v) || v < 0 || v > 65535) throw invalidPacket(`${key} must be 0..65535, got ${v}`)
          // What a receiver refuses as a Protocol Error is never written (§3.1.2.11.3, [MQTT-3.3.2-8]).
          if (v === 0 && (key === 'receiveMaximum' || key === 'topicAlias')) throw invalidPacket(`${key} must be 1..65535, got 0`)
          this.u8(info.id)
          this.u16(v)
          break
        }
        case Wire.Four: {
          const v = value as number
          if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw invalidPacket(`${key} must be 0..4294967295, got ${v}`)
          if (v === 0 && key === 'maximumPacketSize') throw invalidPacket('maximumPacketSize must be 1..4294967295, got 0 [MQTT-3.1.2-24]')
          this.u8(info.id)
          this.u32(v)
          break
        }
        case Wire.Varint:
          if (Array.isArray(value)) {
            for (const v of value as number[]) {
              this.u8(info.id)
              this.varint(v)
            }
          } else {
            this.u8(info.id)
            this.varint(value as number)
          }
          break
        case Wire.String:
          this.u8(info.id)
          this.string(value as string, utf8Length(value as string))
          break
        case Wire.Binary:
          this.u8(info.id)
          this.binary(value as Uint8Array)
          break
        case Wire.Pair:
          for (const [k, v] of value as Array<[string, string]>) {
            this.u8(info.id)
            this.string(k, utf8Length(k))
            this.string(v, utf8Length(v))
          }
          break
      }
    }
  }
}
