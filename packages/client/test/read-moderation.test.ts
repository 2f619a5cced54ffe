import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ReadModeration } from '../src/read-moderation.js'

/** Feeds [bytes, at] reads; returns the pause asked after each. */
function run (m: ReadModeration, reads: Array<[number, number]>): number[] {
  return reads.map(([bytes, at]) => m.onRead(bytes, at))
}

test('reads that are spaced out or big are never paused', () => {
  const m = new ReadModeration()
  // 1,000 small reads 0.2 ms apart (5,000 reads/s): not busy enough.
  const sparse = run(m, Array.from({ length: 1000 }, (_, i): [number, number] => [66, i * 0.2]))
  assert.ok(sparse.every((p) => p === 0))
  // Back-to-back reads that fill 16 KiB or more are already cheap per byte.
  const big = run(m, Array.from({ length: 1000 }, (_, i): [number, number] => [16 * 1024, 200 + i * 0.01]))
  assert.ok(big.every((p) => p === 0))
  assert.equal(m.active, false)
})

test('a run of small back-to-back reads starts moderation on its 64th read', () => {
  const m = new ReadModeration()
  const pauses = run(m, Array.from({ length: 64 }, (_, i): [number, number] => [132, i * 0.02]))
  assert.deepEqual(pauses.slice(0, 63), new Array(63).fill(0))
  assert.equal(pauses[63], 1)
  assert.equal(m.active, true)
})

test('a gap breaks the run: the count starts again', () => {
  const m = new ReadModeration({ busyReads: 4 })
  // 3 busy reads, a 5 ms gap, then the count restarts: only the 4th busy read after the gap pauses.
  assert.deepEqual(run(m, [[66, 0], [66, 0.01], [66, 0.02], [66, 5], [66, 5.01], [66, 5.02], [66, 5.03]]), [0, 0, 0, 0, 0, 0, 1])
})

test('while moderating: full pauses go on, big reads are not delayed, three quiet pauses in a row end it', () => {
  const m = new ReadModeration({ busyReads: 2 })
  assert.deepEqual(run(m, [[66, 0], [66, 0.01]]), [0, 1])
  assert.deepEqual(run(m, [
    [9000, 1.1], // a pause gathered plenty: pause again
    [64 * 1024, 2.2], // a full buffer: read on at once
    [500, 2.3], // quiet 1
    [8000, 3.4], // busy again: the quiet count restarts
    [500, 4.5], // quiet 1
    [300, 5.6], // quiet 2
    [100, 6.7] // quiet 3: moderation ends, read eagerly
  ]), [1, 0, 1, 1, 1, 1, 0])
  assert.equal(m.active, false)
  // Eager again: small reads are not paused until a new busy run.
  assert.deepEqual(run(m, [[66, 6.71]]), [0])
})

test('settings are honoured', () => {
  const m = new ReadModeration({ pauseMs: 5, busyGapMs: 1, busyReads: 2, smallReadBytes: 100, quietBytes: 10, quietPauses: 1 })
  assert.deepEqual(run(m, [[50, 0], [50, 0.5], [100, 0.6], [50, 6], [5, 11]]), [0, 5, 0, 5, 0])
  assert.equal(m.active, false)
})
