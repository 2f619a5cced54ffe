import { test } from 'node:test'
import assert from 'node:assert/strict'
import { findProgram, hasProgram, requirePeer } from '../src/index.js'

test('hasProgram finds a program on PATH and not a made-up one', () => {
  assert.equal(hasProgram('sh'), true)
  assert.match(findProgram('sh') ?? '', /\/sh$/)
  assert.equal(hasProgram('petrel-no-such-program-3f9a'), false)
})

test('requirePeer skips locally and throws under CI when the peer is missing', () => {
  const saved = process.env.CI
  try {
    const skips: (string | undefined)[] = []
    const t = { skip: (msg?: string) => { skips.push(msg) } }
    process.env.CI = 'false'
    assert.equal(requirePeer(t, 'petrel-no-such-program-3f9a'), false)
    assert.equal(skips.length, 1)
    assert.match(skips[0] ?? '', /petrel-no-such-program-3f9a not installed/)
    process.env.CI = 'true'
    assert.throws(() => requirePeer(t, 'petrel-no-such-program-3f9a'), /petrel-no-such-program-3f9a not installed/)
    assert.equal(requirePeer(t, 'sh'), true)
    assert.equal(skips.length, 1)
  } finally {
    if (saved === undefined) delete process.env.CI
    else process.env.CI = saved
  }
})

test('requirePeer gives the mosquitto install hint', () => {
  if (hasProgram('mosquitto')) return
  const skips: (string | undefined)[] = []
  if (process.env.CI === 'true') return
  requirePeer({ skip: (msg?: string) => { skips.push(msg) } }, 'mosquitto')
  assert.equal(skips[0], 'mosquitto not installed: apt-get install -y mosquitto mosquitto-clients')
})
