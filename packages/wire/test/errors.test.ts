// Keeps ERRORS.md honest (fastify style): every code exists in both places.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { PetrelError, WireErrorCode } from '../src/index.js'

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
