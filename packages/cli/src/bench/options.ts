import { isIP } from 'node:net'
import { parseArgs } from 'node:util'
import { parseSharedSubscription, topicFilterProblem, topicMatches, topicNameProblem, type ProtocolVersion, type QoS } from '@petrel/wire'
import { parseTarget, type Target } from './target.js'
import { argsErrorMessage } from '../args-error.js'
import { UsageError } from '../usage-error.js'

export type BenchMode = 'pub' | 'sub' | 'conn' | 'pubsub'

/**
 * What a run may meet and still pass (--tolerate): missing messages, duplicated ones, ones out of
 * order, and connections that failed or were lost while others held.
 */
export interface Tolerated {
  loss: boolean
  duplicates: boolean
  reorder: boolean
  connections: boolean
}

const TOLERABLE = ['loss', 'duplicates', 'reorder', 'connections'] as const

/** Everything `petrel bench` was asked to do, validated. */
export interface BenchOptions {
  mode: BenchMode
  target: Target
  /** Clients of the mode (publishers in `pubsub`). */
  clients: number
  /** Subscribers in `pubsub`. */
  subscribers: number
  /** New connections per second; 0: as fast as they complete, at most maxConnecting under way. */
  connRate: number
  /** Connections still being set up at once; 0: no limit (DEFAULT_MAX_CONNECTING without a rate). */
  maxConnecting: number
  /** Messages per second per publisher; 0: as fast as the broker takes them. */
  rate: number
  payloadSize: number
  qos: QoS
  /** Topic pattern of publishers (`%i` client index, `%c` client id; `%u` is already the user name). */
  topic: string
  /** Topic filter pattern of subscribers. */
  subTopic: string
  /** Seconds; 0: no time limit. */
  duration: number
  /** Seconds before the measured part of the run; its latencies are reported apart (0: none). */
  warmup: number
  /** Messages per publisher (pub) or per subscriber (sub); 0: no limit. */
  limit: number
  protocolVersion: ProtocolVersion
  keepAlive: number
  username: string | undefined
  password: string | undefined
  clientIdPrefix: string
  /** First client index (to run several processes without clashing ids and topics). */
  startIndex: number
  /** QoS 1/2 window per publisher (5.0: at most the broker's Receive Maximum). */
  inflight: number
  /** Source addresses, used in turn (--ifaddr); empty: the system picks. */
  localAddresses: string[]
  cafile: string | undefined
  cert: string | undefined
  key: string | undefined
  insecure: boolean
  json: boolean
  quiet: boolean
  /** What --tolerate accepts: a run with only these fails no more (exit 0 instead of 4). */
  tolerate: Tolerated
  /**
   * Seconds `pubsub` waits for in-flight messages to arrive once publishers are done, and `sub -L`
   * for the next message of a subscriber short of its count (0: for ever).
   */
  drainTimeout: number
}

