import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PassThrough, Readable } from 'node:stream'
import { stdinLines } from '../src/stdin-lines.js'

async function linesOf (chunks: Buffer[]): Promise<string[]> {
  const out: string[] = []
  for await (const line of stdinLines(Readable.from(chunks))) out.push(line.toString('hex'))
  return out
}

const hex = (s: string): string => Buffer.from(s, 'latin1').toString('hex')

test('splits on LF only, keeps CR, empty lines and a last line without LF (mosquitto_pub -l)', async () => {
  assert.deepEqual(await linesOf([Buffer.from('a\r\nb\rc\n\nd')]), [hex('a\r'), hex('b\rc'), '', hex('d')])
})

test('lines split across chunks join; bytes are not decoded', async () => {
  const chunks = [Buffer.from('fir'), Buffer.from('st\nse'), Buffer.from([0xff, 0xfe]), Buffer.from('c'), Buffer.from('\n\n')]
  assert.deepEqual(await linesOf(chunks), [hex('first'), hex('se') + 'fffe' + hex('c'), ''])
})

test('no line at all from empty input; a trailing LF adds no empty line', async () => {
  assert.deepEqual(await linesOf([]), [])
  assert.deepEqual(await linesOf([Buffer.from('x\n')]), [hex('x')])
})

test('ends quietly when the input is destroyed while waiting', async () => {
  const input = new PassThrough()
  const got: string[] = []
  const done = (async () => { for await (const l of stdinLines(input)) got.push(l.toString()) })()
  input.write('one\n')
  await new Promise((resolve) => setTimeout(resolve, 20))
  input.destroy()
  await done
  assert.deepEqual(got, ['one'])
})
