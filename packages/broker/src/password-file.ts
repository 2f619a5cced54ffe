import { createHash, createHmac, pbkdf2, randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { BrokerErrorCode, brokerError } from './errors.js'

// scrypt cost: N=2^14, r=8, p=1 (the interactive-login parameters; ~16 MiB, tens of ms)
const N = 16384
const R = 8
const P = 1
const KEYLEN = 32

function derive (password: string | Buffer, salt: Buffer, n: number, r: number, p: number, keylen: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keylen, { N: n, r, p, maxmem: 256 * n * r + 1024 * 1024 }, (err, key) => {
      if (err !== null) reject(err)
      else resolve(key)
    })
  })
}

/** One password file line: `user:$scrypt$N$r$p$salt$hash` (salt and hash base64). Never plain text. */
export async function hashPassword (password: string): Promise<string> {
  const salt = randomBytes(16)
  const key = await derive(password, salt, N, R, P, KEYLEN)
  return `$scrypt$${N}$${R}$${P}$${salt.toString('base64')}$${key.toString('base64')}`
}

/**
 * A user's hash: ours (scrypt), or one of mosquitto_passwd's, so that a mosquitto password file
 * works as it is: `$7$iterations$salt$hash` (PBKDF2-HMAC-SHA512, mosquitto 2.0's default) and
 * `$6$salt$hash` (SHA-512 of password then salt, mosquitto 1.6 and `-H sha512`).
 */
type Entry =
  | { kind: 'scrypt', n: number, r: number, p: number, salt: Buffer, hash: Buffer }
  | { kind: 'pbkdf2', iterations: number, salt: Buffer, hash: Buffer }
  | { kind: 'sha512', salt: Buffer, hash: Buffer }

function parseHash (user: string, h: string, where: string): Entry {
  const parts = h.split('$')
  const bad = (what: string): never => { throw brokerError(BrokerErrorCode.PASSWORD_FILE_INVALID, `${where}: ${what} for ${JSON.stringify(user)}`) }
  const b64 = (i: number): Buffer => Buffer.from(parts[i] as string, 'base64')
  // The derived key is as long as the stored hash: an empty one (a truncated line, a hash that is
  // not base64) would match every password. Ours is 32 bytes, mosquitto_passwd's 64.
  const hash = (i: number): Buffer => {
    const b = b64(i)
    return b.length >= 16 ? b : bad(`a hash of ${b.length} bytes (at least 16 expected)`)
  }
  const positive = (v: number): boolean => Number.isInteger(v) && v > 0
  // ['', 'scrypt', N, r, p, salt, hash]
  if (parts.length === 7 && parts[1] === 'scrypt') {
    const [n, r, p] = [Number(parts[2]), Number(parts[3]), Number(parts[4])]
    if (![n, r, p].every(positive)) bad('bad scrypt parameters')
    return { kind: 'scrypt', n, r, p, salt: b64(5), hash: hash(6) }
  }
  // ['', '7', iterations, salt, hash]
  if (parts.length === 5 && parts[1] === '7') {
    const iterations = Number(parts[2])
    if (!positive(iterations)) bad('bad PBKDF2 iteration count')
    return { kind: 'pbkdf2', iterations, salt: b64(3), hash: hash(4) }
  }
  // ['', '6', salt, hash]
  if (parts.length === 4 && parts[1] === '6') return { kind: 'sha512', salt: b64(2), hash: hash(3) }
  return bad('not a $scrypt$ hash (petrel passwd) nor a $7$ / $6$ one (mosquitto_passwd); plain-text passwords are not read')
}

function pbkdf2Sha512 (password: Buffer, salt: Buffer, iterations: number, keylen: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(password, salt, iterations, keylen, 'sha512', (err, key) => {
      if (err !== null) reject(err)
      else resolve(key)
    })
  })
}

