import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Decoder, encode, publishQoS0Size, varintSize, writePublishQoS0, WireErrorCode, type Packet, type ProtocolVersion } from '../src/index.js'
import { topicName } from './arbitraries.js'
import { assertPetrelError, assertSamePacket, hex } from './helpers.js'

const INVALID = { code: WireErrorCode.INVALID_PACKET, reasonCode: undefined }
const pub = (over: Partial<Extract<Packet, { type: 'publish' }>> = {}): Packet =>
  ({ type: 'publish', topicName: 't', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false, ...over })

describe('encode', () => {
  describe('refuses packets that cannot go on the wire', () => {
    const rows: Array<[string, Packet, ProtocolVersion]> = [
      ['PUBLISH with QoS 3 [MQTT-3.3.1-4]', pub({ qos: 3 as 0 }), 4],
      ['QoS 1 PUBLISH without a packet id [MQTT-2.2.1-2]', pub({ qos: 1 }), 4],
      ['QoS 1 PUBLISH with packet id 0 [MQTT-2.2.1-3]', pub({ qos: 1, packetId: 0 }), 4],
      ['QoS 2 PUBLISH with packet id 65536', pub({ qos: 2, packetId: 65536 }), 4],
      ['PUBLISH with a fractional packet id', pub({ qos: 1, packetId: 1.5 }), 4],
      ['DUP on a QoS 0 PUBLISH [MQTT-3.3.1-2]', pub({ dup: true }), 4],
      ['PUBLISH with an empty topic in 3.1.1 [MQTT-4.7.3-1]', pub({ topicName: '' }), 4],
      ['PUBLISH with an empty topic and no alias in 5.0 [MQTT-3.3.2-1]', pub({ topicName: '' }), 5],
      ['PUBLISH with + in the topic [MQTT-3.3.2-2]', pub({ topicName: 'a/+' }), 4],
      ['PUBLISH with # in the topic [MQTT-3.3.2-2]', pub({ topicName: '#' }), 5],
      ['a string with U+0000 [MQTT-1.5.4-2]', pub({ topicName: 'a\u0000' }), 4],
      ['a string with a lone high surrogate [MQTT-1.5.4-1]', pub({ topicName: 'a\ud800' }), 4],
      ['a string with a lone low surrogate [MQTT-1.5.4-1]', pub({ topicName: '\udc00b' }), 4],
      ['a string over 65,535 bytes [MQTT-1.5.4]', pub({ topicName: 'é'.repeat(32768) }), 4],
      ['a remaining length over 268,435,455 [MQTT-2.2.3]', pub({ payload: { length: 268_435_456 } as unknown as Uint8Array }), 4],
      ['a property not allowed on the packet', pub({ properties: { sessionExpiryInterval: 1 } as never }), 5],
      ['subscriptionIdentifier (the SUBSCRIBE form) on a PUBLISH', pub({ properties: { subscriptionIdentifier: 1 } as never }), 5],
      ['subscription identifier 0', pub({ properties: { subscriptionIdentifiers: [0] } }), 5],
      ['subscription identifier over 268,435,455', pub({ properties: { subscriptionIdentifiers: [268_435_456] } }), 5],
      ['an unknown property', pub({ properties: { colour: 'blue' } as never }), 5],
      ['a two-byte property out of range', pub({ properties: { topicAlias: 65536 } }), 5],
      ['a four-byte property out of range', pub({ properties: { messageExpiryInterval: 2 ** 32 } }), 5],
      ['a four-byte property that is negative', pub({ properties: { messageExpiryInterval: -1 } }), 5],
      ['binary data over 65,535 bytes', pub({ properties: { correlationData: new Uint8Array(65536) } }), 5],
      ['topic alias 0 [MQTT-3.3.2-8]', pub({ properties: { topicAlias: 0 } }), 5],
      ['CONNECT receive maximum 0 (§3.1.2.11.3)', { type: 'connect', protocolVersion: 5, clientId: 'c', cleanStart: true, keepAlive: 0, properties: { receiveMaximum: 0 } }, 5],
      ['CONNECT maximum packet size 0 [MQTT-3.1.2-24]', { type: 'connect', protocolVersion: 5, clientId: 'c', cleanStart: true, keepAlive: 0, properties: { maximumPacketSize: 0 } }, 5],
      ['CONNACK receive maximum 0 (§3.2.2.3.3)', { type: 'connack', sessionPresent: false, reasonCode: 0, properties: { receiveMaximum: 0 } }, 5],
      ['CONNECT keep alive over 65,535', { type: 'connect', protocolVersion: 4, clientId: 'c', cleanStart: true, keepAlive: 65536 }, 4],
      ['CONNECT password without user name in 3.1.1 [MQTT-3.1.2-22]', { type: 'connect', protocolVersion: 4, clientId: 'c', cleanStart: true, keepAlive: 0, password: Buffer.from('p') }, 4],
      ['CONNECT will with QoS 3', { type: 'connect', protocolVersion: 4, clientId: 'c', cleanStart: true, keepAlive: 0, will: { topicName: 't', payload: Buffer.alloc(0), qos: 3 as 0, retain: false } }, 4],
      ['CONNECT will with an empty topic', { type: 'connect', protocolVersion: 4, clientId: 'c', cleanStart: true, keepAlive: 0, will: { topicName: '', payload: Buffer.alloc(0), qos: 0, retain: false } }, 4],
      ['CONNECT will with a wildcard topic', { type: 'connect', protocolVersion: 4, clientId: 'c', cleanStart: true, keepAlive: 0, will: { topicName: 'a/#', payload: Buffer.alloc(0), qos: 0, retain: false } }, 4],
      ['CONNACK with reason code 256', { type: 'connack', sessionPresent: false, reasonCode: 256 }, 5],
      ['PUBACK with packet id 0', { type: 'puback', packetId: 0 }, 4],
      ['SUBSCRIBE without filters [MQTT-3.8.3-3]', { type: 'subscribe', packetId: 1, subscriptions: [] }, 4],
      ['SUBSCRIBE with an invalid filter [MQTT-4.7.1-2]', { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a/#/b', qos: 0 }] }, 4],
      ['SUBSCRIBE with a malformed $share filter [MQTT-4.8.2-2]', { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '$share/g', qos: 0 }] }, 5],
      ['SUBSCRIBE with QoS 3', { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a', qos: 3 as 0 }] }, 4],
      ['SUBSCRIBE with retain handling 3', { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a', qos: 0, retainHandling: 3 as 0 }] }, 5],
      ['SUBACK with a code over 255', { type: 'suback', packetId: 1, reasonCodes: [300] }, 4],
      ['UNSUBSCRIBE without filters [MQTT-3.10.3-2]', { type: 'unsubscribe', packetId: 1, topicFilters: [] }, 4],
      ['UNSUBSCRIBE with an invalid filter', { type: 'unsubscribe', packetId: 1, topicFilters: ['a+'] }, 4],
      ['AUTH before 5.0', { type: 'auth', reasonCode: 0 }, 4],
      ['an unknown packet type', { type: 'bogus' } as unknown as Packet, 4]
    ]
    for (const [name, packet, version] of rows) {
      it(name, () => { assertPetrelError(() => encode(packet, version), INVALID) })
    }
  })

  it('defaults to MQTT 3.1.1', () => {
    assert.equal(encode({ type: 'puback', packetId: 1, reasonCode: 0x10 }).toString('hex'), '40020001')
  })

  it('writes MQTT 3.1 CONNECTs with the MQIsdp protocol name', () => {
    const bytes = encode({ type: 'connect', protocolVersion: 3, clientId: 'c', cleanStart: true, keepAlive: 10 }, 3)
    assert.equal(bytes.subarray(2, 11).toString('hex'), hex('00 06 4d 51 49 73 64 70 03').toString('hex'))
  })

  it('sizes the remaining length at every varint boundary [MQTT-2.2.3]', () => {
    for (const rl of [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152]) {
      // topic "t" takes 3 bytes of the remaining length
      const size = Math.max(0, rl - 3)
      const p = pub({ payload: Buffer.alloc(size, 1) })
      const bytes = encode(p, 4)
      const expectedRl = 3 + size
      assert.equal(bytes.length, 1 + varintSize(expectedRl) + expectedRl, `remaining length ${expectedRl}`)
      assertSamePacket(new Decoder({ protocolVersion: 4 }).push(bytes), [p])
    }
  })

  it('varintSize follows §1.5.5', () => {
    assert.deepEqual([0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455].map(varintSize), [1, 1, 2, 2, 3, 3, 4, 4])
  })

  it('writes long and non-ASCII strings and plain Uint8Array payloads', () => {
    const topicName = `${'ü'.repeat(30)}/${'x'.repeat(60)}/😀`
    for (const payload of [new Uint8Array([1, 2, 3]), new Uint8Array(100).fill(7)]) {
      const p = pub({ topicName, payload })
      const bytes = encode(p, 5)
      assert.equal(bytes.readUInt16BE(3), Buffer.byteLength(topicName)) // after a 2-byte remaining length
      assertSamePacket(new Decoder({ protocolVersion: 5 }).push(bytes), [p])
    }
  })

  it('leaves out the reason code and properties of a successful 5.0 ack [MQTT-3.4.2.1]', () => {
    assert.equal(encode({ type: 'pubcomp', packetId: 9, reasonCode: 0 }, 5).toString('hex'), '70020009')
    assert.equal(encode({ type: 'pubcomp', packetId: 9 }, 5).toString('hex'), '70020009')
    assert.equal(encode({ type: 'disconnect' }, 5).toString('hex'), 'e000')
    assert.equal(encode({ type: 'auth' }, 5).toString('hex'), 'f000')
  })

  it('writes a 3.1.1 SUBSCRIBE without 5.0 options even if they are set', () => {
    const bytes = encode({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a', qos: 1, noLocal: true, retainHandling: 2 }] }, 4)
    assert.equal(bytes.toString('hex'), '8206000100016101')
  })

  it('ignores 5.0 properties and reason codes when writing 3.1.1', () => {
    assert.equal(encode({ type: 'puback', packetId: 1, reasonCode: 0x80, properties: { reasonString: 'x' } }, 4).toString('hex'), '40020001')
    assert.equal(encode(pub({ properties: { contentType: 'x' } }), 4).toString('hex'), '3003000174')
  })

  it('returns a buffer of exactly the packet size', () => {
    const bytes = encode(pub({ payload: Buffer.alloc(10) }), 4)
    assert.equal(bytes.length, 2 + 3 + 10)
    assert.equal(bytes.byteLength, bytes.length)
  })

  describe('writePublishQoS0 (the client\'s in-place fast path)', () => {
    it('writes the same bytes as encode, at any offset, for any topic, payload, RETAIN, version and alias', () => {
      fc.assert(fc.property(topicName, fc.uint8Array({ maxLength: 300 }), fc.boolean(), fc.boolean(), fc.integer({ min: 0, max: 65535 }),
        fc.boolean(), fc.nat(7), (topic, payload, retain, v5, alias, aliasOnly, offset) => {
          const topicAlias = v5 ? alias : 0
          const t = aliasOnly && topicAlias > 0 ? Buffer.alloc(0) : Buffer.from(topic)
          const expected = encode(pub({
            topicName: t.toString(), payload: Buffer.from(payload), retain, properties: topicAlias > 0 ? { topicAlias } : undefined
          }), v5 ? 5 : 4)
          const size = publishQoS0Size(t.length, payload.length, v5, topicAlias)
          assert.equal(size, expected.length)
          const target = Buffer.alloc(offset + size + 3, 0xee)
          assert.equal(writePublishQoS0(target, offset, t, payload, retain, v5, topicAlias), offset + size)
          assert.deepEqual(target.subarray(offset, offset + size), expected)
          assert.ok(target.subarray(0, offset).every((b) => b === 0xee) && target.subarray(offset + size).every((b) => b === 0xee), 'wrote outside its bytes')
        }))
    })

    it('refuses an empty topic without an alias, and a topic over 65,535 bytes [MQTT-4.7.3-1] [MQTT-1.5.4]', () => {
      const target = Buffer.alloc(70_000)
      assertPetrelError(() => writePublishQoS0(target, 0, Buffer.alloc(0), Buffer.alloc(1), false, true, 0), INVALID)
      assertPetrelError(() => writePublishQoS0(target, 0, Buffer.alloc(0), Buffer.alloc(1), false, false, 0), INVALID)
      assertPetrelError(() => writePublishQoS0(target, 0, Buffer.alloc(65536, 0x61), Buffer.alloc(0), false, false, 0), INVALID)
    })
  })
})
