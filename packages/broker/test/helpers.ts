// Test client and harness for the broker suites: raw MQTT packets from @petrel/wire over an
// in-memory duplex pair (broker.handle) or a real TCP socket.
import { connect as netConnect } from 'node:net'
import { Duplex } from 'node:stream'
import {
  Decoder, encode, type ConnackPacket, type ConnectPacket, type Packet, type PacketOfType, type ProtocolVersion
} from '@petrel/wire'
import { createBroker, type Broker, type BrokerOptions } from '@petrel/broker'

/** Two connected in-memory Duplex streams: what one writes, the other reads. */
export function duplexPair (): [Duplex, Duplex] {
  const make = (peer: () => Duplex): Duplex => {
    let ended = false
    const endPeer = (): void => {
      const p = peer()
      if (ended) return
      ended = true
      p.push(null)
    }
    return new Duplex({
      read () {},
      write (chunk: Buffer, _enc, cb) {
        if (!ended) peer().push(Buffer.from(chunk))
        cb()
      },
      final (cb) { endPeer(); cb() },
      destroy (err, cb) { endPeer(); cb(err) }
    })
  }
  const a: Duplex = make(() => b)
  const b: Duplex = make(() => a)
  return [a, b]
}

/** A scripted MQTT client: send packets, await the next ones. */
export class RawClient {
  readonly decoder: Decoder
  private readonly queue: Packet[] = []
  private waiter: (() => void) | undefined
  closed = false
  readonly closedPromise: Promise<void>
  error: Error | undefined

  constructor (readonly stream: Duplex, readonly version: ProtocolVersion = 4) {
    this.decoder = new Decoder({ protocolVersion: version })
    stream.on('data', (chunk: Buffer) => {
      try {
        for (const p of this.decoder.push(chunk)) this.queue.push(p)
      } catch (err) {
        this.error = err as Error
      }
      this.waiter?.()
    })
    this.closedPromise = new Promise((resolve) => {
      const done = (): void => {
        this.closed = true
        this.waiter?.()
        resolve()
      }
      stream.on('end', done)
      stream.on('close', done)
      stream.on('error', done)
    })
  }

  send (p: Packet): void {
    this.stream.write(encode(p, this.version))
  }

  sendRaw (bytes: Uint8Array): void {
    this.stream.write(bytes)
  }

  /** The next packet (any type); rejects after `ms` or when the stream closes first. */
  async next (ms = 2000): Promise<Packet> {
    const deadline = Date.now() + ms
    for (;;) {
      const p = this.queue.shift()
      if (p !== undefined) return p
      if (this.closed) throw new Error('connection closed while waiting for a packet')
      if (this.error !== undefined) throw this.error
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no packet within ${ms} ms`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.waiter = () => { clearTimeout(t); this.waiter = undefined; resolve() }
      })
    }
  }

  /** The next packet, which must be of `type`. */
  async expect<T extends Packet['type']> (type: T, ms = 2000): Promise<PacketOfType<T>> {
    const p = await this.next(ms)
    if (p.type !== type) throw new Error(`expected ${type}, got ${JSON.stringify(p, (_k, v: unknown) => v instanceof Uint8Array ? Buffer.from(v).toString() : v)}`)
    return p as PacketOfType<T>
  }

  /** Resolves true if nothing arrives for `ms`. */
  async quiet (ms = 200): Promise<boolean> {
    try {
      await this.next(ms)
      return false
    } catch {
      return this.queue.length === 0
    }
  }

  /** Resolves when the broker has closed the connection (rejects after `ms`). */
  async waitClosed (ms = 3000): Promise<void> {
    const t = setTimeout(() => {}, ms)
    try {
      await Promise.race([this.closedPromise, new Promise((_resolve, reject) => setTimeout(() => { reject(new Error(`not closed within ${ms} ms`)) }, ms).unref())])
    } finally {
      clearTimeout(t)
    }
  }

  async connect (p: Partial<ConnectPacket> = {}): Promise<ConnackPacket> {
    this.send({ type: 'connect', protocolVersion: this.version, clientId: '', cleanStart: true, keepAlive: 60, ...p })
    return await this.expect('connack')
  }

  end (): void {
    this.stream.end()
  }

  destroy (): void {
    this.stream.destroy()
  }
}

/** A raw client over an in-memory pair handed to `broker.handle()`. */
export function memoryClient (broker: Broker, version: ProtocolVersion = 4): RawClient {
  const [a, b] = duplexPair()
  broker.handle(a)
  return new RawClient(b, version)
}

/** A raw client over TCP. */
export async function tcpClient (port: number, version: ProtocolVersion = 4): Promise<RawClient> {
  const s = netConnect({ host: '127.0.0.1', port })
  await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
  return new RawClient(s, version)
}

/** A connected raw client: CONNECT sent and CONNACK 0 received. */
export async function connected (broker: Broker, version: ProtocolVersion, p: Partial<ConnectPacket> = {}): Promise<RawClient> {
  const c = memoryClient(broker, version)
  const ack = await c.connect(p)
  if (ack.reasonCode !== 0) throw new Error(`CONNACK ${ack.reasonCode}`)
  return c
}

/** Runs `fn` with a fresh broker (sys topics off, fast clock) and closes it afterwards. */
export async function withBroker (options: BrokerOptions, fn: (broker: Broker) => Promise<void>): Promise<void> {
  const broker = createBroker({ sysInterval: 0, sweepIntervalMs: 50, ...options })
  try {
    await fn(broker)
  } finally {
    await broker.close()
  }
}

export const versions: ProtocolVersion[] = [4, 5]

export function text (b: Uint8Array): string {
  return Buffer.from(b).toString()
}

export const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
