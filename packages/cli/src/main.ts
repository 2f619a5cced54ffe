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
Exit codes (all of them; each command's --help says which it returns):
  0        done (broker: stopped by SIGINT/SIGTERM)
  1        bad options or arguments in every command, as mosquitto_pub and emqtt-bench (passwd:
           also a user to delete not in the file, a file it could not update)
  2, 3, 4  pub, sub and bench: connection failed, not authorized, failed once connected
  2        broker: could not listen (address in use or not available)
  27       sub -W: timed out (mosquitto_sub's code)
  130/143  a second Ctrl-C/SIGTERM (pub, sub, bench, broker: the first stops cleanly);
           passwd: Ctrl-C at the password prompt (130)`

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
