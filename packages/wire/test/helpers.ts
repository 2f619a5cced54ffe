// Shared by the wire tests: hex input, packet comparison, decoding under splits, error checks.
import assert from 'node:assert/strict'
import { Decoder, PetrelError, type Packet, type ProtocolVersion } from '../src/index.js'

/** Bytes from a hex string; whitespace (used to group fields in fixtures) is ignored. */
export function hex (s: string): Buffer {
  const clean = s.replace(/\s+/g, '')
  if (!/^(?:[0-9a-f]{2})*$/i.test(clean)) throw new Error(`bad hex fixture: ${s}`)
  return Buffer.from(clean, 'hex')
}

/**
 * A packet in the form that comparisons use: keys whose value is undefined are dropped (the
 * decoder may spell absent fields out, the fixtures leave them out) and byte arrays become plain
 * Uint8Arrays (the decoder returns Buffer views).
 */
export function canon (v: unknown): unknown {
  if (v instanceof Uint8Array) return new Uint8Array(v)
  if (Array.isArray(v)) return v.map(canon)
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = canon(x)
    return out
  }
  return v
}

export function assertSamePacket (actual: unknown, expected: unknown, message?: string): void {
  assert.deepStrictEqual(canon(actual), canon(expected), message)
}

/** Decodes `bytes`, pushed as the given chunks (cut positions), with a fresh decoder. */
export function decodeChunks (bytes: Uint8Array, version: ProtocolVersion | undefined, cuts: readonly number[] = [], maxPacketSize?: number): Packet[] {
  const dec = new Decoder({ protocolVersion: version, maxPacketSize })
  const out: Packet[] = []
  let prev = 0
  for (const c of [...cuts].sort((a, b) => a - b)) {
    if (c <= prev || c >= bytes.length) continue
    dec.pushInto(bytes.subarray(prev, c), out)
    prev = c
  }
  dec.pushInto(bytes.subarray(prev), out)
  assert.equal(dec.bufferedBytes, 0, 'no bytes left over after whole packets')
  return out
}

/** Decodes `bytes` one byte at a time. */
export function decodeBytewise (bytes: Uint8Array, version: ProtocolVersion | undefined): Packet[] {
  const dec = new Decoder({ protocolVersion: version })
  const out: Packet[] = []
  for (let i = 0; i < bytes.length; i++) dec.pushInto(bytes.subarray(i, i + 1), out)
  assert.equal(dec.bufferedBytes, 0)
  return out
}

export interface ExpectedError { code: string, reasonCode: number | undefined }

/** Asserts that `fn` throws a PetrelError with exactly this code and reason code. */
export function assertPetrelError (fn: () => unknown, expected: ExpectedError, message?: string): PetrelError {
  let caught: unknown
  try {
    fn()
  } catch (err) {
    caught = err
  }
  assert.ok(caught !== undefined, `${message ?? 'expected an error'}: nothing was thrown`)
  assert.ok(caught instanceof PetrelError, `${message ?? ''}: not a PetrelError: ${String(caught)}`)
  assert.equal(caught.code, expected.code, `${message ?? ''}: ${caught.message}`)
  assert.equal(caught.reasonCode, expected.reasonCode, `${message ?? ''}: ${caught.message}`)
  return caught
}
