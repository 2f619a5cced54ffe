import type { Message } from '@petrel/client'
import { UsageError } from './usage-error.js'

/**
 * A compiled `-F` format: the bytes printed for one message (`%p` is the payload's bytes as
 * they came, as mosquitto_sub writes them; the rest is UTF-8 text). `now` carries nanoseconds.
 */
export type MessageFormat = (message: Message, now: Date) => Buffer

type Part = string | ((m: Message, now: Date) => string | Buffer)

/** `%[-][0][width][.precision]`: mosquitto_sub's printf-like field options. */
interface Field {
  left: boolean
  zero: boolean
  width: number
  precision: number | undefined
  /** `--pretty`: `%j`/`%J` indented. */
  pretty: boolean
}

const ESCAPES: Record<string, string> = { '\\': '\\', n: '\n', t: '\t', r: '\r', 0: '\0', a: '\x07', e: '\x1b', v: '\v' }

const pad = (text: string, f: Field, fill = ' '): string =>
  f.left ? text.padEnd(f.width, ' ') : text.padStart(f.width, fill)

/** printf `%*.*s`: precision cuts, width pads with spaces. */
const str = (value: string | undefined, f: Field): string =>
  value === undefined ? ' '.repeat(f.width) : pad(f.precision === undefined ? value : value.slice(0, f.precision), f)

/** printf `%0*d`; an absent value prints as blanks of the field's width. */
const int = (value: number | undefined, f: Field): string =>
  value === undefined ? ' '.repeat(f.width) : pad(String(value), f, f.zero ? '0' : ' ')

/** `%p`: the payload's bytes verbatim; a width counts bytes, caps what is shown and pads (as mosquitto_sub). */
function rawPayload (m: Message, f: Field): Buffer {
  const bytes = f.width > 0 && m.payload.length > f.width ? m.payload.subarray(0, f.width) : m.payload
  const fill = Buffer.alloc(Math.max(0, f.width - bytes.length), f.zero && !f.left ? '0' : ' ')
  if (fill.length === 0) return bytes
  return Buffer.concat(f.left ? [bytes, fill] : [fill, bytes])
}

/** The payload in hex; a width caps what is shown (two characters a byte) and pads. */
function hexPayload (m: Message, f: Field, upper: boolean): string {
  let bytes = m.payload
  if (f.width > 0 && bytes.length * 2 > f.width) bytes = bytes.subarray(0, f.width >> 1)
  const text = bytes.toString('hex')
  return pad(upper ? text.toUpperCase() : text, f, f.zero ? '0' : ' ')
}

