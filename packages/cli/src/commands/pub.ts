import { readFile } from 'node:fs/promises'
import { connect, type MqttClient } from '@petrel/client'
import { topicNameProblem } from '@petrel/wire'
import { stdinLines } from '../stdin-lines.js'
import { sayLinkChanges } from '../link-notes.js'
import { commonFlags, parseCommandArgs, commonHelp, describeError, ExitCode, resolveConnection, UsageError } from '../client-options.js'

const help = `petrel pub: publish messages (mosquitto_pub flags)

Usage: petrel pub -t TOPIC (-m MESSAGE | -f FILE | -l | -n | -s) [options]

Message:
  -t TOPIC           topic to publish to
  -m MESSAGE         the payload
  -f FILE            send the contents of FILE as one message
  -l                 send each line of stdin as a message (split on LF only, as mosquitto_pub);
                     a lost connection is retried until Ctrl-C, said on stderr
  -s                 send all of stdin as one message (empty stdin: an error, as mosquitto_pub)
  -n                 send an empty (null) message
  -r                 retain the message
  --repeat COUNT     publish the message COUNT times (-m, -f, -s, -n)
  --repeat-delay SECONDS  wait this long between repeats (default 0)
  -M COUNT           QoS 1/2 messages in flight at once (default 20, as mosquitto_pub; MQTT 5:
                     at most the broker's Receive Maximum)

${commonHelp}`

/**
 * -M default, libmosquitto's: MQTT 3.1.1 has no Receive Maximum, and a broker over its quota
 * may drop QoS 2 messages (mosquitto's max_inflight_messages is 20 by default).
 */
const DEFAULT_INFLIGHT = 20

/** `-l`: lines published and not yet acknowledged before reading stdin waits. */
const LINES_AHEAD = 1000

/** After SIGINT/SIGTERM: how long what is in flight may take to be acknowledged before DISCONNECT. */
const STOP_GRACE_MS = 2000

