import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PassThrough, Writable } from 'node:stream'
import { readPassword, type PasswordIo } from '../src/read-password.js'

/** A fake stdin (a terminal or a pipe) and a stderr that records what the user would see. */
function io (tty: boolean): PasswordIo & { input: PassThrough, shown: () => string, rawMode: boolean[] } {
  const input = new PassThrough() as PassThrough & { isTTY?: boolean, setRawMode?: (on: boolean) => void }
  const rawMode: boolean[] = []
  if (tty) {
    input.isTTY = true
    input.setRawMode = (on) => { rawMode.push(on) }
  }
  let shown = ''
  const output = new Writable({ write (chunk: Buffer, _encoding, done) { shown += chunk.toString(); done() } })
  return { input, output, shown: () => shown, rawMode }
}

test('on a terminal the password is not echoed, and asked for twice', async () => {
  const t = io(true)
  const answer = readPassword('alice', t)
  t.input.write('s3c')
  t.input.write('ret\r')
  await new Promise((resolve) => setImmediate(resolve))
  t.input.write('s3cret\r')
  assert.deepEqual(await answer, { password: 's3cret' })
  assert.equal(t.shown(), 'password for alice: \nagain: \n')
  assert.deepEqual(t.rawMode, [true, false])
})

test('on a terminal two different entries are a mismatch; Ctrl-C and Ctrl-D say so', async () => {
  const t = io(true)
  const answer = readPassword('alice', t)
  t.input.write('one\rtwo\r')
  assert.deepEqual(await answer, { problem: 'mismatch' })
  const c = io(true)
  const interrupted = readPassword('alice', c)
  c.input.write('\x03')
  assert.deepEqual(await interrupted, { problem: 'interrupted' })
  const d = io(true)
  const ended = readPassword('alice', d)
  d.input.write('\x04')
  assert.deepEqual(await ended, { problem: 'ended' })
})

test('from a pipe: the first line, without a prompt; a last line without LF counts; nothing at all is "ended"', async () => {
  const a = io(false)
  const first = readPassword('bob', a)
  a.input.end('pw1\nignored\n')
  assert.deepEqual(await first, { password: 'pw1' })
  // Nobody to ask: no prompt.
  assert.equal(a.shown(), '')
  const b = io(false)
  const noLf = readPassword('bob', b)
  b.input.end('nolf')
  assert.deepEqual(await noLf, { password: 'nolf' })
  const c = io(false)
  const none = readPassword('bob', c)
  c.input.end()
  assert.deepEqual(await none, { problem: 'ended' })
})
