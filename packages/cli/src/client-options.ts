import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { connect as netConnect } from 'node:net'
import { DEFAULT_CIPHERS, type ConnectionOptions } from 'node:tls'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { ClientErrorCode, type ClientOptions } from '@petrel/client'
import { PetrelError, topicNameProblem, WireErrorCode, type ProtocolVersion, type QoS, type WillProperties } from '@petrel/wire'
import { extractPropertyFlags, type PropertyFlags } from './property-flags.js'
import { debugTrace } from './debug-trace.js'
import { argsErrorMessage, MOSQUITTO_FLAGS_NOT_TAKEN } from './args-error.js'
import { ExitCode } from './exit-code.js'
import { UsageError } from './usage-error.js'

export { ExitCode }

/** Flags common to pub and sub, with mosquitto_pub/mosquitto_sub spellings. */
export const commonFlags = {
  host: { type: 'string', short: 'h' },
  port: { type: 'string', short: 'p' },
  id: { type: 'string', short: 'i' },
  'id-prefix': { type: 'string', short: 'I' },
  'bind-address': { type: 'string', short: 'A' },
  unix: { type: 'string' },
  nodelay: { type: 'boolean' },
  quiet: { type: 'boolean' },
  username: { type: 'string', short: 'u' },
  pw: { type: 'string', short: 'P' },
  keepalive: { type: 'string', short: 'k' },
  'protocol-version': { type: 'string', short: 'V' },
  qos: { type: 'string', short: 'q' },
  url: { type: 'string', short: 'L' },
  cafile: { type: 'string' },
  capath: { type: 'string' },
  'tls-use-os-certs': { type: 'boolean' },
  'tls-version': { type: 'string' },
  ciphers: { type: 'string' },
  psk: { type: 'string' },
  'psk-identity': { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  insecure: { type: 'boolean' },
  'connect-timeout': { type: 'string' },
  'disable-clean-session': { type: 'boolean', short: 'c' },
  'session-expiry-interval': { type: 'string', short: 'x' },
  'will-topic': { type: 'string' },
  'will-payload': { type: 'string' },
  'will-qos': { type: 'string' },
  'will-retain': { type: 'boolean' },
  debug: { type: 'boolean', short: 'd' },
  help: { type: 'boolean' }
} as const satisfies ParseArgsConfig['options']

export const commonHelp = `Connection:
  -h HOST            broker host (default 127.0.0.1)
  -p PORT            broker port (default 1883, 8883 with --cafile)
  -L URL             mqtt[s]://[user[:pass]@]host[:port]/topic (overrides -h -p -t; the topic
                     as typed, '#', '?' and '%xx' included, as mosquitto), or
                     ws[s]://[user[:pass]@]host[:port][/path] (overrides -h -p; the path is the
                     WebSocket's, the topic comes from -t)
  --unix PATH        connect through a Unix domain socket instead
  -A ADDRESS         connect from this local address
  -i ID              client id (default: petrel-<random>)
  -I PREFIX          client id PREFIX followed by the process id
  -u USER, -P PASS   user name and password
  -k SECONDS         keepalive (default 60)
  -V VERSION         protocol: mqttv311 | 311 | mqttv5 | 5 | mqttv31 | 31 (default mqttv311)
  -q QOS             0, 1 or 2 (default 0)
  --cafile FILE      CA certificate (enables TLS)
  --capath DIR       CA certificates: every PEM file in DIR (enables TLS)
  --tls-use-os-certs trust the operating system's CA certificates (enables TLS)
  --cert FILE        client certificate, --key FILE its private key
  --insecure         do not check that the broker certificate's name matches the host (its
                     chain is still verified against the CA, as with mosquitto_pub)
  --tls-version V    the lowest TLS version to accept: tlsv1.3, tlsv1.2 or tlsv1.1
  --ciphers LIST     OpenSSL cipher list
  --psk HEX          TLS with a pre-shared key (hex) instead of certificates; --psk-identity ID
  --connect-timeout SECONDS  (default 10)
  -c                 persistent session (no clean start; needs -i): the broker keeps the
                     subscriptions and queues QoS 1/2 messages while the client is away
  -x SECONDS         MQTT 5 session expiry interval (-1: never; default -1 with -c, else 0)
  --will-topic TOPIC, --will-payload TEXT, --will-qos QOS, --will-retain
                     the will the broker publishes if the connection ends without DISCONNECT
  -D COMMAND PROPERTY VALUE
                     an MQTT 5 property (repeatable): COMMAND is connect, publish, will,
                     subscribe or unsubscribe; e.g. -D publish content-type text/plain,
                     -D publish user-property NAME VALUE, -D will will-delay-interval 30
  -d                 print each MQTT packet sent and received (on stderr)
  --quiet            do not print error messages (the exit code still tells)
  --nodelay          accepted for mosquitto's sake: Petrel always disables Nagle's algorithm
  --help             this text

Not taken from mosquitto_pub/sub: --proxy, -S, --tls-alpn, and the OpenSSL engine flags
(--tls-engine, --keyform, --tls-engine-kpass-sha1).

Exit codes: 0 ok, 1 usage, 2 connection failed, 3 not authorized, 4 publish/subscribe failed,
27 timed out (sub -W), 130/143 a second Ctrl-C/SIGTERM (the first one stops cleanly).`

export type CommonValues = {
  [K in keyof typeof commonFlags]?: (typeof commonFlags)[K]['type'] extends 'boolean' ? boolean : string
}

export { UsageError }

export interface ResolvedConnection {
  /** What `connect()` dials; undefined with --unix (options.transport opens the socket). */
  url: string | undefined
  /** The broker, for messages. */
  where: string
  /** Topic from the -L URL path, if any. */
  urlTopic: string | undefined
  /** Added to "a topic is required" when -L gave none: where its topic goes, or why a WebSocket URL has none ('' without -L). */
  topicHint: string
  options: ClientOptions
  qos: QoS
}

function intFlag (value: string | undefined, name: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${name} must be an integer from ${min} to ${max}, got '${value}'`)
  return n
}

/** Turns the common flags (and -D properties) into a broker URL and client options. Throws UsageError. */
export function resolveConnection (v: CommonValues, properties?: PropertyFlags): ResolvedConnection {
  const qos = (intFlag(v.qos, '-q', 0, 2) ?? 0) as QoS
  let protocolVersion: ProtocolVersion = 4
  if (v['protocol-version'] !== undefined) {
    const map: Record<string, ProtocolVersion> = { mqttv311: 4, 311: 4, 4: 4, mqttv5: 5, 5: 5, mqttv31: 3, 31: 3 }
    const p = map[v['protocol-version'].toLowerCase()]
    if (p === undefined) throw new UsageError(`-V must be mqttv311 (or 311), mqttv5 (or 5) or mqttv31 (or 31), got '${v['protocol-version']}'`)
    protocolVersion = p
  }
  const psk = v.psk !== undefined || v['psk-identity'] !== undefined
  // --insecure alone does not turn TLS on (as in mosquitto_pub: it only loosens a TLS connection,
  // one the flags ask for or an mqtts:// / wss:// -L URL, which needs the TLS options to carry it).
  const tls = v.cafile !== undefined || v.capath !== undefined || v['tls-use-os-certs'] === true || v.cert !== undefined ||
    v['tls-version'] !== undefined || v.ciphers !== undefined || psk ||
    (v.insecure === true && v.url !== undefined && /^(?:mqtts|wss|tls):/i.test(v.url))
  const read = (file: string): Buffer => {
    try {
      return readFileSync(file)
    } catch (err) {
      throw new UsageError(`cannot read ${file}: ${(err as Error).message}`)
    }
  }
  const options: ClientOptions = {
    protocolVersion,
    reconnect: false,
    keepalive: intFlag(v.keepalive, '-k', 0, 65535) ?? 60,
    connectTimeoutMs: (intFlag(v['connect-timeout'], '--connect-timeout', 1, 3600) ?? 10) * 1000
  }
  if (v.id !== undefined && v['id-prefix'] !== undefined) throw new UsageError('-i and -I exclude each other')
  if (v.id !== undefined) options.clientId = v.id
  if (v['id-prefix'] !== undefined) options.clientId = `${v['id-prefix']}${process.pid}`
  if (v['bind-address'] !== undefined) options.localAddress = v['bind-address']
  if (v.debug === true) options.trace = debugTrace((line) => { process.stderr.write(`${line}\n`) })
  resolveSession(v, options, protocolVersion)
  if (properties?.any === true) {
    if (protocolVersion !== 5) throw new UsageError('-D sets MQTT 5 properties: add -V mqttv5')
    const { sessionExpiryInterval, topicAliasMaximum, maximumPacketSize, ...rest } = properties.connect
    if (sessionExpiryInterval !== undefined) options.sessionExpiryInterval = sessionExpiryInterval
    if (topicAliasMaximum !== undefined) options.topicAliasMaximum = topicAliasMaximum
    if (maximumPacketSize !== undefined) options.maximumPacketSize = maximumPacketSize
    if (Object.keys(rest).length > 0) options.properties = rest
  }
  resolveWill(v, options, protocolVersion === 5 ? properties?.will : undefined)
  if (v.username !== undefined) options.username = v.username
  if (v.pw !== undefined) options.password = v.pw
  // As mosquitto_pub/sub (and petrel bench): one without the other is a typo, not a wish to be refused by the broker.
  if ((v.cert === undefined) !== (v.key === undefined)) throw new UsageError(v.cert === undefined ? '--key needs --cert (the client certificate it goes with)' : '--cert needs --key (the private key of the client certificate)')
  if (tls) {
    options.tls = { rejectUnauthorized: true }
    const ca = [
      ...(v.cafile === undefined ? [] : [read(v.cafile)]),
      ...(v.capath === undefined ? [] : certificatesIn(v.capath)),
      ...(v['tls-use-os-certs'] === true ? [osCertificates()] : [])
    ]
    if (ca.length > 0) options.tls.ca = ca
    if (v.cert !== undefined) options.tls.cert = read(v.cert)
    if (v.key !== undefined) options.tls.key = read(v.key)
    const extra: NonNullable<NonNullable<ClientOptions['tls']>['extra']> = {}
    if (v['tls-version'] !== undefined) {
      const versions = { 'tlsv1.3': 'TLSv1.3', 'tlsv1.2': 'TLSv1.2', 'tlsv1.1': 'TLSv1.1' } as const
      const min = versions[v['tls-version'].toLowerCase() as keyof typeof versions] as typeof versions[keyof typeof versions] | undefined
      if (min === undefined) throw new UsageError(`--tls-version must be tlsv1.3, tlsv1.2 or tlsv1.1, got '${v['tls-version']}'`)
      extra.minVersion = min
    }
    if (v.ciphers !== undefined) extra.ciphers = v.ciphers
    // mosquitto_pub's --insecure skips the host name check only: an unknown CA still fails.
    if (v.insecure === true) extra.checkServerIdentity = () => undefined
    if (psk) Object.assign(extra, pskOptions(v))
    if (Object.keys(extra).length > 0) options.tls.extra = extra
  }
  let url: string | undefined
  let where: string | undefined
  let urlTopic: string | undefined
  let topicHint = ''
  if (v.unix !== undefined) {
    if (v.url !== undefined || tls) throw new UsageError('--unix excludes -L and the TLS flags')
    options.transport = unixTransport(v.unix)
    url = undefined
    where = `the Unix socket ${v.unix}`
  } else if (v.url !== undefined) {
    const resolved = resolveUrlFlag(v.url)
    url = resolved.url
    urlTopic = resolved.topic
    if (/^wss?:/i.test(resolved.url)) topicHint = ': the path of a ws:// or wss:// -L URL is the WebSocket\'s, not a topic'
    else topicHint = '; this -L URL has none in its path (mqtt://host:port/TOPIC)'
  } else {
    const host = v.host ?? '127.0.0.1'
    const port = intFlag(v.port, '-p', 1, 65535) ?? (tls ? 8883 : 1883)
    url = `${tls ? 'mqtts' : 'mqtt'}://${host.includes(':') ? `[${host}]` : host}:${port}`
  }
  return { url, where: where ?? url ?? '', urlTopic, topicHint, options, qos }
}

