import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { ClientErrorCode } from '../src/errors.js'

// Keeps ERRORS.md and ClientErrorCode honest: every code documented, nothing documented that does not exist.
test('ERRORS.md lists exactly the codes of ClientErrorCode', () => {
  const md = readFileSync(fileURLToPath(new URL('../../ERRORS.md', import.meta.url)), 'utf8')
  const documented = [...md.matchAll(/^\| `(PETREL_ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]).sort()
  const defined = Object.values(ClientErrorCode).sort()
  assert.deepEqual(documented, defined)
  assert.equal(new Set(defined).size, defined.length, 'codes are unique')
})
