/**
 * An error of node:util's parseArgs as a person at the prompt should read it: Node's notes for
 * programmers left out, a flag of the tool the command imitates that it lacks said so (`known`:
 * flag -> what to say), and a bare -h (the host in mosquitto_pub and emqtt-bench, help in many
 * other tools, mosquitto's broker included) answered with what it is here (`host`) and where
 * the help is.
 */
export function argsErrorMessage (err: unknown, known: Readonly<Record<string, string>> = {}, host = 'the broker host, as in mosquitto_pub and emqtt-bench'): string {
  const e = err as { code?: unknown, message?: unknown }
  const message = typeof e.message === 'string' ? e.message : String(err)
  // "Unknown option '--x'. To specify a positional argument starting with a '-', place it at the
  // end of the command after '--' ...": the note is for commands taking positionals, and no help
  // to someone who typed a flag of another tool.
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const unknown = /^Unknown option '([^']*)'/.exec(message)
    if (unknown !== null) {
      const flag = unknown[1] ?? ''
      const hint = known[flag]
      return `unknown option '${flag}'${hint === undefined ? '' : `: ${hint}`}`
    }
  }
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && message.startsWith("Option '-h, --host ")) {
    return `${message}: -h is ${host}; the help is --help`
  }
  return message
}

/** mosquitto_pub/mosquitto_sub (and mosquitto_rr) flags petrel pub and sub do not take, and what to use instead. */
export const MOSQUITTO_FLAGS_NOT_TAKEN: Readonly<Record<string, string>> = {
  '--proxy': 'mosquitto\'s SOCKS proxy is not supported',
  '--tls-alpn': 'not supported (Petrel sends no ALPN)',
  '--tls-engine': 'OpenSSL engines are not supported; give the key as a PEM file (--key)',
  '--keyform': 'OpenSSL engines are not supported; give the key as a PEM file (--key)',
  '--tls-engine-kpass-sha1': 'OpenSSL engines are not supported; give the key as a PEM file (--key)',
  '-e': 'that is mosquitto_rr\'s response topic; petrel pub sets it with -V 5 -D publish response-topic TOPIC',
  '-S': 'DNS SRV lookup is not supported; give the host with -h or -L'
}
