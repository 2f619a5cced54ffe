import { setTimeout as sleep } from 'node:timers/promises'

export interface WaitForOptions {
  /** Give up after this long (default 10 000 ms). */
  timeoutMs?: number
  /** Time between polls (default 20 ms). */
  intervalMs?: number
  /** The rejection message on timeout. */
  message?: string
}

/** Polls `predicate` until it returns true; rejects with `message` on timeout. A throwing predicate rejects at once. */
export async function waitFor (predicate: () => boolean | Promise<boolean>, opts: WaitForOptions = {}): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 10_000
  const intervalMs = opts.intervalMs ?? 20
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await predicate()) return
    if (Date.now() >= deadline) {
      throw new Error(`waitFor timed out after ${timeoutMs} ms: ${opts.message ?? 'condition not met'}`)
    }
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())))
  }
}

/** Resolves or rejects like `p`, or rejects with "`what` timed out after `ms` ms" first. The timer never outlives the race. */
export function withTimeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`${what} timed out after ${ms} ms`)) }, ms)
    p.then(
      (value) => { clearTimeout(timer); resolve(value) },
      (err: unknown) => { clearTimeout(timer); reject(err) }
    )
  })
}
