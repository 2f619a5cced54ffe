import { malformed } from './errors.js'

/**
 * Decodes a UTF-8 Encoded String's bytes (§1.5.4) strictly: ill-formed UTF-8, surrogates
 * [MQTT-1.5.4-1] and U+0000 [MQTT-1.5.4-2] raise Malformed Packet. ASCII, the common case for
 * topics and client ids, takes a fast path that never calls into the UTF-8 decoder.
 */
export function decodeUtf8 (buf: Buffer, start: number, end: number): string {
  const len = end - start
  if (len <= 24) {
    let s = ''
    for (let i = start; i < end; i++) {
      const b = buf[i] as number
      if (b >= 0x80 || b === 0) return decodeUtf8Slow(buf, start, end)
      s += String.fromCharCode(b)
    }
    return s
  }
  for (let i = start; i < end; i++) {
    const b = buf[i] as number
    if (b >= 0x80 || b === 0) return decodeUtf8Slow(buf, start, end)
  }
  return buf.toString('latin1', start, end)
}

function decodeUtf8Slow (buf: Buffer, start: number, end: number): string {
  let i = start
  while (i < end) {
    const b0 = buf[i] as number
    if (b0 < 0x80) {
      if (b0 === 0) throw malformed('a UTF-8 string must not contain U+0000 [MQTT-1.5.4-2]')
      i++
      continue
    }
    let need: number
    let min: number
    let cp: number
    if (b0 >= 0xc2 && b0 <= 0xdf) { need = 1; min = 0x80; cp = b0 & 0x1f } else if (b0 >= 0xe0 && b0 <= 0xef) { need = 2; min = 0x800; cp = b0 & 0x0f } else if (b0 >= 0xf0 && b0 <= 0xf4) { need = 3; min = 0x10000; cp = b0 & 0x07 } else {
      throw malformed('ill-formed UTF-8 in a string [MQTT-1.5.4-1]')
    }
    if (i + need >= end) throw malformed('truncated UTF-8 sequence in a string [MQTT-1.5.4-1]')
    for (let k = 1; k <= need; k++) {
      const b = buf[i + k] as number
      if ((b & 0xc0) !== 0x80) throw malformed('ill-formed UTF-8 in a string [MQTT-1.5.4-1]')
      cp = (cp << 6) | (b & 0x3f)
    }
    if (cp < min || cp > 0x10ffff) throw malformed('overlong or out-of-range UTF-8 in a string [MQTT-1.5.4-1]')
    if (cp >= 0xd800 && cp <= 0xdfff) throw malformed('a UTF-8 string must not encode surrogates [MQTT-1.5.4-1]')
    i += need + 1
  }
  return buf.toString('utf8', start, end)
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
