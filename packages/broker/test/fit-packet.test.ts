import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Decoder, encode, type ConnackPacket, type Packet } from '@petrel/wire'
import { fitPacket } from '../src/fit-packet.js'

function decode (b: Buffer): Packet {
  const [p] = new Decoder({ protocolVersion: 5 }).push(b)
  return p as Packet
}

test('a control packet larger than the client\'s Maximum Packet Size loses Reason String and User Properties first, then a CONNACK its Response Information, else is not sent [MQTT-3.1.2-24] [MQTT-3.2.2-19] [MQTT-3.2.2-20]', () => {
  const connack: ConnackPacket = {
    type: 'connack', sessionPresent: false, reasonCode: 0,
    properties: { maximumPacketSize: 1024, assignedClientIdentifier: 'id-1', reasonString: 'welcome to the broker', userProperties: [['k', 'a value']], responseInformation: 'replies/id-1' }
  }
  const full = encode(connack, 5)
  assert.deepEqual(fitPacket(connack, 5, full.length), full, 'it fits: sent as it is')
  const lean = fitPacket(connack, 5, full.length - 1) as Buffer
  assert.ok(lean.length < full.length)
  assert.deepEqual((decode(lean) as ConnackPacket).properties, { maximumPacketSize: 1024, assignedClientIdentifier: 'id-1' })
  assert.deepEqual(fitPacket(connack, 5, lean.length), lean)
  assert.equal(fitPacket(connack, 5, lean.length - 1), undefined, 'what the client must know is never left out')
  // any other packet: only Reason String and User Properties may go
  const suback: Packet = { type: 'suback', packetId: 7, reasonCodes: [0, 1, 2], properties: { reasonString: 'granted', userProperties: [['a', 'b']] } }
  const bare = fitPacket(suback, 5, 10) as Buffer
  assert.deepEqual(decode(bare), { type: 'suback', packetId: 7, reasonCodes: [0, 1, 2], properties: undefined })
  assert.equal(fitPacket(suback, 5, bare.length - 1), undefined)
  assert.equal(fitPacket({ type: 'puback', packetId: 1, reasonCode: 0x87 }, 5, 4), undefined)
})
