import { connect, type Message, type MqttClient } from '@petrel/client'
import { reasonCodeName, topicFilterProblem, topicMatches } from '@petrel/wire'
import { sayLinkChanges } from '../link-notes.js'
import { commonFlags, parseCommandArgs, commonHelp, describeError, ExitCode, resolveConnection, UsageError } from '../client-options.js'
import { compileFormat, NotJsonError, preciseNow, type MessageFormat } from '../message-format.js'

const help = `petrel sub: subscribe and print messages (mosquitto_sub flags)

Usage: petrel sub -t FILTER [-t FILTER...] [options]

Output:
  -t FILTER          topic filter to subscribe to (repeatable)
  -C COUNT           exit after COUNT messages
  -W SECONDS         stop after SECONDS, counted from the connection (exit code 27, 'Timed out')
  -v                 print the topic before the payload
  -N                 do not print a newline after each message
  -F FORMAT          print each message as FORMAT: %t topic, %p payload, %q QoS, %r retain,
                     %l length, %m packet id, %x / %X payload in hex, %j JSON, %J JSON with
                     the payload as JSON, %I ISO time, %U Unix time, v5 %A topic alias,
                     %C content type, %D correlation data, %E expiry, %F payload format,
                     %P user properties, %R response topic, %S (blank: the ids are Petrel's own), %%;
                     widths as in printf (%-20t, %08l, %.10t); @ and a strftime letter for
                     the local time (@Y-@m-@d @H:@M:@S, @s, @N nanoseconds, @@);
                     escapes \\n \\t \\\\ \\e
  --pretty           indent the JSON of --json, %j and %J
  --json             one JSON object per line, every line with the same keys: topic, payload,
                     encoding ("utf8", or "base64" for a payload that is not UTF-8), qos,
                     retain (true/false), properties ({}, or the MQTT 5 ones the publisher set).
                     -F %j is mosquitto_sub's JSON instead: tst, topic, qos, retain (0/1),
                     payloadlen, payload (the bytes as they came)
  -R                 do not print retained messages
  --retained-only    print only retained messages; exit at the first live one
  --remove-retained  clear each retained message received (publish an empty retained one)
  -T FILTER          do not print messages whose topic matches FILTER (repeatable)
  --random-filter PERCENT  print only this share of the messages, picked at random
  -U FILTER          unsubscribe from FILTER (a -c session's old subscription; repeatable)
  -E                 exit once the subscriptions (and -U) are acknowledged

With -c (and -i), messages the broker kept for the session are printed too, including those
of subscriptions made by an earlier run and not repeated with -t.

A lost connection is retried with backoff until Ctrl-C, and the subscriptions restored; stderr
says when it is lost and when it is back (mosquitto_sub exits when a reconnect is refused). A
refusal the same CONNECT would get again (a retained will the broker no longer allows, 0x9A)
ends it with exit 4.

${commonHelp}`

/** Output waiting for a slow stdout reader before acks wait for it. */
const STDOUT_BUFFER = 16 * 1024 * 1024

