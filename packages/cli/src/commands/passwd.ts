import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { setPassword } from '@petrel/broker'
import { readPassword } from '../read-password.js'
import { argsErrorMessage } from '../args-error.js'
import { ExitCode } from '../exit-code.js'

const usage = `petrel passwd [-c] [--password <pw>] <file> <user>

Adds or updates a user in a password file (scrypt hashes, never plain text).

Options:
  -c, --create          create the file if it does not exist
      --password <pw>   the password (otherwise asked for twice on the terminal, not
                        echoed; or the first line of stdin when it is a pipe)
      --help            show this help

Exit codes: 0 done; 1 bad arguments or the file could not be updated (as mosquitto_passwd);
130 interrupted at the password prompt.`

/** `petrel passwd`: resolves to the exit code. */
export async function run (argv: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { create: { type: 'boolean', short: 'c' }, password: { type: 'string' }, help: { type: 'boolean' } }
    })
  } catch (err) {
    console.error(`petrel passwd: ${argsErrorMessage(err)}\n\n${usage}`)
    return ExitCode.usage
  }
  const { values, positionals } = parsed
  if (values.help === true) {
    console.log(usage)
    return 0
  }
  const [file, user] = positionals
  if (file === undefined || user === undefined || positionals.length > 2) {
    console.error(usage)
    return ExitCode.usage
  }
  if (!existsSync(file) && values.create !== true) {
    console.error(`petrel passwd: ${file} does not exist (use -c to create it)`)
    return 1
  }
  let password = values.password
  if (password === undefined) {
    const answer = await readPassword(user, { input: process.stdin, output: process.stderr })
    if ('problem' in answer) {
      if (answer.problem === 'interrupted') return 130
      console.error(answer.problem === 'mismatch' ? 'petrel passwd: the passwords do not match' : 'petrel passwd: no password given (stdin ended)')
      return 1
    }
    password = answer.password
  }
  if (password.length === 0) {
    console.error('petrel passwd: empty password')
    return 1
  }
  try {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : ''
    writeFileSync(file, await setPassword(text, user, password), { mode: 0o600 })
  } catch (err) {
    console.error(`petrel passwd: ${(err as Error).message}`)
    return 1
  }
  return 0
}
