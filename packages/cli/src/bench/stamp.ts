/**
 * The stamp a publisher writes at the start of each payload, read back by subscribers:
 *
 * ```
 *  0               8           12          16
 *  +---------------+-----------+-----------+------------ - -
 *  | sent at (f64) | publisher | sequence  | zero padding up to --size
 *  |  µs, BE       | u32 BE    | u32 BE    |
 *  +---------------+-----------+-----------+------------ - -
 * ```
 *
 * The send time is CLOCK_MONOTONIC (`process.hrtime`), shared by every process on one machine,
 * so `bench pub` and `bench sub` may be separate processes; across machines latency is meaningless.
 */
export const STAMP_BYTES = 16
export const PUBLISHER_OFFSET = 8
export const SEQUENCE_OFFSET = 12

/** Monotonic time in microseconds, the clock of every stamp. */
export function nowMicros (): number {
  return Number(process.hrtime.bigint()) / 1000
}
