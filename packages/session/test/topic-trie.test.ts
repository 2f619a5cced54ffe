import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { topicMatches } from '@petrel/wire'
import { TopicTrie } from '../src/index.js'

function trieOf (filters: string[]): TopicTrie<string> {
  const t = new TopicTrie<string>()
  for (const f of filters) t.add(f, f)
  return t
}

const sorted = (xs: string[]): string[] => [...xs].sort()

describe('TopicTrie matching (§4.7)', () => {
  const filters = ['a/b', 'a/+', 'a/#', '#', '+', '+/+', '+/b', 'a/b/c', 'a/+/c', '/+', '+/#', '$SYS/#', '$SYS/+', 'a//b', 'a/+/+', 'b']
  const table: Array<[string, string[]]> = [
    ['a/b', ['a/b', 'a/+', 'a/#', '#', '+/+', '+/b', '+/#']],
    ['a', ['a/#', '#', '+', '+/#']], // 'a/#' matches its parent level [MQTT-4.7.1-2]
    ['a/', ['a/+', 'a/#', '#', '+/+', '+/#']],
    ['a/b/c', ['a/#', '#', 'a/b/c', 'a/+/c', '+/#', 'a/+/+']],
    ['a//b', ['a/#', '#', '+/#', 'a//b', 'a/+/+']],
    ['/x', ['#', '+/+', '/+', '+/#']],
    ['b', ['#', '+', '+/#', 'b']],
    ['c/d/e', ['#', '+/#']],
    // Names starting with $ are not matched by filters starting with a wildcard [MQTT-4.7.2-1]
    ['$SYS', ['$SYS/#']],
    ['$SYS/load', ['$SYS/#', '$SYS/+']],
    ['$SYS/a/b', ['$SYS/#']],
    ['$other', []]
  ]
  const trie = trieOf(filters)
  for (const [name, expected] of table) {
    it(`${name} -> ${expected.join(', ') || 'nothing'}`, () => {
      assert.deepEqual(sorted(trie.match(name)), sorted(expected))
      // The wire codec's single-filter matcher agrees.
      assert.deepEqual(sorted(filters.filter((f) => topicMatches(f, name))), sorted(expected))
    })
  }

  it('agrees with topicMatches for random filters and names', () => {
    const lvl = fc.constantFrom('a', 'b', '', '$x')
    const name = fc.array(lvl, { minLength: 1, maxLength: 4 }).map((l) => l.join('/'))
    const filter = fc.tuple(fc.array(fc.constantFrom('a', 'b', '', '+', '$x'), { minLength: 1, maxLength: 4 }), fc.boolean())
      .map(([l, hash]) => (hash ? [...l, '#'] : l).join('/'))
    fc.assert(fc.property(fc.uniqueArray(filter, { maxLength: 12 }), name, (fs, n) => {
      assert.deepEqual(sorted(trieOf(fs).match(n)), sorted(fs.filter((f) => topicMatches(f, n))))
    }), { numRuns: 3000 })
  })

  it('returns one value per entry, and forEachMatch visits the same', () => {
    const t = new TopicTrie<number>()
    t.add('a/+', 1)
    t.add('a/+', 2)
    t.add('a/#', 1)
    assert.deepEqual(t.match('a/b').sort(), [1, 1, 2])
    const seen: number[] = []
    t.forEachMatch('a/b', (v) => { seen.push(v) })
    assert.deepEqual(seen.sort(), [1, 1, 2])
    assert.equal(t.size, 3)
  })
})

describe('TopicTrie removal', () => {
  it('removes one entry and reports whether it existed', () => {
    const t = trieOf(['a/b', 'a/#', '#', '+'])
    assert.equal(t.remove('a/b', 'a/b'), true)
    assert.equal(t.remove('a/b', 'a/b'), false)
    assert.equal(t.remove('a/#', 'a/#'), true)
    assert.equal(t.remove('#', '#'), true)
    assert.equal(t.remove('+', 'nope'), false)
    assert.equal(t.remove('x/y', 'x/y'), false)
    assert.equal(t.size, 1)
    assert.deepEqual(t.match('a/b'), [])
    assert.deepEqual(t.match('a'), ['+'])
  })

  it('matches by a custom equality', () => {
    const t = new TopicTrie<{ id: string }>()
    t.add('a', { id: 'x' })
    assert.equal(t.remove('a', { id: 'x' }, (p, q) => p.id === q.id), true)
    assert.equal(t.size, 0)
  })

  it('prunes empty nodes but keeps nodes that still hold entries', () => {
    const t = new TopicTrie<string>()
    t.add('a/b/c/d', 'deep')
    t.add('a/b', 'mid')
    t.add('a/+/#', 'wild')
    assert.equal(t.remove('a/b/c/d', 'deep'), true)
    const root = (t as unknown as { root: { children?: Map<string, { children?: Map<string, { children?: unknown }> }> } }).root
    const b = root.children?.get('a')?.children?.get('b')
    assert.ok(b !== undefined, 'a/b still holds "mid"')
    assert.equal(b.children, undefined, 'c/d were pruned')
    assert.deepEqual(sorted(t.match('a/b')), ['mid', 'wild'])
    assert.equal(t.remove('a/b', 'mid'), true)
    assert.equal(t.remove('a/+/#', 'wild'), true)
    assert.equal(t.size, 0)
    assert.equal(root.children, undefined, 'everything pruned')
    assert.equal((t as unknown as { root: { plus?: unknown } }).root.plus, undefined)
  })

  it('add then remove everything leaves an empty trie, in any order', () => {
    const filter = fc.array(fc.constantFrom('a', 'b', '+', ''), { minLength: 1, maxLength: 4 }).map((l) => l.join('/'))
    fc.assert(fc.property(fc.array(filter, { maxLength: 10 }), fc.func(fc.integer()), (fs, order) => {
      const t = new TopicTrie<string>()
      fs.forEach((f, i) => { t.add(f, `${f}#${i}`) })
      const entries = fs.map((f, i) => [f, `${f}#${i}`] as const).sort((x, y) => order(x[1]) - order(y[1]))
      for (const [f, v] of entries) assert.equal(t.remove(f, v), true)
      assert.equal(t.size, 0)
      const root = (t as unknown as { root: { children?: unknown, plus?: unknown, hash?: unknown, values?: unknown } }).root
      assert.deepEqual([root.children, root.plus, root.hash, root.values], [undefined, undefined, undefined, undefined])
    }), { numRuns: 2000 })
  })
})
