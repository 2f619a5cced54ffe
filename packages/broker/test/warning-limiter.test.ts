import { test } from 'node:test'
import assert from 'node:assert/strict'
import { WarningLimiter } from '../src/warning-limiter.js'

test('a warning is due at most once per interval, with the count suppressed since the last one', () => {
  const w = new WarningLimiter(1000)
  assert.equal(w.due(0), 0)
  assert.equal(w.due(1), undefined)
  assert.equal(w.due(999), undefined)
  assert.equal(w.due(1000), 2)
  assert.equal(w.due(1500), undefined)
  assert.equal(w.due(5000), 1)
})
