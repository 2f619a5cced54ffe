import { malformed, protocolError, PetrelError, WireErrorCode } from './errors.js'
import { isReasonCodeAllowed } from './reason-code.js'
import { propertyById, WILL, type Properties } from './property.js'
import { asciiString, checkUtf8, decodeUtf8, isWellFormedUtf8 } from './utf8.js'
import { topicFilterProblem } from './topic.js'
import type {
  ConnackPacket, ConnectPacket, Packet, ProtocolVersion, PublishPacket, QoS, Subscription, Will
} from './packet.js'

/** The largest packet the spec allows: 1 type byte + 4 length bytes + 268,435,455. */
export const MAX_PACKET_SIZE = 268_435_460

export interface DecoderOptions {
  /**
   * Protocol level of the bytes to come. Left out, the decoder learns it from the CONNECT it
   * decodes (a server); until then it reads 3.1.1. A client sets the level it connects with.
   */
  protocolVersion?: ProtocolVersion | undefined
  /** Packets larger than this (whole packet, header included) raise Packet Too Large (0x95). */
  maxPacketSize?: number | undefined
  /**
   * CONNECT and AUTH packets larger than this raise Packet Too Large (0x95); default
   * `maxPacketSize`. A server sets it lower: these arrive before the client is authenticated,
   * and a partial one is buffered until it is complete.
   */
  maxConnectPacketSize?: number | undefined
  /**
   * Whether a PUBLISH whose Payload Format Indicator says UTF-8 must carry well-formed UTF-8
   * (else Payload Format Invalid, 0x99). Default true. The check is a receiver's option
   * [MQTT-3.3.2-4]: a client turns it off, since failing the link for a message the broker
   * will send again on reconnect would fail it for ever.
   */
  checkPayloadFormat?: boolean | undefined
  /**
   * User Property pairs accepted in one packet (a CONNECT's and its will's together); one more
   * raises Packet Too Large (0x95) before it is decoded. Default: no limit. A pair is 5 bytes on
   * the wire at least but some 75 bytes of heap once decoded, so a packet made of them costs 15
   * times its size (a 256 MiB one, 4 GB and over a minute of decoding): set this where the peer
   * is not trusted.
   */
  maxUserProperties?: number | undefined
  /**
   * What a PUBLISH with more User Property pairs than `maxUserProperties` becomes. 'error'
   * (default): Packet Too Large (0x95), as for any other packet. 'mark': the PUBLISH is decoded
   * without its User Properties and with `userPropertiesExceeded: true`; the pairs past the limit
   * are still checked (a bad one is Malformed Packet) but never kept, so the heap stays bounded.
   * For a receiver that refuses that one message with its ack instead of closing the connection:
   * a broker sends a QoS 1/2 message again on the next connection, so closing would repeat for ever.
   */
  userPropertiesOverflow?: 'error' | 'mark' | undefined
  /**
   * Subscription Identifiers accepted in one PUBLISH; one more raises Packet Too Large (0x95). Default:
   * no limit. Each is 2 bytes on the wire at least, some 10 bytes of heap decoded; a server sends
   * one per subscription of the client that matches, so a client knows how many make sense.
   */
  maxSubscriptionIdentifiers?: number | undefined
  /**
   * What a PUBLISH with more Subscription Identifiers than `maxSubscriptionIdentifiers` becomes, as
   * `userPropertiesOverflow` for User Properties. 'error' (default): Packet Too Large (0x95).
   * 'mark': decoded without its Subscription Identifiers (a partial list would leave some of the
   * receiver's subscriptions out) and with `subscriptionIdentifiersExceeded: true`; the identifiers
   * past the limit are still checked but never kept.
   */
  subscriptionIdentifiersOverflow?: 'error' | 'mark' | undefined
}

const enum State { Idle, Header, Body }

/**
 * The protocol level of a CONNECT whose variable header starts at `at`, from its protocol name
 * and level alone; undefined when those bytes are not all in `buf` before `end`, or name no
 * level this decoder reads.
 */
