import { parseArgs } from 'node:util'
import {
  createBroker, defaultLimits, isLoopback, loadConfig, startMetricsServer, type BrokerConfig, type BrokerOptions, type ListenerOptions
} from '@petrel/broker'
import { openFileLimit } from '../open-file-limit.js'
import { argsErrorMessage } from '../args-error.js'
import { ExitCode } from '../exit-code.js'

const usage = `petrel broker [options]

Runs an MQTT 3.1.1 / 5.0 broker. With no options it listens on 127.0.0.1:1883.

Options:
  -c, --config <file>  TOML config file (see packages/broker/CONFIG.md)
  -p, --port <port>    port of the first listener (default 1883; 0 picks a free one)
  -h, --host <host>    host of the first listener (default 127.0.0.1)
  -v, --verbose        log connections and errors (pino, level info)
      --help           show this help

SIGINT (Ctrl-C) or SIGTERM stops it gracefully (MQTT 5 clients get DISCONNECT 0x8B).
SIGHUP does not reload the configuration (unlike mosquitto): restart to apply changes.

Exit codes: 0 stopped by SIGINT/SIGTERM; 1 bad options or a config file that cannot be used
(certificates included): fix them, starting again will not help; 2 a listener or the metrics
endpoint could not open (address in use or not available, permission denied, a host that does
not resolve): it may work later (systemd: RestartPreventExitStatus=1 restarts on 2 only);
130/143 a second Ctrl-C/SIGTERM during the graceful close ends it at once.`

