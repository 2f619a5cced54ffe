// One exit code for a command line to fix, whatever the command: 1, as mosquitto_pub,
// mosquitto_sub, mosquitto_passwd and emqtt-bench exit on one.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { ExitCode } from '../src/exit-code.js'

const bin = fileURLToPath(new URL('../src/bin/petrel.js', import.meta.url))

function petrel (args: string[]): { status: number | null, stdout: string, stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 15_000, stdio: ['ignore', 'pipe', 'pipe'] })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

test('usage errors exit 1 in every command: an unknown flag, a flag without its value, a missing argument', () => {
  assert.equal(ExitCode.usage, 1)
  const cases: string[][] = [
    ['broker', '--nope'], ['broker', '--port'], ['broker', '--port', 'x'],
    ['pub', '--nope'], ['pub', '-t'], ['pub', '-m', 'x'],
    ['sub', '--nope'], ['sub', '-t'], ['sub'],
    ['bench', 'pub', '--nope'], ['bench', 'pub', '-c'], ['bench'], ['bench', 'nomode'],
    ['passwd', '--nope'], ['passwd', 'only-a-file'],
    ['nocommand']
  ]
  for (const args of cases) {
    const r = petrel(args)
    assert.equal(r.status, ExitCode.usage, `petrel ${args.join(' ')}: exit ${r.status}\n${r.stderr}`)
    assert.notEqual(r.stderr, '', `petrel ${args.join(' ')} says why on stderr`)
  }
})

test('petrel --version prints the version of @petrel/cli and of node, exit 0', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  const r = petrel(['--version'])
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout, `petrel ${pkg.version} (node ${process.version})\n`)
})

test('--help exits 0 in every command, on stdout', () => {
  for (const args of [['--help'], ['broker', '--help'], ['pub', '--help'], ['sub', '--help'], ['bench', '--help'], ['passwd', '--help']]) {
    const r = petrel(args)
    assert.equal(r.status, 0, `petrel ${args.join(' ')}: exit ${r.status}\n${r.stderr}`)
    assert.match(r.stdout, /petrel/)
    assert.match(r.stdout, /[Ee]xit codes?/, `petrel ${args.join(' ')} --help lists its exit codes`)
  }
  // pub and sub exit as bench does on a second signal: their help says so too.
  for (const cmd of ['pub', 'sub']) assert.match(petrel([cmd, '--help']).stdout, /130\/143 a second Ctrl-C\/SIGTERM/)
})

test('petrel --help lists every exit code of the table', () => {
  const help = petrel(['--help']).stdout
  const section = help.slice(help.indexOf('Exit codes'))
  assert.notEqual(section, '', help)
  for (const [name, code] of Object.entries(ExitCode)) {
    assert.match(section, new RegExp(`(^|[\\s/,(])${code}([\\s/,)]|$)`, 'm'), `${name} (${code}) missing from:\n${section}`)
  }
})
