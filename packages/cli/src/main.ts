import { readFileSync } from 'node:fs'

const usage = `petrel <command> [options]

Commands:
  broker   run an MQTT broker (defaults: 127.0.0.1:1883)
  pub      publish messages (mosquitto_pub flags)
  sub      subscribe and print messages (mosquitto_sub flags)
  bench    load-test any broker (pub | sub | pubsub | conn)
  passwd   add, update or delete a user in a password file

Run 'petrel <command> --help' for the command's options and exit codes; 'petrel --version' for
the version.
Exit codes: 1 for bad options or arguments in every command (as mosquitto_pub and emqtt-bench);
pub, sub and bench then share 2 connection failed, 3 not authorized, 4 failed once connected;
broker: 2 could not listen (address in use or not available).`

type Command = (argv: string[]) => Promise<number>

const commands: Record<string, () => Promise<Command>> = {
  broker: async () => (await import('./commands/broker.js')).run,
  pub: async () => (await import('./commands/pub.js')).run,
  sub: async () => (await import('./commands/sub.js')).run,
  bench: async () => (await import('./commands/bench.js')).run,
  passwd: async () => (await import('./commands/passwd.js')).run
}

/** Runs `petrel argv...`; resolves to the process exit code. */
export async function main (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage)
    return name === undefined ? 1 : 0
  }
  if (name === '--version' || name === 'version') {
    console.log(`petrel ${version()} (node ${process.version})`)
    return 0
  }
  const load = commands[name]
  if (load === undefined) {
    console.error(`petrel: unknown command '${name}'\n\n${usage}`)
    return 1
  }
  return await (await load())(rest)
}

/** @petrel/cli's version, from its package.json (dist/src/main.js -> ../../package.json). */
function version (): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown }
  return typeof pkg.version === 'string' ? pkg.version : 'unknown'
}
