// Error codes and their documentation stay in sync (fastify style).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { BrokerErrorCode } from '@petrel/broker'

const doc = readFileSync(fileURLToPath(new URL('../../ERRORS.md', import.meta.url)), 'utf8')

test('every BrokerErrorCode is documented in ERRORS.md, and ERRORS.md lists no other broker code', () => {
  const documented = new Set([...doc.matchAll(/`(PETREL_ERR_BROKER_[A-Z_]+)`/g)].map((m) => m[1]))
  const defined = new Set(Object.values(BrokerErrorCode))
  assert.deepEqual([...defined].filter((c) => !documented.has(c)), [], 'codes missing from ERRORS.md')
  assert.deepEqual([...documented].filter((c) => !defined.has(c as BrokerErrorCode)), [], 'ERRORS.md lists codes that do not exist')
})

test('the code keys match their values', () => {
  for (const [k, v] of Object.entries(BrokerErrorCode)) assert.equal(v, `PETREL_ERR_BROKER_${k}`.replace('BROKER_BROKER_', 'BROKER_'))
})
