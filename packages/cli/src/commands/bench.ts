import { runConn } from '../bench/conn.js'
import { RunContext } from '../bench/context.js'
import { parseOptions, usage, UsageError, type BenchOptions } from '../bench/options.js'
import { Progress } from '../bench/progress.js'
import { runPub } from '../bench/pub.js'
import { runPubSub } from '../bench/pubsub.js'
import type { ReceiveResult } from '../bench/sequence-tracker.js'
import { runSub } from '../bench/sub.js'
import { buildSummary, deliveryFailures, formatSummary, TO_PASS, type BenchSummary } from '../bench/summary.js'
import { prepareTransport } from '../bench/transport.js'
import { notMqttAdvice, tlsAdvice, type TlsHintWords } from '../client-options.js'
import { ExitCode } from '../exit-code.js'

/** The TLS hints of pub and sub, in bench's flags (-L is --limit here; --insecure skips the name check only, as there). */
const BENCH_TLS_WORDS: TlsHintWords = {
  on: 'add -S (or --url mqtts://...)',
  off: 'no -S, --url mqtt://...',
  ca: 'give the CA that signed the broker\'s certificate with --cafile (a self-signed certificate is its own CA)',
  name: 'connect by a host name the certificate names, or --insecure to skip the host name check',
  cert: '--cert and --key'
}

async function runMode (ctx: RunContext): Promise<ReceiveResult | undefined> {
  switch (ctx.options.mode) {
    case 'pub': await runPub(ctx); return undefined
    case 'sub': return await runSub(ctx)
    case 'conn': await runConn(ctx); return undefined
    case 'pubsub': return await runPubSub(ctx)
  }
}

function clientCount (o: BenchOptions): number {
  return o.mode === 'pubsub' ? o.clients + o.subscribers : o.clients
}

/** Why the run failed, from what the mode recorded and the counters; empty when it did not. */
function failuresOf (ctx: RunContext): string[] {
  const s = ctx.stats
  const out: string[] = []
  // Whether the loss of connections is already said (every one, or every one of a side).
  let lossSaid = ctx.allLost
  if (s.connected === 0) {
    // Handshakes cancelled by a Ctrl-C are the user's doing; cut short by --duration, the run measured nothing.
    if (s.connectFailed > 0) out.push(`no connection could be made (see errors)${connectAdvice(ctx)}`)
    else if (!ctx.interrupted) out.push(s.connectAttempts === 0 ? 'no connection was attempted' : 'no connection was made before the run ended (a --duration too short?)')
  } else if (ctx.allLost) out.push(`every connection was lost before the end of the run (see errors)${oversizeAdvice(ctx.options)}`)
  else if (ctx.options.mode === 'pubsub') {
    // One side all gone while the other holds on: nothing more is measured, as when all are lost.
    for (const [side, c] of [['publisher', ctx.publishers], ['subscriber', ctx.subscribers]] as const) {
      if (c.started > 0 && c.lost === c.started) {
        out.push(`every ${side} was lost before the end of the run (see errors)${side === 'publisher' ? oversizeAdvice(ctx.options) : ''}`)
        lossSaid = true
      }
    }
  }
  // Some connections failed while others held: the load asked for is not the load the broker took.
  if (s.connected > 0 && !ctx.options.tolerate.connections) {
    if (s.connectFailed > 0) out.push(`${count(s.connectFailed)} of ${count(s.connectFailed + s.connected)} connections could not be made (see errors; ${TO_PASS.connections})`)
    if (s.lost > 0 && !lossSaid) out.push(`${count(s.lost)} of ${count(s.connected)} connections were lost during the run (see errors; ${TO_PASS.connections})`)
  }
  if (s.subscribeFailed > 0) {
    out.push(`${s.subscribeFailed} of ${s.subscribeFailed + s.subscribed} subscriptions failed (see errors): the loss report leaves out what they would have received`)
  }
  if (s.publishRefused > 0) out.push(`${count(s.publishRefused)} publishes were refused by the broker (their reason codes are under errors)`)
  out.push(...ctx.failures)
  return out
}

function count (n: number): string {
  return n.toLocaleString('en-US')
}

/**
 * What to try when no connection could be made, from the commonest reason (as pub and sub say
 * it): ': ...', or '' when nothing is more likely than another.
 */
function connectAdvice (ctx: RunContext): string {
  const s = ctx.stats
  const t = ctx.options.target
  if (s.connectNotAuthorized === s.connectFailed) return ': the broker refused the credentials (check -u/-P, or the user in --url)'
  const top = [...s.errors].sort((a, b) => b[1] - a[1])[0]?.[0] ?? ''
  const reason = /^(?:connect|connack): (.*)$/.exec(top)?.[1]
  if (reason === undefined) return ''
  if (reason === 'ECONNREFUSED') return `: no broker is listening on ${t.host}:${t.port} (-h, -p, --url)`
  if (reason === 'ENOTFOUND') return `: unknown host '${t.host}'`
  // 'HTTP/1.1 400' from a WebSocket listener reads as a PUBACK with reserved flags.
  if (/^decode: PETREL_ERR_(?:MALFORMED_PACKET|PROTOCOL_ERROR)/.test(reason)) return `: ${notMqttAdvice('--ws, or --url ws://host:port/path')}`
  // Socket and TLS errors are reported by their code alone ("ECONNRESET"); others by a sentence.
  const code = /^[A-Z][A-Z0-9_]+$/.test(reason) ? reason : undefined
  const advice = tlsAdvice(t.protocol === 'mqtts' || t.protocol === 'wss', code, reason, BENCH_TLS_WORDS)
  return advice === '' ? '' : `: ${advice}`
}

