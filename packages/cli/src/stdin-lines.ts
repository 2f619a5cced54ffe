import type { Readable } from 'node:stream'

const LF = 0x0a

/**
 * The lines of `input` as mosquitto_pub -l reads them: split on LF only, the LF removed and
 * nothing else (a CR before it, or alone, stays in the message), bytes as they are (no UTF-8
 * decoding, so binary lines arrive intact), empty lines included, and a last line without LF
 * published too. readline would split on CR and CRLF as well and decode the bytes.
 *
 * Ends quietly when `input` is destroyed while waiting (a signal stopping the publisher).
 */
export async function * stdinLines (input: Readable): AsyncGenerator<Buffer> {
  let rest: Buffer | undefined
  try {
    for await (const chunk of input as AsyncIterable<Buffer | string>) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
      let start = 0
      let at = bytes.indexOf(LF)
      while (at !== -1) {
        const piece = bytes.subarray(start, at)
        if (rest === undefined) yield piece
        else {
          yield Buffer.concat([rest, piece])
          rest = undefined
        }
        start = at + 1
        at = bytes.indexOf(LF, start)
      }
      if (start < bytes.length) {
        const tail = bytes.subarray(start)
        rest = rest === undefined ? Buffer.from(tail) : Buffer.concat([rest, tail])
      }
    }
  } catch (err) {
    if (input.destroyed) return
    throw err
  }
  if (rest !== undefined) yield rest
}