function connectLevel (buf: Buffer, at: number, end: number): ProtocolVersion | undefined {
  if (at + 2 > end) return undefined
  const n = buf.readUInt16BE(at)
  if (at + 2 + n + 1 > end) return undefined
  const name = buf.toString('latin1', at + 2, at + 2 + n)
  const level = buf[at + 2 + n]
  if (name === 'MQTT' && (level === 4 || level === 5)) return level
  if (name === 'MQIsdp' && level === 3) return 3
  return undefined
}

// Shared placeholders, so an idle decoder (one per broker connection) allocates nothing.
const NO_BYTES = Buffer.alloc(0)
const NO_CHUNKS: readonly Buffer[] = Object.freeze([])

// Fixed-header flags each type must carry [MQTT-2.1.3-1]; -1: PUBLISH, whose flags are data.
const requiredFlags = [-2, 0, 0, -1, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0]
const T_CONNECT = 1
const T_PUBLISH = 3
const T_SUBSCRIBE = 8
const T_AUTH = 15

/**
 * Incremental MQTT decoder: push chunks of a byte stream, get the complete packets in them.
 * Sans-I/O: it holds no socket or timer. Any split of the stream gives the same packets.
 *
 * Payloads (and binary properties) of packets that arrive whole in one chunk are views into
 * that chunk, not copies: do not reuse a chunk's memory after pushing it, and copy a payload
 * you keep for long (a retained message, an offline queue) so it does not pin the chunk.
 *
 * On bad input `push` throws a PetrelError with the reason code to close with; the decoder
 * then stays failed. Packets that preceded the bad bytes in the same chunk are not lost:
 * `pushInto` has already appended them to its output array.
 */
export class Decoder {
  protocolVersion: ProtocolVersion | undefined
  maxPacketSize: number
  maxConnectPacketSize: number
  private readonly checkPayloadFormat: boolean
  private readonly maxUserProperties: number
  private readonly maxSubscriptionIdentifiers: number
  private readonly markOverflow: boolean
  private readonly markIdentifiersOverflow: boolean
  /** User Property pairs of the packet being decoded. */
  private userProperties = 0
  /** The PUBLISH being decoded had more Subscription Identifiers than the limit ('mark' only). */
  private identifiersExceeded = false

  private state = State.Idle
  // Header state: up to 5 bytes of a fixed header split across chunks (allocated on first need).
  private head: Buffer | undefined
  private headLen = 0
  // Body state: the packet's bytes so far (header included); concatenated once complete,
  // so a header claiming 256 MiB costs nothing until those bytes really arrive.
  private chunks = NO_CHUNKS as Buffer[]
  private chunkBytes = 0
  private total = 0
  private failure: PetrelError | undefined

  // Parse cursor over the packet being decoded (reused: no allocation per packet).
  private buf: Buffer = NO_BYTES
  private pos = 0
  private end = 0

  constructor (options: DecoderOptions = {}) {
    this.protocolVersion = options.protocolVersion
    this.maxPacketSize = options.maxPacketSize ?? MAX_PACKET_SIZE
    this.maxConnectPacketSize = Math.min(options.maxConnectPacketSize ?? this.maxPacketSize, this.maxPacketSize)
    this.checkPayloadFormat = options.checkPayloadFormat ?? true
    this.maxUserProperties = options.maxUserProperties ?? Number.POSITIVE_INFINITY
    this.markOverflow = options.userPropertiesOverflow === 'mark'
    this.maxSubscriptionIdentifiers = options.maxSubscriptionIdentifiers ?? Number.POSITIVE_INFINITY
    this.markIdentifiersOverflow = options.subscriptionIdentifiersOverflow === 'mark'
  }

  /** Decodes `chunk` (after any partial input kept from earlier calls); returns the complete packets. */
  push (chunk: Uint8Array): Packet[] {
    const out: Packet[] = []
    this.pushInto(chunk, out)
    return out
  }

  /** As `push`, appending to `out`; on error, `out` holds every packet decoded before the bad bytes. */
  pushInto (chunk: Uint8Array, out: Packet[]): void {
    if (this.failure !== undefined) throw this.failure
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    try {
      let off = 0
      if (this.state !== State.Idle) off = this.resume(buf, out)
      if (off < buf.length) this.run(buf, off, out)
    } catch (err) {
      // A non-PetrelError here is a decoder bug; the caller still gets the reason code to close
      // with, and the original error as the cause (the fuzz tests fail on any such cause).
      this.failure = err instanceof PetrelError
        ? err
        : new PetrelError(WireErrorCode.MALFORMED_PACKET, `undecodable input: ${String(err)}`, { reasonCode: 0x81, cause: err })
      throw this.failure
    } finally {
      // Let go of the chunk: the parse cursor would otherwise pin the last chunk read (node
      // gives each read its own memory) for as long as the connection stays idle.
      this.buf = NO_BYTES
    }
  }

