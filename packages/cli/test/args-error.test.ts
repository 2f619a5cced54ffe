import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { argsErrorMessage, MOSQUITTO_FLAGS_NOT_TAKEN } from '../src/args-error.js'

const bin = fileURLToPath(new URL('../src/bin/petrel.js', import.meta.url))

function errorOf (args: string[], allowPositionals: boolean): unknown {
  try {
    parseArgs({ args, allowPositionals, options: { host: { type: 'string', short: 'h' }, port: { type: 'string', short: 'p' } } })
  } catch (err) {
    return err
  }
  assert.fail(`${args.join(' ')} parsed`)
}

test('an unknown option is named, without Node\'s note on positionals after --', () => {
  assert.equal(argsErrorMessage(errorOf(['--certfile'], true)), "unknown option '--certfile'")
  assert.equal(argsErrorMessage(errorOf(['-m'], false)), "unknown option '-m'")
})

test('a mosquitto flag petrel pub and sub do not take is named as such, with what to use instead', () => {
  assert.equal(argsErrorMessage(errorOf(['--proxy=socks5h://p:1080'], false), MOSQUITTO_FLAGS_NOT_TAKEN), "unknown option '--proxy': mosquitto's SOCKS proxy is not supported")
  assert.match(argsErrorMessage(errorOf(['-e'], false), MOSQUITTO_FLAGS_NOT_TAKEN), /^unknown option '-e': that is mosquitto_rr's response topic; petrel pub sets it with -V 5 -D publish response-topic TOPIC$/)
  assert.equal(argsErrorMessage(errorOf(['--nope'], false), MOSQUITTO_FLAGS_NOT_TAKEN), "unknown option '--nope'")
  const r = spawnSync(process.execPath, [bin, 'pub', '-t', 'x', '-m', 'y', '--tls-alpn', 'mqtt'], { encoding: 'utf8', timeout: 15_000 })
  assert.equal(r.status, 1)
  assert.match(r.stderr, /^petrel pub: unknown option '--tls-alpn': not supported/)
})

test('a bare -h says it is the host, and where the help is; other errors keep their text', () => {
  assert.equal(argsErrorMessage(errorOf(['-h'], false)), "Option '-h, --host <value>' argument missing: -h is the broker host, as in mosquitto_pub and emqtt-bench; the help is --help")
  assert.equal(argsErrorMessage(errorOf(['-p'], false)), "Option '-p, --port <value>' argument missing")
  assert.equal(argsErrorMessage(new Error('something else')), 'something else')
})

test('petrel bench, pub, sub and broker -h: exit 1 with the pointer to --help', () => {
  for (const args of [['bench', '-h'], ['bench', 'pub', '-h'], ['pub', '-h'], ['sub', '-h'], ['broker', '-h']]) {
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 15_000 })
    assert.equal(r.status, 1, `petrel ${args.join(' ')}: ${r.stderr}`)
    // The broker's: mosquitto's own -h is its help, so "as in mosquitto_pub" would mislead there.
    const said = args[0] === 'broker'
      ? /-h is the host to listen on \(mosquitto's own -h is its help\); the help is --help/
      : /-h is the broker host, as in mosquitto_pub and emqtt-bench; the help is --help/
    assert.match(r.stderr, said, `petrel ${args.join(' ')}`)
  }
  const unknown = spawnSync(process.execPath, [bin, 'bench', 'pub', '--retain'], { encoding: 'utf8', timeout: 15_000 })
  assert.match(unknown.stderr, /^petrel bench: unknown option '--retain': not supported: bench publishes are not retained\n/)
})
