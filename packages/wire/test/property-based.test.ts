// Property tests: every valid packet of every type round-trips through encode -> decode however the
// byte stream is split, and arbitrary or mutated bytes only ever give packets or a PetrelError.
// PETREL_FC_RUNS sets the number of cases per property (default 10,000, as CI runs them).
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Decoder, encode, PetrelError, WireErrorCode, type Packet, type ProtocolVersion } from '../src/index.js'
import { anyPacket, packetArbitrary, packetTypes } from './arbitraries.js'
import { assertSamePacket, canon, decodeBytewise, decodeChunks } from './helpers.js'

const numRuns = Number(process.env.PETREL_FC_RUNS ?? 10_000)
// Streams and fuzz cases are bigger than single packets; a fifth of the runs still covers them well.
const streamRuns = Math.max(100, Math.floor(numRuns / 5))
const seed = process.env.PETREL_FC_SEED === undefined ? undefined : Number(process.env.PETREL_FC_SEED)
const params = (runs: number): fc.Parameters<unknown> => (seed === undefined ? { numRuns: runs } : { numRuns: runs, seed })

const cuts = fc.array(fc.integer({ min: 1, max: 2000 }), { maxLength: 8 })

describe('every valid packet round-trips under any split', () => {
  for (const version of [3, 4, 5] as const) {
    for (const type of packetTypes) {
      // MQTT 3.1 differs from 3.1.1 only in its CONNECT.
      if (version === 3 && type !== 'connect') continue
      const arb = packetArbitrary(type, version)
      if (arb === undefined) continue
      it(`${type}, level ${version}`, () => {
        // A CONNECT is decoded by a decoder that learns the version from it, as a server's does.
        const decoderVersion: ProtocolVersion | undefined = type === 'connect' ? undefined : version
        fc.assert(fc.property(arb, cuts, (packet, cutPoints) => {
          const bytes = encode(packet, version)
          const expected = [canon(packet)]
          assert.deepStrictEqual(canon(decodeChunks(bytes, decoderVersion)), expected)
          assert.deepStrictEqual(canon(decodeChunks(bytes, decoderVersion, cutPoints.map((c) => c % bytes.length))), expected)
          assert.deepStrictEqual(canon(decodeBytewise(bytes, decoderVersion)), expected)
          // Encoding is a function of the packet: the decoded packet encodes to the same bytes.
          const [decoded] = decodeChunks(bytes, decoderVersion)
          assert.deepEqual(encode(decoded as Packet, version), bytes)
        }), params(numRuns))
      })
    }
  }
})

describe('many packets in one stream', () => {
  for (const version of [4, 5] as const) {
    it(`level ${version}: one chunk, random cuts, one byte at a time`, () => {
      fc.assert(fc.property(fc.array(anyPacket(version), { minLength: 1, maxLength: 25 }), fc.array(fc.nat(), { maxLength: 30 }), (packets, rawCuts) => {
        const bytes = Buffer.concat(packets.map((p) => encode(p, version)))
        const expected = packets.map(canon)
        assert.deepStrictEqual(canon(decodeChunks(bytes, version)), expected)
        assert.deepStrictEqual(canon(decodeChunks(bytes, version, rawCuts.map((c) => c % bytes.length))), expected)
        assert.deepStrictEqual(canon(decodeBytewise(bytes, version)), expected)
      }), params(streamRuns))
    })
  }

  it('a server decoder learns 5.0 from the CONNECT at the head of the stream', () => {
    const connect = packetArbitrary('connect', 5)!
    fc.assert(fc.property(connect, fc.array(anyPacket(5), { maxLength: 10 }), cuts, (c, rest, cutPoints) => {
      const packets = [c, ...rest]
      const bytes = Buffer.concat(packets.map((p) => encode(p, 5)))
      assertSamePacket(decodeChunks(bytes, undefined, cutPoints.map((x) => x % bytes.length)), packets)
    }), params(streamRuns))
  })
})

