// Runs every compiled test file (packages/*/dist/test/**/*.test.js) on Node's test runner, with
// coverage by c8 (Node 20's --experimental-test-coverage crashes on our source maps, nodejs/node#51552).
// Extra arguments are passed on: `npm run test:only -- --test-name-pattern=decoder`.
import { readdirSync, statSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'

function walk (dir, out) {
  if (!existsSync(dir)) return out
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) walk(p, out)
    else if (name.endsWith('.test.js')) out.push(p)
  }
  return out
}

const files = []
for (const pkg of readdirSync('packages')) walk(join('packages', pkg, 'dist', 'test'), files)
const filter = process.env.PETREL_TEST_FILTER
const selected = filter ? files.filter((f) => f.includes(filter)) : files
if (selected.length === 0) {
  console.error('no test files found: run `npm run build` first')
  process.exit(1)
}
const c8 = join('node_modules', 'c8', 'bin', 'c8.js')
// --test-timeout bounds each file too (a hang guard, not a speed check): the longest file, the
// bench CLI's (~40 tests that each run the tool end to end, one after another), takes ~3 min
// alone and more on a loaded machine.
const args = [c8, '--reporter=text-summary', '--reports-dir=coverage', '--all=false',
  '--include=packages/*/dist/src/**', process.execPath,
  '--test', '--test-timeout=420000', ...process.argv.slice(2), ...selected.sort()]
const r = spawnSync(process.execPath, args, { stdio: 'inherit' })
process.exit(r.status ?? 1)