  /** Bytes held back, waiting for the rest of a packet. */
  get bufferedBytes (): number {
    return this.state === State.Header ? this.headLen : this.state === State.Body ? this.chunkBytes : 0
  }

  private run (buf: Buffer, off: number, out: Packet[]): void {
    const len = buf.length
    while (off < len) {
      const total = this.readHeader(buf, off, len)
      if (total < 0 || off + total > len) {
        this.keep(buf, off, total)
        return
      }
      out.push(this.parse(buf, off, off + total))
      off += total
    }
  }

  private keep (buf: Buffer, off: number, total: number): void {
    if (total < 0) {
      this.state = State.Header
      this.headLen = buf.length - off
      buf.copy(this.head ??= Buffer.alloc(5), 0, off)
    } else {
      this.state = State.Body
      this.total = total
      this.chunks = [buf.subarray(off)]
      this.chunkBytes = buf.length - off
    }
  }

  /** Continues a packet split across chunks; returns the offset in `buf` after it. */
  private resume (buf: Buffer, out: Packet[]): number {
    let off = 0
    if (this.state === State.Header) {
      const head = this.head as Buffer // set by keep() on entering State.Header
      let total = -1
      while (total < 0) {
        if (off >= buf.length) return off
        head[this.headLen++] = buf[off++] as number
        total = this.readHeader(head, 0, this.headLen)
      }
      if (total <= this.headLen) { // a packet with no body (PINGREQ...)
        this.state = State.Idle
        out.push(this.parse(Buffer.from(head.subarray(0, total)), 0, total))
        return off
      }
      this.state = State.Body
      this.total = total
      this.chunks = [Buffer.from(head.subarray(0, this.headLen))]
      this.chunkBytes = this.headLen
    }
    const need = this.total - this.chunkBytes
    if (buf.length - off < need) {
      this.chunks.push(off === 0 ? buf : buf.subarray(off))
      this.chunkBytes += buf.length - off
      return buf.length
    }
    this.chunks.push(buf.subarray(off, off + need))
    const whole = Buffer.concat(this.chunks, this.total)
    this.chunks = NO_CHUNKS as Buffer[]
    this.chunkBytes = 0
    this.state = State.Idle
    out.push(this.parse(whole, 0, whole.length))
    return off + need
  }

  /**
   * Reads the fixed header at `off`: returns the whole packet's length, or -1 when more bytes are
   * needed. Rejects a bad type or flags, and an oversized packet, as soon as they are visible.
   */
  private readHeader (buf: Buffer, off: number, end: number): number {
    const b1 = buf[off] as number
    const type = b1 >> 4
    const flags = requiredFlags[type] as number
    if (flags !== -1 && (b1 & 0x0f) !== flags) {
      if (type === 0) throw malformed('packet type 0 is reserved [MQTT-2.1.2]')
      throw malformed(`reserved flags 0x${(b1 & 0x0f).toString(16)} in the fixed header of packet type ${type} [MQTT-2.1.3-1]`)
    }
    if (type === 15 && this.protocolVersion !== 5) throw malformed('AUTH (type 15) is reserved before MQTT 5.0 [MQTT-2.1.2]')
    let value = 0
    let mult = 1
    let i = off + 1
    for (let k = 0; ; k++) {
      if (i >= end) return -1
      const byte = buf[i++] as number
      value += (byte & 0x7f) * mult
      if (byte < 0x80) {
        // [MQTT-1.5.5-1] minimum number of bytes: a trailing 0x00 after 0x80 is not minimal
        if (byte === 0 && k > 0) throw malformed('remaining length is not minimally encoded [MQTT-1.5.5-1]')
        break
      }
      if (k === 3) throw malformed('remaining length longer than 4 bytes [MQTT-2.2.3]')
      mult *= 128
    }
    const total = i - off + value
    if (type === T_CONNECT && this.protocolVersion === undefined && (total > this.maxPacketSize || total > this.maxConnectPacketSize)) {
      // Refused from its fixed header, it is never parsed: the level is read from the bytes that
      // follow, if they came with it, so that a server can answer a 5.0 client CONNACK 0x95
      // rather than a bare close it cannot tell from a network failure (and would retry).
      this.protocolVersion = connectLevel(buf, i, end)
    }
    if (total > this.maxPacketSize) {
      throw new PetrelError(WireErrorCode.PACKET_TOO_LARGE,
        `packet of ${total} bytes exceeds the maximum packet size of ${this.maxPacketSize}`, { reasonCode: 0x95 })
    }
    if (total > this.maxConnectPacketSize && (type === T_CONNECT || type === T_AUTH)) {
      throw new PetrelError(WireErrorCode.PACKET_TOO_LARGE,
        `${type === T_CONNECT ? 'CONNECT' : 'AUTH'} of ${total} bytes exceeds the maximum of ${this.maxConnectPacketSize}`, { reasonCode: 0x95 })
    }
    return total
  }

