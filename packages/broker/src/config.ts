import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { createSecureContext } from 'node:tls'
import { parse } from 'smol-toml'
import { isValidTopicFilter } from '@petrel/wire'
import type { AclRule } from './acl.js'
import { BrokerErrorCode, brokerError } from './errors.js'
import type { ListenerOptions, ListenerType } from './listeners.js'
import type { BrokerLimits, BrokerOptions, FilterMemoryOverride } from './options.js'

/** Where `/metrics` is served. */
export interface MetricsOptions { host: string, port: number }

/** A parsed config file: broker options, listeners, and the metrics endpoint. */
export interface BrokerConfig {
  options: BrokerOptions
  /** Empty when the file has no `[[listener]]`: the caller picks the default 127.0.0.1:1883. */
  listeners: ListenerOptions[]
  metrics: MetricsOptions | undefined
}

type Check = (v: unknown) => string | undefined
const int = (min: number, max = Number.MAX_SAFE_INTEGER): Check => (v) =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? undefined : `an integer from ${min} to ${max}`
/** 0 (no bound) or an integer from `min`. */
const zeroOrInt = (min: number): Check => (v) => v === 0 || int(min)(v) === undefined ? undefined : `0 (no bound) or an integer from ${min} to ${Number.MAX_SAFE_INTEGER}`
const bool: Check = (v) => typeof v === 'boolean' ? undefined : 'true or false'
const str: Check = (v) => typeof v === 'string' && v.length > 0 ? undefined : 'a non-empty string'
const oneOf = (...xs: string[]): Check => (v) => typeof v === 'string' && xs.includes(v) ? undefined : `one of ${xs.map((x) => JSON.stringify(x)).join(', ')}`
const filter: Check = (v) => typeof v === 'string' && isValidTopicFilter(v) ? undefined : 'a valid topic filter'

const limitKeys: Record<string, [keyof BrokerLimits, Check]> = {
  max_connections: ['maxConnections', int(1)],
  max_packet_size: ['maxPacketSize', int(16, 268_435_460)],
  max_connect_packet_size: ['maxConnectPacketSize', int(16, 268_435_460)],
  max_user_properties: ['maxUserProperties', int(0)],
  max_inflight_messages: ['maxInflightMessages', int(1, 65535)],
  max_inflight_bytes: ['maxInflightBytes', int(0)],
  max_delayed_will_bytes: ['maxDelayedWillBytes', int(0)],
  max_queued_messages: ['maxQueuedMessages', int(0)],
  max_queued_bytes: ['maxQueuedBytes', int(0)],
  receive_maximum: ['receiveMaximum', int(1, 65535)],
  topic_alias_maximum: ['topicAliasMaximum', int(0, 65535)],
  max_inbound_topic_alias_bytes: ['maxInboundTopicAliasBytes', int(0)],
  max_outbound_topic_aliases: ['maxOutboundTopicAliases', int(0, 65535)],
  max_outbound_topic_alias_bytes: ['maxOutboundTopicAliasBytes', int(0)],
  max_keepalive: ['maxKeepAlive', int(1, 65535)],
  connect_timeout_ms: ['connectTimeoutMs', zeroOrInt(100)],
  hook_timeout_ms: ['hookTimeoutMs', zeroOrInt(100)],
  max_session_expiry_interval: ['maxSessionExpiryInterval', int(0, 0xffffffff)],
  write_high_water_mark: ['writeHighWaterMark', int(1024)],
  max_retained_messages: ['maxRetainedMessages', int(0)],
  max_retained_bytes: ['maxRetainedBytes', int(0)],
  max_topic_levels: ['maxTopicLevels', int(1, 32768)],
  max_subscriptions_per_session: ['maxSubscriptionsPerSession', int(0)],
  max_sessions: ['maxSessions', int(0)],
  max_offline_queued_bytes: ['maxOfflineQueuedBytes', int(0)]
}
const listenerKeys: Record<string, Check> = {
  type: oneOf('tcp', 'tls', 'ws', 'wss'), host: str, port: int(0, 65535), cert: str, key: str, ca: str,
  require_client_certificate: bool, request_client_certificate: bool, use_identity_as_username: bool, path: str, allow_anonymous: bool, backlog: int(1)
}
const topKeys: Record<string, Check | 'table' | 'array'> = {
  log_level: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
  sys_interval: int(0), response_information: str,
  listener: 'array', limits: 'table', auth: 'table', acl: 'array', memory: 'table', metrics: 'table'
}
const segmentKeys: Record<string, Check> = { max_segment_size: int(1), max_segment_count: int(1) }

/**
 * Finds the 1-based line of `key` in the source: the first `key =` after the header of the
 * table it belongs to (the nth `[[name]]` for arrays of tables), else the first anywhere.
 */
