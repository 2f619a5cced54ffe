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
  // The start of a line that spans chunks, joined once its LF comes (a long line is not
  // copied again for every chunk).
  let pieces: Buffer[] = []
  try {
    for await (const chunk of input as AsyncIterable<Buffer | string>) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
      let start = 0
      let at = bytes.indexOf(LF)
      while (at !== -1) {
        const piece = bytes.subarray(start, at)
        if (pieces.length === 0) yield piece
        else {
          pieces.push(piece)
          yield Buffer.concat(pieces)
          pieces = []
        }
        start = at + 1
        at = bytes.indexOf(LF, start)
      }
      if (start < bytes.length) pieces.push(bytes.subarray(start))
    }
  } catch (err) {
    if (input.destroyed) return
    throw err
  }
  if (pieces.length > 0) yield Buffer.concat(pieces)
}
