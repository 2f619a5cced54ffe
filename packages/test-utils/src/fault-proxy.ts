import { createServer, connect, type Server, type Socket } from 'node:net'

export interface FaultProxyOptions {
  target: { host: string, port: number }
  /** One-way latency added in both directions (default 0). */
  delayMs?: number
}

/** What a pipe needs to know about the proxy's current faults. */
interface Faults {
  readonly delayMs: number
  readonly stalled: boolean
  readonly blackholed: boolean
}

interface Held { chunk: Buffer, due: number }

/**
 * One direction of one connection: reads `from`, holds each chunk for the current delay (a FIFO, so order is kept),
 * then writes it to `to`. Stalled: holds everything and pauses `from`, so TCP backpressure builds.
 */
class Pipe {
  readonly #from: Socket
  readonly #to: Socket
  readonly #faults: Faults
  readonly #queue: Held[] = []
  #timer: NodeJS.Timeout | undefined
  #ended = false
  #waitingDrain = false

  constructor (from: Socket, to: Socket, faults: Faults, onHidden: () => void) {
    this.#from = from
    this.#to = to
    this.#faults = faults
    from.on('data', (chunk: Buffer) => {
      if (this.#faults.blackholed) return
      this.#queue.push({ chunk, due: Date.now() + this.#faults.delayMs })
      this.pump()
    })
    from.on('end', () => {
      // A dead link carries no FIN either.
      if (this.#faults.blackholed) {
        onHidden()
        return
      }
      this.#ended = true
      this.pump()
    })
    if (faults.stalled) from.pause()
  }

  pump (): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    if (this.#faults.stalled) {
      this.#from.pause()
      return
    }
    if (this.#to.destroyed) return
    while (this.#queue.length > 0) {
      const head = this.#queue[0]!
      const wait = head.due - Date.now()
      if (wait > 0) {
        this.#timer = setTimeout(() => { this.pump() }, wait)
        return
      }
      this.#queue.shift()
      if (this.#faults.blackholed) continue
      if (!this.#to.write(head.chunk) && !this.#waitingDrain) {
        this.#waitingDrain = true
        this.#from.pause()
        this.#to.once('drain', () => {
          this.#waitingDrain = false
          if (!this.#faults.stalled) this.#from.resume()
        })
      }
    }
    if (this.#ended && !this.#to.writableEnded) this.#to.end()
    if (!this.#waitingDrain) this.#from.resume()
  }

  dispose (): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    this.#queue.length = 0
  }
}

class Connection {
  readonly client: Socket
  readonly upstream: Socket
  readonly #pipes: Pipe[]
  /** A FIN or close was swallowed while blackholed. */
  #hidden = false

  constructor (client: Socket, upstream: Socket, faults: Faults, onGone: (c: Connection) => void) {
    this.client = client
    this.upstream = upstream
    const hide = (): void => { this.#hidden = true }
    this.#pipes = [new Pipe(client, upstream, faults, hide), new Pipe(upstream, client, faults, hide)]
    const closed = (other: Socket): void => {
      // Blackholed, the far side learns nothing: it must find out by itself (keepalive), or by cut()/close().
      if (faults.blackholed) this.#hidden = true
      else other.destroy()
      if (client.destroyed && upstream.destroyed) {
        for (const pipe of this.#pipes) pipe.dispose()
        onGone(this)
      }
    }
    client.on('close', () => { closed(upstream) })
    upstream.on('close', () => { closed(client) })
    client.on('error', () => {})
    upstream.on('error', () => {})
  }

  pump (): void {
    for (const pipe of this.#pipes) pipe.pump()
  }

  /** Once the blackhole lifts, a connection whose FIN or close it swallowed is closed on both sides. */
  reapOrphan (): void {
    if (this.#hidden) this.destroy()
  }

  destroy (reset = false): void {
    for (const socket of [this.client, this.upstream]) {
      if (reset && !socket.destroyed) socket.resetAndDestroy()
      else socket.destroy()
    }
  }
}

/**
 * A TCP man-in-the-middle on 127.0.0.1 for fault injection: latency, cuts, stalls, blackholes, refused connections.
 * Point a client at `url`; the proxy opens one connection to the target per client connection.
 */
export class FaultProxy implements Faults {
  readonly port: number
  readonly url: string
  /** One-way latency added in both directions; changes apply to bytes received from now on. */
  delayMs: number
  #stalled = false
  #blackholed = false
  #refusing = false
  #accepted = 0
  readonly #server: Server
  readonly #target: { host: string, port: number }
  readonly #open = new Set<Connection>()

  private constructor (server: Server, port: number, opts: FaultProxyOptions) {
    this.#server = server
    this.port = port
    this.url = `mqtt://127.0.0.1:${port}`
    this.#target = { host: opts.target.host, port: opts.target.port }
    this.delayMs = opts.delayMs ?? 0
  }

  /** Listens on an ephemeral port of 127.0.0.1. */
  static async start (opts: FaultProxyOptions): Promise<FaultProxy> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true })
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject)
        const address = server.address()
        if (address === null || typeof address === 'string') reject(new Error('FaultProxy: listener has no TCP address'))
        else resolve(address.port)
      })
    })
    const proxy = new FaultProxy(server, port, opts)
    server.on('connection', (socket) => { proxy.#accept(socket) })
    return proxy
  }

  get stalled (): boolean { return this.#stalled }
  get blackholed (): boolean { return this.#blackholed }

  /** Client connections currently open. */
  get connections (): number {
    let n = 0
    for (const c of this.#open) if (!c.client.destroyed) n++
    return n
  }

  /** Connections accepted so far, refused ones included. */
  get accepted (): number {
    return this.#accepted
  }

  #accept (client: Socket): void {
    this.#accepted++
    if (this.#refusing) {
      client.on('error', () => {})
      client.destroy()
      return
    }
    client.setNoDelay(true)
    const upstream = connect({ host: this.#target.host, port: this.#target.port, allowHalfOpen: true, noDelay: true })
    const connection = new Connection(client, upstream, this, (c) => { this.#open.delete(c) })
    this.#open.add(connection)
    if (!this.#stalled) client.resume()
  }

  /** Destroys every open connection, both sides, now. `reset` sends a TCP RST instead of a FIN. */
  cut (opts: { reset?: boolean } = {}): void {
    for (const c of this.#open) c.destroy(opts.reset ?? false)
  }

  /** Stops forwarding in both directions; sockets stay open, bytes are held and reading pauses. */
  stall (): void {
    this.#stalled = true
    for (const c of this.#open) c.pump()
  }

  /** Undoes stall(): flushes the held bytes in order and forwards again. */
  resume (): void {
    this.#stalled = false
    for (const c of this.#open) c.pump()
  }

  /** While on, silently drops every byte (and FIN/close) in both directions; sockets stay open. */
  blackhole (on: boolean): void {
    this.#blackholed = on
    if (!on) for (const c of this.#open) c.reapOrphan()
  }

  /** While on, new connections are accepted and immediately destroyed. */
  refuse (on: boolean): void {
    this.#refusing = on
  }

  /** Cuts everything and closes the listener. */
  async close (): Promise<void> {
    this.#refusing = true
    this.cut()
    await new Promise<void>((resolve) => { this.#server.close(() => { resolve() }) })
  }
}
