import { setMaxListeners } from 'node:events'
import { encode, type ConnackPacket, type ConnectPacket } from '@petrel/wire'
import { BenchConnection, BenchError, describeError, openConnection } from './connection.js'
import type { BenchOptions } from './options.js'
import { BenchStats } from './stats.js'
import { loadTlsMaterial, type TlsMaterial } from './transport.js'

const CONNECT_TIMEOUT_MS = 10_000
const PINGREQ = encode({ type: 'pingreq' })

/**
 * What every mode shares: the options, the counters, the open connections, a keepalive sweep,
 * and the stop flag (set by --duration, a count reached, Ctrl-C, or the last connection lost).
 */
export class RunContext {
  readonly stats = new BenchStats()
  readonly connections = new Set<BenchConnection>()
  readonly tls: TlsMaterial
  stopping = false
  /** Set by the user (Ctrl-C, SIGTERM), not by --duration or a count: the drain is cut short too. */
  interrupted = false
  /** Set when the run stopped because every connection it had was lost. */
  allLost = false
  /** Publishers and subscribers that got going, and those of them lost: pubsub fails when one side is all gone. */
  readonly publishers = { started: 0, lost: 0 }
  readonly subscribers = { started: 0, lost: 0 }
  /** Why the run failed, beyond what the counters say (a failed run: exit code 2, 3 or 4). */
  readonly failures: string[] = []
  private readonly stopWaiters: (() => void)[] = []
  private readonly interruptWaiters: (() => void)[] = []
  /** Aborted by stop(): handshakes and SUBSCRIBEs still waiting end at once. */
  private readonly abort = new AbortController()
  private keepAliveTimer: NodeJS.Timeout | undefined
  /** Seconds between the keepalive sweeps' pings (0: none), the smallest keep alive in use. */
  private keepAlive = 0
  private launched = false

  constructor (readonly options: BenchOptions) {
    this.tls = loadTlsMaterial(options)
    // Every handshake in flight listens on the one signal (and stops listening once settled).
    setMaxListeners(0, this.abort.signal)
    this.useKeepAlive(options.keepAlive)
  }

  /** Aborted once the run stops. */
  get signal (): AbortSignal {
    return this.abort.signal
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
      const opened = await openConnection(o.target, this.tls, packet, CONNECT_TIMEOUT_MS, local, this.abort.signal)
      const now = performance.now()
      s.connectTime.record((now - started) * 1000)
      s.lastConnectedAt = now
      s.connected++
      const conn = opened.conn
      // Sent away in the CONNACK's own read (a DISCONNECT right behind it), before anyone listened
      // for the loss: established, and lost at once.
      if (!conn.open) {
        s.lost++
        s.error(conn.lostReason ?? 'connection closed by the broker')
        this.checkLeft()
        return undefined
      }
      this.connections.add(conn)
      conn.onLost = (reason) => {
        this.connections.delete(conn)
        s.lost++
        s.error(reason)
        this.checkLeft()
      }
      if (this.stopping) {
        await this.closeOne(conn)
        return undefined
      }
      // [MQTT-3.2.2-21] the client uses the Server Keep Alive instead of the one it sent.
      const serverKeepAlive = opened.connack.properties?.serverKeepAlive
      if (serverKeepAlive !== undefined) this.useKeepAlive(serverKeepAlive)
      return opened
    } catch (err) {
      // A handshake the end of the run cut short is no failure of the broker's.
      if (err instanceof BenchError && err.cancelled) s.connectCancelled++
      else {
        s.connectFailed++
        if (err instanceof BenchError && err.notAuthorized) s.connectNotAuthorized++
        s.error(describeError(err))
      }
      return undefined
    }
  }

  /** Sets the stop flag once, ends handshakes in progress, and wakes everything waiting on it. */
  stop (): void {
    if (this.stopping) return
    this.stopping = true
    this.abort.abort()
    for (const w of this.stopWaiters.splice(0)) w()
  }

  /** The user asked to stop: stops the run, and ends the drain (the wait for acks and in-flight messages). */
  interrupt (): void {
    if (this.interrupted) return
    this.interrupted = true
    this.stop()
    for (const w of this.interruptWaiters.splice(0)) w()
  }

  /** Resolves after `ms`, or at once when the user interrupts the run: the drain's wait. */
  drainTime (ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.interrupted) {
        resolve()
        return
      }
      const done = (): void => {
        clearTimeout(timer)
        resolve()
      }
      const timer = setTimeout(() => {
        this.interruptWaiters.splice(this.interruptWaiters.indexOf(done), 1)
        resolve()
      }, ms)
      // Raced against the acks, which usually win: left holding the process, it would keep a
      // finished run (bench pub -L 1) alive for --drain-timeout after its summary. The
      // connections the drain waits on hold the process while there is anything to wait for.
      timer.unref()
      this.interruptWaiters.push(done)
    })
  }

  /** Stops the run as failed: `reason` is printed with the summary and the exit code says it failed. */
  fail (reason: string): void {
    if (!this.failures.includes(reason)) this.failures.push(reason)
    this.stop()
  }

  /**
   * Called by a mode once it has started all its clients: from then on, the run stops as soon
   * as no connection is left (nothing would ever arrive or be sent again).
   */
  allStarted (): void {
    this.launched = true
    this.checkLeft()
  }

  private checkLeft (): void {
    if (!this.launched || this.stopping || this.connections.size > 0) return
    if (this.stats.lost > 0) this.allLost = true
    this.stop()
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
    this.checkLeft()
  }

  /** Disconnects every connection and stops the keepalive sweep. */
  async closeAll (): Promise<void> {
    if (this.keepAliveTimer !== undefined) clearInterval(this.keepAliveTimer)
    await Promise.all([...this.connections].map(async (c) => { await this.closeOne(c) }))
  }

  /**
   * Keeps every connection within `seconds` of keep alive (the smallest asked for wins): a sweep
   * every half interval. The timer does not hold the process: connections do.
   */
  private useKeepAlive (seconds: number): void {
    if (seconds === 0 || (this.keepAlive !== 0 && seconds >= this.keepAlive)) return
    this.keepAlive = seconds
    if (this.keepAliveTimer !== undefined) clearInterval(this.keepAliveTimer)
    // MQTT keepalive counts only what the client sends [MQTT-3.1.2-23]: ping any connection
    // that wrote nothing during the last half interval.
    this.keepAliveTimer = setInterval(() => { this.sweep() }, seconds * 500)
    this.keepAliveTimer.unref()
  }

  private sweep (): void {
    for (const c of this.connections) {
      if (!c.wrote && c.open) c.write(PINGREQ)
      c.wrote = false
    }
  }
}