/**
 * -L: for mqtt:// and mqtts://, the topic is everything after the first '/' past the scheme,
 * verbatim as mosquitto_pub/sub take it: URL parsing would cut it at '#' or '?' and choke on a
 * lone '%', and '%xx' stays as typed (mosquitto does not decode it either). The URL dialled
 * is the scheme and authority alone. ws:// and wss:// keep their path: it is the WebSocket's.
 */
function resolveUrlFlag (raw: string): { url: string, topic: string | undefined } {
  const mqtt = /^(mqtts?):\/\/([^/]*)(?:\/(.*))?$/is.exec(raw)
  let parsed: URL
  try {
    parsed = new URL(mqtt === null ? raw : `${(mqtt[1] as string).toLowerCase()}://${mqtt[2] as string}`)
  } catch {
    throw new UsageError(`-L: not a URL: '${raw}'`)
  }
  if (mqtt === null) return { url: parsed.href, topic: undefined }
  // The host part cannot carry a query or fragment: whatever follows it belongs to the topic, after a '/'.
  if (parsed.search !== '' || parsed.hash !== '') throw new UsageError(`-L: put the topic after a '/' (mqtt://host:port/topic), got '${raw}'`)
  const topic = mqtt[3]
  return { url: parsed.href, topic: topic === undefined || topic === '' ? undefined : topic }
}

