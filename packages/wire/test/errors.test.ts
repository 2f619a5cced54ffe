// Keeps ERRORS.md honest (fastify style): every code exists in both places.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { assertTopicFilter, assertTopicName, Decoder, encode, PetrelError, WireErrorCode, type Packet } from '../src/index.js'
import { hex } from './helpers.js'

// Compiled to dist/test/errors.test.js; the doc sits at the package root.
const doc = readFileSync(new URL('../../ERRORS.md', import.meta.url), 'utf8')
const documented = new Set(doc.match(/PETREL_ERR_[A-Z0-9_]+/g) ?? [])
const defined = new Set<string>(Object.values(WireErrorCode))

describe('ERRORS.md', () => {
  it('documents every WireErrorCode', () => {
    for (const code of defined) assert.ok(documented.has(code), `${code} is missing from ERRORS.md`)
  })

  it('lists no code that does not exist', () => {
    for (const code of documented) assert.ok(defined.has(code), `ERRORS.md lists ${code}, which WireErrorCode does not define`)
  })

  it('gives each code a table row with its reason code', () => {
    for (const code of defined) assert.match(doc, new RegExp(`^\\| \`${code}\` \\|.*\\| (?:\`0x[0-9A-F]{2}\`|none)`, 'm'), code)
  })

  it('gives each code the reason code its errors really carry', () => {
    // One input per code that raises it; a new code needs one here before its row can be checked.
    const raise: Record<WireErrorCode, () => unknown> = {
      [WireErrorCode.MALFORMED_PACKET]: () => new Decoder({ protocolVersion: 4 }).push(hex('00 00')),
      [WireErrorCode.PROTOCOL_ERROR]: () => new Decoder({ protocolVersion: 5 }).push(hex('30 04 00 00 00 68')),
      [WireErrorCode.PACKET_TOO_LARGE]: () => new Decoder({ protocolVersion: 4, maxPacketSize: 1 }).push(hex('c0 00')),
      [WireErrorCode.TOPIC_ALIAS_INVALID]: () => new Decoder({ protocolVersion: 5 }).push(hex('30 07 00 01 74 03 23 00 00')),
      [WireErrorCode.UNSUPPORTED_PROTOCOL_VERSION]: () => new Decoder().push(hex('10 0d 00 04 4d 51 54 54 06 02 00 3c 00 01 63')),
      [WireErrorCode.INVALID_TOPIC_NAME]: () => { assertTopicName('a/+') },
      [WireErrorCode.INVALID_TOPIC_FILTER]: () => { assertTopicFilter('a#') },
      [WireErrorCode.PAYLOAD_FORMAT_INVALID]: () => new Decoder({ protocolVersion: 5 }).push(hex('30 07 00 01 74 02 01 01 ff')),
      [WireErrorCode.INVALID_PACKET]: () => encode({ type: 'publish', topicName: 't', payload: Buffer.alloc(0), qos: 3, retain: false, dup: false } as unknown as Packet, 5)
    }
    for (const code of defined) {
      const row = new RegExp(`^\\| \`${code}\` \\|.*\\| (?:\`(0x[0-9A-F]{2})\`|none)`, 'm').exec(doc)
      const documentedRc = row?.[1] === undefined ? undefined : Number.parseInt(row[1], 16)
      let err: unknown
      try { raise[code as WireErrorCode]() } catch (e) { err = e }
      assert.ok(err instanceof PetrelError, `${code}: the sample input raised nothing`)
      assert.equal(err.code, code)
      assert.equal(err.reasonCode, documentedRc, `${code}: ERRORS.md says ${row?.[1] ?? 'none'}`)
    }
  })
})

describe('PetrelError', () => {
  it('carries code, reasonCode and cause', () => {
    const cause = new Error('inner')
    const err = new PetrelError(WireErrorCode.PROTOCOL_ERROR, 'bad', { reasonCode: 0x82, cause })
    assert.ok(err instanceof Error)
    assert.equal(err.name, 'PetrelError')
    assert.equal(err.code, 'PETREL_ERR_PROTOCOL_ERROR')
    assert.equal(err.reasonCode, 0x82)
    assert.equal(err.cause, cause)
    assert.equal(new PetrelError(WireErrorCode.INVALID_PACKET, 'x').reasonCode, undefined)
  })

  it('codes share one prefix and are unique', () => {
    const values = Object.values(WireErrorCode)
    assert.equal(new Set(values).size, values.length)
    for (const v of values) assert.match(v, /^PETREL_ERR_[A-Z_]+$/)
  })
})