const SPECIFIERS: Record<string, (m: Message, now: Date, f: Field) => string | Buffer> = {
  t: (m, _n, f) => str(m.topic, f),
  p: (m, _n, f) => rawPayload(m, f),
  x: (m, _n, f) => hexPayload(m, f, false),
  X: (m, _n, f) => hexPayload(m, f, true),
  q: (m) => String(m.qos),
  r: (m) => m.retain ? '1' : '0',
  l: (m, _n, f) => int(m.payload.length, f),
  m: (m, _n, f) => int(m.packetId, f),
  j: (m, now, f) => json(m, now, false, f.pretty),
  J: (m, now, f) => json(m, now, true, f.pretty),
  I: (_m, now, f) => str(localIso(now), f),
  U: (_m, now) => `${Math.floor(now.getTime() / 1000)}.${nanos(now)}`,
  A: (m, _n, f) => int(m.properties?.topicAlias, f),
  C: (m, _n, f) => str(m.properties?.contentType, f),
  D: (m) => m.properties?.correlationData === undefined ? '' : Buffer.from(m.properties.correlationData).toString('utf8'),
  E: (m, _n, f) => int(m.properties?.messageExpiryInterval, f),
  F: (m, _n, f) => int(m.properties?.payloadFormatIndicator === undefined ? undefined : (m.properties.payloadFormatIndicator ? 1 : 0), f),
  P: (m) => (m.properties?.userProperties ?? []).map(([k, v]) => `${k}:${v}`).join(' '),
  R: (m, _n, f) => m.properties?.responseTopic === undefined ? '' : str(m.properties.responseTopic, f),
  // The client assigns subscription identifiers itself (to route messages), none of them asked
  // for on the command line: printed as mosquitto_sub prints a subscription without one.
  S: (_m, _n, f) => ' '.repeat(f.width)
}

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday']
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December']
const two = (n: number): string => String(n).padStart(2, '0')
const isoDate = (d: Date): string => `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}`
const isoTime = (d: Date): string => `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`
const usDate = (d: Date): string => `${two(d.getMonth() + 1)}/${two(d.getDate())}/${two(d.getFullYear() % 100)}`
const hour12 = (d: Date): number => d.getHours() % 12 === 0 ? 12 : d.getHours() % 12
const amPm = (d: Date): string => d.getHours() < 12 ? 'AM' : 'PM'
const dayAbbr = (d: Date): string => (DAYS[d.getDay()] as string).slice(0, 3)
const monthAbbr = (d: Date): string => (MONTHS[d.getMonth()] as string).slice(0, 3)
const spaceDay = (d: Date): string => String(d.getDate()).padStart(2, ' ')
/** Day of the year, 0 for 1 January. */
const yearDay = (d: Date): number => Math.round((Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()) - Date.UTC(d.getFullYear(), 0, 1)) / 86_400_000)
/** ISO 8601 week-based year and week: the week (Monday first) holding the date's Thursday. */
function isoWeek (d: Date): { year: number, week: number } {
  const thursday = new Date(d.getFullYear(), d.getMonth(), d.getDate() + 3 - ((d.getDay() + 6) % 7))
  return { year: thursday.getFullYear(), week: Math.floor(yearDay(thursday) / 7) + 1 }
}
/** The local time zone's abbreviation (glibc's %Z names some zones differently, e.g. CET vs GMT+1). */
function zoneName (d: Date): string {
  // One formatter per time zone, not per message (making one costs far more than using it).
  const tz = process.env.TZ
  if (zoneFormat === undefined || zoneFormatTz !== tz) {
    zoneFormat = new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' })
    zoneFormatTz = tz
  }
  return zoneFormat.formatToParts(d).find((p) => p.type === 'timeZoneName')?.value ?? ''
}
let zoneFormat: Intl.DateTimeFormat | undefined
let zoneFormatTz: string | undefined

/** `@X`: the strftime(3) conversion %X of the local time, every letter glibc has (C locale), plus `@N` nanoseconds. */
const TIME: Record<string, (d: Date) => string> = {
  Y: (d) => String(d.getFullYear()),
  y: (d) => two(d.getFullYear() % 100),
  C: (d) => two(Math.floor(d.getFullYear() / 100)),
  m: (d) => two(d.getMonth() + 1),
  d: (d) => two(d.getDate()),
  e: spaceDay,
  j: (d) => String(yearDay(d) + 1).padStart(3, '0'),
  U: (d) => two(Math.floor((yearDay(d) + 7 - d.getDay()) / 7)),
  W: (d) => two(Math.floor((yearDay(d) + 7 - ((d.getDay() + 6) % 7)) / 7)),
  V: (d) => two(isoWeek(d).week),
  G: (d) => String(isoWeek(d).year),
  g: (d) => two(isoWeek(d).year % 100),
  H: (d) => two(d.getHours()),
  k: (d) => String(d.getHours()).padStart(2, ' '),
  I: (d) => two(hour12(d)),
  l: (d) => String(hour12(d)).padStart(2, ' '),
  M: (d) => two(d.getMinutes()),
  S: (d) => two(d.getSeconds()),
  N: (d) => nanos(d),
  p: amPm,
  P: (d) => amPm(d).toLowerCase(),
  r: (d) => `${two(hour12(d))}:${two(d.getMinutes())}:${two(d.getSeconds())} ${amPm(d)}`,
  a: dayAbbr,
  A: (d) => DAYS[d.getDay()] as string,
  b: monthAbbr,
  h: monthAbbr,
  B: (d) => MONTHS[d.getMonth()] as string,
  u: (d) => String(d.getDay() === 0 ? 7 : d.getDay()),
  w: (d) => String(d.getDay()),
  s: (d) => String(Math.floor(d.getTime() / 1000)),
  z: (d) => offset(d),
  Z: zoneName,
  c: (d) => `${dayAbbr(d)} ${monthAbbr(d)} ${spaceDay(d)} ${isoTime(d)} ${d.getFullYear()}`,
  x: usDate,
  X: isoTime,
  F: isoDate,
  T: isoTime,
  R: (d) => `${two(d.getHours())}:${two(d.getMinutes())}`,
  D: usDate,
  n: () => '\n',
  t: () => '\t',
  '%': () => '%'
}