  private parse (buf: Buffer, start: number, end: number): Packet {
    const b1 = buf[start] as number
    // header length is recomputed: readHeader may have run on the 5-byte head copy
    let p = start + 1
    while (((buf[p++] as number) & 0x80) !== 0);
    this.buf = buf
    this.pos = p
    this.end = end
    this.userProperties = 0
    this.identifiersExceeded = false
    const type = b1 >> 4
    const v5 = this.protocolVersion === 5
    switch (type) {
      case T_PUBLISH: return this.publish(b1, v5)
      case T_CONNECT: return this.connect()
      case 2: return this.connack(v5)
      case 4: case 5: case 6: case 7: return this.ack(type, v5)
      case T_SUBSCRIBE: return this.subscribe(v5)
      case 9: return this.suback(v5)
      case 10: return this.unsubscribe(v5)
      case 11: return this.unsuback(v5)
      case 12: this.expectEnd(); return { type: 'pingreq' }
      case 13: this.expectEnd(); return { type: 'pingresp' }
      case 14: return this.disconnect(v5)
      default: return this.auth()
    }
  }

  // --- packets -------------------------------------------------------------------------------

  private publish (b1: number, v5: boolean): PublishPacket {
    const qos = (b1 >> 1) & 3
    if (qos === 3) throw malformed('PUBLISH with QoS 3 [MQTT-3.3.1-4]')
    const dup = (b1 & 8) !== 0
    if (dup && qos === 0) throw malformed('DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2]')
    const topicName = this.topicName()
    const packetId = qos > 0 ? this.packetId() : undefined
    const properties = v5 ? this.properties(T_PUBLISH) : undefined
    if (topicName.length === 0 && properties?.topicAlias === undefined) {
      throw v5 ? protocolError('PUBLISH with an empty topic name and no topic alias [MQTT-3.3.2-1]') : malformed('PUBLISH with an empty topic name [MQTT-4.7.3-1]')
    }
    const payload = this.buf.subarray(this.pos, this.end)
    const exceeded = this.userProperties > this.maxUserProperties
    // [MQTT-3.3.2-4] a receiver may check a payload declared UTF-8; it is Character Data, not a
    // UTF-8 String, so U+0000 is allowed, and a failure has its own reason code (0x99).
    if (properties?.payloadFormatIndicator === true && this.checkPayloadFormat && !isWellFormedUtf8(this.buf, this.pos, this.end)) {
      throw new PetrelError(WireErrorCode.PAYLOAD_FORMAT_INVALID, 'PUBLISH payload is not well-formed UTF-8 although its Payload Format Indicator is 1 [MQTT-3.3.2-4]', { reasonCode: 0x99 })
    }
    const packet: PublishPacket = { type: 'publish', topicName, payload, qos: qos as QoS, retain: (b1 & 1) !== 0, dup, packetId, properties }
    // (only past a limit: the common shape stays one)
    if (exceeded) packet.userPropertiesExceeded = true
    if (this.identifiersExceeded) packet.subscriptionIdentifiersExceeded = true
    return packet
  }

