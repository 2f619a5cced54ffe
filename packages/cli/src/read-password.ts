import { createInterface } from 'node:readline'
import { Writable, type Readable } from 'node:stream'

/** Where {@link readPassword} reads the password and writes its prompts (stdin and stderr). */
export interface PasswordIo {
  input: Readable & { isTTY?: boolean }
  output: Writable
}

/** The password, or why none came: stdin ended, the two entries differed, or Ctrl-C. */
export type PasswordAnswer = { password: string } | { problem: 'ended' | 'mismatch' | 'interrupted' }

type Line = { line: string } | { problem: 'ended' | 'interrupted' }

/**
 * Reads a password as mosquitto_passwd does. On a terminal it is typed without echo (readline
 * echoes into a stream that discards it) and asked for twice, to catch a typo nobody could see.
 * From a pipe it is the first line, a last line without LF included (`printf pw | petrel passwd`),
 * read without a prompt (mosquitto_passwd prompts on stdout even then, and wants the line twice;
 * `printf 'pw\npw\n'` made for it works here too).
 * rl.question is not used: it never answers when the input ends, even with a line pending.
 */
export async function readPassword (user: string, io: PasswordIo): Promise<PasswordAnswer> {
  const tty = io.input.isTTY === true
  const rl = createInterface({
    input: io.input,
    ...(tty ? { output: new Writable({ write (_chunk, _encoding, done) { done() } }), terminal: true } : { terminal: false })
  })
  const pending: Line[] = []
  let waiting: ((line: Line) => void) | undefined
  const deliver = (line: Line): void => {
    const resolve = waiting
    waiting = undefined
    if (resolve !== undefined) resolve(line)
    else pending.push(line)
  }
  rl.on('line', (line) => { deliver({ line }) })
  rl.on('close', () => { deliver({ problem: 'ended' }) })
  // In raw mode Ctrl-C reaches readline instead of raising SIGINT; without a listener it only pauses.
  rl.on('SIGINT', () => { deliver({ problem: 'interrupted' }) })
  const ask = async (question: string): Promise<Line> => {
    // A pipe has nobody to ask: a prompt there is only noise in a script's output.
    if (tty) io.output.write(question)
    const answer = pending.shift() ?? await new Promise<Line>((resolve) => { waiting = resolve })
    if (tty) io.output.write('\n')
    return answer
  }
  try {
    const first = await ask(`password for ${user}: `)
    if (!('line' in first)) return first
    if (!tty) return { password: first.line }
    const again = await ask('again: ')
    if (!('line' in again)) return again
    return again.line === first.line ? { password: first.line } : { problem: 'mismatch' }
  } finally {
    rl.close()
  }
}
