import { accessSync, constants, statSync } from 'node:fs'
import { delimiter, join } from 'node:path'

/** Directories searched after PATH: Debian installs `mosquitto` in /usr/sbin, which a non-root PATH often lacks. */
const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin']

const found = new Map<string, string | undefined>()

/** Install hints for the system peers the test suites use. */
const INSTALL_HINTS: Readonly<Record<string, string>> = {
  mosquitto: 'apt-get install -y mosquitto mosquitto-clients',
  mosquitto_pub: 'apt-get install -y mosquitto mosquitto-clients',
  mosquitto_sub: 'apt-get install -y mosquitto mosquitto-clients',
  mosquitto_passwd: 'apt-get install -y mosquitto',
  openssl: 'apt-get install -y openssl'
}

function isExecutableFile (path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** The absolute path of a system program (searching PATH, then the sbin directories), or undefined. Cached. */
export function findProgram (name: string): string | undefined {
  if (found.has(name)) return found.get(name)
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d !== '')
  let path: string | undefined
  for (const dir of [...dirs, ...SBIN_DIRS]) {
    const candidate = join(dir, name)
    if (isExecutableFile(candidate)) {
      path = candidate
      break
    }
  }
  found.set(name, path)
  return path
}

/** Whether a system program is on PATH (or in /usr/sbin, /sbin, /usr/local/sbin). */
export function hasProgram (name: string): boolean {
  return findProgram(name) !== undefined
}

/**
 * For a test needing a system peer (mosquitto, mosquitto_pub, mosquitto_sub, openssl): returns true if present.
 * If missing: under CI (`CI=true`) it throws, so CI fails loudly instead of silently skipping;
 * elsewhere it skips the test with an install hint and returns false (the test must then return).
 */
export function requirePeer (t: { skip(msg?: string): void }, name: string): boolean {
  if (hasProgram(name)) return true
  const hint = INSTALL_HINTS[name] ?? `install ${name}`
  const message = `${name} not installed: ${hint}`
  if (process.env.CI === 'true') throw new Error(`required test peer missing under CI: ${message}`)
  t.skip(message)
  return false
}