export const usage = `petrel bench <pub|sub|conn|pubsub> [options]

Load-tests any MQTT broker, in the spirit of emqtt-bench: its flags mean the same here (-c and
--count clients, -i and --interval ms between connections, -I and --interval_of_msg ms between
messages, -L limit, -n/--startnumber, -S, -F/--inflight, --cacertfile, --certfile/--keyfile), as
do MQTTX bench's. Not taken: -r/--retain, -C/--clean, -x/--session-expiry, -m/--message,
--payload-hdrs (every payload here carries a stamp), -w/--wait-before-publishing.

  pub      publishers send stamped messages
  sub      subscribers receive them, report latency, loss, duplicates, reordering
  conn     open connections and hold them
  pubsub   publishers (-c) and subscribers (--subs) in one process

Examples:
  petrel bench conn -c 1000 -R 500                     hold 1,000 connections, opened 500/s
  petrel bench sub -t 'bench/#' -q 1                   receive; Ctrl-C prints the summary
  petrel bench pub -c 10 -I 10 -q 1 -t 'bench/%i'      10 publishers, 100 msg/s each
  petrel bench pubsub -c 4 --subs 1 --duration 10      both ends in one process, with loss check
  petrel bench pub --url wss://broker.example:8884/mqtt -u user -P secret -L 1000

Target:
      --url <url>           mqtt://, mqtts://, ws://, wss:// (default mqtt://127.0.0.1:1883);
                            mqtt://user:password@host also sets -u and -P (the flags win)
  -h, --host <host>         broker host (default 127.0.0.1)
  -p, --port <port>         broker port (default 1883, 8883 mqtts, 80 ws, 443 wss)
  -S, --ssl                 TLS (mqtts://, or wss:// with --ws)
      --ws                  WebSocket (path /mqtt unless --url gives one)
  -V, --protocol-version    3, 4, 5, mqttv31, mqttv311 or mqttv5 (default 4)
  -u, --username <name>     -P, --password <password>
  -k, --keepalive <s>       keepalive seconds (default 60)
      --cafile <file>       --cert <file> --key <file> (together; alias --certfile --keyfile;
                            --cacertfile for --cafile)
      --insecure            do not check that the broker certificate's name matches the host: its
                            chain is still verified against --cafile or the system's CAs, as
                            with mosquitto_pub and petrel pub (MQTTX's --insecure skips that too)
      --ifaddr <ip,ip,...>  source addresses, used in turn (past ~28k connections from one address)
Load:
  -c, --clients <n>         clients (publishers in pubsub) (default 1) (alias --count)
      --subs <n>            subscribers in pubsub (default 1)
  -R, --conn-rate <n>       connections per second, however long each takes (default 0: each
                            as soon as another completes, --max-connecting under way at once)
  -i, --conn-interval <ms>  or: milliseconds between connections (alias --interval)
      --max-connecting <n>  at most n connections being set up at once (default 100 without -R
                            or -i, no limit with them; 0: no limit). Without -R, this measures
                            the broker's sustained handshake rate. Thousands at once overflow
                            the broker's listen backlog (mosquitto's is 100): the kernel drops
                            the SYNs and retries after 1 s, then 3 s, and connect times measure
                            its timers, not the broker
  -I, --message-interval <ms>  milliseconds between messages of one publisher (default: none,
                            as fast as the broker takes them, where emqtt-bench sends one a
                            second; alias --interval_of_msg)
      --rate <n>            or: messages per second per publisher (default 0: unlimited)
  -s, --size <bytes>        payload size (default 256; at least 24 to carry the stamp)
  -q, --qos <0|1|2>         QoS of publishes and subscriptions (default 0)
  -t, --topic <pattern>     publish topic, %i = client index, %c = client id, %u = user name
                            (default bench/%i)
      --sub-topic <filter>  subscription, same patterns (pubsub default: -t with each level that
                            holds %i or %c as +; in 'sub' mode -t sets it, default bench/#)
  -F, --inflight <n>        QoS 1/2 window per publisher (default 20 with MQTT 3.1.1 and 3.1, as
                            libmosquitto: mosquitto acknowledges and drops a QoS 2 PUBLISH past
                            its max_inflight_messages, 20 by default, and 3.1.1 cannot say so;
                            100 with 5.0, at most the broker's Receive Maximum)
      --duration <s>        stop after this many seconds (default: until the limit or Ctrl-C;
                            --warmup + --duration at most 24 days)
      --warmup <s>          run this long first, unmeasured: latency percentiles leave out what
                            arrived meanwhile (reported apart); --duration counts after it
  -L, --limit <n>           messages per publisher (pub/pubsub) or per subscriber (sub). A sub
                            that has had messages and then none for --drain-timeout gives up
                            short of its count: its publishers are done, the rest is lost, and
                            the run fails (exit 4, --tolerate loss to pass). One that has had
                            none yet waits on, as mosquitto_sub -C does: --duration bounds that
      --prefix <prefix>     client id prefix (default petrel-bench-<pid>-); ids are <prefix><pub|sub|conn>-<index>
  -n, --start-number <n>    first client index (default 0), to run several processes side by side
                            (alias --startnumber)
      --drain-timeout <s>   wait for QoS 1/2 acks and in-flight messages at the end (default 5);
                            what has not arrived by then counts as missing (the summary says
                            when messages were still arriving). sub -L: how long a subscriber
                            short of its count waits for the next message (0: for ever)
Output:
      --json                print the summary as JSON on stdout (progress goes to stderr)
      --quiet               no progress lines
      --tolerate <what,...> still exit 0 when the run met only these (reported all the same):
                            loss (messages missing), duplicates, reorder (messages of one
                            publisher out of order), connections (some failed or were lost
                            while others held), or all
      --help                show this help

Stamps: each payload starts with 24 bytes: "ptb1", a random id of the publishing process, the
send time (µs, CLOCK_MONOTONIC: latency only on one machine; loss is checked across machines),
the client index and a sequence.
'sub' counts loss per publisher from the first message it saw of it (what came before it
subscribed cannot be known); 'pubsub' counts from the first message sent. Order is checked per
publisher (one topic, one QoS), which MQTT requires a broker to keep on a subscription that is
not shared (MQTT §4.6): within a member of a $share group it is reported only.

Progress: one line redrawn in place on a terminal, a plain line per second otherwise.
Ctrl-C (or SIGTERM) stops the run, also while it waits for what is in flight, and prints the
summary; a second one exits at once, without it.
Exit codes (as petrel pub and sub; a failed run says why under FAILED):
  0    the run completed, or was stopped by Ctrl-C/SIGTERM, with nothing failed; also when the
       reader of the output went away (| head): the run stops quietly
  1    bad arguments (as mosquitto_pub and emqtt-bench)
  2    no connection could be made (refused, unreachable, timed out, TLS failure)
  3    no connection could be made: every one was refused for its credentials (-u/-P)
  4    the run failed once connected: messages missing, duplicated or out of order (at any
       QoS), connections that failed or were lost while others held, a subscription or publish
       refused, a broker limit it cannot meet, QoS 1/2 publishes left unacknowledged; --tolerate
       lets loss, duplicates, reordering and failed connections pass (a Ctrl-C'd pubsub does
       not fail for what was still in flight)
  130  a second Ctrl-C (SIGINT)     143  a second SIGTERM`