/** A common broker limit on packet size: petrel broker's max_packet_size, EMQX's max_packet_size. */
const COMMON_PACKET_LIMIT = 1024 * 1024

/**
 * Publishers lost under MQTT 3.1/3.1.1 with PUBLISH packets over 1 MiB: a broker that takes no
 * packet that large can only close the connection (5.0 says its Maximum Packet Size in CONNACK,
 * which the run checks up front); '' otherwise.
 */
function oversizeAdvice (o: BenchOptions): string {
  if (o.protocolVersion === 5 || (o.mode !== 'pub' && o.mode !== 'pubsub')) return ''
  // fixed header (up to 5) + topic length (2) + topic + packet id (2): the pattern's length is near enough
  if (5 + 2 + Buffer.byteLength(o.topic) + 2 + o.payloadSize <= COMMON_PACKET_LIMIT) return ''
  return `: PUBLISH packets of -s ${o.payloadSize} are over 1 MiB, a common broker limit (petrel broker's and EMQX's max_packet_size), ` +
    'and an MQTT 3.1.1 broker can only close the connection on one: try a smaller -s, or -V 5 to be told the limit'
}

/**
 * The exit code of a failed run, in the table pub and sub use: nothing connected is 2, or 3 when
 * every refusal was for the credentials; a run that failed once connected is 4.
 */
function failureExitCode (ctx: RunContext): number {
  const s = ctx.stats
  if (s.connected > 0) return ExitCode.operation
  return s.connectFailed > 0 && s.connectNotAuthorized === s.connectFailed ? ExitCode.notAuthorized : ExitCode.connection
}

/**
 * `petrel bench`: load-tests a broker and prints a summary (JSON with --json). Resolves to the
 * exit code (ExitCode, as pub and sub): 0; 1 on bad arguments; when the run failed, said in the
 * summary: 2 no connection could be made, 3 every one refused for its credentials, 4 the run
 * failed once connected (messages missing, duplicated or out of order, connections failed or
 * lost, a subscription or publish refused, a broker limit the run cannot meet, publishes left
 * unacknowledged; --tolerate lets the first four pass). A second Ctrl-C or SIGTERM exits at once
 * with 130 or 143, and no summary; a reader that went away (EPIPE) ends the run quietly with 0.
 */
export async function run (argv: string[]): Promise<number> {
  let options: BenchOptions | undefined
  try {
    options = parseOptions(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    // The error and where the options are; the whole usage would push the error off screen.
    console.error(`petrel bench: ${err.message}\nRun 'petrel bench --help' for the options.`)
    return ExitCode.usage
  }
  if (options === undefined) {
    console.log(usage)
    return ExitCode.ok
  }
  let ctx: RunContext
  try {
    ctx = new RunContext(options)
  } catch (err) {
    // A certificate or key file that cannot be read: the message names the flag.
    console.error(`petrel bench: ${(err as Error).message}`)
    return ExitCode.usage
  }
  // A reader that went away (petrel bench ... | head -1): stop quietly, as petrel sub does, with no
  // summary to write. Left attached: a write still under way may fail after the run.
  let outputGone: 'EPIPE' | 'error' | undefined
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (outputGone !== undefined) return
    outputGone = err.code === 'EPIPE' ? 'EPIPE' : 'error'
    if (outputGone === 'error') console.error(`petrel bench: cannot write the output, stopping: ${err.message}`)
    ctx.interrupt()
  })
  await prepareTransport(options.target)
  const progressOut = options.json ? process.stderr : process.stdout
  const progress = options.quiet ? undefined : new Progress(ctx.stats, options.mode, progressOut, clientCount(options))
  // First Ctrl-C (or SIGTERM): stop, cut the drain short, and report. Second: leave at once, with
  // the shell's code for death by that signal. Counted apart from ctx.stopping, which --duration sets.
  let signals = 0
  const onSignal = (signal: NodeJS.Signals): void => {
    if (++signals > 1) process.exit(signal === 'SIGTERM' ? ExitCode.sigterm : ExitCode.sigint)
    ctx.interrupt()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const warmupTimer = options.warmup > 0 ? setTimeout(() => { ctx.stats.endWarmup() }, options.warmup * 1000) : undefined
  const durationTimer = options.duration > 0 ? setTimeout(() => { ctx.stop() }, (options.warmup + options.duration) * 1000) : undefined
  progress?.start()
  let reports: ReceiveResult | undefined
  let summary: BenchSummary | undefined
  try {
    reports = await runMode(ctx)
  } finally {
    const endedAt = performance.now()
    progress?.stop()
    clearTimeout(durationTimer)
    clearTimeout(warmupTimer)
    // A run that ended during its warm-up has measured nothing.
    if (options.warmup > 0) ctx.stats.endWarmup()
    ctx.stop()
    await ctx.closeAll()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    summary = buildSummary(options, ctx.stats, endedAt, reports, failuresOf(ctx), ctx.interrupted)
    summary.failures.push(...deliveryFailures(summary, options.tolerate))
    if (outputGone === undefined) {
      if (options.json) console.log(JSON.stringify(summary, null, 2))
      else console.log(formatSummary(summary))
    }
  }
  if (outputGone !== undefined) return outputGone === 'EPIPE' ? ExitCode.ok : ExitCode.operation
  return summary.failures.length > 0 ? failureExitCode(ctx) : ExitCode.ok
}
