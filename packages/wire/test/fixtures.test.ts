// Hex fixtures for every packet type of MQTT 3.1.1 (level 4) and 5.0 (level 5), plus an MQTT 3.1
// (MQIsdp, level 3) CONNECT. Each is checked three ways: bytes -> packet, packet -> bytes (exact
// hex), and packet -> bytes -> packet. The bytes were written by hand from the spec and cross-checked
// against mqtt-packet's parser. Packet objects list properties in wire order, because encode()
// writes them in the order of the object's keys.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { encode, PacketType, type Packet, type ProtocolVersion } from '../src/index.js'
import { assertSamePacket, decodeBytewise, decodeChunks, hex } from './helpers.js'

interface Fixture {
  name: string
  /** The spec section the bytes reproduce. */
  spec: string
  version: ProtocolVersion
  hex: string
  packet: Packet
}

const b = (s: string): Buffer => Buffer.from(s, 'utf8')

export const fixtures: Fixture[] = [
  // ---------------------------------------------------------------- MQTT 3.1 (MQIsdp, level 3)
  {
    name: 'CONNECT, MQTT 3.1',
    spec: 'MQTT 3.1 §3.1 CONNECT, protocol name "MQIsdp", version 3',
    version: 3,
    hex: '10 10  00 06 4d 51 49 73 64 70  03  02  00 1e  00 02 63 31',
    packet: { type: 'connect', protocolVersion: 3, clientId: 'c1', cleanStart: true, keepAlive: 30 }
  },
  // ---------------------------------------------------------------- MQTT 3.1.1 (level 4)
  {
    name: 'CONNECT with will, user name and password',
    spec: 'MQTT 3.1.1 §3.1 CONNECT, Figure 3.6 flags (will QoS 1, will retain, clean session)',
    version: 4,
    hex: '10 28  00 04 4d 51 54 54  04  ee  00 3c  00 06 70 65 74 72 65 6c  00 03 77 2f 74  00 03 62 79 65' +
      '  00 04 75 73 65 72  00 04 70 61 73 73',
    packet: {
      type: 'connect',
      protocolVersion: 4,
      clientId: 'petrel',
      cleanStart: true,
      keepAlive: 60,
      username: 'user',
      password: b('pass'),
      will: { topicName: 'w/t', payload: b('bye'), qos: 1, retain: true }
    }
  },
  {
    name: 'CONNECT, empty client id, no flags but clean session',
    spec: 'MQTT 3.1.1 §3.1.3.1 zero-byte ClientId [MQTT-3.1.3-6]',
    version: 4,
    hex: '10 0c  00 04 4d 51 54 54  04  02  00 00  00 00',
    packet: { type: 'connect', protocolVersion: 4, clientId: '', cleanStart: true, keepAlive: 0 }
  },
  {
    name: 'CONNACK, session present, accepted',
    spec: 'MQTT 3.1.1 §3.2 CONNACK, Session Present 1, return code 0',
    version: 4,
    hex: '20 02 01 00',
    packet: { type: 'connack', sessionPresent: true, reasonCode: 0 }
  },
  {
    name: 'CONNACK, not authorized',
    spec: 'MQTT 3.1.1 §3.2.2.3 return code 5',
    version: 4,
    hex: '20 02 00 05',
    packet: { type: 'connack', sessionPresent: false, reasonCode: 5 }
  },
  {
    name: 'PUBLISH QoS 0',
    spec: 'MQTT 3.1.1 §3.3 PUBLISH, QoS 0 has no packet identifier',
    version: 4,
    hex: '30 07  00 03 61 2f 62  68 69',
    packet: { type: 'publish', topicName: 'a/b', payload: b('hi'), qos: 0, retain: false, dup: false }
  },
  {
    name: 'PUBLISH QoS 1, DUP, RETAIN',
    spec: 'MQTT 3.1.1 §3.3.1 fixed header flags DUP, QoS 1, RETAIN',
    version: 4,
    hex: '3b 0c  00 03 61 2f 62  00 0a  68 65 6c 6c 6f',
    packet: { type: 'publish', topicName: 'a/b', payload: b('hello'), qos: 1, retain: true, dup: true, packetId: 10 }
  },
  {
    name: 'PUBLISH QoS 2, empty payload',
    spec: 'MQTT 3.1.1 §3.3.3 a zero-length payload is valid',
    version: 4,
    hex: '34 05  00 01 74  12 34',
    packet: { type: 'publish', topicName: 't', payload: new Uint8Array(0), qos: 2, retain: false, dup: false, packetId: 0x1234 }
  },
  {
    name: 'PUBLISH with a multi-byte UTF-8 topic',
    spec: 'MQTT 3.1.1 §1.5.3 UTF-8 encoded strings (2-, 3- and 4-byte sequences)',
    version: 4,
    hex: '30 0d  00 0b c3 bc 2f e2 82 ac 2f f0 9f 98 80',
    packet: { type: 'publish', topicName: 'ü/€/😀', payload: new Uint8Array(0), qos: 0, retain: false, dup: false }
  },
  {
    name: 'PUBLISH with a two-byte remaining length',
    spec: 'MQTT 3.1.1 §2.2.3 remaining length 203 = 0xcb 0x01',
    version: 4,
    hex: '30 cb 01  00 01 74' + ' aa'.repeat(200),
    packet: { type: 'publish', topicName: 't', payload: Buffer.alloc(200, 0xaa), qos: 0, retain: false, dup: false }
  },
  {
    name: 'PUBACK',
    spec: 'MQTT 3.1.1 §3.4 PUBACK',
    version: 4,
    hex: '40 02 00 01',
    packet: { type: 'puback', packetId: 1 }
  },
  {
    name: 'PUBREC',
    spec: 'MQTT 3.1.1 §3.5 PUBREC',
    version: 4,
    hex: '50 02 00 02',
    packet: { type: 'pubrec', packetId: 2 }
  },
  {
    name: 'PUBREL',
    spec: 'MQTT 3.1.1 §3.6 PUBREL, fixed header flags 0010 [MQTT-3.6.1-1]',
    version: 4,
    hex: '62 02 00 03',
    packet: { type: 'pubrel', packetId: 3 }
  },
  {
    name: 'PUBCOMP',
    spec: 'MQTT 3.1.1 §3.7 PUBCOMP',
    version: 4,
    hex: '70 02 ff ff',
    packet: { type: 'pubcomp', packetId: 65535 }
  },
  {
    name: 'SUBSCRIBE with two filters',
    spec: 'MQTT 3.1.1 §3.8 SUBSCRIBE, flags 0010 [MQTT-3.8.1-1], Figure 3.22 requested QoS',
    version: 4,
    hex: '82 0c  00 0a  00 03 61 2f 2b 01  00 01 23 02',
    packet: { type: 'subscribe', packetId: 10, subscriptions: [{ topicFilter: 'a/+', qos: 1 }, { topicFilter: '#', qos: 2 }] }
  },
  {
    name: 'SUBACK with a failure',
    spec: 'MQTT 3.1.1 §3.9.3 return codes 0x01, 0x02, 0x80',
    version: 4,
    hex: '90 05  00 0a  01 02 80',
    packet: { type: 'suback', packetId: 10, reasonCodes: [1, 2, 0x80] }
  },
  {
    name: 'UNSUBSCRIBE with two filters',
    spec: 'MQTT 3.1.1 §3.10 UNSUBSCRIBE, flags 0010 [MQTT-3.10.1-1]',
    version: 4,
    hex: 'a2 0a  00 0b  00 03 61 2f 2b  00 01 23',
    packet: { type: 'unsubscribe', packetId: 11, topicFilters: ['a/+', '#'] }
  },
  {
    name: 'UNSUBACK',
    spec: 'MQTT 3.1.1 §3.11 UNSUBACK',
    version: 4,
    hex: 'b0 02 00 0b',
    packet: { type: 'unsuback', packetId: 11 }
  },
  { name: 'PINGREQ', spec: 'MQTT 3.1.1 §3.12 PINGREQ', version: 4, hex: 'c0 00', packet: { type: 'pingreq' } },
  { name: 'PINGRESP', spec: 'MQTT 3.1.1 §3.13 PINGRESP', version: 4, hex: 'd0 00', packet: { type: 'pingresp' } },
  { name: 'DISCONNECT', spec: 'MQTT 3.1.1 §3.14 DISCONNECT', version: 4, hex: 'e0 00', packet: { type: 'disconnect' } },
  // ---------------------------------------------------------------- MQTT 5.0 (level 5)
  {
    name: 'CONNECT with every CONNECT property and every Will property',
    spec: 'MQTT 5.0 §3.1.2.11 CONNECT Properties and §3.1.3.2 Will Properties; §3.1.2.11.8 a User Property may repeat, even with the same name',
    version: 5,
    hex: '10 81 01  00 04 4d 51 54 54  05  d6  00 3c' +
      '  30' +
      '    11 00 00 0e 10' + //          Session Expiry Interval 3600
      '    21 00 64' + //                Receive Maximum 100
      '    27 00 10 00 00' + //          Maximum Packet Size 1 MiB
      '    22 00 0a' + //                Topic Alias Maximum 10
      '    19 01' + //                   Request Response Information
      '    17 00' + //                   Request Problem Information
      '    26 00 01 61 00 01 31' + //    User Property a=1
      '    26 00 01 61 00 01 32' + //    User Property a=2 (same key again)
      '    15 00 05 53 43 52 41 4d' + // Authentication Method SCRAM
      '    16 00 03 01 02 03' + //       Authentication Data
      '  00 03 63 69 64' + //            Client Identifier
      '  2b' +
      '    18 00 00 00 05' + //          Will Delay Interval
      '    01 01' + //                   Payload Format Indicator
      '    02 00 00 00 3c' + //          Message Expiry Interval
      '    03 00 0a 74 65 78 74 2f 70 6c 61 69 6e' + // Content Type text/plain
      '    08 00 03 72 2f 31' + //       Response Topic r/1
      '    09 00 02 0a 0b' + //          Correlation Data
      '    26 00 01 6b 00 01 76' + //    User Property k=v
      '  00 06 77 69 6c 6c 2f 74' + //   Will Topic
      '  00 04 67 6f 6e 65' + //         Will Payload
      '  00 01 75' + //                  User Name
      '  00 02 70 77', //                Password
    packet: {
      type: 'connect',
      protocolVersion: 5,
      clientId: 'cid',
      cleanStart: true,
      keepAlive: 60,
      username: 'u',
      password: b('pw'),
      will: {
        topicName: 'will/t',
        payload: b('gone'),
        qos: 2,
        retain: false,
        properties: {
          willDelayInterval: 5,
          payloadFormatIndicator: true,
          messageExpiryInterval: 60,
          contentType: 'text/plain',
          responseTopic: 'r/1',
          correlationData: Buffer.from([0x0a, 0x0b]),
          userProperties: [['k', 'v']]
        }
      },
      properties: {
        sessionExpiryInterval: 3600,
        receiveMaximum: 100,
        maximumPacketSize: 1 << 20,
        topicAliasMaximum: 10,
        requestResponseInformation: true,
        requestProblemInformation: false,
        userProperties: [['a', '1'], ['a', '2']],
        authenticationMethod: 'SCRAM',
        authenticationData: Buffer.from([1, 2, 3])
      }
    }
  },
  {
    name: 'CONNECT, minimal',
    spec: 'MQTT 5.0 §3.1 CONNECT with a zero property length',
    version: 5,
    hex: '10 0d  00 04 4d 51 54 54  05  02  00 00  00  00 00',
    packet: { type: 'connect', protocolVersion: 5, clientId: '', cleanStart: true, keepAlive: 0 }
  },
  {
    name: 'CONNECT, password without user name',
    spec: 'MQTT 5.0 §3.1.2.9 a password without a user name is allowed in 5.0',
    version: 5,
    hex: '10 12  00 04 4d 51 54 54  05  40  00 0a  00  00 01 78  00 02 01 02',
    packet: { type: 'connect', protocolVersion: 5, clientId: 'x', cleanStart: false, keepAlive: 10, password: Buffer.from([1, 2]) }
  },
  {
    name: 'CONNACK with every CONNACK property',
    spec: 'MQTT 5.0 §3.2.2.3 CONNACK Properties',
    version: 5,
    hex: '20 51  01 00  4e' +
      '  11 00 00 00 78' + //             Session Expiry Interval 120
      '  21 00 14' + //                   Receive Maximum 20
      '  24 01' + //                      Maximum QoS 1
      '  25 00' + //                      Retain Available 0
      '  27 00 00 ff ff' + //             Maximum Packet Size
      '  12 00 06 61 75 74 6f 2d 31' + // Assigned Client Identifier auto-1
      '  22 00 05' + //                   Topic Alias Maximum 5
      '  1f 00 02 6f 6b' + //             Reason String ok
      '  26 00 01 78 00 01 79' + //       User Property x=y
      '  28 01' + //                      Wildcard Subscription Available
      '  29 00' + //                      Subscription Identifiers Available
      '  2a 01' + //                      Shared Subscription Available
      '  13 00 1e' + //                   Server Keep Alive 30
      '  1a 00 04 72 65 73 70' + //       Response Information
      '  1c 00 0a 6f 74 68 65 72 3a 31 38 38 33' + // Server Reference other:1883
      '  15 00 01 4d' + //                Authentication Method
      '  16 00 01 44', //                 Authentication Data
    packet: {
      type: 'connack',
      sessionPresent: true,
      reasonCode: 0,
      properties: {
        sessionExpiryInterval: 120,
        receiveMaximum: 20,
        maximumQoS: 1,
        retainAvailable: false,
        maximumPacketSize: 65535,
        assignedClientIdentifier: 'auto-1',
        topicAliasMaximum: 5,
        reasonString: 'ok',
        userProperties: [['x', 'y']],
        wildcardSubscriptionAvailable: true,
        subscriptionIdentifierAvailable: false,
        sharedSubscriptionAvailable: true,
        serverKeepAlive: 30,
        responseInformation: 'resp',
        serverReference: 'other:1883',
        authenticationMethod: 'M',
        authenticationData: b('D')
      }
    }
  },
  {
    name: 'CONNACK refusing with Not authorized',
    spec: 'MQTT 5.0 §3.2.2.2 Connect Reason Code 0x87',
    version: 5,
    hex: '20 03  00 87  00',
    packet: { type: 'connack', sessionPresent: false, reasonCode: 0x87 }
  },
  {
    name: 'PUBLISH with every PUBLISH property and two subscription identifiers',
    spec: 'MQTT 5.0 §3.3.2.3 PUBLISH Properties; §3.3.2.3.8 multiple Subscription Identifiers; §3.3.2.3.7 user properties in order',
    version: 5,
    hex: '32 37  00 03 61 2f 62  00 01  2c' +
      '  01 01' + //                      Payload Format Indicator (UTF-8)
      '  02 00 00 00 0a' + //             Message Expiry Interval 10
      '  23 00 03' + //                   Topic Alias 3
      '  08 00 01 72' + //                Response Topic r
      '  09 00 01 63' + //                Correlation Data c
      '  26 00 01 7a 00 01 31' + //       User Property z=1
      '  26 00 01 61 00 01 32' + //       User Property a=2 (order kept, not sorted)
      '  0b 01' + //                      Subscription Identifier 1
      '  0b ac 02' + //                   Subscription Identifier 300
      '  03 00 04 74 65 78 74' + //       Content Type text
      '  68 c3 a9', //                    payload "hé"
    packet: {
      type: 'publish',
      topicName: 'a/b',
      payload: b('hé'),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 1,
      properties: {
        payloadFormatIndicator: true,
        messageExpiryInterval: 10,
        topicAlias: 3,
        responseTopic: 'r',
        correlationData: b('c'),
        userProperties: [['z', '1'], ['a', '2']],
        subscriptionIdentifiers: [1, 300],
        contentType: 'text'
      }
    }
  },
  {
    name: 'PUBLISH with an empty topic and a topic alias',
    spec: 'MQTT 5.0 §3.3.2.3.4 Topic Alias with a zero-length topic name [MQTT-3.3.2-8]',
    version: 5,
    hex: '30 07  00 00  03 23 00 01  78',
    packet: { type: 'publish', topicName: '', payload: b('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: 1 } }
  },
  {
    name: 'PUBLISH QoS 0 without properties',
    spec: 'MQTT 5.0 §3.3 PUBLISH, property length 0',
    version: 5,
    hex: '30 06  00 01 74  00  68 69',
    packet: { type: 'publish', topicName: 't', payload: b('hi'), qos: 0, retain: false, dup: false }
  },
  {
    name: 'PUBACK, success, short form',
    spec: 'MQTT 5.0 §3.4.2.1 reason code 0x00 and no properties may be left out',
    version: 5,
    hex: '40 02 00 01',
    packet: { type: 'puback', packetId: 1, reasonCode: 0 }
  },
  {
    name: 'PUBACK, No matching subscribers, no properties',
    spec: 'MQTT 5.0 §3.4.2.2 property length may be left out when the remaining length is 3',
    version: 5,
    hex: '40 03 00 01 10',
    packet: { type: 'puback', packetId: 1, reasonCode: 0x10 }
  },
  {
    name: 'PUBACK, success with a reason string',
    spec: 'MQTT 5.0 §3.4.2.2.2 Reason String',
    version: 5,
    hex: '40 09  00 05  00  05 1f 00 02 6f 6b',
    packet: { type: 'puback', packetId: 5, reasonCode: 0, properties: { reasonString: 'ok' } }
  },
  {
    name: 'PUBREC, failure with properties',
    spec: 'MQTT 5.0 §3.5 PUBREC, reason 0x80 with Reason String and User Property',
    version: 5,
    hex: '50 10  00 02  80  0c  1f 00 02 6e 6f  26 00 01 6b 00 01 76',
    packet: { type: 'pubrec', packetId: 2, reasonCode: 0x80, properties: { reasonString: 'no', userProperties: [['k', 'v']] } }
  },
  {
    name: 'PUBREL, Packet Identifier not found',
    spec: 'MQTT 5.0 §3.6.2.1 PUBREL reason code 0x92',
    version: 5,
    hex: '62 03  00 03  92',
    packet: { type: 'pubrel', packetId: 3, reasonCode: 0x92 }
  },
  {
    name: 'PUBCOMP, success',
    spec: 'MQTT 5.0 §3.7 PUBCOMP',
    version: 5,
    hex: '70 02 00 04',
    packet: { type: 'pubcomp', packetId: 4, reasonCode: 0 }
  },
  {
    name: 'SUBSCRIBE with options, a shared filter and a subscription identifier',
    spec: 'MQTT 5.0 §3.8.3.1 Subscription Options; §4.8.2 shared subscriptions; §3.8.2.1.2 Subscription Identifier',
    version: 5,
    hex: '82 21  00 0a  09  0b 05  26 00 01 6b 00 01 76' +
      '  00 03 61 2f 2b  2d' + //                          a/+: QoS 1, No Local, RAP, retain handling 2
      '  00 0c 24 73 68 61 72 65 2f 67 2f 78 2f 23  10', // $share/g/x/#: QoS 0, retain handling 1
    packet: {
      type: 'subscribe',
      packetId: 10,
      subscriptions: [
        { topicFilter: 'a/+', qos: 1, noLocal: true, retainAsPublished: true, retainHandling: 2 },
        { topicFilter: '$share/g/x/#', qos: 0, noLocal: false, retainAsPublished: false, retainHandling: 1 }
      ],
      properties: { subscriptionIdentifier: 5, userProperties: [['k', 'v']] }
    }
  },
  {
    name: 'SUBACK with a reason string',
    spec: 'MQTT 5.0 §3.9 SUBACK, reason codes 0x01, 0x00, 0xA1',
    version: 5,
    hex: '90 0a  00 0a  04 1f 00 01 72  01 00 a1',
    packet: { type: 'suback', packetId: 10, reasonCodes: [1, 0, 0xa1], properties: { reasonString: 'r' } }
  },
  {
    name: 'UNSUBSCRIBE with a user property',
    spec: 'MQTT 5.0 §3.10 UNSUBSCRIBE',
    version: 5,
    hex: 'a2 1d  00 0b  07 26 00 01 6b 00 01 76  00 03 61 2f 2b  00 0c 24 73 68 61 72 65 2f 67 2f 78 2f 23',
    packet: { type: 'unsubscribe', packetId: 11, topicFilters: ['a/+', '$share/g/x/#'], properties: { userProperties: [['k', 'v']] } }
  },
  {
    name: 'UNSUBACK',
    spec: 'MQTT 5.0 §3.11.3 UNSUBACK reason codes 0x00, 0x11, 0x8F',
    version: 5,
    hex: 'b0 06  00 0b  00  00 11 8f',
    packet: { type: 'unsuback', packetId: 11, reasonCodes: [0, 0x11, 0x8f] }
  },
  { name: 'PINGREQ', spec: 'MQTT 5.0 §3.12 PINGREQ', version: 5, hex: 'c0 00', packet: { type: 'pingreq' } },
  { name: 'PINGRESP', spec: 'MQTT 5.0 §3.13 PINGRESP', version: 5, hex: 'd0 00', packet: { type: 'pingresp' } },
  {
    name: 'DISCONNECT, normal, short form',
    spec: 'MQTT 5.0 §3.14.2.1 remaining length 0 means reason 0x00 and no properties',
    version: 5,
    hex: 'e0 00',
    packet: { type: 'disconnect', reasonCode: 0 }
  },
  {
    name: 'DISCONNECT, Session taken over',
    spec: 'MQTT 5.0 §3.14.2.1 reason code 0x8E without properties',
    version: 5,
    hex: 'e0 01 8e',
    packet: { type: 'disconnect', reasonCode: 0x8e }
  },
  {
    name: 'DISCONNECT with will message and every DISCONNECT property',
    spec: 'MQTT 5.0 §3.14.2.2 DISCONNECT Properties',
    version: 5,
    hex: 'e0 1a  04  18  11 00 00 00 00  1f 00 03 62 79 65  26 00 01 6b 00 01 76  1c 00 03 73 72 76',
    packet: {
      type: 'disconnect',
      reasonCode: 0x04,
      properties: { sessionExpiryInterval: 0, reasonString: 'bye', userProperties: [['k', 'v']], serverReference: 'srv' }
    }
  },
  {
    name: 'AUTH, continue authentication with every AUTH property',
    spec: 'MQTT 5.0 §3.15 AUTH, reason 0x18, §3.15.2.2 properties',
    version: 5,
    hex: 'f0 1a  18  18  15 00 05 53 43 52 41 4d  16 00 02 01 02  1f 00 01 72  26 00 01 6b 00 01 76',
    packet: {
      type: 'auth',
      reasonCode: 0x18,
      properties: { authenticationMethod: 'SCRAM', authenticationData: Buffer.from([1, 2]), reasonString: 'r', userProperties: [['k', 'v']] }
    }
  },
  {
    name: 'AUTH, success, short form',
    spec: 'MQTT 5.0 §3.15.2.1 remaining length 0 means reason 0x00',
    version: 5,
    hex: 'f0 00',
    packet: { type: 'auth', reasonCode: 0 }
  }
]

/** CONNECT fixtures decode with a decoder that learns the version (a server); the rest are told it. */
function decoderVersion (f: Fixture): ProtocolVersion | undefined {
  return f.packet.type === 'connect' ? undefined : f.version
}

describe('hex fixtures', () => {
  for (const f of fixtures) {
    describe(`${f.name} (level ${f.version}) - ${f.spec}`, () => {
      const bytes = hex(f.hex)

      it('bytes -> packet', () => {
        const packets = decodeChunks(bytes, decoderVersion(f))
        assert.equal(packets.length, 1)
        assertSamePacket(packets[0], f.packet)
      })

      it('bytes -> packet, one byte at a time', () => {
        assertSamePacket(decodeBytewise(bytes, decoderVersion(f)), [f.packet])
      })

      it('packet -> bytes', () => {
        assert.equal(encode(f.packet, f.version).toString('hex'), bytes.toString('hex'))
      })

      it('packet -> bytes -> packet', () => {
        assertSamePacket(decodeChunks(encode(f.packet, f.version), f.version), [f.packet])
      })
    })
  }

  it('cover every packet type in both 3.1.1 and 5.0, and a 3.1 CONNECT', () => {
    for (const version of [4, 5] as const) {
      const types = new Set(fixtures.filter((f) => f.version === version).map((f) => f.packet.type))
      for (const type of Object.keys(PacketType)) {
        if (type === 'auth' && version === 4) continue // AUTH does not exist before 5.0
        assert.ok(types.has(type as Packet['type']), `no ${type} fixture for level ${version}`)
      }
    }
    assert.ok(fixtures.some((f) => f.version === 3 && f.packet.type === 'connect'))
  })

  it('decode all fixtures of one version concatenated into a single chunk', () => {
    for (const version of [4, 5] as const) {
      const list = fixtures.filter((f) => f.version === version && f.packet.type !== 'connect')
      const all = Buffer.concat(list.map((f) => hex(f.hex)))
      assertSamePacket(decodeChunks(all, version), list.map((f) => f.packet))
    }
  })
})