/** `petrel pub`: resolves to the process exit code. */
export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('pub', {
    args: argv,
    options: {
      ...commonFlags,
      topic: { type: 'string', short: 't' },
      message: { type: 'string', short: 'm' },
      file: { type: 'string', short: 'f' },
      'stdin-line': { type: 'boolean', short: 'l' },
      'stdin-file': { type: 'boolean', short: 's' },
      'null-message': { type: 'boolean', short: 'n' },
      retain: { type: 'boolean', short: 'r' },
      repeat: { type: 'string' },
      'repeat-delay': { type: 'string' },
      'max-inflight': { type: 'string', short: 'M' }
    },
    allowPositionals: false
  }, help)
  if (typeof parsed === 'number') return parsed
  const { values, properties } = parsed
  let url = ''
  let client: MqttClient | undefined
  // SIGINT/SIGTERM, as mosquitto_pub: stop publishing and reading, disconnect cleanly (so the
  // broker drops the will) and exit 0. A second signal is for a broker that does not answer:
  // exit at once.
  let stopping = false
  let stop = (): void => {}
  const stopped = new Promise<void>((resolve) => { stop = resolve })
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) process.exit(signal === 'SIGINT' ? ExitCode.sigint : ExitCode.sigterm)
    stopping = true
    stop()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    const conn = resolveConnection(values, properties)
    url = conn.where
    const topic = values.topic ?? conn.urlTopic
    if (topic === undefined) throw new UsageError(`a topic is required (-t TOPIC)${conn.topicHint}`)
    // Before connecting, as mosquitto_pub: a bad topic is the user's to fix whatever the broker.
    const problem = topicNameProblem(topic)
    if (problem !== undefined) throw new UsageError(`Bad topic: invalid topic name ${JSON.stringify(topic)}: ${problem}`)
    const sources = [values.message !== undefined, values.file !== undefined, values['stdin-line'] === true,
      values['stdin-file'] === true, values['null-message'] === true].filter(Boolean).length
    if (sources !== 1) throw new UsageError('give exactly one of -m MESSAGE, -f FILE, -l, -s or -n')
    const publishProperties = properties.publish
    const opts = { qos: conn.qos, retain: values.retain === true, ...(Object.keys(publishProperties).length > 0 ? { properties: publishProperties } : {}) }
    const repeat = values.repeat === undefined ? 1 : Number(values.repeat)
    if (!Number.isInteger(repeat) || repeat < 1) throw new UsageError(`--repeat must be a positive integer, got '${values.repeat}'`)
    const delayS = values['repeat-delay'] === undefined ? 0 : Number(values['repeat-delay'])
    if (!(delayS >= 0)) throw new UsageError(`--repeat-delay must be a number of seconds >= 0, got '${values['repeat-delay']}'`)
    if (repeat > 1 && values['stdin-line'] === true) throw new UsageError('--repeat does not apply to -l (one message per line)')
    const inflight = values['max-inflight'] === undefined ? DEFAULT_INFLIGHT : Number(values['max-inflight'])
    if (!(Number.isInteger(inflight) && inflight >= 1 && inflight <= 65535)) throw new UsageError(`-M must be an integer from 1 to 65535, got '${values['max-inflight']}'`)
    let payload: Buffer | undefined
    if (values.message !== undefined) payload = Buffer.from(values.message)
    else if (values['null-message'] === true) payload = Buffer.alloc(0)
    else if (values.file !== undefined) {
      try {
        payload = await readFile(values.file)
      } catch (err) {
        throw new UsageError(`cannot read ${values.file}: ${(err as Error).message}`)
      }
    } else if (values['stdin-file'] === true) {
      const read = (async () => {
        const chunks: Buffer[] = []
        for await (const c of process.stdin) chunks.push(c as Buffer)
        return Buffer.concat(chunks)
      })()
      payload = await Promise.race([read, stopped.then(() => undefined)])
      if (payload === undefined) {
        // Interrupted before anything was sent or even connected: nothing to publish.
        process.stdin.destroy()
        return ExitCode.ok
      }
      // As mosquitto_pub -s ('Zero length input'): an empty stdin is more likely a mistake
      // upstream than a wish to publish nothing; -n says that.
      if (payload.length === 0) throw new UsageError('-s: zero length input (stdin was empty; use -n to send an empty message)')
    }
    // -l runs as long as its input: once up, a lost link is reconnected and what was read
    // meanwhile goes out then, as mosquitto_pub does.
    const lines = values['stdin-line'] === true
    client = await connect(conn.url, { ...conn.options, inflightWindow: inflight, inflightWindowQos2: inflight, ...(lines ? { reconnect: true } : {}) })
    if (lines) {
      client.on('error', () => {})
      const say = (line: string): void => { if (values.quiet !== true) console.error(line) }
      sayLinkChanges(client, 'pub', conn.where, say)
    }
    if (payload !== undefined) {
      // Without a delay the repeats are pipelined (within the client's window), like -l.
      // Each wait also ends on a signal; what is abandoned is still awaited by a race, so a late
      // rejection is not an unhandled one.
      const pending: Array<Promise<unknown>> = []
      for (let i = 0; i < repeat && !stopping; i++) {
        if (i > 0 && delayS > 0) {
          let timer: NodeJS.Timeout | undefined
          await Promise.race([new Promise((resolve) => { timer = setTimeout(resolve, delayS * 1000) }), stopped])
          clearTimeout(timer)
          if (stopping) break
        }
        const p = client.publish(topic, payload, opts)
        if (delayS > 0) await Promise.race([p, stopped])
        else pending.push(p)
      }
      await Promise.race([Promise.all(pending), stopped])
    } else {
      // -l: one message per line, as lines arrive. Publishes are pipelined, not awaited one by one,
      // but at most LINES_AHEAD at once: a fast producer waits (stdin is not read) instead of
      // queueing without bound, and a long-lived pipe (tail -f) keeps no settled promises.
      // A signal ends the loop below; stdin is not read any further.
      void stopped.then(() => { process.stdin.destroy() })
      let outstanding = 0
      let failure: { error: unknown } | undefined
      let room: (() => void) | undefined
      const settled = (): void => {
        outstanding--
        room?.()
        room = undefined
      }
      for await (const line of stdinLines(process.stdin)) {
        if (failure !== undefined || stopping) break
        if (outstanding >= LINES_AHEAD) await Promise.race([new Promise<void>((resolve) => { room = resolve }), stopped])
        if (stopping) break
        outstanding++
        client.publish(topic, line, opts).then(settled, (error: unknown) => {
          failure ??= { error }
          settled()
        })
      }
      while (outstanding > 0 && !stopping) await Promise.race([new Promise<void>((resolve) => { room = resolve }), stopped])
      if (failure !== undefined) throw failure.error
    }
    // After a signal, the in-flight ones get a short while, not the client's default.
    await client.end(stopping ? { timeoutMs: STOP_GRACE_MS } : {})
    return ExitCode.ok
  } catch (err) {
    await client?.end({ force: true })
    const { message, exitCode } = describeError(err, url, client === undefined)
    if (values.quiet !== true) console.error(`petrel pub: ${message}`)
    return exitCode
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