  private connect (): ConnectPacket {
    const name = this.utf8()
    const level = this.u8()
    if (name !== 'MQTT' && name !== 'MQIsdp') throw protocolError(`unknown protocol name ${JSON.stringify(name)} in CONNECT [MQTT-3.1.2-1]`)
    if (!((name === 'MQTT' && (level === 4 || level === 5)) || (name === 'MQIsdp' && level === 3))) {
      throw new PetrelError(WireErrorCode.UNSUPPORTED_PROTOCOL_VERSION,
        `unsupported protocol ${name} level ${level} [MQTT-3.1.2-2]`, { reasonCode: 0x84 })
    }
    const protocolVersion = level as ProtocolVersion
    this.protocolVersion = protocolVersion
    const v5 = level === 5
    const flags = this.u8()
    if ((flags & 1) !== 0) throw malformed('reserved CONNECT flag set [MQTT-3.1.2-3]')
    const willFlag = (flags & 4) !== 0
    const willQoS = (flags >> 3) & 3
    const willRetain = (flags & 0x20) !== 0
    const passwordFlag = (flags & 0x40) !== 0
    const usernameFlag = (flags & 0x80) !== 0
    if (!willFlag && (willQoS !== 0 || willRetain)) throw malformed('will QoS or retain set without the will flag [MQTT-3.1.2-11] [MQTT-3.1.2-13]')
    if (willQoS === 3) throw malformed('will QoS 3 [MQTT-3.1.2-12]')
    if (!v5 && passwordFlag && !usernameFlag) throw malformed('password flag set without the user name flag [MQTT-3.1.2-22]')
    const keepAlive = this.u16()
    const properties = v5 ? this.properties(T_CONNECT) : undefined
    if (properties?.authenticationData !== undefined && properties.authenticationMethod === undefined) {
      throw protocolError('Authentication Data without an Authentication Method [MQTT-3.1.2.11.10]')
    }
    const clientId = this.utf8()
    let will: Will | undefined
    if (willFlag) {
      const willProps = v5 ? this.properties(WILL) : undefined
      const topicName = this.topicName()
      if (topicName.length === 0) throw malformed('empty will topic [MQTT-3.1.3-11] [MQTT-4.7.3-1]')
      const payload = this.binary()
      will = { topicName, payload, qos: willQoS as QoS, retain: willRetain, properties: willProps }
    }
    const username = usernameFlag ? this.utf8() : undefined
    const password = passwordFlag ? this.binary() : undefined
    this.expectEnd()
    return { type: 'connect', protocolVersion, clientId, cleanStart: (flags & 2) !== 0, keepAlive, username, password, will, properties }
  }

  private connack (v5: boolean): ConnackPacket {
    const flags = this.u8()
    if ((flags & 0xfe) !== 0) throw malformed('reserved CONNACK flags set [MQTT-3.2.2-1]')
    const reasonCode = this.u8()
    if (v5 ? !isReasonCodeAllowed(2, reasonCode) : reasonCode > 5) throw protocolError(`CONNACK with invalid reason code 0x${reasonCode.toString(16)}`)
    const sessionPresent = (flags & 1) !== 0
    if (sessionPresent && reasonCode !== 0) throw protocolError('CONNACK refusing the connection with session present set [MQTT-3.2.2-6]')
    const properties = v5 ? this.properties(2) : undefined
    this.expectEnd()
    return { type: 'connack', sessionPresent, reasonCode, properties }
  }

  private ack (type: number, v5: boolean): Packet {
    const packetId = this.packetId()
    let reasonCode: number | undefined
    let properties: Properties | undefined
    if (v5) {
      // [MQTT-3.4.2.1] reason code and properties may be left out when 0x00 / empty
      reasonCode = this.pos < this.end ? this.u8() : 0
      if (!isReasonCodeAllowed(type, reasonCode)) throw protocolError(`reason code 0x${reasonCode.toString(16)} is not allowed in packet type ${type}`)
      if (this.pos < this.end) properties = this.properties(type)
    }
    this.expectEnd()
    const name = type === 4 ? 'puback' : type === 5 ? 'pubrec' : type === 6 ? 'pubrel' : 'pubcomp'
    return { type: name, packetId, reasonCode, properties }
  }

