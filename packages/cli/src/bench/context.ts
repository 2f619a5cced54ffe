import { encode, type ConnackPacket, type ConnectPacket } from '@petrel/wire'
import { BenchConnection, describeError, openConnection } from './connection.js'
import type { BenchOptions } from './options.js'
import { BenchStats } from './stats.js'
import { loadTlsMaterial, type TlsMaterial } from './transport.js'

const CONNECT_TIMEOUT_MS = 10_000
const PINGREQ = encode({ type: 'pingreq' })

/**
 * What every mode shares: the options, the counters, the open connections, a keepalive sweep,
 * and the stop flag (set by --duration, a count reached, or Ctrl-C).
 */
export class RunContext {
  readonly stats = new BenchStats()
  readonly connections = new Set<BenchConnection>()
  readonly tls: TlsMaterial
  stopping = false
  private readonly stopWaiters: (() => void)[] = []
  private keepAliveTimer: NodeJS.Timeout | undefined

  constructor (readonly options: BenchOptions) {
    this.tls = loadTlsMaterial(options)
    const ka = options.keepAlive
    // MQTT keepalive counts only what the client sends [MQTT-3.1.2-23]: ping any connection
    // that wrote nothing during the last half interval.
    if (ka > 0) {
      this.keepAliveTimer = setInterval(() => { this.sweep() }, ka * 500)
      this.keepAliveTimer.unref()
    }
  }

  clientId (kind: string, index: number): string {
    return `${this.options.clientIdPrefix}${kind}-${index}`
  }

  /**
   * Opens one counted connection; undefined (and an error counted by reason) when it fails.
   * `index` picks the source address among --ifaddr.
   */
  async connect (clientId: string, index = 0): Promise<{ conn: BenchConnection, connack: ConnackPacket } | undefined> {
    const o = this.options
    const packet: ConnectPacket = {
      type: 'connect', protocolVersion: o.protocolVersion, clientId, cleanStart: true, keepAlive: o.keepAlive
    }
    if (o.username !== undefined) packet.username = o.username
    if (o.password !== undefined) packet.password = Buffer.from(o.password)
    // The window is ours to keep; ask the broker for as much room towards us.
    if (o.protocolVersion === 5) packet.properties = { receiveMaximum: 65535 }
    const s = this.stats
    s.connectAttempts++
    const started = performance.now()
    if (s.firstConnectAt === 0) s.firstConnectAt = started
    const local = o.localAddresses.length === 0 ? undefined : o.localAddresses[index % o.localAddresses.length]
    try {
      const opened = await openConnection(o.target, this.tls, packet, CONNECT_TIMEOUT_MS, local)
      const now = performance.now()
      s.connectTime.record((now - started) * 1000)
      s.lastConnectedAt = now
      s.connected++
      const conn = opened.conn
      this.connections.add(conn)
      conn.onLost = (reason) => {
        this.connections.delete(conn)
        s.lost++
        s.error(reason)
      }
      if (this.stopping) {
        await this.closeOne(conn)
        return undefined
      }
      return opened
    } catch (err) {
      s.connectFailed++
      s.error(describeError(err))
      return undefined
    }
  }

  /** Sets the stop flag once and wakes everything waiting on it. */
  stop (): void {
    if (this.stopping) return
    this.stopping = true
    for (const w of this.stopWaiters.splice(0)) w()
  }

  /** Resolves when stop() is called, or after `ms` if given. */
  stopped (ms?: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopping) {
        resolve()
        return
      }
      let timer: NodeJS.Timeout | undefined
      const done = (): void => {
        if (timer !== undefined) clearTimeout(timer)
        resolve()
      }
      if (ms !== undefined) timer = setTimeout(() => { this.stopWaiters.splice(this.stopWaiters.indexOf(done), 1); resolve() }, ms)
      this.stopWaiters.push(done)
    })
  }

  async closeOne (conn: BenchConnection): Promise<void> {
    this.connections.delete(conn)
    conn.onLost = undefined
    await conn.close()
  }

  /** Disconnects every connection and stops the keepalive sweep. */
  async closeAll (): Promise<void> {
    if (this.keepAliveTimer !== undefined) clearInterval(this.keepAliveTimer)
    await Promise.all([...this.connections].map(async (c) => { await this.closeOne(c) }))
  }

  private sweep (): void {
    for (const c of this.connections) {
      if (!c.wrote && c.open) c.write(PINGREQ)
      c.wrote = false
    }
  }
}
