import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Message } from '@petrel/client'
import { compileFormat, preciseNow } from '../src/message-format.js'
import { UsageError } from '../src/usage-error.js'

// -F as mosquitto_sub 2.0 prints it (the same format against both is compared in pub-sub.test.ts).

const msg = (payload: string, qos: 0 | 1 | 2, packetId: number, properties?: Message['properties']): Message =>
  new Message('fw/abcdefgh', Buffer.from(payload), qos, false, false, packetId, properties, undefined, undefined)

// 2026-03-04 05:06:07.089 local time, plus 123.456 µs below the millisecond.
const when = Object.assign(new Date(2026, 2, 4, 5, 6, 7, 89), { subMsNanos: 123_456 })

test('field widths, alignment, zero padding and precision', () => {
  const m = msg('payload-long', 1, 7, { contentType: 'tx', messageExpiryInterval: 30 })
  const f = compileFormat('|%15t|%-15t|%.3t|%8p|%-8p|%20p|%6x|%-6X|%3m|%03m|%-3m|%04l|%5C|%-5C|%3E|%03E|%%|')
  assert.equal(f(m, when).toString(), '|    fw/abcdefgh|fw/abcdefgh    |fw/|payload-|payload-|        payload-long|706179|706179|  7|007|7  |0012|   tx|tx   | 30|030|%|')
  // Absent values print as blanks of the field's width; QoS 0 has packet id 0.
  assert.equal(compileFormat('|%5C|%3E|%2F|%4S|%2A|%m|%R|')(msg('x', 0, 0), when).toString(), '|     |   |  |    |  |0||')
})

test('@ conversions are strftime letters of the local time; @N and %U carry nanoseconds', () => {
  const f = compileFormat('@Y-@m-@d @H:@M:@S.@N @a @b @j @I@p @@ %U')
  const unix = `${Math.floor(when.getTime() / 1000)}.089123456`
  assert.equal(f(msg('x', 0, 0), when).toString(), `2026-03-04 05:06:07.089123456 Wed Mar 063 05AM @ ${unix}`)
  assert.equal(compileFormat('@F @T @s')(msg('x', 0, 0), when).toString(), `2026-03-04 05:06:07 ${Math.floor(when.getTime() / 1000)}`)
  const now = preciseNow()
  assert.ok(Math.abs(now.getTime() - Date.now()) < 1000)
})

test('every strftime letter glibc has: @c @x @X @r @P @U @W @V @G @g @Z @%', () => {
  const f = compileFormat('@c|@x|@X|@r|@P|@U|@W|@V|@G|@g|@%')
  assert.equal(f(msg('x', 0, 0), when).toString(), 'Wed Mar  4 05:06:07 2026|03/04/26|05:06:07|05:06:07 AM|am|09|09|10|2026|26|%')
  // ISO weeks across a year's end: 2027-01-01 (a Friday) is in week 53 of 2026.
  assert.equal(compileFormat('@G-W@V @U @W')(msg('x', 0, 0), new Date(2027, 0, 1, 12)).toString(), '2026-W53 00 00')
  const tz = process.env.TZ
  process.env.TZ = 'America/New_York'
  try {
    assert.equal(compileFormat('@Z @z')(msg('x', 0, 0), new Date(Date.UTC(2026, 0, 15, 12))).toString(), 'EST -0500')
    assert.equal(compileFormat('@Z @z')(msg('x', 0, 0), new Date(Date.UTC(2026, 6, 15, 12))).toString(), 'EDT -0400')
  } finally {
    if (tz === undefined) delete process.env.TZ
    else process.env.TZ = tz
  }
})

test('%j: tst as mosquitto_sub 2.0 writes it; the client\'s own subscription ids are not printed (%j, %S)', () => {
  const m = msg('x', 0, 0, { subscriptionIdentifiers: [3], contentType: 'c' })
  const line = compileFormat('%j')(m, when).toString()
  const off = -when.getTimezoneOffset()
  const zone = `${off >= 0 ? '+' : '-'}${String(Math.floor(Math.abs(off) / 60)).padStart(2, '0')}${String(Math.abs(off) % 60).padStart(2, '0')}`
  assert.equal(line, `{"tst":"2026-03-04T05:06:07.089123Z${zone}","topic":"fw/abcdefgh","qos":0,"retain":0,"payloadlen":1,"properties":{"content-type":"c"},"payload":"x"}`)
  assert.equal(compileFormat('[%S][%3S]')(m, when).toString(), '[][   ]')
})

