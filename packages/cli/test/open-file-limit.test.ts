import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openFileLimit } from '../src/open-file-limit.js'
import { fileLimitWarning } from '../src/commands/broker.js'

test('openFileLimit reads the soft limit from a /proc/self/limits text; none or unlimited is undefined', () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-limits-'))
  const file = (name: string, text: string): string => {
    writeFileSync(join(dir, name), text)
    return join(dir, name)
  }
  const header = 'Limit                     Soft Limit           Hard Limit           Units     \n'
  assert.equal(openFileLimit(file('a', `${header}Max processes             63459                63459                processes \nMax open files            1024                 4096                 files     \n`)), 1024)
  assert.equal(openFileLimit(file('b', `${header}Max open files            unlimited            unlimited            files     \n`)), undefined)
  assert.equal(openFileLimit(join(dir, 'none')), undefined)
  if (process.platform === 'linux') assert.ok((openFileLimit() ?? 0) > 0, 'this process has a limit')
})

test('fileLimitWarning: only when max_connections does not fit the limit, saying how many will', () => {
  assert.equal(fileLimitWarning(10_000, undefined), undefined)
  assert.equal(fileLimitWarning(10_000, 1_048_576), undefined)
  assert.equal(fileLimitWarning(100, 1024), undefined)
  const w = fileLimitWarning(10_000, 4096)
  assert.match(w ?? '', /^this process may open 4,096 files \(ulimit -Hn; Node raises its soft limit to it\) and max_connections is 10,000: clients past about 4,032 will be closed as they connect\. Raise the hard limit/)
})
