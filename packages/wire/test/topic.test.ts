import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  assertTopicFilter, assertTopicName, isValidTopicFilter, isValidTopicName, parseSharedSubscription,
  topicFilterProblem, topicMatches, topicNameProblem, WireErrorCode
} from '../src/index.js'
import { topicFilter, topicName } from './arbitraries.js'
import { assertPetrelError } from './helpers.js'

const numRuns = Math.max(1000, Math.floor(Number(process.env.PETREL_FC_RUNS ?? 10_000) / 2))

describe('topic names (§4.7)', () => {
  const valid = ['a', 'a/b', '/', '//', '/a', 'a/', '$SYS/broker', 'sport/tennis/player1', 'ü/€/😀', ' ', 'x'.repeat(65535)]
  const invalid: Array<[string, RegExp]> = [
    ['', /at least one character long \[MQTT-4\.7\.3-1\]/],
    ['a/+', /wildcards/],
    ['#', /wildcards/],
    ['a+b', /wildcards/],
    ['a\u0000b', /U\+0000/],
    ['é'.repeat(32768), /65,535 bytes/]
  ]
  for (const t of valid) it(`accepts ${JSON.stringify(t.slice(0, 20))}`, () => { assert.equal(topicNameProblem(t), undefined); assert.ok(isValidTopicName(t)) })
  for (const [t, re] of invalid) {
    it(`rejects ${JSON.stringify(t.slice(0, 20))}`, () => {
      assert.match(topicNameProblem(t) ?? '', re)
      assert.equal(isValidTopicName(t), false)
      assertPetrelError(() => { assertTopicName(t) }, { code: WireErrorCode.INVALID_TOPIC_NAME, reasonCode: 0x90 })
    })
  }
  it('every generated topic name is valid', () => {
    fc.assert(fc.property(topicName, (t) => { assert.equal(topicNameProblem(t), undefined) }), { numRuns })
  })
})

describe('topic filters (§4.7.1, §4.8.2)', () => {
  const valid = ['#', '+', 'a/#', 'a/+', '+/+', '+/a/#', '/+', 'a//b', '$SYS/#', '$share/g/a/#', '$share/g/#', '$share/g/+', '$shared/x', '$share', 'a/b/c']
  const invalid: Array<[string, RegExp]> = [
    ['', /at least one character/],
    ['a#', /multi-level wildcard/],
    ['a/#/b', /multi-level wildcard/],
    ['#/a', /multi-level wildcard/],
    ['a/b#', /multi-level wildcard/],
    ['a+', /single-level wildcard/],
    ['+a', /single-level wildcard/],
    ['a/+b/c', /single-level wildcard/],
    ['a\u0000', /U\+0000/],
    ['$share/', /\$share\/\{ShareName\}/],
    ['$share/g', /\$share\/\{ShareName\}/],
    ['$share//a', /ShareName .* at least one character/],
    ['$share/g/', /needs a topic filter/],
    ['$share/g+/a', /ShareName must not contain/],
    ['$share/#/a', /ShareName must not contain/],
    ['$share/g/a#', /multi-level wildcard/]
  ]
  for (const f of valid) it(`accepts ${JSON.stringify(f)}`, () => { assert.equal(topicFilterProblem(f), undefined); assert.ok(isValidTopicFilter(f)) })
  for (const [f, re] of invalid) {
    it(`rejects ${JSON.stringify(f)}`, () => {
      assert.match(topicFilterProblem(f) ?? '', re)
      assert.equal(isValidTopicFilter(f), false)
      assertPetrelError(() => { assertTopicFilter(f) }, { code: WireErrorCode.INVALID_TOPIC_FILTER, reasonCode: 0x8f })
    })
  }
  it('every generated topic filter is valid', () => {
    fc.assert(fc.property(topicFilter, (f) => { assert.equal(topicFilterProblem(f), undefined) }), { numRuns })
  })
})