/**
 * Compiles a mosquitto_sub `-F` format. `%t` topic, `%p` payload, `%q` QoS, `%r` retain, `%l`
 * payload length, `%m` packet id, `%x`/`%X` payload in hex, `%j` JSON (payload as a string),
 * `%J` JSON (payload as JSON), `%I` ISO-8601 local time, `%U` Unix time (seconds.nanoseconds),
 * MQTT 5 `%A` topic alias, `%C` content type, `%D` correlation data, `%E` message expiry, `%F`
 * payload format, `%P` user properties, `%R` response topic, `%S` subscription identifiers,
 * `%%`. As in mosquitto_sub: `%-8t` left-aligns, `%08l` zero-pads, `%.5t` cuts, and a width caps
 * `%p`/`%x`/`%X`; `@H` (any strftime letter), `@N` nanoseconds, `@@`; escapes
 * `\n \t \r \\ \0 \a \e \v`. `prettyJson` indents `%j`/`%J` (`--pretty`). Throws UsageError.
 */
export function compileFormat (format: string, prettyJson = false): MessageFormat {
  const parts: Part[] = []
  let text = ''
  const flush = (): void => {
    if (text !== '') parts.push(text)
    text = ''
  }
  for (let i = 0; i < format.length; i++) {
    const c = format[i] as string
    const next = format[i + 1]
    if (c === '\\' && next !== undefined && ESCAPES[next] !== undefined) {
      text += ESCAPES[next]
      i++
    } else if (c === '@') {
      if (next === '@') text += '@'
      else {
        const conv = next === undefined ? undefined : TIME[next]
        if (conv === undefined) {
          throw new UsageError(`-F: ${next === undefined ? 'a lone @ at the end' : `unknown or unsupported @${next}`} (supported: ${Object.keys(TIME).map((k) => `@${k}`).join(' ')} @@)`)
        }
        flush()
        parts.push((_m, now) => conv(now))
      }
      i++
    } else if (c === '%') {
      const m = /^%(-?)(0?)(\d*)(?:\.(\d*))?(.?)/.exec(format.slice(i)) as RegExpExecArray
      const spec = m[5] as string
      if (spec === '%') text += '%'
      else {
        const conv = SPECIFIERS[spec]
        if (conv === undefined) {
          throw new UsageError(`-F: ${spec === '' ? 'a lone % at the end' : `unknown or unsupported %${spec}`} (supported: ${Object.keys(SPECIFIERS).map((k) => `%${k}`).join(' ')} %%)`)
        }
        const field: Field = { left: m[1] === '-', zero: m[2] === '0', width: Number(m[3] ?? ''), precision: m[4] === undefined ? undefined : Number(m[4]), pretty: prettyJson }
        flush()
        parts.push((msg, now) => conv(msg, now, field))
      }
      i += m[0].length - 1
    } else {
      text += c
    }
  }
  flush()
  const chunks = parts.map((p) => typeof p === 'string' ? Buffer.from(p, 'utf8') : p)
  return (m, now) => {
    const out = chunks.map((c) => {
      if (Buffer.isBuffer(c)) return c
      const v = c(m, now)
      return typeof v === 'string' ? Buffer.from(v, 'utf8') : v
    })
    return Buffer.concat(out)
  }
}

/** Nanoseconds of the second, nine digits (a {@link preciseNow} date carries those below the ms). */
function nanos (d: Date): string {
  return String((d.getTime() % 1000) * 1e6 + ((d as PreciseDate).subMsNanos ?? 0)).padStart(9, '0')
}

type PreciseDate = Date & { subMsNanos?: number }

