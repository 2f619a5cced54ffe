import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { decodeUtf8 } from '../src/utf8.js'
import { isWellFormedUtf8, PetrelError, utf8StringProblem, WireErrorCode } from '../src/index.js'
import { assertPetrelError, hex } from './helpers.js'

const MALFORMED = { code: WireErrorCode.MALFORMED_PACKET, reasonCode: 0x81 }
const numRuns = Math.max(1000, Math.floor(Number(process.env.PETREL_FC_RUNS ?? 10_000) / 2))
const decode = (b: Buffer): string => decodeUtf8(b, 0, b.length)

describe('decodeUtf8 (§1.5.4)', () => {
  it('decodes ASCII on both the short and the long path', () => {
    assert.equal(decode(Buffer.from('a/b')), 'a/b')
    const long = 'sensors/building-7/floor-3/room-12/temperature'
    assert.equal(decode(Buffer.from(long)), long)
    assert.equal(decode(Buffer.alloc(0)), '')
  })

  it('decodes a range inside a larger buffer', () => {
    const b = Buffer.from('xxhéllo/wörldxx')
    assert.equal(decodeUtf8(b, 2, b.length - 2), 'héllo/wörld')
  })

  it('decodes 2-, 3- and 4-byte sequences, including U+FFFF and U+10FFFF', () => {
    for (const s of ['é', '€', '😀', '\uffff', '\u{10ffff}', 'ü'.repeat(40)]) assert.equal(decode(Buffer.from(s)), s)
  })

  const bad: Array<[string, string]> = [
    ['U+0000 [MQTT-1.5.4-2]', '61 00 62'],
    ['0xff', 'ff'],
    ['0xc1 (overlong lead byte)', 'c1 81'],
    ['lone continuation byte', '80'],
    ['truncated 2-byte sequence', 'c3'],
    ['truncated 4-byte sequence', 'f0 9f 98'],
    ['bad continuation byte', 'e2 28 a1'],
    ['overlong 3-byte form', 'e0 80 af'],
    ['overlong 4-byte form', 'f0 80 80 af'],
    ['surrogate U+D800 [MQTT-1.5.4-1]', 'ed a0 80'],
    ['surrogate U+DFFF [MQTT-1.5.4-1]', 'ed bf bf'],
    ['beyond U+10FFFF', 'f4 90 80 80'],
    ['lead byte 0xf5', 'f5 80 80 80']
  ]
  for (const [name, bytes] of bad) {
    it(`rejects ${name}, short and long`, () => {
      assertPetrelError(() => decode(hex(bytes)), MALFORMED)
      assertPetrelError(() => decode(Buffer.concat([Buffer.alloc(40, 0x61), hex(bytes)])), MALFORMED)
    })
  }

  it('agrees with a strict WHATWG decoder on random bytes (U+0000 aside)', () => {
    const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
    fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      const b = Buffer.from(bytes)
      let expected: string | undefined
      try { expected = strict.decode(b) } catch { expected = undefined }
      if (expected?.includes('\u0000') === true) expected = undefined
      let actual: string | undefined
      try {
        actual = decode(b)
      } catch (err) {
        assert.ok(err instanceof PetrelError)
        actual = undefined
      }
      assert.equal(actual, expected)
      assert.equal(isWellFormedUtf8(b, 0, b.length), (() => { try { strict.decode(b); return true } catch { return false } })())
    }), { numRuns })
  })

  it('round-trips every string the spec allows', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
      const t = s.replaceAll('\u0000', '')
      assert.equal(decode(Buffer.from(t, 'utf8')), t)
    }), { numRuns })
  })
})

describe('isWellFormedUtf8', () => {
  it('allows U+0000 (character data, not a UTF-8 String)', () => {
    assert.equal(isWellFormedUtf8(hex('61 00 62'), 0, 3), true)
  })
  it('rejects surrogates and ill-formed bytes', () => {
    assert.equal(isWellFormedUtf8(hex('ed a0 80'), 0, 3), false)
    assert.equal(isWellFormedUtf8(hex('61 ff'), 0, 2), false)
  })
})

describe('utf8StringProblem', () => {
  it('accepts ordinary strings and surrogate pairs', () => {
    assert.equal(utf8StringProblem('a/b'), undefined)
    assert.equal(utf8StringProblem('😀'), undefined)
  })
  it('reports U+0000 and lone surrogates', () => {
    assert.match(utf8StringProblem('a\u0000') ?? '', /U\+0000/)
    assert.match(utf8StringProblem('\ud800') ?? '', /surrogate/)
    assert.match(utf8StringProblem('\udc00\ud800') ?? '', /surrogate/)
    assert.match(utf8StringProblem('x\ud83d') ?? '', /surrogate/)
  })
})
