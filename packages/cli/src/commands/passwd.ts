import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { removeUser, setPassword } from '@petrel/broker'
import { readPassword } from '../read-password.js'
import { argsErrorMessage } from '../args-error.js'
import { ExitCode } from '../exit-code.js'

const usage = `petrel passwd [-c] [--password <pw>] <file> <user>
       petrel passwd [-c] -b <file> <user> <password>
       petrel passwd -D <file> <user>

Adds or updates a user in a password file (scrypt hashes, never plain text), or deletes one.

Options:
  -c, --create          create the file if it does not exist (mosquitto_passwd's -c
                        overwrites an existing file; this one keeps its other users)
      --password <pw>   the password (otherwise asked for twice on the terminal, not
                        echoed; or, when stdin is not a terminal, its first line, read
                        without a prompt: printf '%s\\n' "$PW" | petrel passwd FILE USER)
  -b                    batch mode, as mosquitto_passwd: the password is the third argument
  -D                    delete the user (as mosquitto_passwd)
      --help            show this help

Exit codes: 0 done; 1 bad arguments, a user to delete not in the file, or the file could not be
updated (as mosquitto_passwd); 130 interrupted at the password prompt.`

/** `petrel passwd`: resolves to the exit code. */
export async function run (argv: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        create: { type: 'boolean', short: 'c' },
        password: { type: 'string' },
        batch: { type: 'boolean', short: 'b' },
        delete: { type: 'boolean', short: 'D' },
        help: { type: 'boolean' }
      }
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
  const problem = argumentsProblem(values, positionals)
  if (problem !== undefined) {
    console.error(`petrel passwd: ${problem}\n\n${usage}`)
    return ExitCode.usage
  }
  const [file, user] = positionals as [string, string]
  if (!existsSync(file) && (values.create !== true || values.delete === true)) {
    console.error(`petrel passwd: ${file} does not exist${values.delete === true ? '' : ' (use -c to create it)'}`)
    return 1
  }
  if (values.delete === true) return deleteUser(file, user)
  let password = values.batch === true ? positionals[2] : values.password
  if (password === undefined) {
    const answer = await readPassword(user, { input: process.stdin, output: process.stderr })
    if ('problem' in answer) {
      if (answer.problem === 'interrupted') return ExitCode.sigint
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

/** What is wrong with the arguments, as a sentence, or undefined. */
function argumentsProblem (values: { create?: boolean, password?: string, batch?: boolean, delete?: boolean }, positionals: string[]): string | undefined {
  if (values.delete === true && (values.create === true || values.batch === true || values.password !== undefined)) {
    return '-D deletes a user: it takes no -c, -b or --password'
  }
  if (values.batch === true && values.password !== undefined) return '-b takes the password as its third argument, not --password'
  const wanted = values.batch === true ? '<file> <user> <password>' : '<file> <user>'
  const count = values.batch === true ? 3 : 2
  if (positionals.length < count) return `expected ${wanted}${positionals.length === 1 ? ': the user name is missing' : ''}`
  if (positionals.length > count) {
    return `expected ${wanted}, got ${positionals.length} arguments${count === 2 && values.delete !== true ? ' (to give the password as an argument, add -b, as with mosquitto_passwd)' : ''}`
  }
  return undefined
}

/** -D: removes the user from the file; exit 1 (as mosquitto_passwd) when it is not there. */
function deleteUser (file: string, user: string): number {
  try {
    const { text, removed } = removeUser(readFileSync(file, 'utf8'), user)
    if (!removed) {
      console.error(`petrel passwd: user ${user} is not in ${file}`)
      return 1
    }
    writeFileSync(file, text, { mode: 0o600 })
  } catch (err) {
    console.error(`petrel passwd: ${(err as Error).message}`)
    return 1
  }
  return 0
}