/** `petrel broker`: runs until SIGINT/SIGTERM, then closes gracefully (SIGHUP does not stop it). Resolves to the exit code. */
export async function run (argv: string[]): Promise<number> {
  let values
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        port: { type: 'string', short: 'p' },
        host: { type: 'string', short: 'h' },
        verbose: { type: 'boolean', short: 'v' },
        help: { type: 'boolean' }
      },
      strict: true
    }))
  } catch (err) {
    // mosquitto's own -h is its help: here it is the host, as in petrel pub and sub.
    console.error(`petrel broker: ${argsErrorMessage(err, {}, 'the host to listen on (mosquitto\'s own -h is its help)')}\n\n${usage}`)
    return ExitCode.usage
  }
  if (values.help === true) {
    console.log(usage)
    return 0
  }
  let config: BrokerConfig = { options: {}, listeners: [], metrics: undefined }
  if (values.config !== undefined) {
    try {
      config = loadConfig(values.config)
    } catch (err) {
      console.error(`petrel broker: ${(err as Error).message}`)
      return ExitCode.usage
    }
  }
  const listeners: ListenerOptions[] = config.listeners.length > 0 ? [...config.listeners] : [{ type: 'tcp' }]
  let port: number | undefined
  if (values.port !== undefined) {
    port = Number(values.port)
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      console.error(`petrel broker: --port must be 0..65535, got ${values.port}`)
      return ExitCode.usage
    }
  }
  const first = listeners[0] as ListenerOptions
  listeners[0] = { ...first, ...(port === undefined ? {} : { port }), ...(values.host === undefined ? {} : { host: values.host }) }
  const options = { ...config.options }
  if (values.verbose === true) options.logLevel = 'info'
  let broker
  try {
    broker = createBroker(options)
  } catch (err) {
    console.error(`petrel broker: ${(err as Error).message}`)
    return ExitCode.usage
  }
  // Before anything is announced: a SIGTERM sent as soon as "listening on" is read must find the
  // handler in place, not the default action (killed, with no graceful close).
  let requestStop = (): void => {}
  const stopRequested = new Promise<void>((resolve) => { requestStop = resolve })
  // mosquitto reloads its password and ACL files on SIGHUP, so its users send one after
  // `petrel passwd`; Node's default action for it is to exit at once, with no graceful close and
  // every session lost. There is no reload: say so, and keep running.
  const hangup = (): void => {
    const what = values.config === undefined ? 'the options' : `${values.config} (its password_file and [[acl]] rules included)`
    console.error(`petrel broker: SIGHUP: the configuration is not reloaded; the broker carries on with what it read at start-up. ` +
      `To apply changes to ${what}, stop it (SIGTERM or Ctrl-C) and start it again`)
  }
  const stop = (): void => {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
    process.off('SIGHUP', hangup)
    requestStop()
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  process.on('SIGHUP', hangup)
  const addresses: string[] = []
  let listening: ListenerOptions | undefined
  try {
    for (const l of listeners) {
      listening = l
      const { url } = await broker.listen(l)
      addresses.push(url)
      if (admitsNobody(l, options)) {
        console.error(`petrel broker: warning: nobody can connect to ${url}: a listener not on loopback refuses clients without a user name, ` +
          'and with no password_file there is no user to be; set [auth] allow_anonymous = true (or the listener\'s allow_anonymous), or a password_file (see CONFIG.md)')
      }
    }
  } catch (err) {
    stop()
    console.error(`petrel broker: ${(err as Error).message}${listenAdvice(err, listening === listeners[0])}`)
    await broker.close()
    return listenExitCode(err)
  }
  let metrics
  if (config.metrics !== undefined) {
    const { host, port: metricsPort } = config.metrics
    try {
      metrics = await startMetricsServer(broker, host, metricsPort)
    } catch (err) {
      stop()
      const inUse = (err as { code?: unknown }).code === 'EADDRINUSE' ? '\n  another process holds that port: stop it, or pick another [metrics] port in the config file' : ''
      console.error(`petrel broker: cannot serve metrics on ${host}:${metricsPort}: ${(err as Error).message}${inUse}`)
      await broker.close()
      return listenExitCode({ cause: err })
    }
  }
  console.log(`petrel broker listening on ${addresses.join(', ')}${metrics === undefined ? '' : ` (metrics on http://${config.metrics?.host ?? ''}:${metrics.port}/metrics)`}; Ctrl-C to stop`)
  const fdWarning = fileLimitWarning(options.limits?.maxConnections ?? defaultLimits.maxConnections, openFileLimit())
  if (fdWarning !== undefined) console.error(`petrel broker: warning: ${fdWarning}`)
  broker.log.info({ addresses }, 'broker started')
  await stopRequested
  await broker.close()
  await metrics?.close()
  return ExitCode.ok
}

/** Descriptors the process holds besides its clients: stdio, listeners, libuv and V8 threads, files. */
const FD_RESERVE = 64

/**
 * Why max_connections cannot be reached, or undefined: each client takes a file descriptor, and
 * past the process's limit the kernel's EMFILE makes Node close every new client at once. The
 * broker logs that when it happens; this says so before it does.
 */
export function fileLimitWarning (maxConnections: number, fdLimit: number | undefined): string | undefined {
  if (fdLimit === undefined || fdLimit >= maxConnections + FD_RESERVE) return undefined
  const fit = Math.max(0, fdLimit - FD_RESERVE)
  return `this process may open ${fdLimit.toLocaleString('en-US')} files (ulimit -Hn; Node raises its soft limit to it) and max_connections is ` +
    `${maxConnections.toLocaleString('en-US')}: clients past about ${fit.toLocaleString('en-US')} will be closed as they connect. ` +
    `Raise the hard limit (ulimit -Hn as root, LimitNOFILE in systemd) or lower [limits] max_connections`
}

/**
 * 2 when the system refused the address (a failed listen or getaddrinfo: in use, not available
 * yet, not permitted): starting again later may work, so a supervisor can tell it from 1, a
 * config or certificate to fix. (mosquitto exits 3 for a bad config and 1 for a port in use; here
 * 1 keeps its meaning in every petrel command, and 2 is the network failing as for pub and sub.)
 */
function listenExitCode (err: unknown): number {
  const cause = (err as { cause?: { syscall?: unknown } }).cause
  return typeof cause?.syscall === 'string' ? ExitCode.connection : ExitCode.usage
}

/**
 * What to do about a listener that cannot open, for the commonest cause: a port in use (another
 * broker, or a second `npm start`). `flagPort`: -p sets this listener's port (the first).
 */
function listenAdvice (err: unknown, flagPort: boolean): string {
  const code = ((err as { cause?: { code?: unknown } }).cause)?.code
  if (code !== 'EADDRINUSE') return ''
  const other = flagPort ? 'with -p PORT (npm start -- -p PORT; 0 picks a free one)' : 'in the config file'
  return `\n  another process (a broker already running?) holds that port: stop it, or pick another port ${other}`
}

/**
 * Whether the default authentication refuses every client of this listener: anonymous ones
 * (off by default on a host other than loopback, as mosquitto 2 does) and, with no password
 * file, named ones too. A client certificate's identity would still be let in.
 */
function admitsNobody (l: ListenerOptions, options: BrokerOptions): boolean {
  if (options.authenticate !== undefined || options.passwordFile !== undefined || l.useIdentityAsUsername === true) return false
  return !(l.allowAnonymous ?? options.allowAnonymous ?? isLoopback(l.host ?? '127.0.0.1'))
}