/** `petrel sub`: resolves to the process exit code. */
export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('sub', {
    args: argv,
    options: {
      ...commonFlags,
      topic: { type: 'string', short: 't', multiple: true },
      count: { type: 'string', short: 'C' },
      timeout: { type: 'string', short: 'W' },
      verbose: { type: 'boolean', short: 'v' },
      'no-newline': { type: 'boolean', short: 'N' },
      'no-retained': { type: 'boolean', short: 'R' },
      'retained-only': { type: 'boolean' },
      'remove-retained': { type: 'boolean' },
      'filter-out': { type: 'string', short: 'T', multiple: true },
      'random-filter': { type: 'string' },
      unsubscribe: { type: 'string', short: 'U', multiple: true },
      'exit-after-subscribe': { type: 'boolean', short: 'E' },
      format: { type: 'string', short: 'F' },
      json: { type: 'boolean' },
      pretty: { type: 'boolean' }
    },
    allowPositionals: false
  }, help)
  if (typeof parsed === 'number') return parsed
  const { values, properties } = parsed
  let url = ''
  let client: MqttClient | undefined
  let finish: ((code: number) => void) | undefined
  // Out here so that the catch can stop them: a failure must not also print 'ended' or 'Timed out'.
  let timer: NodeJS.Timeout | undefined
  let onClose: ((error?: Error) => void) | undefined
  const onSignal = (): void => { finish?.(ExitCode.ok) }
  try {
    const conn = resolveConnection(values, properties)
    url = conn.where
    const topics = values.topic ?? (conn.urlTopic === undefined ? [] : [conn.urlTopic])
    const unsubscribe = values.unsubscribe ?? []
    if (topics.length === 0 && unsubscribe.length === 0) throw new UsageError(`at least one topic filter is required (-t FILTER, or -U FILTER)${conn.topicHint}`)
    const count = values.count === undefined ? Infinity : Number(values.count)
    if (!(count === Infinity || (Number.isInteger(count) && count > 0))) throw new UsageError(`-C must be a positive integer, got '${values.count}'`)
    const timeoutS = values.timeout === undefined ? undefined : Number(values.timeout)
    if (timeoutS !== undefined && !(timeoutS > 0)) throw new UsageError(`-W must be a positive number, got '${values.timeout}'`)
    if (values['no-retained'] === true && values['retained-only'] === true) throw new UsageError('-R and --retained-only exclude each other')
    if (values.format !== undefined && values.json === true) throw new UsageError('-F and --json exclude each other')
    for (const f of [...topics, ...unsubscribe]) {
      const problem = topicFilterProblem(f)
      if (problem !== undefined) throw new UsageError(`Bad topic: invalid topic filter ${JSON.stringify(f)}: ${problem}`)
    }
    const filterOut = values['filter-out'] ?? []
    const share = values['random-filter'] === undefined ? 100 : Number(values['random-filter'])
    if (!(share >= 0 && share <= 100)) throw new UsageError(`--random-filter must be a percentage from 0 to 100, got '${values['random-filter']}'`)
    const say = (line: string): void => { if (values.quiet !== true) console.error(line) }
    for (const f of filterOut) {
      const problem = topicFilterProblem(f)
      if (problem !== undefined) throw new UsageError(`-T: invalid topic filter ${JSON.stringify(f)}: ${problem}`)
    }
    const print = printer(values.format === undefined ? undefined : compileFormat(values.format, values.pretty === true), values.json === true, values.verbose === true, values['no-newline'] === true, values.pretty === true)
    const removeRetained = values['remove-retained'] === true

    // Connection failures matter only before we are up. Once up, a lost link is reconnected (and
    // the subscriptions restored), as mosquitto_sub does, and retried until Ctrl-C where
    // mosquitto_sub gives up when a reconnect is refused; the client itself gives up on a refusal
    // no retry can change (0x95, 0x9A...), and 'close' below says so.
    client = await connect(conn.url, { ...conn.options, reconnect: true, unroutedManualAck: true })
    const c = client
    sayLinkChanges(c, 'sub', conn.where, say)
    const done = new Promise<number>((resolve) => { finish = resolve })
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    c.on('error', () => {}) // each failed attempt; 'close' says when it gives up
    onClose = (error?: Error): void => {
      say(`petrel sub: the connection to ${conn.where} ended${error === undefined ? '' : `: ${error.message}`}`)
      finish?.(ExitCode.operation)
    }
    c.once('close', onClose)
    // A reader that went away (petrel sub ... | head -1): stop quietly, as mosquitto_sub does.
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') finish?.(ExitCode.ok)
      else {
        say(`petrel sub: cannot write the output: ${err.message}`)
        finish?.(ExitCode.operation)
      }
    })

    let received = 0
    // -W as mosquitto_sub: the whole run, from the connection, not the time between messages.
    timer = timeoutS === undefined
      ? undefined
      : setTimeout(() => {
        say('Timed out')
        finish?.(ExitCode.timedOut)
      }, timeoutS * 1000)
    // One handler for the subscriptions and for what the session delivers for filters this run
    // did not subscribe to (-c): printed in arrival order, as mosquitto_sub prints everything.
    // Acks by hand (subscriptions and unrouted messages alike): a message that arrives after -C
    // is reached (or after the first live one with --retained-only) stays unacknowledged, so with
    // -c the next run gets it.
    const onMessage = (m: Message): void => {
      if (received >= count) return
      if (values['retained-only'] === true && !m.retain) {
        received = count
        finish?.(ExitCode.ok)
        return
      }
      if (filterOut.some((f) => topicMatches(f, m.topic))) {
        m.ack()
        return
      }
      if (removeRetained && m.retain && m.payload.length > 0) void c.publish(m.topic, '', { qos: 1, retain: true }).catch(() => {})
      if (values['no-retained'] === true && m.retain) {
        m.ack()
        return
      }
      let text: Buffer | string
      try {
        // --random-filter drops from the output only: as in mosquitto_sub, the message still counts for -C.
        text = share < 100 && Math.random() * 100 >= share ? '' : print(m)
      } catch (err) {
        if (!(err instanceof NotJsonError)) throw err
        say(`petrel sub: ${err.message}`)
        m.ack()
        return
      }
      // Past STDOUT_BUFFER bytes waiting for a slow reader, acks wait until stdout took each
      // message: the broker (QoS 1/2) is held back instead of this process growing without bound.
      if (process.stdout.writableLength < STDOUT_BUFFER) {
        process.stdout.write(text)
        m.ack()
      } else {
        process.stdout.write(text, () => { m.ack() })
      }
      if (++received >= count) finish?.(ExitCode.ok)
    }
    c.on('unrouted', onMessage)
    const subscribed: Array<Promise<unknown>> = []
    if (topics.length > 0) {
      const userProperties = properties.subscribeUserProperties
      subscribed.push(c.subscribe(topics, { qos: conn.qos, manualAck: true, ...(userProperties.length > 0 ? { userProperties } : {}) }, onMessage).then((sub) => {
        const refused = sub.reasonCodes.findIndex((rc) => rc >= 0x80)
        if (refused >= 0) {
          // Some filters granted (all refused rejects the subscribe): said in the words of the client's refusal.
          const rc = sub.reasonCodes[refused] ?? 0x80
          say(`petrel sub: the broker refused the subscription to ${JSON.stringify(topics[refused] ?? '')} with reason code 0x${rc.toString(16)} (${conn.options.protocolVersion === 5 ? reasonCodeName(rc, 'suback') : 'Failure'})`)
        }
      }))
    }
    if (unsubscribe.length > 0) {
      const userProperties = properties.unsubscribeUserProperties
      subscribed.push(c.unsubscribe(unsubscribe, userProperties.length > 0 ? { userProperties } : {}))
    }
    await Promise.all(subscribed)
    if (values['exit-after-subscribe'] === true) finish?.(ExitCode.ok)
    const code = await done
    clearTimeout(timer)
    // Acks of output still on its way to a slow reader go out before DISCONNECT.
    await new Promise<void>((resolve) => { process.stdout.write('', () => { resolve() }) })
    c.off('close', onClose)
    await c.end()
    return code
  } catch (err) {
    clearTimeout(timer)
    if (onClose !== undefined) client?.off('close', onClose)
    await client?.end({ force: true })
    const { message, exitCode } = describeError(err, url, client === undefined)
    if (values.quiet !== true) console.error(`petrel sub: ${message}`)
    return exitCode
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

/** What one message prints. The payload goes out as the bytes that came, as mosquitto_sub writes it: decoding it as UTF-8 would mangle binary ones. */
function printer (format: MessageFormat | undefined, json: boolean, verbose: boolean, noNewline: boolean, pretty: boolean): (m: Message) => Buffer | string {
  const end = Buffer.from(noNewline ? '' : '\n')
  if (format !== undefined) return (m) => Buffer.concat([format(m, preciseNow()), end])
  if (json) return (m) => `${jsonLine(m, pretty)}\n`
  // As mosquitto_sub: an empty message prints nothing, or `topic (null)` with -v (it still counts for -C).
  return (m) => {
    if (m.payload.length === 0) return verbose && !noNewline ? `${m.topic} (null)\n` : ''
    return Buffer.concat([...(verbose ? [Buffer.from(`${m.topic} `)] : []), m.payload, end])
  }
}

/**
 * --json: one shape for every message, whatever its payload or protocol version, so that a
 * script reads `encoding` and `properties` without checking that they are there.
 */
function jsonLine (m: Message, pretty: boolean): string {
  const text = m.payload.toString('utf8')
  const utf8 = Buffer.from(text, 'utf8').equals(m.payload)
  // Subscription identifiers are left out, as %S prints blank: the client assigns them itself
  // to route messages, so they say nothing about the message.
  const entries = Object.entries(m.properties ?? {}).filter(([k]) => k !== 'subscriptionIdentifiers')
  return JSON.stringify({
    topic: m.topic,
    payload: utf8 ? text : m.payload.toString('base64'),
    encoding: utf8 ? 'utf8' : 'base64',
    qos: m.qos,
    retain: m.retain,
    properties: Object.fromEntries(entries.map(([k, v]) => [k, v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v]))
  }, null, pretty ? 2 : undefined)
}
