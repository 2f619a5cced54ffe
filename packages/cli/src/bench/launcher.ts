import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Starts `count` clients at `rate` per second (0: as fast as allowed), calling `start(i)` for
 * each index, with at most `maxPending` of them still connecting at once (0: no limit), and
 * resolves with their results once all have settled. Stops starting new ones once `stopping()`
 * is true.
 *
 * The pending limit makes a closed loop: a broker is offered new handshakes only as fast as it
 * completes them, so its listen backlog never overflows (an overflow shows up as 1 s and 3 s
 * SYN retransmissions, which measure the kernel's timers rather than the broker).
 */
export async function launch<T> (count: number, rate: number, start: (i: number) => Promise<T>, stopping: () => boolean, maxPending = 0): Promise<T[]> {
  const pending: Promise<T>[] = []
  let connecting = 0
  let wake: (() => void) | undefined
  const begin = (i: number): Promise<T> => {
    connecting++
    return start(i).finally(() => {
      connecting--
      wake?.()
    })
  }
  const t0 = performance.now()
  while (pending.length < count && !stopping()) {
    const due = rate > 0 ? Math.min(count, Math.floor((performance.now() - t0) * rate / 1000) + 1) : count
    while (pending.length < due && (maxPending === 0 || connecting < maxPending)) pending.push(begin(pending.length))
    if (pending.length >= count) break
    if (maxPending > 0 && connecting >= maxPending) {
      await new Promise<void>((resolve) => { wake = resolve })
      wake = undefined
    } else {
      await sleep(Math.max(1, Math.min(50, 1000 / rate)))
    }
  }
  return await Promise.all(pending)
}
