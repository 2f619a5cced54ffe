import { connect, type Message, type MqttClient } from '@petrel/client'
import { commonFlags, parseCommandArgs, commonHelp, describeError, ExitCode, resolveConnection, UsageError } from '../client-options.js'

const help = `petrel sub: subscribe and print messages (mosquitto_sub flags)

Usage: petrel sub -t FILTER [-t FILTER...] [options]

Output:
  -t FILTER          topic filter to subscribe to (repeatable)
  -C COUNT           exit after COUNT messages
  -W SECONDS         exit (code 4) if no message arrives within SECONDS
  -v                 print the topic before the payload
  -N                 do not print a newline after the payload
  --json             one JSON object per line: topic, payload (utf8, or base64 with
                     "encoding":"base64"), qos, retain, properties
  -R                 do not print retained messages

${commonHelp}`

/** `petrel sub`: resolves to the process exit code. */
export async function run (argv: string[]): Promise<number> {
  const values = parseCommandArgs('sub', {
    args: argv,
    options: {
      ...commonFlags,
      topic: { type: 'string', short: 't', multiple: true },
      count: { type: 'string', short: 'C' },
      timeout: { type: 'string', short: 'W' },
      verbose: { type: 'boolean', short: 'v' },
      'no-newline': { type: 'boolean', short: 'N' },
      'no-retained': { type: 'boolean', short: 'R' },
      json: { type: 'boolean' }
    },
    allowPositionals: false
  }, help)
  if (typeof values === 'number') return values
  let url = ''
  let client: MqttClient | undefined
  const onSignal = (): void => { void client?.end({ force: true }) }
  try {
    const conn = resolveConnection(values)
    url = conn.url
    const topics = values.topic ?? (conn.urlTopic === undefined ? [] : [conn.urlTopic])
    if (topics.length === 0) throw new UsageError('at least one topic filter is required (-t FILTER)')
    const count = values.count === undefined ? Infinity : Number(values.count)
    if (!(count === Infinity || (Number.isInteger(count) && count > 0))) throw new UsageError(`-C must be a positive integer, got '${values.count}'`)
    const timeoutS = values.timeout === undefined ? undefined : Number(values.timeout)
    if (timeoutS !== undefined && !(timeoutS > 0)) throw new UsageError(`-W must be a positive number, got '${values.timeout}'`)
    // Connection failures matter only before we are up: afterwards a lost link ends the command.
    client = await connect(conn.url, { ...conn.options, reconnect: false })
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    const sub = await client.subscribe(topics, { qos: conn.qos, queueSize: 100_000, overflow: 'dropNewest' })
    const refused = sub.reasonCodes.findIndex((rc) => rc >= 0x80)
    if (refused >= 0) console.error(`petrel sub: the broker refused ${topics[refused] ?? ''} (reason code 0x${(sub.reasonCodes[refused] ?? 0).toString(16)})`)
    let received = 0
    let timedOut = false
    let timer: NodeJS.Timeout | undefined
    const arm = (): void => {
      if (timeoutS === undefined) return
      if (timer !== undefined) clearTimeout(timer)
      timer = setTimeout(() => { timedOut = true; void sub.unsubscribe() }, timeoutS * 1000)
    }
    arm()
    const out = process.stdout
    for await (const m of sub) {
      if (values['no-retained'] === true && m.retain) continue
      const line = values.json === true ? jsonLine(m) : format(m, values.verbose === true)
      out.write(values['no-newline'] === true && values.json !== true ? line : `${line}\n`)
      arm()
      if (++received >= count) break
    }
    if (timer !== undefined) clearTimeout(timer)
    await client.end()
    if (timedOut) {
      console.error(`petrel sub: timed out after ${timeoutS ?? 0} s without a message`)
      return ExitCode.operation
    }
    return ExitCode.ok
  } catch (err) {
    await client?.end({ force: true })
    const { message, exitCode } = describeError(err, url)
    console.error(`petrel sub: ${message}`)
    return exitCode
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

function format (m: Message, verbose: boolean): string {
  const payload = m.payload.toString('utf8')
  return verbose ? `${m.topic} ${payload}` : payload
}

function jsonLine (m: Message): string {
  const text = m.payload.toString('utf8')
  const utf8 = Buffer.from(text, 'utf8').equals(m.payload)
  const properties = m.properties === undefined
    ? undefined
    : Object.fromEntries(Object.entries(m.properties).map(([k, v]) => [k, v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v]))
  return JSON.stringify({
    topic: m.topic,
    payload: utf8 ? text : m.payload.toString('base64'),
    ...(utf8 ? {} : { encoding: 'base64' }),
    qos: m.qos,
    retain: m.retain,
    ...(properties === undefined ? {} : { properties })
  })
}