function lineOf (text: string, key: string, table?: string, index = 0): number {
  const lines = text.split(/\r?\n/)
  let from = 0
  if (table !== undefined) {
    let seen = -1
    for (let i = 0; i < lines.length; i++) {
      const t = (lines[i] as string).trim().replace(/\s+/g, '')
      if (t === `[${table}]` || t === `[[${table}]]`) {
        if (++seen === index) { from = i; break }
      }
    }
  }
  const re = new RegExp(`^\\s*["']?${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}["']?\\s*=`)
  for (let i = from; i < lines.length; i++) if (re.test(lines[i] as string)) return i + 1
  for (let i = 0; i < lines.length; i++) if (re.test(lines[i] as string) || (lines[i] as string).includes(key)) return i + 1
  return from + 1
}

/** Edit distance, for "did you mean" on unknown keys. */
function distance (a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = cur
  }
  return prev[b.length] as number
}

/** "unknown key; did you mean max_connections? (known: ...)" */
function unknownKey (key: string, known: string[]): string {
  let best: string | undefined
  let bestD = Infinity
  for (const k of known) {
    const d = distance(key, k)
    if (d < bestD) { best = k; bestD = d }
  }
  const hint = best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 4)) ? `; did you mean ${best}?` : ''
  return `unknown key${hint} (known: ${known.join(', ')})`
}

class Reader {
  constructor (private readonly text: string, private readonly path: string) {}

  fail (key: string, problem: string, table?: string, index?: number): never {
    const name = table === undefined ? key : `${table}.${key}`
    throw brokerError(BrokerErrorCode.CONFIG_INVALID, `${this.path}:${lineOf(this.text, key, table, index)}: ${name}: ${problem}`)
  }

  table (v: unknown, key: string, table?: string, index?: number): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Date) this.fail(key, 'must be a table', table, index)
    return v as Record<string, unknown>
  }

  array (v: unknown, key: string): Array<Record<string, unknown>> {
    if (!Array.isArray(v)) this.fail(key, `must be an array of tables ([[${key}]])`)
    return v.map((x) => this.table(x, key))
  }

  /** Checks each key of `t` against `schema`; unknown keys and bad values stop here. */
  check (t: Record<string, unknown>, schema: Record<string, Check>, table: string, index?: number): void {
    for (const [k, v] of Object.entries(t)) {
      const c = schema[k]
      if (c === undefined) this.fail(k, unknownKey(k, Object.keys(schema)), table, index)
      const problem = c(v)
      if (problem !== undefined) this.fail(k, `must be ${problem}, got ${JSON.stringify(v)}`, table, index)
    }
  }
}

