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
 * What a hook's call comes to when the hook threw or its promise rejected: the request it was
 * asked about fails as on a timeout, and the connection goes on. A value for the same reason.
 */
export const HOOK_ERROR: unique symbol = Symbol('petrel.hookError')
export type HookError = typeof HOOK_ERROR

/** A hook that gave no answer: it timed out or failed. */
export type HookFailure = HookTimeout | HookError

export function isHookFailure (r: unknown): r is HookFailure {
  return r === HOOK_TIMEOUT || r === HOOK_ERROR
}

/**
 * `p`, or HOOK_TIMEOUT after `ms` (then `onTimeout` runs), or HOOK_ERROR when `p` rejects first
 * (then `onError` runs; a rejection after the timeout is ignored). The client's input is held
 * while a hook is pending (see Connection) and its keepalive waits meanwhile, so without a bound
 * one hook that never settles held its connection, and its session, for good.
 */
export async function withHookTimeout<T> (p: Promise<T>, ms: number, onTimeout: () => void, onError: (err: unknown) => void): Promise<T | HookFailure> {
  let timer: NodeJS.Timeout | undefined
  let late = false
  const timeout = new Promise<HookTimeout>((resolve) => {
    // a bound past what a timer can wait (~25 days) means none, not a 1 ms one
    timer = setTimeout(() => { late = true; onTimeout(); resolve(HOOK_TIMEOUT) }, Math.min(ms, MAX_TIMER_MS))
    timer.unref() // a stuck hook must not keep a closed broker's process alive
  })
  const answer = p.then(undefined, (err: unknown): HookError => {
    if (!late) onError(err)
    return HOOK_ERROR
  })
  try {
    return await Promise.race([answer, timeout])
  } finally {
    clearTimeout(timer)
  }
}
