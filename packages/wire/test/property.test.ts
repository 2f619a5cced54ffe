import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Decoder, encode, PacketType, properties, propertiesCost, propertyById, type PropertyWireType, type PublishPacket } from '../src/index.js'

// MQTT 5.0 §2.2.2.2 Table 2-4, transcribed: id, name, type, packets ('will' = Will Properties).
const spec: Array<[number, string, PropertyWireType, string]> = [
  [0x01, 'payloadFormatIndicator', 'byte', 'publish will'],
  [0x02, 'messageExpiryInterval', 'fourByteInteger', 'publish will'],
  [0x03, 'contentType', 'utf8String', 'publish will'],
  [0x08, 'responseTopic', 'utf8String', 'publish will'],
  [0x09, 'correlationData', 'binaryData', 'publish will'],
  [0x0b, 'subscriptionIdentifier', 'variableByteInteger', 'publish subscribe'],
  [0x11, 'sessionExpiryInterval', 'fourByteInteger', 'connect connack disconnect'],
  [0x12, 'assignedClientIdentifier', 'utf8String', 'connack'],
  [0x13, 'serverKeepAlive', 'twoByteInteger', 'connack'],
  [0x15, 'authenticationMethod', 'utf8String', 'connect connack auth'],
  [0x16, 'authenticationData', 'binaryData', 'connect connack auth'],
  [0x17, 'requestProblemInformation', 'byte', 'connect'],
  [0x18, 'willDelayInterval', 'fourByteInteger', 'will'],
  [0x19, 'requestResponseInformation', 'byte', 'connect'],
  [0x1a, 'responseInformation', 'utf8String', 'connack'],
  [0x1c, 'serverReference', 'utf8String', 'connack disconnect'],
  [0x1f, 'reasonString', 'utf8String', 'connack puback pubrec pubrel pubcomp suback unsuback disconnect auth'],
  [0x21, 'receiveMaximum', 'twoByteInteger', 'connect connack'],
  [0x22, 'topicAliasMaximum', 'twoByteInteger', 'connect connack'],
  [0x23, 'topicAlias', 'twoByteInteger', 'publish'],
  [0x24, 'maximumQoS', 'byte', 'connack'],
  [0x25, 'retainAvailable', 'byte', 'connack'],
  [0x26, 'userProperties', 'utf8StringPair', 'connect connack publish will puback pubrec pubrel pubcomp subscribe suback unsubscribe unsuback disconnect auth'],
  [0x27, 'maximumPacketSize', 'fourByteInteger', 'connect connack'],
  [0x28, 'wildcardSubscriptionAvailable', 'byte', 'connack'],
  [0x29, 'subscriptionIdentifierAvailable', 'byte', 'connack'],
  [0x2a, 'sharedSubscriptionAvailable', 'byte', 'connack']
]

describe('properties (MQTT 5.0 §2.2.2.2, Table 2-4)', () => {
  it('lists exactly the 27 properties of the spec, in identifier order', () => {
    assert.deepEqual(properties.map((p) => p.id), spec.map((s) => s[0]))
  })

  for (const [id, name, wireType, packets] of spec) {
    it(`0x${id.toString(16).padStart(2, '0')} ${name}: ${wireType} in ${packets}`, () => {
      const info = propertyById[id]
      assert.ok(info !== undefined)
      assert.equal(info.name, name)
      assert.equal(info.wireType, wireType)
      assert.deepEqual([...info.packets].sort(), packets.split(' ').sort())
      let mask = 0
      for (const p of packets.split(' ')) mask |= 1 << (p === 'will' ? 0 : PacketType[p as keyof typeof PacketType])
      assert.equal(info.mask, mask)
    })
  }

  it('marks only User Property and Subscription Identifier repeatable', () => {
    assert.deepEqual(properties.filter((p) => p.repeatable).map((p) => p.id), [0x0b, 0x26])
  })

  it('has no entry for unassigned identifiers', () => {
    for (const id of [0x00, 0x04, 0x05, 0x0a, 0x10, 0x14, 0x1b, 0x1d, 0x20, 0x2b]) assert.equal(propertyById[id], undefined)
  })
})

describe('propertiesCost: what decoded PUBLISH properties hold in the heap (broker and client queues charge it)', () => {
  it('counts the object, strings with their header, binary data with its wrapper, 72 bytes a User Property pair and 8 an identifier', () => {
    assert.equal(propertiesCost({}), 64)
    assert.equal(propertiesCost({ messageExpiryInterval: 5, payloadFormatIndicator: true }), 64)
    assert.equal(propertiesCost({ contentType: 'text/plain', responseTopic: '' }), 64 + 16 + 10)
    assert.equal(propertiesCost({ correlationData: Buffer.alloc(100) }), 64 + 64 + 100)
    assert.equal(propertiesCost({ userProperties: [['k', 'value'], ['', '']] }), 64 + 72 + 17 + 21 + 72)
    assert.equal(propertiesCost({ subscriptionIdentifiers: [1, 2] }), 64 + 16)
  })

  it('grows with what a small packet decodes into: 10,000 empty User Properties (50 KB on the wire) cost 720 KB', () => {
    const userProperties = Array.from({ length: 10_000 }, () => ['', ''] as [string, string])
    const bytes = encode({ type: 'publish', topicName: 't', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false, properties: { userProperties } }, 5)
    const [p] = new Decoder({ protocolVersion: 5 }).push(bytes) as [PublishPacket]
    assert.ok(bytes.length < 60_000)
    assert.equal(propertiesCost(p.properties ?? {}), 64 + 720_000)
  })
})