/** --psk and --psk-identity: TLS authenticated by a shared key, no certificates (as mosquitto's psk_file). */
function pskOptions (v: CommonValues): ConnectionOptions {
  const key = v.psk
  const identity = v['psk-identity']
  if (key === undefined || identity === undefined) throw new UsageError('--psk and --psk-identity go together')
  if (v.cafile !== undefined || v.capath !== undefined || v.cert !== undefined || v['tls-use-os-certs'] === true) throw new UsageError('--psk excludes the certificate flags (--cafile, --capath, --cert, --tls-use-os-certs)')
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(key)) throw new UsageError('--psk is the key in hexadecimal, without 0x')
  const psk = Buffer.from(key, 'hex')
  return {
    pskCallback: () => ({ psk, identity }),
    // No certificate to check: the key authenticates the broker.
    checkServerIdentity: () => undefined,
    ...(v.ciphers === undefined ? { ciphers: `PSK:${DEFAULT_CIPHERS}` } : {})
  }
}

/** --capath: the certificates of every PEM file in `dir` (OpenSSL's hash links included, once each). */
function certificatesIn (dir: string): string[] {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch (err) {
    throw new UsageError(`--capath: cannot read ${dir}: ${(err as Error).message}`)
  }
  const certs = new Set<string>()
  for (const name of names) {
    const file = join(dir, name)
    try {
      if (!statSync(file).isFile()) continue
      for (const pem of readFileSync(file, 'latin1').match(PEM_CERTIFICATE) ?? []) certs.add(pem)
    } catch {
      // unreadable entries are skipped, as OpenSSL skips them
    }
  }
  if (certs.size === 0) throw new UsageError(`--capath: no PEM certificate in ${dir}`)
  return [...certs]
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g

/** Where distributions keep the system CA bundle. */
const OS_CA_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/ca-bundle.pem', '/etc/ssl/cert.pem']

function osCertificates (): Buffer {
  const file = OS_CA_BUNDLES.find((f) => existsSync(f))
  if (file === undefined) throw new UsageError(`--tls-use-os-certs: no system CA bundle found (looked for ${OS_CA_BUNDLES.join(', ')})`)
  return readFileSync(file)
}

/** --unix: a transport that opens the socket at `path` for each connection attempt. */
function unixTransport (path: string): () => Promise<Duplex> {
  return async () => await new Promise<Duplex>((resolve, reject) => {
    const socket = netConnect(path)
    socket.once('connect', () => {
      socket.off('error', reject)
      resolve(socket)
    })
    socket.once('error', reject)
  })
}

/** -c and -x, as mosquitto_pub/sub read them. */
function resolveSession (v: CommonValues, options: ClientOptions, protocolVersion: ProtocolVersion): void {
  const persistent = v['disable-clean-session'] === true
  if (persistent) {
    // [MQTT-3.1.3-8] a server refuses a zero-length id without a clean session; a random id would never be found again
    if (v.id === undefined || v.id === '') throw new UsageError('-c needs a client id (-i ID): the broker finds the session by it')
    options.clean = false
  }
  const x = v['session-expiry-interval']
  let expiry: number | undefined
  if (x !== undefined) {
    if (x === '-1' || x === 'inf' || x === '∞') expiry = 0xffffffff
    else expiry = intFlag(x, '-x', 0, 0xffffffff)
    if (protocolVersion !== 5) throw new UsageError('-x is an MQTT 5 property: add -V mqttv5 (under 3.1.1, -c sessions last until the broker expires them)')
  }
  if (protocolVersion === 5) options.sessionExpiryInterval = expiry ?? (persistent ? 0xffffffff : 0)
}

function resolveWill (v: CommonValues, options: ClientOptions, properties: WillProperties | undefined): void {
  const topic = v['will-topic']
  if (topic === undefined) {
    if (v['will-payload'] !== undefined || v['will-qos'] !== undefined || v['will-retain'] === true) throw new UsageError('--will-payload, --will-qos and --will-retain need --will-topic')
    if (properties !== undefined && Object.keys(properties).length > 0) throw new UsageError('-D will ... needs --will-topic')
    return
  }
  // Before connecting, as -t and mosquitto_pub's "Invalid will topic": the broker is not needed to be told.
  const problem = topicNameProblem(topic)
  if (problem !== undefined) throw new UsageError(`Bad topic: invalid will topic ${JSON.stringify(topic)}: ${problem}`)
  options.will = {
    topic,
    payload: v['will-payload'] ?? '',
    qos: (intFlag(v['will-qos'], '--will-qos', 0, 2) ?? 0) as QoS,
    retain: v['will-retain'] === true,
    ...(properties !== undefined && Object.keys(properties).length > 0 ? { properties } : {})
  }
}

/**
 * A sentence a person can act on, and the exit code, for an error from connect/publish/subscribe;
 * `connecting`: it came before the connection was up.
 */
export function describeError (err: unknown, url: string, connecting = false): { message: string, exitCode: number } {
  if (err instanceof UsageError) return { message: err.message, exitCode: ExitCode.usage }
  if (!(err instanceof PetrelError)) return { message: String(err), exitCode: ExitCode.operation }
  const where = safeHost(url)
  const cause = err.cause as { code?: string } | undefined
  // What came back to our CONNECT could not be read as MQTT: most often another protocol on that
  // port ('HTTP/1.1 400' from a WebSocket listener reads as a PUBACK with reserved flags).
  if (connecting && (err.code === WireErrorCode.MALFORMED_PACKET || err.code === WireErrorCode.PROTOCOL_ERROR)) {
    return { message: `Cannot connect to ${where}: ${notMqttAdvice('-L ws://host:port/path')}: ${err.message}`, exitCode: ExitCode.connection }
  }
  switch (err.code) {
    case ClientErrorCode.CONNECTION_FAILED:
      if (cause?.code === 'ECONNREFUSED' || cause?.code === 'ENOENT') return { message: `Connection refused: no broker is listening on ${where}.`, exitCode: ExitCode.connection }
      if (cause?.code === 'ENOTFOUND') return { message: `Unknown host in ${where}.`, exitCode: ExitCode.connection }
      // (an OpenSSL message ends in a newline)
      return { message: `Cannot connect to ${where}: ${err.message.trimEnd()}${connecting ? tlsHint(url, cause?.code, err.message) : ''}`, exitCode: ExitCode.connection }
    // The --cert/--key/--cafile files or --ciphers cannot make a TLS context: nothing was dialled,
    // and only the command line can change that (mosquitto_pub exits 1 on it too).
    case ClientErrorCode.TLS_CONFIG: return { message: `Cannot use the TLS settings: ${err.message.trimEnd()}`, exitCode: ExitCode.usage }
    case ClientErrorCode.CONNECT_TIMEOUT: return { message: `Timed out connecting to ${where}: ${err.message}.`, exitCode: ExitCode.connection }
    case ClientErrorCode.CONNECTION_REFUSED: return { message: `Connection refused by the broker at ${where}: ${err.message}`, exitCode: ExitCode.connection }
    case ClientErrorCode.NOT_AUTHORIZED: return { message: `Not authorized by the broker at ${where} (check -u/-P): ${err.message}`, exitCode: ExitCode.notAuthorized }
    case 'PETREL_ERR_INVALID_TOPIC_NAME': case 'PETREL_ERR_INVALID_TOPIC_FILTER': return { message: `Bad topic: ${err.message}`, exitCode: ExitCode.usage }
    case ClientErrorCode.QOS_NOT_SUPPORTED: return { message: err.message, exitCode: ExitCode.usage }
    // The encoder or the client refused what the flags asked for (a -D value out of range, an
    // -i over 65,535 bytes): nothing was sent, and it is the command line that must change.
    case WireErrorCode.INVALID_PACKET: case ClientErrorCode.INVALID_ARGUMENT: return { message: `Bad argument: ${err.message}`, exitCode: ExitCode.usage }
    default: return { message: err.message, exitCode: ExitCode.operation }
  }
}

/**
 * What to say when the answer to CONNECT could not be read as MQTT; `ws`: how the command asks
 * for a WebSocket.
 */
export function notMqttAdvice (ws: string): string {
  return `its answer is not valid MQTT (another protocol on this port? a WebSocket listener takes ${ws})`
}

/** Certificate checks that fail for want of the broker's CA (Node's codes, from OpenSSL's). */
const UNTRUSTED_CERTIFICATE = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'
])

