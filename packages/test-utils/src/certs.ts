import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { findProgram } from './peer.js'

const run = promisify(execFile)

export interface TestCertificates {
  dir: string
  /** The test CA's certificate (PEM file). */
  caFile: string
  /** Server certificate: CN=localhost, subjectAltName IP:127.0.0.1, DNS:localhost, signed by the CA. */
  certFile: string
  keyFile: string
  /** Client certificate: CN=petrel-test-client, signed by the same CA. */
  clientCertFile: string
  clientKeyFile: string
  /**
   * A server certificate from the same CA for another host (CN and subjectAltName
   * elsewhere.invalid): its chain verifies, its name matches no address a test dials.
   */
  elsewhereCertFile: string
  elsewhereKeyFile: string
  /** A server certificate like `certFile` (same CA, same names) that expired a day ago. */
  expiredCertFile: string
  expiredKeyFile: string
  ca: string
  cert: string
  key: string
  clientCert: string
  clientKey: string
}

const VALIDITY_DAYS = '2'

const OPENSSL_CONFIG = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[elsewhere]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:elsewhere.invalid
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`

let cached: Promise<TestCertificates> | undefined

/**
 * A throwaway CA, a server certificate and a client certificate (EC P-256, valid 2 days), made with the `openssl` CLI
 * in a temp directory that is removed when the process exits. Generated once per process.
 */
export async function makeTestCertificates (): Promise<TestCertificates> {
  cached ??= generate()
  try {
    return await cached
  } catch (err) {
    cached = undefined
    throw err
  }
}

async function generate (): Promise<TestCertificates> {
  const openssl = findProgram('openssl')
  if (openssl === undefined) throw new Error('openssl not installed: apt-get install -y openssl')
  const dir = await mkdtemp(join(tmpdir(), 'petrel-certs-'))
  process.on('exit', () => {
    try { rmSync(dir, { recursive: true, force: true }) } catch {}
  })
  const config = join(dir, 'openssl.cnf')
  await writeFile(config, OPENSSL_CONFIG)
  const f = (name: string): string => join(dir, name)
  const ssl = async (...args: string[]): Promise<void> => {
    try {
      await run(openssl, args, { cwd: dir, env: { ...process.env, OPENSSL_CONF: config } })
    } catch (err) {
      const stderr = (err as { stderr?: unknown }).stderr
      throw new Error(`openssl ${args.join(' ')} failed: ${typeof stderr === 'string' ? stderr : String(err)}`)
    }
  }
  const key = async (file: string): Promise<void> => {
    await ssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f(file))
  }
  const issue = async (name: string, cn: string, extensions: string, days = VALIDITY_DAYS): Promise<void> => {
    await key(`${name}.key`)
    await ssl('req', '-new', '-config', config, '-key', f(`${name}.key`), '-subj', `/CN=${cn}`, '-out', f(`${name}.csr`))
    await ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-set_serial', randomSerial(),
      '-days', days, '-sha256', '-extfile', config, '-extensions', extensions, '-out', f(`${name}.crt`))
  }

  await key('ca.key')
  await ssl('req', '-x509', '-new', '-config', config, '-key', f('ca.key'), '-subj', '/CN=Petrel Test CA',
    '-days', VALIDITY_DAYS, '-sha256', '-extensions', 'ca', '-set_serial', randomSerial(), '-out', f('ca.crt'))
  await issue('server', 'localhost', 'server')
  await issue('client', 'petrel-test-client', 'client')
  await issue('elsewhere', 'elsewhere.invalid', 'elsewhere')
  // -days -1: not after a day before now (OpenSSL 3.0's x509 has no -not_after)
  await issue('expired', 'localhost', 'server', '-1')

  const read = async (name: string): Promise<string> => await readFile(f(name), 'utf8')
  return {
    dir,
    caFile: f('ca.crt'),
    certFile: f('server.crt'),
    keyFile: f('server.key'),
    clientCertFile: f('client.crt'),
    clientKeyFile: f('client.key'),
    elsewhereCertFile: f('elsewhere.crt'),
    elsewhereKeyFile: f('elsewhere.key'),
    expiredCertFile: f('expired.crt'),
    expiredKeyFile: f('expired.key'),
    ca: await read('ca.crt'),
    cert: await read('server.crt'),
    key: await read('server.key'),
    clientCert: await read('client.crt'),
    clientKey: await read('client.key')
  }
}

function randomSerial (): string {
  return '0x' + randomBytes(8).toString('hex')
}