async function hashOf (e: Entry, password: Buffer): Promise<Buffer> {
  switch (e.kind) {
    case 'scrypt': return await derive(password, e.salt, e.n, e.r, e.p, e.hash.length)
    case 'pbkdf2': return await pbkdf2Sha512(password, e.salt, e.iterations, e.hash.length)
    case 'sha512': return createHash('sha512').update(password).update(e.salt).digest()
  }
}

/** Users and hashes from a password file (`petrel passwd`, or mosquitto_passwd's). */
export class PasswordFile {
  private readonly users = new Map<string, Entry>()
  /**
   * Per user, a keyed digest of the password last verified: a client reconnecting (or a thousand
   * clients sharing one user) pays the deliberately slow hash once, not per CONNECT (scrypt at
   * N=2^14 is tens of ms of CPU each; 98 ms measured on a 2-core VM). The key lives only in this process.
   */
  private readonly verified = new Map<string, Buffer>()
  /** Checks under way, so that simultaneous CONNECTs with the same credentials share one. */
  private readonly checking = new Map<string, Promise<boolean>>()
  private readonly cacheKey = randomBytes(32)

  constructor (text: string, readonly path = '<password file>') {
    text.split(/\r?\n/).forEach((line, i) => {
      const t = line.trim()
      if (t === '' || t.startsWith('#')) return
      const colon = t.indexOf(':')
      if (colon <= 0) throw brokerError(BrokerErrorCode.PASSWORD_FILE_INVALID, `${path}:${i + 1}: expected user:hash`)
      const user = t.slice(0, colon)
      this.users.set(user, parseHash(user, t.slice(colon + 1), `${path}:${i + 1}`))
    })
  }

  static load (path: string): PasswordFile {
    return new PasswordFile(readFileSync(path, 'utf8'), path)
  }

  get size (): number {
    return this.users.size
  }

  has (user: string): boolean {
    return this.users.has(user)
  }

  /** Whether `password` is the user's; constant-time compare. Unknown users cost the same. */
  async verify (user: string, password: Buffer | undefined): Promise<boolean> {
    const e = this.users.get(user)
    const pw = password ?? Buffer.alloc(0)
    if (e === undefined) {
      await derive(pw, Buffer.alloc(16), N, R, P, KEYLEN)
      return false
    }
    const digest = createHmac('sha256', this.cacheKey).update(user).update('\0').update(pw).digest()
    const known = this.verified.get(user)
    if (known !== undefined && timingSafeEqual(known, digest)) return true
    // A wrong password is never cached, and always pays the full hash.
    const id = digest.toString('base64')
    let check = this.checking.get(id)
    if (check === undefined) {
      check = hashOf(e, pw).then((key) => key.length === e.hash.length && timingSafeEqual(key, e.hash))
      this.checking.set(id, check)
      void check.finally(() => { this.checking.delete(id) }).catch(() => {})
    }
    const ok = await check
    if (ok) this.verified.set(user, digest)
    return ok
  }
}

/** Adds or replaces `user` in password-file text; returns the new text. */
export async function setPassword (text: string, user: string, password: string): Promise<string> {
  if (user.includes(':') || user.length === 0) throw brokerError(BrokerErrorCode.PASSWORD_FILE_INVALID, 'a user name must be non-empty and contain no colon')
  const line = `${user}:${await hashPassword(password)}`
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '')
  const i = lines.findIndex((l) => l.slice(0, l.indexOf(':')) === user)
  if (i === -1) lines.push(line)
  else lines[i] = line
  return lines.join('\n') + '\n'
}

/** Removes `user` from password-file text (as mosquitto_passwd -D); `removed` is false when no line was the user's. */
export function removeUser (text: string, user: string): { text: string, removed: boolean } {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '')
  const kept = lines.filter((l) => l.slice(0, l.indexOf(':')) !== user)
  return { text: kept.length === 0 ? '' : kept.join('\n') + '\n', removed: kept.length < lines.length }
}
