// Starting and stopping the brokers under test, each a fresh process per run on a free
// 127.0.0.1 port, through a shell that raises the file-descriptor limit as far as it may go.
import { spawn, execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'

export const ROOT = fileURLToPath(new URL('../../../../', import.meta.url))
export const PETREL_BIN = join(ROOT, 'packages/cli/dist/src/bin/petrel.js')
/** Node flags the root `npm start` script gives the broker. */
export const PETREL_NODE_FLAGS = '--max-semi-space-size=4'
const AEDES_SERVER = fileURLToPath(new URL('../aedes-server.mjs', import.meta.url))
const NODE_RELAY = fileURLToPath(new URL('../node-relay.mjs', import.meta.url))
const READY_TIMEOUT_MS = 8000
const STOP_GRACE_MS = 3000

export async function freePort () {
  const server = createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

export function findProgram (name) {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin']) {
    if (dir !== '' && existsSync(join(dir, name))) return join(dir, name)
  }
  return undefined
}

/**
 * The mosquitto configuration of every run. Beyond the listener: no Nagle (as the Node brokers
 * here), and queues deep enough that a QoS 1 subscriber is not dropped from after 1,000 queued
 * messages (mosquitto's default) — see the notes in the results.
 */
export function mosquittoConfig (port, defaults) {
  const lines = [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'log_dest none']
  if (!defaults) lines.push('set_tcp_nodelay true', 'max_queued_messages 100000', 'max_inflight_messages 100')
  if (process.getuid?.() === 0) lines.push('user root')
  return lines.join('\n') + '\n'
}

/**
 * Node flags of the Petrel broker (and the relay), as `npm start` gives them: a 4 MiB young
 * generation (V8's default grows to 16 MiB x 3 and stays resident; measured here, 4 MiB costs no
 * throughput and saves ~2 KB per idle connection). PETREL_BENCH_NODE_FLAGS overrides, '' for
 * Node's defaults.
 */
export function nodeFlags () {
  return (process.env.PETREL_BENCH_NODE_FLAGS ?? PETREL_NODE_FLAGS).split(' ').filter((f) => f !== '')
}

/** MQTT 3.1.1 CONNECT/CONNACK on a fresh socket: is the broker serving? */
async function answers (port) {
  return await new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port })
    const done = (ok) => { s.destroy(); resolve(ok) }
    s.setTimeout(1000, () => done(false))
    s.once('error', () => done(false))
    s.once('connect', () => s.write(Buffer.from('100f00044d5154540402003c000370726f', 'hex')))
    s.once('data', (d) => done(d[0] === 0x20 && d[3] === 0))
  })
}

/** The brokers this suite knows: how to start each, and its version. */
export const brokerKinds = {
  mosquitto: {
    label: 'mosquitto',
    available () {
      return findProgram('mosquitto') === undefined ? 'mosquitto not installed (apt-get install -y mosquitto)' : undefined
    },
    version () {
      try {
        return execFileSync(findProgram('mosquitto'), ['-h'], { encoding: 'utf8' }).split('\n')[0].trim()
      } catch (err) {
        // `mosquitto -h` exits 3 after printing its usage
        return String(err.stdout ?? '').split('\n')[0].trim() || 'mosquitto (version unknown)'
      }
    },
    command (port, opts) {
      const dir = mkdtempSync(join(tmpdir(), 'petrel-bench-mosquitto-'))
      writeFileSync(join(dir, 'mosquitto.conf'), mosquittoConfig(port, opts.mosquittoDefaults))
      return { argv: [findProgram('mosquitto'), '-c', join(dir, 'mosquitto.conf')], cleanup: () => rmSync(dir, { recursive: true, force: true }) }
    }
  },
  aedes: {
    label: 'Aedes',
    available () { return undefined },
    version () {
      const pkg = JSON.parse(readFileSync(join(ROOT, 'node_modules/aedes/package.json'), 'utf8'))
      return `aedes ${pkg.version} (node ${process.version}, in-memory persistence)`
    },
    command (port) {
      return { argv: [process.execPath, AEDES_SERVER, String(port)], cleanup: () => {} }
    }
  },
  petrel: {
    label: 'Petrel',
    available () {
      return existsSync(PETREL_BIN) ? undefined : `${PETREL_BIN} missing: run npm run build`
    },
    version () {
      const pkg = JSON.parse(readFileSync(join(ROOT, 'packages/broker/package.json'), 'utf8'))
      let commit = ''
      try {
        commit = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
        const dirty = execFileSync('git', ['-C', ROOT, 'status', '--porcelain', 'packages'], { encoding: 'utf8' }).trim() !== ''
        commit = `, git ${commit}${dirty ? ' + uncommitted changes' : ''}`
      } catch {}
      return `@petrel/broker ${pkg.version} (node ${process.version}${commit})`
    },
    command (port) {
      return { argv: [process.execPath, ...nodeFlags(), PETREL_BIN, 'broker', '--port', String(port)], cleanup: () => {} }
    }
  }
}

/**
 * Not a broker: a reference for the latency scenario (node-relay.mjs, QoS 0 only). Started like
 * the brokers, with the flags Petrel's broker gets, so that the two differ only in what they do
 * per message.
 */
export const nodeRelay = {
  label: 'Node relay (reference)',
  available () { return undefined },
  version () { return `node-relay.mjs (node ${process.version}): forwards each PUBLISH as read, no MQTT state` },
  command (port) {
    return { argv: [process.execPath, ...nodeFlags(), NODE_RELAY, String(port)], cleanup: () => {} }
  }
}

/**
 * Starts a broker of `kind` on a free port and waits until it answers CONNECT. Resolves to
 * { kind, port, pid, stop(), log() }; rejects (after stopping it) when it does not come up.
 */
export async function startBroker (kind, opts = {}) {
  const k = kind === 'node-relay' ? nodeRelay : brokerKinds[kind]
  const port = await freePort()
  const { argv, cleanup } = k.command(port, opts)
  // `exec` keeps the broker's pid the child's pid, so /proc/PID is the broker itself.
  const quoted = argv.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ')
  const child = spawn('/bin/sh', ['-c', `ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec ${quoted}`], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe']
  })
  let log = ''
  const keep = (d) => { if (log.length < 65536) log += d }
  child.stdout.setEncoding('utf8').on('data', keep)
  child.stderr.setEncoding('utf8').on('data', keep)
  let exited = false
  const exit = new Promise((resolve) => child.once('exit', (code, signal) => { exited = true; resolve({ code, signal }) }))
  const broker = {
    kind,
    port,
    pid: child.pid,
    log: () => log,
    async stop () {
      if (!exited) {
        child.kill('SIGTERM')
        const t = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS)
        await exit
        clearTimeout(t)
      }
      cleanup()
    }
  }
  const deadline = performance.now() + READY_TIMEOUT_MS
  while (performance.now() < deadline) {
    if (exited) break
    if (await answers(port)) return broker
    await sleep(100)
  }
  await broker.stop()
  const why = exited ? `exited: ${JSON.stringify(await exit)}` : `no CONNACK within ${READY_TIMEOUT_MS} ms`
  throw new Error(`${k.label} did not start (${why}) ${log.trim().split('\n').slice(-3).join(' | ')}`)
}
