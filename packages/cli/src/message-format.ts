import type { Message } from '@petrel/client'
import { UsageError } from './usage-error.js'

/** A compiled `-F` format: the text printed for one message. */
export type MessageFormat = (message: Message, now: Date) => string

type Part = string | ((m: Message, now: Date) => string)

const ESCAPES: Record<string, string> = { '\\': '\\', n: '\n', t: '\t', r: '\r', 0: '\0', a: '\x07', e: '\x1b', v: '\v' }

const SPECIFIERS: Record<string, (m: Message, now: Date) => string> = {
  t: (m) => m.topic,
  p: (m) => m.payload.toString('utf8'),
  q: (m) => String(m.qos),
  r: (m) => m.retain ? '1' : '0',
  l: (m) => String(m.payload.length),
  x: (m) => m.payload.toString('hex'),
  X: (m) => m.payload.toString('hex').toUpperCase(),
  j: (m, now) => json(m, now, false),
  J: (m, now) => json(m, now, true),
  I: (_m, now) => localIso(now),
  U: (_m, now) => `${Math.floor(now.getTime() / 1000)}.${String((now.getTime() % 1000) * 1e6).padStart(9, '0')}`,
  C: (m) => m.properties?.contentType ?? '',
  D: (m) => m.properties?.correlationData === undefined ? '' : Buffer.from(m.properties.correlationData).toString('utf8'),
  E: (m) => m.properties?.messageExpiryInterval === undefined ? '' : String(m.properties.messageExpiryInterval),
  F: (m) => m.properties?.payloadFormatIndicator === undefined ? '' : (m.properties.payloadFormatIndicator ? '1' : '0'),
  P: (m) => (m.properties?.userProperties ?? []).map(([k, v]) => `${k}:${v}`).join(' '),
  R: (m) => m.properties?.responseTopic ?? '',
  S: (m) => (m.properties?.subscriptionIdentifiers ?? []).join(',')
}

/**
 * Compiles a mosquitto_sub `-F` format: `%t` topic, `%p` payload, `%q` QoS, `%r` retain, `%l`
 * payload length, `%x`/`%X` payload in hex, `%j` JSON (payload as a string), `%J` JSON (payload
 * as JSON), `%I` ISO-8601 local time, `%U` Unix time (seconds.nanoseconds), MQTT 5 `%C` content type, `%D` correlation data,
 * `%E` message expiry, `%F` payload format, `%P` user properties, `%R` response topic, `%S`
 * subscription identifiers, `%%`; escapes `\n \t \r \\ \0 \a \e \v`. Throws UsageError.
 */
export function compileFormat (format: string): MessageFormat {
  const parts: Part[] = []
  let text = ''
  for (let i = 0; i < format.length; i++) {
    const c = format[i] as string
    const next = format[i + 1]
    if (c === '\\' && next !== undefined && ESCAPES[next] !== undefined) {
      text += ESCAPES[next]
      i++
    } else if (c === '%') {
      if (next === '%') {
        text += '%'
      } else {
        const spec = next === undefined ? undefined : SPECIFIERS[next]
        if (spec === undefined) {
          throw new UsageError(`-F: ${next === undefined ? 'a lone % at the end' : `unknown or unsupported %${next}`} (supported: ${Object.keys(SPECIFIERS).map((k) => `%${k}`).join(' ')} %%)`)
        }
        if (text !== '') parts.push(text)
        text = ''
        parts.push(spec)
      }
      i++
    } else {
      text += c
    }
  }
  if (text !== '') parts.push(text)
  return (m, now) => {
    let out = ''
    for (const p of parts) out += typeof p === 'string' ? p : p(m, now)
    return out
  }
}

/** Local time as mosquitto_sub's %I prints it: 2026-12-01T05:11:03+0100. */
function localIso (d: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0')
  const offset = -d.getTimezoneOffset()
  const sign = offset >= 0 ? '+' : '-'
  const abs = Math.abs(offset)
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}` +
    `${sign}${two(Math.floor(abs / 60))}${two(abs % 60)}`
}

/** Thrown by `%J` for a payload that is not JSON: the message is reported and skipped. */
export class NotJsonError extends Error {
  override readonly name = 'NotJsonError'
}

function json (m: Message, now: Date, rawPayload: boolean): string {
  const p = m.properties
  const properties: Record<string, unknown> = {}
  if (p?.userProperties !== undefined) properties['user-properties'] = Object.fromEntries(p.userProperties)
  if (p?.contentType !== undefined) properties['content-type'] = p.contentType
  if (p?.correlationData !== undefined) properties['correlation-data'] = Buffer.from(p.correlationData).toString('utf8')
  if (p?.messageExpiryInterval !== undefined) properties['message-expiry-interval'] = p.messageExpiryInterval
  if (p?.payloadFormatIndicator !== undefined) properties['payload-format-indicator'] = p.payloadFormatIndicator ? 1 : 0
  if (p?.responseTopic !== undefined) properties['response-topic'] = p.responseTopic
  if (p?.subscriptionIdentifiers !== undefined) properties['subscription-identifier'] = p.subscriptionIdentifiers
  let payload: unknown = m.payload.toString('utf8')
  if (rawPayload) {
    try {
      payload = JSON.parse(payload as string)
    } catch {
      throw new NotJsonError(`message payload on ${m.topic} is not valid JSON`)
    }
  }
  return JSON.stringify({
    tst: now.toISOString(),
    topic: m.topic,
    qos: m.qos,
    retain: m.retain ? 1 : 0,
    payloadlen: m.payload.length,
    ...(Object.keys(properties).length > 0 ? { properties } : {}),
    payload
  })
}
