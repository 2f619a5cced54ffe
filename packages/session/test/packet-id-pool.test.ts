import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { PacketIdPool } from '../src/index.js'

describe('PacketIdPool', () => {
  it('hands out 1..65535 once each, then nothing', () => {
    const pool = new PacketIdPool()
    const seen = new Set<number>()
    for (let i = 0; i < 65535; i++) {
      const id = pool.allocate()
      assert.ok(id !== undefined && id >= 1 && id <= 65535, `id ${String(id)}`)
      assert.ok(!seen.has(id), `id ${id} handed out twice`)
      seen.add(id)
    }
    assert.equal(pool.size, 65535)
    assert.equal(pool.allocate(), undefined)
    assert.equal(pool.size, 65535)
  })

  it('never hands out 0 [MQTT-2.2.1-3]', () => {
    const pool = new PacketIdPool()
    for (let i = 0; i < 70000; i++) {
      const id = pool.allocate()
      assert.notEqual(id, 0)
      if (id !== undefined) pool.release(id)
    }
  })

  it('walks forward instead of reusing a just-released id, and wraps from 65535 to 1', () => {
    const pool = new PacketIdPool()
    assert.equal(pool.allocate(), 1)
    pool.release(1)
    assert.equal(pool.allocate(), 2)
    for (let i = 3; i <= 65535; i++) pool.release(pool.allocate()!)
    assert.equal(pool.allocate(), 1) // wrapped; 2 is still in use
    assert.equal(pool.allocate(), 3)
  })

  it('skips ids still in use when it wraps', () => {
    const pool = new PacketIdPool()
    for (let i = 1; i <= 65535; i++) pool.allocate()
    pool.release(40000)
    pool.release(7)
    assert.equal(pool.allocate(), 7)
    assert.equal(pool.allocate(), 40000)
    assert.equal(pool.allocate(), undefined)
  })

  it('claims ids restored from a store, once', () => {
    const pool = new PacketIdPool()
    assert.equal(pool.claim(5), true)
    assert.equal(pool.claim(5), false)
    assert.equal(pool.has(5), true)
    assert.equal(pool.size, 1)
    for (const bad of [0, -1, 65536, 1.5, Number.NaN]) assert.equal(pool.claim(bad), false, String(bad))
    assert.equal(pool.size, 1)
    for (let i = 0; i < 10; i++) assert.notEqual(pool.allocate(), 5)
  })

  it('ignores releasing an id that is not in use, and clears', () => {
    const pool = new PacketIdPool()
    pool.allocate()
    pool.release(99)
    assert.equal(pool.size, 1)
    pool.clear()
    assert.equal(pool.size, 0)
    assert.equal(pool.has(1), false)
  })

  it('never hands out an id in use, under any sequence of operations', () => {
    const op = fc.oneof(
      fc.constant({ kind: 'allocate' as const, id: 0 }),
      fc.record({ kind: fc.constant('release' as const), id: fc.integer({ min: 0, max: 70 }) }),
      fc.record({ kind: fc.constant('claim' as const), id: fc.integer({ min: 0, max: 70 }) })
    )
    fc.assert(fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const pool = new PacketIdPool()
      const model = new Set<number>()
      for (const o of ops) {
        if (o.kind === 'allocate') {
          const id = pool.allocate()
          assert.ok(id !== undefined && !model.has(id))
          model.add(id)
        } else if (o.kind === 'release') {
          pool.release(o.id)
          model.delete(o.id)
        } else {
          assert.equal(pool.claim(o.id), o.id >= 1 && !model.has(o.id))
          if (o.id >= 1) model.add(o.id)
        }
        assert.equal(pool.size, model.size)
      }
    }), { numRuns: 2000 })
  })
})