describe('parseSharedSubscription (§4.8.2)', () => {
  it('splits $share/{ShareName}/{filter}', () => {
    assert.deepEqual(parseSharedSubscription('$share/group/a/b/#'), { shareName: 'group', topicFilter: 'a/b/#' })
    assert.deepEqual(parseSharedSubscription('$share/g//'), { shareName: 'g', topicFilter: '/' })
  })
  it('returns undefined for filters that are not shared', () => {
    assert.equal(parseSharedSubscription('a/b'), undefined)
    assert.equal(parseSharedSubscription('$shared/a'), undefined)
    assert.equal(parseSharedSubscription('$share'), undefined)
  })
  it('throws PETREL_ERR_INVALID_TOPIC_FILTER for a malformed shared filter', () => {
    for (const f of ['$share/', '$share/g', '$share//a', '$share/g/', '$share/a+b/c']) {
      assertPetrelError(() => parseSharedSubscription(f), { code: WireErrorCode.INVALID_TOPIC_FILTER, reasonCode: 0x8f }, f)
    }
  })
})

/** A plain reference matcher, level by level, for comparing against the fast one. */
function referenceMatch (filter: string, name: string): boolean {
  const f = filter.split('/')
  const n = name.split('/')
  if (name.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true
    if (i >= n.length) return false
    if (f[i] !== '+' && f[i] !== n[i]) return false
  }
  return f.length === n.length
}

describe('topicMatches (§4.7)', () => {
  const table: Array<[string, string, boolean]> = [
    ['a/b', 'a/b', true],
    ['a/b', 'a/c', false],
    ['a/b', 'a/bc', false],
    ['a/bc', 'a/b', false],
    ['a/b', 'a/b/c', false],
    ['#', 'a', true],
    ['#', 'a/b/c', true],
    ['#', '/', true],
    ['a/#', 'a', true], // the parent level too [MQTT-4.7.1-2]
    ['a/#', 'a/', true],
    ['a/#', 'a/b/c', true],
    ['a/#', 'ab', false],
    ['a/#', 'b', false],
    ['+', 'a', true],
    ['+', 'a/b', false],
    ['+', '/a', false],
    ['+/+', '/a', true],
    ['/+', '/a', true],
    ['a/+', 'a/', true],
    ['a/+', 'a', false],
    ['a/+/c', 'a/b/c', true],
    ['a/+/c', 'a/b/d', false],
    ['a/+/#', 'a/b', true],
    ['+/#', 'a', true],
    ['sport/tennis/+', 'sport/tennis/player1', true],
    ['sport/+', 'sport', false],
    ['sport/+', 'sport/', true],
    ['#', '$SYS/x', false], // [MQTT-4.7.2-1]
    ['+/x', '$SYS/x', false], // [MQTT-4.7.2-1]
    ['+', '$SYS', false],
    ['$SYS/#', '$SYS/broker/load', true],
    ['$SYS/#', '$SYS', true],
    ['$SYS/+', '$SYS/x', true],
    ['a/$x', 'a/$x', true],
    ['+/$x', 'a/$x', true]
  ]
  for (const [filter, name, expected] of table) {
    it(`${filter} ${expected ? 'matches' : 'does not match'} ${name}`, () => {
      assert.equal(topicMatches(filter, name), expected)
      assert.equal(referenceMatch(filter, name), expected)
    })
  }

  it('agrees with a level-by-level reference matcher', () => {
    const small = fc.constantFrom('a', 'b', '', '$s')
    const name = fc.array(small, { minLength: 1, maxLength: 4 }).map((l) => l.join('/'))
    const filter = fc.tuple(fc.array(fc.constantFrom('a', 'b', '', '+', '$s'), { minLength: 1, maxLength: 4 }), fc.boolean())
      .map(([l, hash]) => (hash ? [...l, '#'] : l).join('/'))
    fc.assert(fc.property(filter, name, (f, n) => { assert.equal(topicMatches(f, n), referenceMatch(f, n)) }), { numRuns })
  })
})
