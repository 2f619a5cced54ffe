import { malformed } from './errors.js'

// Buffer's own slice methods (what `toString` calls after checking its arguments and looking up
// the encoding): for the short strings of MQTT they are the fastest way to a JS string, several
// times faster than building one char by char. Fall back to `toString` should a runtime lack them.
interface Slicer { latin1Slice (start: number, end: number): string, utf8Slice (start: number, end: number): string }
const proto = Buffer.prototype as unknown as Partial<Slicer>
const hasSlices = typeof proto.latin1Slice === 'function' && typeof proto.utf8Slice === 'function'

/** `buf[start, end)` as a string, for bytes already known to be ASCII. */
export function asciiString (buf: Buffer, start: number, end: number): string {
  if (start === end) return ''
  return hasSlices ? (buf as unknown as Slicer).latin1Slice(start, end) : buf.toString('latin1', start, end)
}

/** `buf[start, end)` as a string, for bytes already validated as UTF-8. */
export function utf8String (buf: Buffer, start: number, end: number): string {
  return hasSlices ? (buf as unknown as Slicer).utf8Slice(start, end) : buf.toString('utf8', start, end)
}

/**
 * Decodes a UTF-8 Encoded String's bytes (§1.5.4) strictly: ill-formed UTF-8, surrogates
 * [MQTT-1.5.4-1] and U+0000 [MQTT-1.5.4-2] raise Malformed Packet. ASCII, the common case for
 * topics and client ids, takes a fast path that never calls into the UTF-8 validator.
 */
export function decodeUtf8 (buf: Buffer, start: number, end: number): string {
  for (let i = start; i < end; i++) {
    const b = buf[i] as number
    // one unsigned compare catches both 0x00 and >= 0x80
    if (((b - 1) >>> 0) >= 0x7f) return decodeUtf8Slow(buf, start, end)
  }
  return asciiString(buf, start, end)
}

/** Checks a UTF-8 Encoded String's bytes as {@link decodeUtf8} does, without making the string. */
export function checkUtf8 (buf: Buffer, start: number, end: number): void {
  for (let i = start; i < end; i++) {
    const b = buf[i] as number
    if (((b - 1) >>> 0) >= 0x7f) {
      const problem = utf8Problem(buf, i, end, false)
      if (problem !== undefined) throw malformed(`${problem} in a string`)
      return
    }
  }
}

function decodeUtf8Slow (buf: Buffer, start: number, end: number): string {
  const problem = utf8Problem(buf, start, end, false)
  if (problem !== undefined) throw malformed(`${problem} in a string`)
  return utf8String(buf, start, end)
}

/**
 * Whether `buf[start, end)` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
 * past U+10FFFF). U+0000 is allowed: this checks UTF-8 Encoded Character Data such as a payload
 * whose Payload Format Indicator is 1 [MQTT-3.3.2-4], where the string rules of §1.5.4 do not apply.
 */
export function isWellFormedUtf8 (buf: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    if ((buf[i] as number) >= 0x80) return utf8Problem(buf, i, end, true) === undefined
  }
  return true
}

/** The first reason `buf[start, end)` is not acceptable UTF-8, or undefined. */
function utf8Problem (buf: Uint8Array, start: number, end: number, allowNul: boolean): string | undefined {
  let i = start
  while (i < end) {
    const b0 = buf[i] as number
    if (b0 < 0x80) {
      if (b0 === 0 && !allowNul) return 'U+0000 [MQTT-1.5.4-2]'
      i++
      continue
    }
    let need: number
    let min: number
    let cp: number
    if (b0 >= 0xc2 && b0 <= 0xdf) { need = 1; min = 0x80; cp = b0 & 0x1f } else if (b0 >= 0xe0 && b0 <= 0xef) { need = 2; min = 0x800; cp = b0 & 0x0f } else if (b0 >= 0xf0 && b0 <= 0xf4) { need = 3; min = 0x10000; cp = b0 & 0x07 } else {
      return 'ill-formed UTF-8 [MQTT-1.5.4-1]'
    }
    if (i + need >= end) return 'truncated UTF-8 sequence [MQTT-1.5.4-1]'
    for (let k = 1; k <= need; k++) {
      const b = buf[i + k] as number
      if ((b & 0xc0) !== 0x80) return 'ill-formed UTF-8 [MQTT-1.5.4-1]'
      cp = (cp << 6) | (b & 0x3f)
    }
    if (cp < min || cp > 0x10ffff) return 'overlong or out-of-range UTF-8 [MQTT-1.5.4-1]'
    if (cp >= 0xd800 && cp <= 0xdfff) return 'UTF-8 encoding a surrogate [MQTT-1.5.4-1]'
    i += need + 1
  }
  return undefined
}

/**
 * Whether a JS string can be sent as an MQTT UTF-8 string: no U+0000 and no lone surrogates
 * (which would encode as U+FFFD and silently change the string).
 */
export function utf8StringProblem (s: string): string | undefined {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0) return 'must not contain U+0000 [MQTT-1.5.4-2]'
    if (c >= 0xd800 && c <= 0xdfff) {
      if (c <= 0xdbff && i + 1 < s.length) {
        const d = s.charCodeAt(i + 1)
        if (d >= 0xdc00 && d <= 0xdfff) { i++; continue }
      }
      return 'must not contain a lone surrogate [MQTT-1.5.4-1]'
    }
  }
  return undefined
}
