import { MAX_TIMER_MS } from './max-timer.js'

/**
 * What a hook's promise settles to when it has not settled within `hookTimeoutMs`: the request
 * it was asked about fails (see ServerConnection), and its late answer is ignored. A value, not
 * a rejection, so the type system makes every caller handle it.
 */
export const HOOK_TIMEOUT: unique symbol = Symbol('petrel.hookTimeout')
export type HookTimeout = typeof HOOK_TIMEOUT

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

/** Who a hook is asked about: a connection, whose signal aborts when it closes. */
export interface HookCaller {
  readonly hookSignal: AbortSignal
}

/**
 * `p`, or HOOK_TIMEOUT after `ms` (then `onTimeout` runs), or HOOK_ERROR when `p` rejects first
 * (then `onError` runs; a rejection after the timeout is ignored). The client's input is held
 * while a hook is pending (see Connection) and its keepalive waits meanwhile, so without a bound
 * one hook that never settles held its connection, and its session, for good.
 *
 * `ms` 0 (or less) is no bound, as 0 is for the broker's other limits: such a timer fired at
 * once and failed every async hook.
 *
 * Once `signal` aborts (the connection closed) nothing waits for the answer: the timer is
 * cleared and the result is HOOK_TIMEOUT with neither callback run. The timer used to outlive
 * the connection, so hookTimeoutMs after a client had gone a timeout was counted and warned about.
 */
export async function withHookTimeout<T> (p: Promise<T>, ms: number, onTimeout: () => void, onError: (err: unknown) => void, signal?: AbortSignal): Promise<T | HookFailure> {
  let timer: NodeJS.Timeout | undefined
  let late = false
  let abandon: (() => void) | undefined
  const timeout = new Promise<HookTimeout>((resolve) => {
    if (signal?.aborted === true) {
      late = true
      resolve(HOOK_TIMEOUT)
      return
    }
    // a bound past what a timer can wait (~25 days) means none, not a 1 ms one
    if (ms > 0) {
      timer = setTimeout(() => { late = true; onTimeout(); resolve(HOOK_TIMEOUT) }, Math.min(ms, MAX_TIMER_MS))
      timer.unref() // a stuck hook must not keep a closed broker's process alive
    }
    if (signal !== undefined) {
      abandon = () => { late = true; clearTimeout(timer); resolve(HOOK_TIMEOUT) }
      signal.addEventListener('abort', abandon, { once: true })
    }
  })
  const answer = p.then(undefined, (err: unknown): HookError => {
    if (!late) onError(err)
    return HOOK_ERROR
  })
  try {
    return await Promise.race([answer, timeout])
  } finally {
    clearTimeout(timer)
    if (abandon !== undefined) signal?.removeEventListener('abort', abandon)
  }
}