const codes = new Set<string>(Object.values(WireErrorCode))
const reasonCodes = new Set([0x81, 0x82, 0x84, 0x95, 0x99])

/**
 * Decodes untrusted bytes: every outcome must be packets or a PetrelError with a known code and
 * reason code; nothing is held back beyond what was pushed (no allocation ahead of the bytes).
 */
function decodeUntrusted (bytes: Uint8Array, version: ProtocolVersion | undefined, cutPoints: number[], maxPacketSize?: number): void {
  const dec = new Decoder({ protocolVersion: version, maxPacketSize })
  const out: Packet[] = []
  let prev = 0
  try {
    for (const c of [...cutPoints, bytes.length].sort((a, b) => a - b)) {
      if (c <= prev || c > bytes.length) continue
      dec.pushInto(bytes.subarray(prev, c), out)
      prev = c
      assert.ok(dec.bufferedBytes <= c, 'the decoder holds no more than it was given')
    }
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err
    assert.ok(err instanceof PetrelError, `not a PetrelError: ${String(err)}`)
    assert.ok(codes.has(err.code), `unknown code ${err.code}`)
    assert.equal(err.cause, undefined, `the decoder failed internally: ${String(err.cause)}`)
    assert.ok(err.reasonCode !== undefined && reasonCodes.has(err.reasonCode), `unexpected reason code ${String(err.reasonCode)}`)
    return
  }
  // Whatever decoded is a packet that can be encoded again.
  for (const p of out) assert.equal(typeof p.type, 'string')
}

const version = fc.constantFrom<ProtocolVersion | undefined>(undefined, 4, 5)

describe('untrusted input never crashes and never hangs', () => {
  it('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), version, fc.array(fc.nat(300), { maxLength: 6 }), (bytes, v, cutPoints) => {
      decodeUntrusted(bytes, v, cutPoints)
    }), params(numRuns))
  })

  it('random bytes after a valid first byte and a small remaining length', () => {
    const firstBytes = [0x10, 0x20, 0x30, 0x32, 0x34, 0x3b, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xa2, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0]
    fc.assert(fc.property(fc.constantFrom(...firstBytes), fc.uint8Array({ maxLength: 120 }), version, (b1, body, v) => {
      const bytes = Buffer.concat([Buffer.from([b1, body.length]), body])
      decodeUntrusted(bytes, v, [])
      decodeUntrusted(bytes, v, [1, 2, 3, 5, 8, 13, 21, 34, 55, 89])
    }), params(numRuns))
  })

  for (const v of [4, 5] as const) {
    it(`mutated valid packets, level ${v}`, () => {
      const mutation = fc.oneof(
        fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
        fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
        fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
        fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }),
        fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() })
      )
      const connectFirst = fc.tuple(packetArbitrary('connect', v)!, anyPacket(v)).map(([a, b]) => [a, b])
      const packets = fc.oneof(fc.array(anyPacket(v), { minLength: 1, maxLength: 4 }), connectFirst)
      fc.assert(fc.property(packets, fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 4 }),
        fc.option(fc.integer({ min: 2, max: 200 }), { nil: undefined }), (list, mutations, rawCuts, maxPacketSize) => {
          let bytes = [...Buffer.concat(list.map((p) => encode(p, v)))]
          for (const m of mutations) {
            const at = m.at % (bytes.length + 1)
            if (m.kind === 'set') bytes[at] = m.byte
            else if (m.kind === 'flip') bytes[at] = (bytes[at] ?? 0) ^ (1 << m.bit)
            else if (m.kind === 'insert') bytes.splice(at, 0, m.byte)
            else if (m.kind === 'delete') bytes.splice(at, 1)
            else bytes = bytes.slice(0, at)
          }
          const buf = Buffer.from(bytes)
          decodeUntrusted(buf, list[0]?.type === 'connect' ? undefined : v, rawCuts.map((c) => c % (buf.length + 1)), maxPacketSize)
        }), params(numRuns))
    })
  }
})