/** How a command spells the flags a TLS hint points to. */
export interface TlsHintWords {
  /** Turning TLS on. */
  on: string
  /** Turning it off. */
  off: string
  /** Trusting the broker's certificate. */
  ca: string
  /** Getting past a certificate that does not name the host. */
  name: string
  /** Giving a client certificate. */
  cert: string
}

/** TLS alerts a broker sends about the client's certificate (OpenSSL's, as Node names them). */
const CLIENT_CERTIFICATE_REFUSED = new Set([
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', 'ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE', 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED', 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN', 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA'
])

/** pub and sub (mosquitto_pub's flags). */
const CLIENT_TLS_WORDS: TlsHintWords = {
  on: 'add --cafile or use an mqtts:// -L URL',
  off: 'mqtt://, no --cafile',
  ca: 'give the CA that signed the broker\'s certificate with --cafile',
  name: 'connect by a host name the certificate names, or --insecure to skip the host name check',
  cert: '--cert and --key'
}

/**
 * What to try when a connection failed on its way to the CONNACK in a way that most often means
 * TLS on one side only (a broker's TLS port resets a plain CONNECT, a plain port resets a TLS
 * ClientHello) or a certificate the client cannot check; '' when nothing is more likely than another.
 * `tls`: whether the client spoke TLS; `causeCode`: the socket's or TLS's error code.
 */
