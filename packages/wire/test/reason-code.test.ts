import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import {
  ConnackReturnCode, connackReturnCodeName, isReasonCodeAllowed, PacketType, ReasonCode, reasonCodeName, reasonCodes
} from '../src/index.js'

describe('reason codes (MQTT 5.0 §2.4, Table 2-6)', () => {
  it('has a name for every ReasonCode constant, and a constant for every table row', () => {
    const inTable = new Set(reasonCodes.map((r) => r.code))
    for (const [name, code] of Object.entries(ReasonCode)) assert.ok(inTable.has(code), `${name} (0x${code.toString(16)}) is not in the table`)
    const constants = new Set<number>(Object.values(ReasonCode))
    for (const r of reasonCodes) assert.ok(constants.has(r.code), `no constant for 0x${r.code.toString(16)}`)
    assert.equal(inTable.size, 43)
  })

  const allowed: Array<[number, keyof typeof PacketType, boolean]> = [
    [0x00, 'connack', true], [0x00, 'puback', true], [0x00, 'pubrel', true], [0x00, 'suback', true],
    [0x00, 'unsuback', true], [0x00, 'disconnect', true], [0x00, 'auth', true],
    [0x01, 'suback', true], [0x02, 'suback', true], [0x01, 'puback', false], [0x01, 'disconnect', false],
    [0x04, 'disconnect', true], [0x04, 'connack', false],
    [0x10, 'puback', true], [0x10, 'pubrec', true], [0x10, 'pubrel', false],
    [0x11, 'unsuback', true], [0x11, 'suback', false],
    [0x18, 'auth', true], [0x19, 'auth', true], [0x18, 'connack', false],
    [0x80, 'connack', true], [0x80, 'pubcomp', false], [0x80, 'auth', false],
    [0x81, 'disconnect', true], [0x81, 'puback', false],
    [0x84, 'connack', true], [0x84, 'disconnect', false],
    [0x87, 'suback', true], [0x8b, 'disconnect', true], [0x8b, 'connack', false],
    [0x8f, 'suback', true], [0x8f, 'unsuback', true], [0x8f, 'puback', false],
    [0x91, 'suback', true], [0x92, 'pubrel', true], [0x92, 'pubcomp', true], [0x92, 'puback', false],
    [0x95, 'connack', true], [0x99, 'puback', true], [0x9e, 'suback', true], [0xa2, 'disconnect', true],
    [0xa2, 'connack', false], [0x03, 'disconnect', false], [0xff, 'disconnect', false]
  ]
  for (const [code, packet, ok] of allowed) {
    it(`0x${code.toString(16).padStart(2, '0')} ${ok ? 'is' : 'is not'} allowed in ${packet.toUpperCase()}`, () => {
      assert.equal(isReasonCodeAllowed(PacketType[packet], code), ok)
    })
  }

  it('names 0x00 by the packet that carries it', () => {
    assert.equal(reasonCodeName(0x00, 'puback'), 'Success')
    assert.equal(reasonCodeName(0x00, 'disconnect'), 'Normal disconnection')
    assert.equal(reasonCodeName(0x00, 'suback'), 'Granted QoS 0')
    assert.equal(reasonCodeName(0x00), 'Success')
  })

  it('names other codes, and unknown ones', () => {
    assert.equal(reasonCodeName(ReasonCode.PacketTooLarge), 'Packet too large')
    assert.equal(reasonCodeName(0x87, 'suback'), 'Not authorized')
    assert.equal(reasonCodeName(0x87, 'pingreq'), 'Not authorized')
    assert.equal(reasonCodeName(0x05), 'Unknown reason code 0x05')
  })

  it('names the 3.1.1 CONNACK return codes (§3.2.2.3)', () => {
    assert.equal(connackReturnCodeName(ConnackReturnCode.Accepted), 'Connection Accepted')
    assert.equal(connackReturnCodeName(ConnackReturnCode.NotAuthorized), 'Not authorized')
    assert.equal(connackReturnCodeName(6), 'Unknown return code 6')
  })
})