test('%j carries mid for QoS > 0; prettyJson indents it', () => {
  const line = JSON.parse(compileFormat('%j')(msg('{"a":1}', 2, 9), when).toString()) as Record<string, unknown>
  assert.equal(line.mid, 9)
  assert.equal(line.payload, '{"a":1}')
  assert.equal('mid' in (JSON.parse(compileFormat('%j')(msg('x', 0, 0), when).toString()) as object), false)
  const pretty = compileFormat('%J', true)(msg('{"a":1}', 1, 1), when).toString()
  assert.match(pretty, /\n\t"payload": \{\n\t\t"a": 1\n\t\}\n\}$/)
})

test('unknown conversions are usage errors that list what is supported', () => {
  assert.throws(() => compileFormat('%k'), (e: unknown) => e instanceof UsageError && /unsupported %k \(supported: .*%m/.test(e.message))
  assert.throws(() => compileFormat('@Q'), (e: unknown) => e instanceof UsageError && /unsupported @Q \(supported: .*@N/.test(e.message))
  assert.throws(() => compileFormat('abc%'), /a lone % at the end/)
  assert.throws(() => compileFormat('abc@'), /a lone @ at the end/)
})

test('%p is the payload bytes verbatim; its width counts bytes (as mosquitto_sub 2.0.11 prints them)', () => {
  const binary = Buffer.from([0xff, 0x00, 0xc3, 0x28, 0x80, 0x0a])
  const m = new Message('fw/b', binary, 0, false, false, 0, undefined, undefined, undefined)
  assert.deepEqual(compileFormat('%p')(m, when), binary)
  assert.deepEqual(compileFormat('<%p|%x>')(m, when), Buffer.concat([Buffer.from('<'), binary, Buffer.from('|ff00c328800a>')]))
  // 'héllo' is 6 bytes; %3p cuts the é in half. mosquitto_sub -F '|%8p|%-8p|%3p|%08p|%-08p|' writes exactly these.
  const h = Buffer.from('héllo')
  const expected = Buffer.concat([Buffer.from('|  '), h, Buffer.from('|'), h, Buffer.from('  |'), h.subarray(0, 3), Buffer.from('|00'), h, Buffer.from('|'), h, Buffer.from('  |')])
  assert.deepEqual(compileFormat('|%8p|%-8p|%3p|%08p|%-08p|')(msg('héllo', 0, 0), when), expected)
})

test('%j/%J keep every user property, repeated names included (as mosquitto_sub), and stay JSON.stringify otherwise', () => {
  const m = msg('{"a":[1,{"b":null}],"c":{},"d":[]}', 1, 3, { userProperties: [['k', 'v'], ['k', 'v2'], ['q"x', 'y\\z']] })
  const line = compileFormat('%j')(m, when).toString()
  // mosquitto_sub 2.0.11 -F %j prints this for the same properties.
  assert.ok(line.includes('"properties":{"user-properties":{"k":"v","k":"v2","q\\"x":"y\\\\z"}}'), line)
  // Without repeated names the text is JSON.stringify's, compact and indented alike.
  const plain = msg('{"a":[1,{"b":null}],"c":{},"d":[]}', 1, 3, { userProperties: [['k', 'v']], contentType: 'application/json' })
  for (const pretty of [false, true]) {
    const text = compileFormat('%J', pretty)(plain, when).toString()
    assert.equal(text, JSON.stringify(JSON.parse(text), null, pretty ? '\t' : undefined))
    assert.deepEqual((JSON.parse(text) as { payload: unknown }).payload, { a: [1, { b: null }], c: {}, d: [] })
  }
  assert.match(compileFormat('%J', true)(m, when).toString(), /\t\t"user-properties": \{\n\t\t\t"k": "v",\n\t\t\t"k": "v2",\n/)
})