/** Parses and validates config text; file paths inside resolve against `baseDir`. */
export function parseConfig (text: string, path = 'petrel.toml', baseDir = '.'): BrokerConfig {
  let doc: Record<string, unknown>
  try {
    doc = parse(text) as Record<string, unknown>
  } catch (err) {
    const line = (err as { line?: number }).line
    throw brokerError(BrokerErrorCode.CONFIG_INVALID, `${path}${line === undefined ? '' : `:${line}`}: not valid TOML: ${(err as Error).message.split('\n')[0] ?? ''}`, { cause: err })
  }
  const r = new Reader(text, path)
  const options: BrokerOptions = {}
  const listeners: ListenerOptions[] = []
  let metrics: MetricsOptions | undefined
  /** The contents of the file `key` names, or a failure naming the key, its line and the path tried. */
  const file = (p: string, key: string, table?: string, index?: number): Buffer => {
    const full = resolve(baseDir, p)
    try {
      return readFileSync(full)
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message
      const hint = full === p ? '' : ` (looked for ${full}: paths are relative to the config file)`
      return r.fail(key, `cannot read file ${JSON.stringify(p)}${hint}: ${why}`, table, index)
    }
  }
  /**
   * The listener's PEM files, loaded as TLS will load them: a key given as `cert` (or a key that
   * is not that certificate's) otherwise stops start-up later with a bare OpenSSL message
   * ("DECODER routines::unsupported") that names neither the file nor the key.
   */
  const tlsFiles = (l: Record<string, unknown>, i: number): { cert?: Buffer, key?: Buffer, ca?: Buffer } => {
    const out: { cert?: Buffer, key?: Buffer, ca?: Buffer } = {}
    const name = (k: string): string => JSON.stringify(l[k])
    if (l.cert !== undefined) {
      out.cert = file(l.cert as string, 'cert', 'listener', i)
      try { createSecureContext({ cert: out.cert }) } catch (err) {
        r.fail('cert', `${name('cert')} is not a PEM certificate (chain): ${(err as Error).message}`, 'listener', i)
      }
    }
    if (l.key !== undefined) {
      out.key = file(l.key as string, 'key', 'listener', i)
      try { createSecureContext({ key: out.key }) } catch (err) {
        r.fail('key', `${name('key')} is not a PEM private key (or it is encrypted): ${(err as Error).message}`, 'listener', i)
      }
    }
    if (out.cert !== undefined && out.key !== undefined) {
      try { createSecureContext({ cert: out.cert, key: out.key }) } catch (err) {
        r.fail('key', `${name('key')} is not the private key of the certificate in ${name('cert')}: ${(err as Error).message}`, 'listener', i)
      }
    }
    if (l.ca !== undefined) {
      out.ca = file(l.ca as string, 'ca', 'listener', i)
      // TLS itself skips what it cannot parse here, and would then refuse every client certificate
      try { new X509Certificate(out.ca) } catch (err) {
        r.fail('ca', `${name('ca')} is not a PEM CA certificate: ${(err as Error).message}`, 'listener', i)
      }
    }
    return out
  }
  for (const [key, value] of Object.entries(doc)) {
    const kind = topKeys[key]
    if (kind === undefined) r.fail(key, unknownKey(key, Object.keys(topKeys)))
    if (typeof kind === 'function') {
      const problem = kind(value)
      if (problem !== undefined) r.fail(key, `must be ${problem}, got ${JSON.stringify(value)}`)
    }
    switch (key) {
      case 'log_level': options.logLevel = value as string; break
      case 'sys_interval': options.sysInterval = value as number; break
      case 'response_information': options.responseInformation = value as string; break
      case 'listener':
        r.array(value, key).forEach((l, i) => {
          r.check(l, listenerKeys, 'listener', i)
          const type = (l.type ?? 'tcp') as ListenerType
          if ((type === 'tls' || type === 'wss') && (l.cert === undefined || l.key === undefined)) r.fail('type', `a ${type} listener needs cert and key`, 'listener', i)
          const pem = tlsFiles(l, i)
          listeners.push({
            type,
            host: l.host as string | undefined,
            port: l.port as number | undefined,
            cert: pem.cert,
            key: pem.key,
            ca: pem.ca,
            requireClientCertificate: l.require_client_certificate as boolean | undefined,
            requestClientCertificate: l.request_client_certificate as boolean | undefined,
            useIdentityAsUsername: l.use_identity_as_username as boolean | undefined,
            path: l.path as string | undefined,
            allowAnonymous: l.allow_anonymous as boolean | undefined,
            backlog: l.backlog as number | undefined
          })
        })
        break
      case 'limits': {
        const t = r.table(value, key)
        const limits: Partial<BrokerLimits> = {}
        r.check(t, Object.fromEntries(Object.entries(limitKeys).map(([k, [, c]]) => [k, c])), 'limits')
        for (const [k, v] of Object.entries(t)) limits[(limitKeys[k] as [keyof BrokerLimits, Check])[0]] = v as number
        options.limits = limits
        break
      }
      case 'auth': {
        const t = r.table(value, key)
        r.check(t, { allow_anonymous: bool, password_file: str }, 'auth')
        if (t.allow_anonymous !== undefined) options.allowAnonymous = t.allow_anonymous as boolean
        if (t.password_file !== undefined) {
          file(t.password_file as string, 'password_file', 'auth') // fails here, with the line, when unreadable
          options.passwordFile = resolve(baseDir, t.password_file as string)
        }
        break
      }
      case 'acl':
        options.acl = r.array(value, key).map((a, i): AclRule => {
          r.check(a, { user: str, client_id: str, topic: filter, access: oneOf('read', 'write', 'readwrite', 'deny') }, 'acl', i)
          if (a.topic === undefined) r.fail('topic', 'is required', 'acl', i)
          return { user: a.user as string | undefined, clientId: a.client_id as string | undefined, topic: a.topic as string, access: (a.access ?? 'readwrite') as AclRule['access'] }
        })
        break
      case 'memory': {
        const t = r.table(value, key)
        const { filter: filters, ...rest } = t
        r.check(rest, segmentKeys, 'memory')
        const overrides: FilterMemoryOverride[] = []
        if (filters !== undefined) {
          r.array(filters, 'memory.filter').forEach((f, i) => {
            r.check(f, { pattern: filter, ...segmentKeys }, 'memory.filter', i)
            if (f.pattern === undefined) r.fail('pattern', 'is required', 'memory.filter', i)
            overrides.push({
              pattern: f.pattern as string,
              maxSegmentSize: (f.max_segment_size ?? rest.max_segment_size ?? 1024 * 1024) as number,
              maxSegmentCount: (f.max_segment_count ?? rest.max_segment_count ?? 4) as number
            })
          })
        }
        options.memory = { maxSegmentSize: rest.max_segment_size as number | undefined, maxSegmentCount: rest.max_segment_count as number | undefined, filters: overrides }
        break
      }
      case 'metrics': {
        const t = r.table(value, key)
        r.check(t, { host: str, port: int(0, 65535) }, 'metrics')
        metrics = { host: (t.host ?? '127.0.0.1') as string, port: (t.port ?? 9464) as number }
        break
      }
    }
  }
  return { options, listeners, metrics }
}

/** Reads and validates a TOML config file. */
export function loadConfig (path: string): BrokerConfig {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw brokerError(BrokerErrorCode.CONFIG_INVALID, `cannot read config file ${path}: ${(err as Error).message}`, { cause: err })
  }
  return parseConfig(text, path, dirname(resolve(path)))
}