export function tlsAdvice (tls: boolean, causeCode: string | undefined, message: string, words: TlsHintWords = CLIENT_TLS_WORDS): string {
  if (causeCode !== undefined && UNTRUSTED_CERTIFICATE.has(causeCode)) return words.ca
  if (causeCode === 'ERR_TLS_CERT_ALTNAME_INVALID') return words.name
  // No flag gets past these (--insecure skips only the host name check): the broker's side must change.
  if (causeCode === 'CERT_HAS_EXPIRED') return 'the broker\'s certificate has expired (or this machine\'s clock is wrong): it must be renewed on the broker'
  if (causeCode === 'CERT_NOT_YET_VALID') return 'the broker\'s certificate is not valid yet: check this machine\'s clock'
  if (causeCode === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED') return `the broker requires a client certificate: give one with ${words.cert}`
  if (causeCode !== undefined && CLIENT_CERTIFICATE_REFUSED.has(causeCode)) {
    return `the broker refused the client certificate (${words.cert}): it takes one signed by a CA it trusts, unexpired, for client authentication`
  }
  const reset = causeCode === 'ECONNRESET' || causeCode === 'EPIPE' || /closed the connection|connection closed/.test(message)
  if (tls && (reset || causeCode === 'EPROTO')) return `the TLS handshake failed: if this port speaks plain MQTT, connect without TLS: ${words.off}`
  if (!tls && reset) return `it closed the connection before answering the CONNECT: if this port takes TLS, ${words.on}`
  return ''
}

/** The same for a ws:// or wss:// URL: TLS is turned on and off by the scheme. */
const WS_TLS_WORDS: TlsHintWords = {
  ...CLIENT_TLS_WORDS,
  on: 'use a wss:// -L URL',
  off: 'ws://, no --cafile'
}

/**
 * {@link tlsAdvice} in parentheses, for a client of `url`; '' when there is none. A WebSocket
 * URL gets its own: what failed was the upgrade (a wrong path is an HTTP 400 or 404), and the
 * other scheme to try is ws:// or wss://, not mqtt(s)://.
 */
function tlsHint (url: string, causeCode: string | undefined, message: string): string {
  let protocol: string
  try {
    protocol = new URL(url).protocol
  } catch {
    return ''
  }
  const tls = protocol === 'mqtts:' || protocol === 'wss:' || protocol === 'ssl:' || protocol === 'tls:'
  const ws = protocol === 'ws:' || protocol === 'wss:'
  if (ws) {
    const status = /Unexpected server response: (\d+)/.exec(message)?.[1]
    if (status !== undefined) return ` (the WebSocket upgrade was answered with HTTP ${status}: check the path in the URL, the one the broker's WebSocket listener serves, often /mqtt)`
    if (/subprotocol/.test(message)) return ' (the server did not take the WebSocket subprotocol mqtt: is this an MQTT WebSocket endpoint?)'
    if (!tls && (causeCode === 'ECONNRESET' || /socket hang up/.test(message))) {
      return ' (it closed the connection before answering the WebSocket upgrade: if this port takes TLS, use a wss:// -L URL; if it speaks MQTT without WebSocket, an mqtt:// one)'
    }
    // "socket hang up" is HTTP's: no response to a request, sent once TLS was up.
    if (tls && /socket hang up/.test(message)) return ` (${refusedAfterHandshake('the WebSocket upgrade')})`
  }
  // Past the handshake (the dial's own errors read "cannot connect to" / "cannot open WebSocket"):
  // under TLS 1.3 a broker refuses a client certificate only after the client saw the handshake
  // succeed, so the refusal arrives as a close, not as a handshake failure.
  if (tls && !/^cannot (?:connect|open)/.test(message) && /closed the connection|connection closed/.test(message)) {
    return ` (${refusedAfterHandshake('the CONNECT')})`
  }
  const advice = tlsAdvice(tls, causeCode, message, ws ? WS_TLS_WORDS : CLIENT_TLS_WORDS)
  return advice === '' ? '' : ` (${advice})`
}

function refusedAfterHandshake (what: string): string {
  return `the TLS handshake went through, then the broker closed the connection without answering ${what}: ` +
    `if it requires client certificates, it did not take this one: ${CLIENT_TLS_WORDS.cert}, signed by a CA it trusts, for client authentication`
}

function safeHost (url: string): string {
  try {
    const u = new URL(url)
    return `${u.protocol}//${u.host}`
  } catch {
    return url
  }
}

/**
 * Parses a command's argv (`-D` property groups first); prints the help or the usage error
 * itself. Returns the parsed values and properties, or the exit code to return when there is
 * nothing more to do (--help, bad flags).
 */
export function parseCommandArgs<T extends ParseArgsConfig> (command: string, config: T, help: string): { values: ReturnType<typeof parseArgs<T>>['values'], properties: PropertyFlags } | number {
  let values: ReturnType<typeof parseArgs<T>>['values']
  let properties: PropertyFlags
  try {
    const extracted = extractPropertyFlags(joinNegativeValues([...(config.args ?? [])]))
    properties = extracted.properties
    values = parseArgs({ ...config, args: extracted.rest }).values
  } catch (err) {
    console.error(`petrel ${command}: ${argsErrorMessage(err, MOSQUITTO_FLAGS_NOT_TAKEN)}\nRun 'petrel ${command} --help' for the options.`)
    return ExitCode.usage
  }
  if ((values as { help?: unknown }).help === true) {
    console.log(help)
    return ExitCode.ok
  }
  return { values, properties }
}

/** `-x -1` as mosquitto takes it: parseArgs would read `-1` as a flag of its own. */
function joinNegativeValues (args: string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string
    const next = args[i + 1]
    if ((a === '-x' || a === '--session-expiry-interval') && next !== undefined && /^-\d+$/.test(next)) {
      out.push(`--session-expiry-interval=${next}`)
      i++
    } else {
      out.push(a)
    }
  }
  return out
}
