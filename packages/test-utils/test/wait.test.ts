import { test } from 'node:test'
import assert from 'node:assert/strict'
import { freePort, waitFor, withTimeout } from '../src/index.js'

test('waitFor resolves once the predicate holds, sync or async', async () => {
  let n = 0
  await waitFor(() => ++n >= 3, { intervalMs: 1 })
  assert.equal(n, 3)
  await waitFor(async () => await Promise.resolve(true))
})

test('waitFor rejects with the message on timeout', async () => {
  const started = Date.now()
  await assert.rejects(waitFor(() => false, { timeoutMs: 50, intervalMs: 10, message: 'never true' }), /never true/)
  assert.ok(Date.now() - started < 1000)
})

test('withTimeout passes results and errors through, and times out', async () => {
  assert.equal(await withTimeout(Promise.resolve(7), 100, 'value'), 7)
  await assert.rejects(withTimeout(Promise.reject(new Error('boom')), 100, 'failure'), /boom/)
  await assert.rejects(withTimeout(new Promise(() => {}), 20, 'the answer'), /the answer timed out after 20 ms/)
})

test('freePort returns a bindable ephemeral port', async () => {
  const port = await freePort()
  assert.ok(port > 0 && port < 65536)
})
