import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { setPassword } from '@petrel/broker'

const usage = `petrel passwd [-c] [--password <pw>] <file> <user>

Adds or updates a user in a password file (scrypt hashes, never plain text).

Options:
  -c, --create          create the file if it does not exist
      --password <pw>   the password (otherwise prompted on the terminal)
      --help            show this help`

async function prompt (question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: process.stdin.isTTY })
  try {
    return await new Promise<string>((resolve) => { rl.question(question, resolve) })
  } finally {
    rl.close()
  }
}

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
    console.error(`petrel passwd: ${(err as Error).message}\n\n${usage}`)
    return 2
  }
  const { values, positionals } = parsed
  if (values.help === true) {
    console.log(usage)
    return 0
  }
  const [file, user] = positionals
  if (file === undefined || user === undefined || positionals.length > 2) {
    console.error(usage)
    return 2
  }
  if (!existsSync(file) && values.create !== true) {
    console.error(`petrel passwd: ${file} does not exist (use -c to create it)`)
    return 1
  }
  const password = values.password ?? await prompt(`password for ${user}: `)
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
