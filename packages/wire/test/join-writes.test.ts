import { test } from 'node:test'
import assert from 'node:assert/strict'
import { joinWrites, JOINED_FRAME_BYTES } from '@petrel/wire'

const writes = (...sizes: number[]): Array<{ chunk: Buffer }> => sizes.map((n, i) => ({ chunk: Buffer.alloc(n, i + 1) }))

test('joinWrites: writes join in order into buffers of at most maxBytes; one larger write stays alone', () => {
  const w = writes(3, 4, 2, 10, 1, 1)
  const out = joinWrites(w, 8)
  assert.deepEqual(out.map((b) => b.length), [7, 2, 10, 2])
  assert.deepEqual(Buffer.concat(out), Buffer.concat(w.map((x) => x.chunk)))
  // a lone write is passed on as it is, not copied
  assert.equal(out[2], w[3]?.chunk)
})

test('joinWrites: a batch within the default bound is one buffer', () => {
  const w = writes(1000, 2000, JOINED_FRAME_BYTES - 3000)
  const out = joinWrites(w)
  assert.equal(out.length, 1)
  assert.equal(out[0]?.length, JOINED_FRAME_BYTES)
  assert.equal(joinWrites(writes(1000, JOINED_FRAME_BYTES)).length, 2)
})
