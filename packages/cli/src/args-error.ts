/**
 * An error of node:util's parseArgs as a person at the prompt should read it: Node's notes for
 * programmers left out, and a bare -h (the host in mosquitto_pub and emqtt-bench, help in many
 * other tools) answered with where the help is.
 */
export function argsErrorMessage (err: unknown): string {
  const e = err as { code?: unknown, message?: unknown }
  const message = typeof e.message === 'string' ? e.message : String(err)
  // "Unknown option '--x'. To specify a positional argument starting with a '-', place it at the
  // end of the command after '--' ...": the note is for commands taking positionals, and no help
  // to someone who typed a flag of another tool.
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const unknown = /^Unknown option '([^']*)'/.exec(message)
    if (unknown !== null) return `unknown option '${unknown[1] ?? ''}'`
  }
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && message.startsWith("Option '-h, --host ")) {
    return `${message}: -h is the broker host, as in mosquitto_pub and emqtt-bench; the help is --help`
  }
  return message
}