  private subscribe (v5: boolean): Packet {
    const packetId = this.packetId()
    const properties = v5 ? this.properties(T_SUBSCRIBE) : undefined
    const subscriptions: Subscription[] = []
    while (this.pos < this.end) {
      const topicFilter = this.topicFilter()
      const options = this.u8()
      const qos = options & 3
      if (qos === 3) throw malformed('subscription with QoS 3 (3.1.1 [MQTT-3.8.3-4]; 5.0 §3.8.3.1)')
      if (v5) {
        if ((options & 0xc0) !== 0) throw malformed('reserved subscription option bits set [MQTT-3.8.3-5]')
        const retainHandling = (options >> 4) & 3
        if (retainHandling === 3) throw protocolError('retain handling 3 (§3.8.3.1)')
        const noLocal = (options & 4) !== 0
        if (noLocal && topicFilter.startsWith('$share/')) throw protocolError('no local on a shared subscription [MQTT-3.8.3-4]')
        subscriptions.push({ topicFilter, qos: qos as QoS, noLocal, retainAsPublished: (options & 8) !== 0, retainHandling: retainHandling as 0 | 1 | 2 })
      } else {
        if ((options & 0xfc) !== 0) throw malformed('reserved subscription option bits set [MQTT-3.8.3-4]')
        subscriptions.push({ topicFilter, qos: qos as QoS })
      }
    }
    if (subscriptions.length === 0) throw protocolError('SUBSCRIBE with no topic filter (3.1.1 [MQTT-3.8.3-3]; 5.0 [MQTT-3.8.3-2])')
    return { type: 'subscribe', packetId, subscriptions, properties }
  }

  private suback (v5: boolean): Packet {
    const packetId = this.packetId()
    const properties = v5 ? this.properties(9) : undefined
    const reasonCodes: number[] = []
    while (this.pos < this.end) {
      const rc = this.u8()
      if (v5 ? !isReasonCodeAllowed(9, rc) : (rc > 2 && rc !== 0x80)) throw protocolError(`SUBACK with invalid return code 0x${rc.toString(16)} [MQTT-3.9.3-2]`)
      reasonCodes.push(rc)
    }
    return { type: 'suback', packetId, reasonCodes, properties }
  }

  private unsubscribe (v5: boolean): Packet {
    const packetId = this.packetId()
    const properties = v5 ? this.properties(10) : undefined
    const topicFilters: string[] = []
    while (this.pos < this.end) topicFilters.push(this.topicFilter())
    if (topicFilters.length === 0) throw protocolError('UNSUBSCRIBE with no topic filter [MQTT-3.10.3-2]')
    return { type: 'unsubscribe', packetId, topicFilters, properties }
  }

  private unsuback (v5: boolean): Packet {
    const packetId = this.packetId()
    if (!v5) {
      this.expectEnd()
      return { type: 'unsuback', packetId }
    }
    const properties = this.properties(11)
    const reasonCodes: number[] = []
    while (this.pos < this.end) {
      const rc = this.u8()
      if (!isReasonCodeAllowed(11, rc)) throw protocolError(`UNSUBACK with invalid reason code 0x${rc.toString(16)}`)
      reasonCodes.push(rc)
    }
    return { type: 'unsuback', packetId, reasonCodes, properties }
  }

  private disconnect (v5: boolean): Packet {
    if (!v5) {
      this.expectEnd()
      return { type: 'disconnect' }
    }
    const reasonCode = this.pos < this.end ? this.u8() : 0
    if (!isReasonCodeAllowed(14, reasonCode)) throw protocolError(`DISCONNECT with invalid reason code 0x${reasonCode.toString(16)}`)
    const properties = this.pos < this.end ? this.properties(14) : undefined
    this.expectEnd()
    return { type: 'disconnect', reasonCode, properties }
  }

  private auth (): Packet {
    const reasonCode = this.pos < this.end ? this.u8() : 0
    if (!isReasonCodeAllowed(15, reasonCode)) throw protocolError(`AUTH with invalid reason code 0x${reasonCode.toString(16)}`)
    const properties = this.pos < this.end ? this.properties(15) : undefined
    this.expectEnd()
    return { type: 'auth', reasonCode, properties }
  }

  // --- properties ----------------------------------------------------------------------------

