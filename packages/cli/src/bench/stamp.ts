import { randomBytes } from 'node:crypto'

/**
 * The stamp a publisher writes at the start of each payload, read back by subscribers:
 *
 * ```
 *  0        4        8               16          20         24
 *  +--------+--------+---------------+-----------+----------+------------ - -
 *  | magic  | run id | sent at (f64) | publisher | sequence | zero padding up to --size
 *  | "ptb1" | u32 BE | µs, BE        | u32 BE    | u32 BE   |
 *  +--------+--------+---------------+-----------+----------+------------ - -
 * ```
 *
 * - magic: tells a stamp from other traffic on the same filter (a payload without it is
 *   counted as unstamped, never as a publisher's message).
 * - run id: random per `petrel bench` process, so that the publishers of two processes (each
 *   with its client index 0) are told apart; a publisher is (run id, index).
 * - publisher: the client index (`-n` + i); sequence: 0, 1, 2... per publisher.
 *
 * Magic, run id and publisher are the same in every message of a publisher: they are written
 * once into its PUBLISH template, so the per-message patch is still the time and the sequence.
 *
 * The send time is CLOCK_MONOTONIC (`process.hrtime`), shared by every process on one machine,
 * so `bench pub` and `bench sub` may be separate processes; across machines latency is meaningless
 * (a send time that is implausible here only loses its latency sample; loss is still checked).
 */
export const STAMP_BYTES = 24
export const MAGIC_OFFSET = 0
export const RUN_OFFSET = 4
export const SENT_AT_OFFSET = 8
export const PUBLISHER_OFFSET = 16
export const SEQUENCE_OFFSET = 20
/** "ptb1": petrel bench stamp, version 1. */
export const STAMP_MAGIC = 0x70746231

/** This process's run id. */
export const RUN_ID = randomBytes(4).readUInt32BE(0)

/** A run id as printed in summaries. */
export function runIdText (run: number): string {
  return run.toString(16).padStart(8, '0')
}

/** Monotonic time in microseconds, the clock of every stamp. */
export function nowMicros (): number {
  return Number(process.hrtime.bigint()) / 1000
}
