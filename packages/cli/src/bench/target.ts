/** The broker to load: one URL, from `-L` or from `-h`/`-p`. */
export interface Target {
  protocol: 'mqtt' | 'mqtts' | 'ws' | 'wss'
  host: string
  port: number
  /** WebSocket path (default /mqtt, as mosquitto and most brokers serve it). */
  path: string
  url: string
  /** User info of the URL (mqtt://user:password@host), percent-decoded; -u and -P take precedence. */
  username?: string
  password?: string
}

const defaultPorts = { mqtt: 1883, mqtts: 8883, ws: 80, wss: 443 } as const
const aliases: Readonly<Record<string, Target['protocol']>> = {
  'mqtt:': 'mqtt', 'tcp:': 'mqtt', 'mqtts:': 'mqtts', 'ssl:': 'mqtts', 'tls:': 'mqtts', 'ws:': 'ws', 'wss:': 'wss'
}

/** What `-S`/`--ws` ask of the scheme, as emqtt-bench's flags: TLS and WebSocket compose. */
export interface TransportFlags {
  ssl?: boolean
  ws?: boolean
}

/**
 * Resolves the target; `-h`/`-p` override the URL's host and port, and `-S`/`--ws` upgrade its
 * scheme (mqtt -> mqtts/ws, ws -> wss). Throws on a bad URL.
 */
export function parseTarget (url: string | undefined, host: string | undefined, port: number | undefined, flags: TransportFlags = {}): Target {
  let u: URL
  try {
    u = new URL(url ?? 'mqtt://127.0.0.1')
  } catch {
    throw new Error(`bad broker URL '${url ?? ''}'`)
  }
  let protocol = aliases[u.protocol]
  if (protocol === undefined) throw new Error(`unsupported URL scheme '${u.protocol}' (use mqtt:, mqtts:, ws: or wss:)`)
  if (flags.ws === true) protocol = protocol === 'mqtts' || protocol === 'wss' ? 'wss' : 'ws'
  if (flags.ssl === true) protocol = protocol === 'ws' || protocol === 'wss' ? 'wss' : 'mqtts'
  const h = host ?? (u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1')
  const p = port ?? (u.port === '' ? defaultPorts[protocol] : Number(u.port))
  const path = u.pathname === '/' || u.pathname === '' ? '/mqtt' : u.pathname
  const shownHost = h.includes(':') ? `[${h}]` : h
  // The shown URL leaves the user info out: summaries are shared, passwords should not be.
  const target: Target = { protocol, host: h, port: p, path, url: `${protocol}://${shownHost}:${p}${protocol.startsWith('ws') ? path : ''}` }
  try {
    if (u.username !== '') target.username = decodeURIComponent(u.username)
    if (u.password !== '') target.password = decodeURIComponent(u.password)
  } catch {
    throw new Error(`bad percent-encoding in the user info of '${url ?? ''}'`)
  }
  return target
}
