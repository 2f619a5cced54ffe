import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Backoff } from '../src/backoff.js'

test('grows x2 from 1 s to 30 s with no jitter', () => {
  const b = new Backoff({ random: () => 0.5 })
  const delays = Array.from({ length: 8 }, () => b.next())
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000])
})

test('jitter stays within +/-20%', () => {
  const lo = new Backoff({ random: () => 0 })
  const hi = new Backoff({ random: () => 0.999999 })
  assert.equal(lo.next(), 800)
  assert.equal(hi.next(), 1200)
  let r = 0
  const b = new Backoff({ random: () => (r = (r + 0.37) % 1) })
  for (let i = 0; i < 50; i++) {
    const d = b.next()
    assert.ok(d >= 800 && d <= 36000, String(d))
  }
})

test('resets only after a connection outlived the last delay', () => {
  const b = new Backoff({ random: () => 0.5 })
  b.next(); b.next(); b.next() // 1 s, 2 s, 4 s
  b.connectionEnded(100) // accept-then-drop: no reset
  assert.equal(b.next(), 8000)
  b.connectionEnded(8001)
  assert.equal(b.next(), 1000)
})
