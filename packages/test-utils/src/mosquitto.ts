import { spawn, type ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from './free-port.js'
import { findProgram } from './peer.js'

export interface MosquittoOptions {
  /** Extra lines for mosquitto.conf, placed right after the default listener, so per-listener settings apply to it. */
  extraConfig?: string
  /** Also open a websockets listener on 127.0.0.1 (`wsPort`, path '/'). */
  websockets?: boolean
  /** Also open a TLS listener on 127.0.0.1 (`tlsPort`). */
  tls?: { certFile: string, keyFile: string, caFile: string, requireCertificate?: boolean }
  /** Persist to a temp directory so restart() keeps sessions (saved on shutdown; kill() loses what was not autosaved). */
  persistence?: boolean
  /** Default true. */
  allowAnonymous?: boolean
  /**
   * Leave mosquitto's own defaults for what the harness otherwise tunes (max_queued_messages
   * 100000, max_inflight_messages 100, set_tcp_nodelay true): a stock broker queues at most 1,000
   * QoS 1/2 messages per client (away, or behind), allows 20 in flight and has Nagle's algorithm on.
   */
  stock?: boolean
  passwordFile?: string
}

export interface Mosquitto {
  host: '127.0.0.1'
  port: number
  /** mqtt://127.0.0.1:port */
  url: string
  wsPort?: number
  /** ws://127.0.0.1:wsPort */
  wsUrl?: string
  tlsPort?: number
  /** mqtts://127.0.0.1:tlsPort */
  tlsUrl?: string
  /** SIGTERM, wait for exit (SIGKILL after 3 s), remove the temp directory. Idempotent. */
  stop(): Promise<void>
  /** Stop and start again on the same ports and persistence directory (also after kill()). */
  restart(): Promise<void>
  /** SIGKILL, as in a crash; the temp directory stays for restart(). */
  kill(): Promise<void>
  /** Collected stdout and stderr of every run, for assertion messages. */
  logs(): string
}

const HOST = '127.0.0.1'
const READY_TIMEOUT_MS = 5000
const STOP_GRACE_MS = 3000
const START_ATTEMPTS = 3
const MAX_LOG_CHARS = 1 << 20

// Never leave a broker or a temp directory behind, whatever way the test process ends.
const liveChildren = new Set<ChildProcess>()
const liveDirs = new Set<string>()
let reaperInstalled = false

function reap (): void {
  for (const child of liveChildren) child.kill('SIGKILL')
  for (const dir of liveDirs) {
    try { rmSync(dir, { recursive: true, force: true }) } catch {}
  }
}

function installReaper (): void {
  if (reaperInstalled) return
  reaperInstalled = true
  process.on('exit', reap)
  // A signal's default action ends the process without 'exit' (a test runner stopping a file
  // with SIGTERM, Ctrl-C): reap, then die of the same signal unless someone else handles it.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      reap()
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
    })
  }
}

interface Ports { port: number, wsPort?: number, tlsPort?: number }

function buildConfig (opts: MosquittoOptions, ports: Ports, dir: string): string {
  const lines = [
    'per_listener_settings false',
    `allow_anonymous ${opts.allowAnonymous ?? true}`
  ]
  // Started as root, mosquitto 2 drops to user "mosquitto", which cannot read our 0700 temp directory.
  if (process.getuid?.() === 0) lines.push(`user ${userInfo().username}`)
  if (opts.passwordFile !== undefined) lines.push(`password_file ${opts.passwordFile}`)
  lines.push(
    'log_dest stdout',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information'
  )
  if (opts.stock !== true) lines.push('max_queued_messages 100000', 'max_inflight_messages 100', 'set_tcp_nodelay true')
  if (opts.persistence === true) {
    lines.push('persistence true', `persistence_location ${join(dir, 'data')}/`, 'autosave_interval 1800')
  } else {
    lines.push('persistence false')
  }
  lines.push(`listener ${ports.port} ${HOST}`)
  if (opts.extraConfig !== undefined) lines.push(opts.extraConfig)
  if (ports.wsPort !== undefined) lines.push(`listener ${ports.wsPort} ${HOST}`, 'protocol websockets')
  if (ports.tlsPort !== undefined && opts.tls !== undefined) {
    lines.push(
      `listener ${ports.tlsPort} ${HOST}`,
      `cafile ${opts.tls.caFile}`,
      `certfile ${opts.tls.certFile}`,
      `keyfile ${opts.tls.keyFile}`,
      `require_certificate ${opts.tls.requireCertificate ?? false}`
    )
  }
  return lines.join('\n') + '\n'
}

async function canConnect (port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const socket = connect({ host: HOST, port })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { socket.destroy(); resolve(false) })
  })
}

class MosquittoProcess implements Mosquitto {
  readonly host = HOST
  port = 0
  url = ''
  wsPort?: number
  wsUrl?: string
  tlsPort?: number
  tlsUrl?: string

  readonly #program: string
  readonly #opts: MosquittoOptions
  readonly #dir: string
  #child: ChildProcess | undefined
  #exited: Promise<void> = Promise.resolve()
  #log = ''
  #removed = false

  constructor (program: string, opts: MosquittoOptions, dir: string, ports: Ports) {
    this.#program = program
    this.#opts = opts
    this.#dir = dir
    this.#setPorts(ports)
  }