/** The wall-clock time to the microsecond (a Date holds milliseconds), for `%U` and `@N`. */
export function preciseNow (): Date {
  const t = performance.timeOrigin + performance.now()
  const d: PreciseDate = new Date(Math.floor(t))
  d.subMsNanos = Math.floor((t % 1) * 1000) * 1000
  return d
}

/** UTC offset as +hhmm. */
function offset (d: Date): string {
  const minutes = -d.getTimezoneOffset()
  const abs = Math.abs(minutes)
  return `${minutes >= 0 ? '+' : '-'}${two(Math.floor(abs / 60))}${two(abs % 60)}`
}

/** `tst` of mosquitto_sub 2.0's %j: local time to the microsecond, then `Z` and the offset: 2026-12-01T08:25:39.299396Z+0000. */
function jsonTime (d: Date): string {
  return `${isoDate(d)}T${isoTime(d)}.${nanos(d).slice(0, 6)}Z${offset(d)}`
}

/** Local time as mosquitto_sub's %I prints it: 2026-12-01T05:11:03+0100. */
function localIso (d: Date): string {
  return `${isoDate(d)}T${isoTime(d)}${offset(d)}`
}

/** Thrown by `%J` for a payload that is not JSON: the message is reported and skipped. */
export class NotJsonError extends Error {
  override readonly name = 'NotJsonError'
}

function json (m: Message, now: Date, rawPayload: boolean, pretty: boolean): string {
  const p = m.properties
  const properties: Record<string, unknown> = {}
  if (p?.userProperties !== undefined) properties['user-properties'] = new JsonPairs(p.userProperties)
  if (p?.contentType !== undefined) properties['content-type'] = p.contentType
  if (p?.correlationData !== undefined) properties['correlation-data'] = Buffer.from(p.correlationData).toString('utf8')
  if (p?.messageExpiryInterval !== undefined) properties['message-expiry-interval'] = p.messageExpiryInterval
  if (p?.payloadFormatIndicator !== undefined) properties['payload-format-indicator'] = p.payloadFormatIndicator ? 1 : 0
  if (p?.responseTopic !== undefined) properties['response-topic'] = p.responseTopic
  let payload: unknown = m.payload.toString('utf8')
  if (rawPayload) {
    try {
      payload = JSON.parse(payload as string)
    } catch {
      throw new NotJsonError(`message payload on ${m.topic} is not valid JSON`)
    }
  }
  return jsonText({
    tst: jsonTime(now),
    topic: m.topic,
    qos: m.qos,
    retain: m.retain ? 1 : 0,
    payloadlen: m.payload.length,
    ...(m.qos > 0 ? { mid: m.packetId } : {}),
    ...(Object.keys(properties).length > 0 ? { properties } : {}),
    payload
  }, pretty ? '\t' : '')
}

/**
 * An object written with its names in order, repeats included: user properties may repeat a
 * name, and mosquitto_sub (cJSON) prints each one (an object would keep only the last).
 */
class JsonPairs {
  constructor (readonly pairs: ReadonlyArray<readonly [string, unknown]>) {}
}

/** JSON.stringify(value, null, indent), except that a {@link JsonPairs} keeps every pair. */
function jsonText (value: unknown, indent: string, depth = 0): string {
  let entries: ReadonlyArray<readonly [string, unknown]> | undefined
  if (value instanceof JsonPairs) entries = value.pairs
  else if (value !== null && typeof value === 'object' && !Array.isArray(value)) entries = Object.entries(value).filter(([, v]) => v !== undefined)
  else if (!Array.isArray(value)) return JSON.stringify(value) ?? 'null'
  const items = entries === undefined
    ? (value as unknown[]).map((v) => jsonText(v, indent, depth + 1))
    : entries.map(([k, v]) => `${JSON.stringify(k)}:${indent === '' ? '' : ' '}${jsonText(v, indent, depth + 1)}`)
  const [open, close] = entries === undefined ? ['[', ']'] : ['{', '}']
  if (items.length === 0) return open + close
  if (indent === '') return open + items.join(',') + close
  const inner = `\n${indent.repeat(depth + 1)}`
  return `${open}${inner}${items.join(`,${inner}`)}\n${indent.repeat(depth)}${close}`
}
