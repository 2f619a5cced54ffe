import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Starts `count` clients at `rate` per second (0: all at once), calling `start(i)` for each
 * index, and resolves with their results once all have settled. Stops starting new ones once
 * `stopping()` is true.
 */
export async function launch<T> (count: number, rate: number, start: (i: number) => Promise<T>, stopping: () => boolean): Promise<T[]> {
  const pending: Promise<T>[] = []
  const t0 = performance.now()
  while (pending.length < count && !stopping()) {
    const due = rate > 0 ? Math.min(count, Math.floor((performance.now() - t0) * rate / 1000) + 1) : count
    while (pending.length < due) pending.push(start(pending.length))
    if (pending.length < count) await sleep(Math.max(1, Math.min(50, 1000 / rate)))
  }
  return await Promise.all(pending)
}