  #setPorts (ports: Ports): void {
    this.port = ports.port
    this.url = `mqtt://${HOST}:${ports.port}`
    if (ports.wsPort !== undefined) {
      this.wsPort = ports.wsPort
      this.wsUrl = `ws://${HOST}:${ports.wsPort}`
    }
    if (ports.tlsPort !== undefined) {
      this.tlsPort = ports.tlsPort
      this.tlsUrl = `mqtts://${HOST}:${ports.tlsPort}`
    }
  }

  #ports (): Ports {
    const ports: Ports = { port: this.port }
    if (this.wsPort !== undefined) ports.wsPort = this.wsPort
    if (this.tlsPort !== undefined) ports.tlsPort = this.tlsPort
    return ports
  }

  #append (text: string): void {
    this.#log += text
    if (this.#log.length > MAX_LOG_CHARS) this.#log = this.#log.slice(-MAX_LOG_CHARS)
  }

  logs (): string {
    return this.#log
  }

  /** Starts mosquitto on `ports`; resolves when every listener accepts TCP, rejects if it exits first. */
  async launch (ports: Ports): Promise<void> {
    this.#setPorts(ports)
    const confFile = join(this.#dir, 'mosquitto.conf')
    if (this.#opts.persistence === true) await mkdir(join(this.#dir, 'data'), { recursive: true })
    await writeFile(confFile, buildConfig(this.#opts, ports, this.#dir))
    this.#append(`--- starting mosquitto on ${JSON.stringify(ports)}\n`)
    const child = spawn(this.#program, ['-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'] })
    liveChildren.add(child)
    this.#child = child
    child.stdout?.setEncoding('utf8').on('data', (text: string) => { this.#append(text) })
    child.stderr?.setEncoding('utf8').on('data', (text: string) => { this.#append(text) })
    let exitCode: number | string | null | undefined
    this.#exited = new Promise<void>((resolve) => {
      child.once('error', (err) => {
        this.#append(`spawn error: ${err.message}\n`)
        exitCode = 'spawn error'
        liveChildren.delete(child)
        resolve()
      })
      child.once('close', (code, signal) => {
        exitCode = code ?? signal
        liveChildren.delete(child)
        if (this.#child === child) this.#child = undefined
        resolve()
      })
    })
    const all = [ports.port, ports.wsPort, ports.tlsPort].filter((p): p is number => p !== undefined)
    const deadline = Date.now() + READY_TIMEOUT_MS
    const pending = new Set(all)
    while (pending.size > 0) {
      if (exitCode !== undefined) throw new Error(`mosquitto exited (${String(exitCode)}) before it was ready:\n${this.#log}`)
      for (const port of [...pending]) if (await canConnect(port)) pending.delete(port)
      if (pending.size === 0) break
      if (Date.now() > deadline) {
        await this.#terminate('SIGKILL')
        throw new Error(`mosquitto not accepting on ${[...pending].join(', ')} after ${READY_TIMEOUT_MS} ms:\n${this.#log}`)
      }
      await sleep(25)
    }
    if (exitCode !== undefined) throw new Error(`mosquitto exited (${String(exitCode)}) right after start:\n${this.#log}`)
  }

  async #terminate (signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const child = this.#child
    if (child === undefined) return
    child.kill(signal)
    if (signal === 'SIGTERM') {
      const timer = setTimeout(() => { child.kill('SIGKILL') }, STOP_GRACE_MS)
      await this.#exited
      clearTimeout(timer)
    } else {
      await this.#exited
    }
  }

  async stop (): Promise<void> {
    await this.#terminate('SIGTERM')
    await this.removeDir()
  }

  async kill (): Promise<void> {
    await this.#terminate('SIGKILL')
  }

  async restart (): Promise<void> {
    if (this.#removed) throw new Error('mosquitto: restart() after stop()')
    await this.#terminate('SIGTERM')
    // Same ports: mosquitto sets SO_REUSEADDR, but another process may have raced us to a port; retry briefly.
    let lastError: unknown
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      try {
        await this.launch(this.#ports())
        return
      } catch (err) {
        lastError = err
        this.#append(`--- restart attempt ${attempt + 1} failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}\n`)
        await sleep(200)
      }
    }
    throw lastError
  }

  async removeDir (): Promise<void> {
    if (this.#removed) return
    this.#removed = true
    liveDirs.delete(this.#dir)
    await rm(this.#dir, { recursive: true, force: true })
  }

  addressInUse (): boolean {
    return /address already in use/i.test(this.#log)
  }
}

async function pickPorts (opts: MosquittoOptions): Promise<Ports> {
  const ports: Ports = { port: await freePort(HOST) }
  if (opts.websockets === true) ports.wsPort = await freePort(HOST)
  if (opts.tls !== undefined) ports.tlsPort = await freePort(HOST)
  return ports
}

/** Starts a real mosquitto on ephemeral 127.0.0.1 ports with a generated config in a fresh temp directory. */
export async function startMosquitto (opts: MosquittoOptions = {}): Promise<Mosquitto> {
  const program = findProgram('mosquitto')
  if (program === undefined) throw new Error('mosquitto not installed: apt-get install -y mosquitto mosquitto-clients')
  installReaper()
  let lastError: unknown
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    const dir = await mkdtemp(join(tmpdir(), 'petrel-mosquitto-'))
    liveDirs.add(dir)
    const ports = await pickPorts(opts)
    const broker = new MosquittoProcess(program, opts, dir, ports)
    try {
      await broker.launch(ports)
      return broker
    } catch (err) {
      lastError = err
      const retry = broker.addressInUse()
      await broker.stop()
      if (!retry) throw err
    }
  }
  throw lastError
}