export { UsageError }

const flags = {
  url: { type: 'string' },
  ssl: { type: 'boolean', short: 'S' },
  ws: { type: 'boolean' },
  host: { type: 'string', short: 'h' },
  port: { type: 'string', short: 'p' },
  'protocol-version': { type: 'string', short: 'V' },
  username: { type: 'string', short: 'u' },
  password: { type: 'string', short: 'P' },
  keepalive: { type: 'string', short: 'k' },
  cafile: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  insecure: { type: 'boolean' },
  ifaddr: { type: 'string' },
  clients: { type: 'string', short: 'c' },
  subs: { type: 'string' },
  'conn-rate': { type: 'string', short: 'R' },
  'conn-interval': { type: 'string', short: 'i' },
  'max-connecting': { type: 'string' },
  'message-interval': { type: 'string', short: 'I' },
  rate: { type: 'string' },
  size: { type: 'string', short: 's' },
  qos: { type: 'string', short: 'q' },
  topic: { type: 'string', short: 't' },
  'sub-topic': { type: 'string' },
  inflight: { type: 'string', short: 'F' },
  duration: { type: 'string' },
  warmup: { type: 'string' },
  limit: { type: 'string', short: 'L' },
  prefix: { type: 'string' },
  'start-number': { type: 'string', short: 'n' },
  'drain-timeout': { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean' },
  tolerate: { type: 'string', multiple: true },
  help: { type: 'boolean' },
  // emqtt-bench's (and MQTTX bench's) long names, taken in their meaning: --count is the number
  // of clients and --interval the time between connections there, not messages.
  count: { type: 'string' },
  interval: { type: 'string' },
  interval_of_msg: { type: 'string' },
  startnumber: { type: 'string' },
  cacertfile: { type: 'string' },
  certfile: { type: 'string' },
  keyfile: { type: 'string' }
} as const

type FlagValues = ReturnType<typeof parseArgs<{ options: typeof flags, allowPositionals: true, strict: true }>>['values']

/** Alias -> the flag it stands for. */
const ALIASES = {
  count: 'clients', interval: 'conn-interval', interval_of_msg: 'message-interval', startnumber: 'start-number', cacertfile: 'cafile', certfile: 'cert', keyfile: 'key'
} as const satisfies Partial<Record<keyof FlagValues, keyof FlagValues>>

/** Copies each alias to its flag (the alias is not read after); both given is an error (which one was meant is not known). */
function resolveAliases (v: FlagValues): FlagValues {
  const out = { ...v }
  for (const [alias, name] of Object.entries(ALIASES) as Array<[keyof typeof ALIASES, typeof ALIASES[keyof typeof ALIASES]]>) {
    const value = out[alias]
    if (value === undefined) continue
    if (out[name] !== undefined) throw new UsageError(`--${alias} is --${name}: give one of them`)
    out[name] = value
  }
  return out
}

/** emqtt-bench flags not taken, and why: said instead of a bare "unknown option". */
const EMQTT_BENCH_FLAGS_NOT_TAKEN: Readonly<Record<string, string>> = (() => {
  const clean = 'not supported: every bench connection starts a clean session'
  const stamped = 'not supported: each payload is -s bytes starting with the bench stamp (sequence and send time), which the loss and latency checks read'
  const wait = 'not supported: each publisher starts sending once it is connected'
  return {
    '-r': 'not supported: bench publishes are not retained',
    '--retain': 'not supported: bench publishes are not retained',
    '-C': clean,
    '--clean': clean,
    '-x': clean,
    '--session-expiry': clean,
    '-m': stamped,
    '--message': stamped,
    '--payload-hdrs': 'not needed: every payload carries a stamp (sequence and send time), so loss and latency are always checked',
    '-w': wait,
    '--wait-before-publishing': wait
  }
})()

const modes: readonly string[] = ['pub', 'sub', 'conn', 'pubsub']

function num (name: string, text: string | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (text === undefined) return fallback
  const n = Number(text)
  if (text.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in ${min}..${max}`
    throw new UsageError(`--${name} must be a number ${range}, got '${text}'`)
  }
  return n
}

function int (name: string, text: string | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = num(name, text, fallback, min, max)
  if (!Number.isInteger(n)) throw new UsageError(`--${name} must be an integer, got '${text ?? ''}'`)
  return n
}

function protocolVersion (text: string | undefined): ProtocolVersion {
  switch (text) {
    case undefined: case '4': case 'mqttv311': return 4
    case '5': case 'mqttv5': return 5
    case '3': case 'mqttv31': return 3
    default: throw new UsageError(`-V must be 3, 4, 5, mqttv31, mqttv311 or mqttv5, got '${text}'`)
  }
}

/**
 * --inflight's default. 5.0 has Receive Maximum, which caps the window; 3.1.1 has nothing: a
 * broker over its quota may drop what it acknowledges (mosquitto 2.0, past max_inflight_messages,
 * 20 by default, answers a QoS 2 PUBLISH with PUBREC and discards it), which the run reports as
 * loss. 20 is libmosquitto's window, and petrel pub's -M.
 */
function defaultInflight (version: ProtocolVersion): number {
  return version === 5 ? 100 : 20
}

/**
 * Handshakes under way at once when no rate is given: a closed loop, so the broker is offered
 * connections as fast as it completes them. All at once, 5,000 against mosquitto (listen backlog
 * 100) took p50 2.6 s, p99 3.4 s, every one behind a dropped SYN; 100 at a time, the 3,000 of
 * another run took p99 83 ms at 3,000/s.
 */
const DEFAULT_MAX_CONNECTING = 100

function connRate (rate: string | undefined, interval: string | undefined): number {
  if (rate !== undefined && interval !== undefined) throw new UsageError('give either --conn-rate or --conn-interval, not both')
  const ms = num('conn-interval', interval, 0, 0)
  return ms > 0 ? 1000 / ms : num('conn-rate', rate, 0, 0)
}

/** setTimeout's limit (2^31 - 1 ms), in whole seconds: a longer timer fires at once. */
const MAX_TIMER_SECONDS = Math.floor(0x7fffffff / 1000)

function seconds (name: string, text: string | undefined, fallback: number): number {
  const n = num(name, text, fallback, 0)
  if (n > MAX_TIMER_SECONDS) throw new UsageError(`--${name} is at most ${MAX_TIMER_SECONDS} s (24 days), got '${text ?? ''}'; for a longer run leave --duration out and stop it with Ctrl-C`)
  return n
}

/** The largest Remaining Length of any packet [MQTT-1.5.5] (MQTT 5.0: 2.1.4): 268,435,455 bytes. */
const MAX_REMAINING_LENGTH = 268_435_455

/** The most payload a PUBLISH on `topicName` can carry. */
function maxPayload (topicName: string, qos: QoS, protocolVersion: ProtocolVersion): number {
  // topic length prefix + topic + packet id (QoS > 0) + empty property length (5.0)
  return MAX_REMAINING_LENGTH - 2 - Buffer.byteLength(topicName) - (qos > 0 ? 2 : 0) - (protocolVersion === 5 ? 1 : 0)
}

/** The filter a pubsub subscriber takes by default: -t with every level holding %i or %c as `+`. */
function filterOf (topicPattern: string): string {
  return topicPattern.split('/').map((level) => /%[ic]/.test(level) ? '+' : level).join('/')
}

/** What -t / --sub-topic give for the first and the last client: checked before anything connects. */
function checkTopics (o: BenchOptions, topicFlag: string, subTopicFlag: string): void {
  const first = o.startIndex
  const last = o.startIndex + Math.max(o.clients, o.mode === 'pubsub' ? o.subscribers : 0) - 1
  const expanded = (pattern: string, kind: string, i: number): string => expandTopic(pattern, i, `${o.clientIdPrefix}${kind}-${i}`)
  const shown = (flag: string, pattern: string, value: string): string => `${flag} '${pattern}'${value === pattern ? '' : ` (here '${value}')`}`
  if (o.mode === 'pub' || o.mode === 'pubsub') {
    for (const i of [first, last]) {
      const name = expanded(o.topic, 'pub', i)
      const problem = topicNameProblem(name)
      if (problem !== undefined) throw new UsageError(`${shown(topicFlag, o.topic, name)} is no topic name to publish to: ${problem}`)
      const most = maxPayload(name, o.qos, o.protocolVersion)
      if (o.payloadSize > most) throw new UsageError(`--size ${o.payloadSize} does not fit in one PUBLISH on '${name}': at most ${most} bytes of payload (a packet's Remaining Length is at most ${MAX_REMAINING_LENGTH.toLocaleString('en-US')} bytes)`)
    }
  }
  if (o.mode === 'sub' || (o.mode === 'pubsub' && o.subscribers > 0)) {
    for (const i of [first, last]) {
      const filter = expanded(o.subTopic, 'sub', i)
      const problem = topicFilterProblem(filter)
      if (problem !== undefined) throw new UsageError(`${shown(subTopicFlag, o.subTopic, filter)} is no topic filter to subscribe to: ${problem}`)
    }
  }
  if (o.mode === 'pubsub' && o.subscribers > 0) checkPubSubMatch(o, subTopicFlag, topicFlag)
}

/** Pairs beyond which the pubsub match check is skipped (it runs before anything connects). */
const MAX_MATCH_CHECKS = 1_000_000

/** A pubsub whose subscriptions match none of the publishers' topics would measure nothing. */
function checkPubSubMatch (o: BenchOptions, subTopicFlag: string, topicFlag: string): void {
  if (o.clients * o.subscribers > MAX_MATCH_CHECKS) return
  const names: string[] = []
  for (let i = o.startIndex; i < o.startIndex + o.clients; i++) names.push(expandTopic(o.topic, i, `${o.clientIdPrefix}pub-${i}`))
  for (let i = o.startIndex; i < o.startIndex + o.subscribers; i++) {
    const f = expandTopic(o.subTopic, i, `${o.clientIdPrefix}sub-${i}`)
    const filter = parseSharedSubscription(f)?.topicFilter ?? f
    for (const name of names) if (topicMatches(filter, name)) return
  }
  throw new UsageError(`${subTopicFlag} '${o.subTopic}' matches none of the publishers' topics (${topicFlag} '${o.topic}', e.g. '${names[0] ?? ''}'): ` +
    `the subscribers would receive nothing; give a ${subTopicFlag} that matches ${topicFlag}, or leave it out to derive it from ${topicFlag}`)
}

/** --tolerate, given once or more, each a comma-separated list. */
function tolerated (texts: string[] | undefined): Tolerated {
  const t: Tolerated = { loss: false, duplicates: false, reorder: false, connections: false }
  for (const word of (texts ?? []).flatMap((x) => x.split(',')).map((w) => w.trim())) {
    if (word === 'all') for (const k of TOLERABLE) t[k] = true
    else if ((TOLERABLE as readonly string[]).includes(word)) t[word as typeof TOLERABLE[number]] = true
    else throw new UsageError(`--tolerate takes ${TOLERABLE.join(', ')} or all (comma-separated), got '${word}'`)
  }
  return t
}

function localAddresses (text: string | undefined): string[] {
  if (text === undefined) return []
  const list = text.split(',').map((a) => a.trim()).filter((a) => a !== '')
  for (const a of list) if (isIP(a) === 0) throw new UsageError(`--ifaddr takes IP addresses, got '${a}'`)
  if (list.length === 0) throw new UsageError('--ifaddr needs at least one address')
  return list
}


/** Parses `petrel bench` arguments; returns undefined for --help, throws UsageError on bad input. */
export function parseOptions (argv: string[]): BenchOptions | undefined {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: flags, allowPositionals: true, strict: true })
  } catch (err) {
    throw new UsageError(argsErrorMessage(err, EMQTT_BENCH_FLAGS_NOT_TAKEN))
  }
  const { positionals } = parsed
  const v = resolveAliases(parsed.values)
  if (v.help === true) return undefined
  const mode = positionals[0]
  if (mode === undefined || !modes.includes(mode)) throw new UsageError(`expected a mode: pub, sub, conn or pubsub${mode === undefined ? '' : `, got '${mode}'`}`)
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1] ?? ''}'`)
  let target: Target
  try {
    target = parseTarget(v.url, v.host, v.port === undefined ? undefined : int('port', v.port, 0, 1, 65535), { ssl: v.ssl === true, ws: v.ws === true })
  } catch (err) {
    if (err instanceof UsageError) throw err
    throw new UsageError((err as Error).message)
  }
  const interval = num('message-interval', v['message-interval'], 0, 0)
  if (v.rate !== undefined && v['message-interval'] !== undefined) throw new UsageError('give either --rate or -I/--message-interval, not both')
  const rate = v.rate !== undefined ? num('rate', v.rate, 0, 0) : interval > 0 ? 1000 / interval : 0
  const payloadSize = int('size', v.size, 256, 0, MAX_REMAINING_LENGTH)
  const qos = int('qos', v.qos, 0, 0, 2) as QoS
  const username = v.username ?? target.username
  // emqtt-bench's %u, the user name: the same for every client, so it is put in once, here.
  const withUser = (pattern: string | undefined, flag: string): string | undefined => {
    if (pattern === undefined || !pattern.includes('%u')) return pattern
    if (username === undefined) throw new UsageError(`${flag} '${pattern}': %u is the user name, and no -u (or user in --url) was given`)
    return pattern.replaceAll('%u', username)
  }
  const topicFlag = withUser(v.topic, '-t')
  const topic = topicFlag ?? 'bench/%i'
  const subTopicDefault = mode === 'sub' ? topicFlag ?? 'bench/#' : filterOf(topic)
  if ((v.cert === undefined) !== (v.key === undefined)) throw new UsageError(v.cert === undefined ? '--key needs --cert (the client certificate it goes with)' : '--cert needs --key (the private key of the client certificate)')
  const duration = seconds('duration', v.duration, 0)
  const warmup = seconds('warmup', v.warmup, 0)
  if (warmup + duration > MAX_TIMER_SECONDS) throw new UsageError(`--warmup + --duration is at most ${MAX_TIMER_SECONDS} s (24 days)`)
  const options: BenchOptions = {
    mode: mode as BenchMode,
    target,
    clients: int('clients', v.clients, 1, 1),
    subscribers: int('subs', v.subs, 1, 0),
    connRate: connRate(v['conn-rate'], v['conn-interval']),
    maxConnecting: int('max-connecting', v['max-connecting'], v['conn-rate'] === undefined && v['conn-interval'] === undefined ? DEFAULT_MAX_CONNECTING : 0, 0),
    rate,
    payloadSize,
    qos,
    topic,
    subTopic: withUser(v['sub-topic'], '--sub-topic') ?? subTopicDefault,
    duration,
    warmup,
    limit: int('limit', v.limit, 0, 0),
    protocolVersion: protocolVersion(v['protocol-version']),
    keepAlive: int('keepalive', v.keepalive, 60, 0, 65535),
    username,
    password: v.password ?? target.password,
    clientIdPrefix: v.prefix ?? `petrel-bench-${process.pid}-`,
    startIndex: int('start-number', v['start-number'], 0, 0, 0xffffffff),
    inflight: int('inflight', v.inflight, defaultInflight(protocolVersion(v['protocol-version'])), 1, 65535),
    localAddresses: localAddresses(v.ifaddr),
    cafile: v.cafile,
    cert: v.cert,
    key: v.key,
    insecure: v.insecure === true,
    json: v.json === true,
    quiet: v.quiet === true,
    tolerate: tolerated(v.tolerate),
    drainTimeout: seconds('drain-timeout', v['drain-timeout'], 5)
  }
  const lastIndex = options.startIndex + Math.max(options.clients, options.subscribers) - 1
  if (lastIndex > 0xffffffff) throw new UsageError(`-n ${options.startIndex} with ${Math.max(options.clients, options.subscribers)} clients goes past the largest client index, ${0xffffffff}`)
  // In 'sub' mode -t is the filter; elsewhere -t names the publishers' topic and --sub-topic the filter.
  checkTopics(options, '-t', mode === 'sub' && v['sub-topic'] === undefined ? '-t' : '--sub-topic')
  return options
}

/** Expands a topic pattern: `%i` the client index, `%c` the client id. */
export function expandTopic (pattern: string, index: number, clientId: string): string {
  return pattern.replaceAll('%i', String(index)).replaceAll('%c', clientId)
}
