/**
 * What a hook's promise settles to when it has not settled within `hookTimeoutMs`: the request
 * it was asked about fails (see ServerConnection), and its late answer is ignored. A value, not
 * a rejection, so the type system makes every caller handle it.
 */
export const HOOK_TIMEOUT: unique symbol = Symbol('petrel.hookTimeout')
export type HookTimeout = typeof HOOK_TIMEOUT

/** setTimeout's longest delay: a longer one fires after 1 ms (Node's TimeoutOverflowWarning). */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * `p`, or HOOK_TIMEOUT after `ms` (then `onTimeout` runs). The client's input is held while a
 * hook is pending (see Connection) and its keepalive waits meanwhile, so without a bound one
 * hook that never settles held its connection, and its session, for good.
 */
export async function withHookTimeout<T> (p: Promise<T>, ms: number, onTimeout: () => void): Promise<T | HookTimeout> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<HookTimeout>((resolve) => {
    // a bound past what a timer can wait (~25 days) means none, not a 1 ms one
    timer = setTimeout(() => { onTimeout(); resolve(HOOK_TIMEOUT) }, Math.min(ms, MAX_TIMER_MS))
    timer.unref() // a stuck hook must not keep a closed broker's process alive
  })
  try {
    return await Promise.race([p, late])
  } finally {
    clearTimeout(timer)
  }
}