  private properties (packetType: number): Properties | undefined {
    const len = this.varint()
    if (len === 0) return undefined
    const pend = this.pos + len
    if (pend > this.end) throw malformed('property length runs past the end of the packet')
    const props: Properties = {}
    const bit = 1 << packetType
    let seenLo = 0
    let seenHi = 0
    while (this.pos < pend) {
      const id = this.varint()
      const info = propertyById[id]
      if (info === undefined) throw malformed(`unknown property identifier 0x${id.toString(16)} (§2.2.2.2)`)
      if ((info.mask & bit) === 0) throw protocolError(`property ${info.name} is not allowed in this packet`)
      if (!info.repeatable || (id === 0x0b && packetType !== T_PUBLISH)) {
        const m = 1 << (id & 31)
        if (id < 32) { if ((seenLo & m) !== 0) throw protocolError(`property ${info.name} included more than once`); seenLo |= m } else { if ((seenHi & m) !== 0) throw protocolError(`property ${info.name} included more than once`); seenHi |= m }
      }
      switch (id) {
        case 0x01: props.payloadFormatIndicator = this.flag(info.name); break
        case 0x02: props.messageExpiryInterval = this.u32(); break
        case 0x03: props.contentType = this.utf8(); break
        case 0x08: props.responseTopic = this.topicName(); break
        case 0x09: props.correlationData = this.binary(); break
        case 0x0b: {
          const sid = this.varint()
          if (sid === 0) throw protocolError('subscription identifier 0 [MQTT-3.8.2.1.2]')
          if (packetType === T_PUBLISH) {
            if (this.identifiersExceeded) break // 'mark': past the limit, none kept
            const ids = props.subscriptionIdentifiers ??= []
            if (ids.length >= this.maxSubscriptionIdentifiers) {
              if (!this.markIdentifiersOverflow) {
                throw new PetrelError(WireErrorCode.PACKET_TOO_LARGE, `more than ${this.maxSubscriptionIdentifiers} subscription identifiers in one PUBLISH`, { reasonCode: 0x95 })
              }
              delete props.subscriptionIdentifiers
              this.identifiersExceeded = true
              break
            }
            ids.push(sid)
          } else props.subscriptionIdentifier = sid
          break
        }
        case 0x11: props.sessionExpiryInterval = this.u32(); break
        case 0x12: props.assignedClientIdentifier = this.utf8(); break
        case 0x13: props.serverKeepAlive = this.u16(); break
        case 0x15: props.authenticationMethod = this.utf8(); break
        case 0x16: props.authenticationData = this.binary(); break
        case 0x17: props.requestProblemInformation = this.flag(info.name); break
        case 0x18: props.willDelayInterval = this.u32(); break
        case 0x19: props.requestResponseInformation = this.flag(info.name); break
        case 0x1a: props.responseInformation = this.utf8(); break
        case 0x1c: props.serverReference = this.utf8(); break
        case 0x1f: props.reasonString = this.utf8(); break
        case 0x21: props.receiveMaximum = this.nonZeroU16(info.name); break
        case 0x22: props.topicAliasMaximum = this.u16(); break
        case 0x23: {
          const v = this.u16()
          // [MQTT-3.3.2-8] an alias is never 0; the receiver closes with 0x94, not 0x82 (§3.3.4)
          if (v === 0) throw new PetrelError(WireErrorCode.TOPIC_ALIAS_INVALID, 'topic alias 0 [MQTT-3.3.2-8]', { reasonCode: 0x94 })
          props.topicAlias = v
          break
        }
        case 0x24: props.maximumQoS = this.flag(info.name) ? 1 : 0; break
        case 0x25: props.retainAvailable = this.flag(info.name); break
        case 0x26:
          if (++this.userProperties > this.maxUserProperties) {
            if (!this.markOverflow || packetType !== T_PUBLISH) {
              throw new PetrelError(WireErrorCode.PACKET_TOO_LARGE, `more than ${this.maxUserProperties} user properties in one packet`, { reasonCode: 0x95 })
            }
            // 'mark': none kept (a partial list would be another message), the rest only checked.
            delete props.userProperties
            this.skipUtf8()
            this.skipUtf8()
            break
          }
          (props.userProperties ??= []).push([this.utf8(), this.utf8()])
          break
        case 0x27: {
          const v = this.u32()
          if (v === 0) throw protocolError('maximum packet size 0 [MQTT-3.1.2-24]')
          props.maximumPacketSize = v
          break
        }
        case 0x28: props.wildcardSubscriptionAvailable = this.flag(info.name); break
        case 0x29: props.subscriptionIdentifierAvailable = this.flag(info.name); break
        default: props.sharedSubscriptionAvailable = this.flag(info.name)
      }
    }
    if (this.pos !== pend) throw malformed('a property runs past the property length')
    return props
  }

  private flag (name: string): boolean {
    const v = this.u8()
    if (v > 1) throw protocolError(`property ${name} must be 0 or 1, got ${v}`)
    return v === 1
  }

  private nonZeroU16 (name: string): number {
    const v = this.u16()
    if (v === 0) throw protocolError(`property ${name} must not be 0`)
    return v
  }

  // --- primitives ----------------------------------------------------------------------------

  private need (n: number): void {
    if (this.pos + n > this.end) throw malformed('a field runs past the end of the packet')
  }

  private expectEnd (): void {
    if (this.pos !== this.end) throw malformed(`${this.end - this.pos} unexpected bytes at the end of the packet`)
  }

  private u8 (): number {
    this.need(1)
    return this.buf[this.pos++] as number
  }

  private u16 (): number {
    this.need(2)
    const b = this.buf
    const v = ((b[this.pos] as number) << 8) | (b[this.pos + 1] as number)
    this.pos += 2
    return v
  }

  private u32 (): number {
    this.need(4)
    const v = this.buf.readUInt32BE(this.pos)
    this.pos += 4
    return v
  }

  private packetId (): number {
    const id = this.u16()
    if (id === 0) throw malformed('packet identifier 0 [MQTT-2.2.1-3]')
    return id
  }

  private varint (): number {
    let value = 0
    let mult = 1
    for (let k = 0; k < 4; k++) {
      const byte = this.u8()
      value += (byte & 0x7f) * mult
      if (byte < 0x80) {
        if (byte === 0 && k > 0) throw malformed('variable byte integer is not minimally encoded [MQTT-1.5.5-1]')
        return value
      }
      mult *= 128
    }
    throw malformed('variable byte integer longer than 4 bytes [MQTT-1.5.5]')
  }

  private utf8 (): string {
    const len = this.u16()
    this.need(len)
    const s = decodeUtf8(this.buf, this.pos, this.pos + len)
    this.pos += len
    return s
  }

  /** A UTF-8 Encoded String checked as `utf8()` checks it, and passed over. */
  private skipUtf8 (): void {
    const len = this.u16()
    this.need(len)
    checkUtf8(this.buf, this.pos, this.pos + len)
    this.pos += len
  }

  private topicName (): string {
    const len = this.u16()
    this.need(len)
    const b = this.buf
    const start = this.pos
    const stop = start + len
    this.pos = stop
    // One pass for the common case: ASCII without wildcards or U+0000.
    for (let i = start; i < stop; i++) {
      const c = b[i] as number
      if (c === 0x23 || c === 0x2b) throw malformed('wildcard in a topic name [MQTT-3.3.2-2] [MQTT-4.7.1-1]')
      if (((c - 1) >>> 0) >= 0x7f) return this.topicNameSlow(start, stop)
    }
    return asciiString(b, start, stop)
  }

  private topicNameSlow (start: number, stop: number): string {
    const b = this.buf
    for (let i = start; i < stop; i++) {
      const c = b[i]
      // '#' and '+' never occur inside a multi-byte UTF-8 sequence, so a byte scan is exact.
      if (c === 0x23 || c === 0x2b) throw malformed('wildcard in a topic name [MQTT-3.3.2-2] [MQTT-4.7.1-1]')
    }
    return decodeUtf8(b, start, stop)
  }

  private topicFilter (): string {
    const f = this.utf8()
    const problem = topicFilterProblem(f)
    if (problem !== undefined) throw malformed(`invalid topic filter ${JSON.stringify(f)}: ${problem}`)
    return f
  }

  private binary (): Buffer {
    const len = this.u16()
    this.need(len)
    const v = this.buf.subarray(this.pos, this.pos + len)
    this.pos += len
    return v
  }
}
