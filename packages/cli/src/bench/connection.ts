import type { Duplex } from 'node:stream'
import {
  Decoder, encode, PetrelError, connackReturnCodeName, reasonCodeName,
  type ConnectPacket, type ConnackPacket, type Packet, type PacketOfType, type ProtocolVersion
} from '@petrel/wire'
import { directReaderOf } from '@petrel/client'
import { cancelled, dial, type TlsMaterial } from './transport.js'
import type { Target } from './target.js'

/** Receives the packets decoded from one chunk; the array is reused after the call returns. */
export interface PacketSink {
  onPackets (packets: readonly Packet[]): void
}

/** A failure with a short, countable reason ("connect: ECONNREFUSED", "connack: Not authorized"). */
export class BenchError extends Error {
  override readonly name = 'BenchError'

  /**
   * `cancelled`: the run ended first (Ctrl-C, --duration), which is no fault of the broker;
   * `notAuthorized`: the CONNACK refused the credentials (the exit code says so apart).
   */
  constructor (message: string, readonly cancelled = false, readonly notAuthorized = false) {
    super(message)
  }
}

/** A timeout as people write it ("10 s", "250 ms"): a stable text, so that reasons group. */
export function durationText (ms: number): string {
  return ms >= 1000 && ms % 1000 === 0 ? `${ms / 1000} s` : `${Math.round(ms)} ms`
}

/** A short reason for any error: a socket error code, a wire error code, or the message. */
export function describeError (err: unknown): string {
  if (err instanceof BenchError) return err.message
  if (err instanceof PetrelError) return `${err.code}${err.reasonCode === undefined ? '' : ` (0x${err.reasonCode.toString(16)})`}`
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string') return code
  return err instanceof Error ? err.message : String(err)
}

interface Waiter {
  type: Packet['type']
  resolve: (p: Packet) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout
  signal: AbortSignal | undefined
  onAbort: () => void
}

export interface WaitOptions {
  /** Aborting rejects at once with a cancelled BenchError. */
  signal?: AbortSignal | undefined
  /** The whole budget as the reason should name it (the timeout may be what is left of it). */
  budgetMs?: number
}

const DISCONNECT_TIMEOUT_MS = 1000

/**
 * A minimal MQTT connection over any byte stream: decodes with `Decoder.pushInto` into one reused
 * array and hands each chunk's packets to a sink; writes either at once (`write`, for batches
 * the caller built) or queued and flushed once per tick under cork (`queue`, for small packets).
 * No session state: the publishers and subscribers keep what they need.
 */
export class BenchConnection {
  sink: PacketSink | undefined
  /** Called once if the connection ends without `close()` being asked for. */
  onLost: ((reason: string) => void) | undefined
  /** Set on every write; cleared by the keepalive sweep, which pings idle connections. */
  wrote = false
  /** Why the connection was lost, once it was (undefined while open, or closed by us). */
  lostReason: string | undefined
  private readonly decoder: Decoder
  private readonly packets: Packet[] = []
  private readonly queued: Buffer[] = []
  private flushScheduled = false
  private waiter: Waiter | undefined
  private ended = false

  constructor (readonly socket: Duplex, readonly protocolVersion: ProtocolVersion, readonly clientId: string) {
    this.decoder = new Decoder({ protocolVersion })
    const direct = directReaderOf(socket)
    if (direct !== undefined) direct.attach((chunk) => { this.onData(chunk) })
    else socket.on('data', (chunk: Buffer) => { this.onData(chunk) })
    socket.on('error', (err: Error) => { this.fail(describeError(err)) })
    socket.on('close', () => { this.fail('connection closed by the broker') })
  }

  get open (): boolean {
    return !this.ended
  }

  /** Writes bytes now; `done` runs once the bytes have left (or failed to). Returns false when the caller should wait for 'drain'. */
  write (bytes: Uint8Array, done?: (err?: Error | null) => void): boolean {
    this.wrote = true
    return this.socket.write(bytes, done)
  }

  /** Encodes and queues a packet; queued packets go out together at the end of the tick. */
  send (packet: Packet): void {
    this.queue(encode(packet, this.protocolVersion))
  }

  queue (bytes: Buffer): void {
    this.queued.push(bytes)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      process.nextTick(() => { this.flush() })
    }
  }

  /**
   * Resolves with the next packet of `type` (other packets still go to the sink); rejects on
   * timeout, loss, close() or an abort of `opts.signal`.
   */
  next<T extends Packet['type']> (type: T, timeoutMs: number, opts: WaitOptions = {}): Promise<PacketOfType<T>> {
    return new Promise((resolve, reject) => {
      if (this.ended) {
        reject(new BenchError(`${type}: connection closed`))
        return
      }
      const signal = opts.signal
      if (signal?.aborted === true) {
        reject(new BenchError(`${type}: ${cancelled().message}`, true))
        return
      }
      const timer = setTimeout(() => {
        this.settleWaiter(new BenchError(`${type}: no answer within ${durationText(opts.budgetMs ?? timeoutMs)}`))
      }, timeoutMs)
      const onAbort = (): void => { this.settleWaiter(new BenchError(`${type}: ${cancelled().message}`, true)) }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiter = { type, resolve: resolve as (p: Packet) => void, reject, timer, signal, onAbort }
    })
  }

  /** Ends the wait of next(): resolves with `p`, or rejects with `p` when it is an error. */
  private settleWaiter (p: Packet | Error): void {
    const w = this.waiter
    if (w === undefined) return
    this.waiter = undefined
    clearTimeout(w.timer)
    w.signal?.removeEventListener('abort', w.onAbort)
    if (p instanceof Error) w.reject(p)
    else w.resolve(p)
  }

  /** Sends DISCONNECT and ends the stream; destroys it if the broker has not closed within a second. */
  async close (): Promise<void> {
    if (this.ended) return
    this.ended = true
    this.settleWaiter(new BenchError(`${this.waiter?.type ?? 'packet'}: ${cancelled().message}`, true))
    this.flush()
    const closed = new Promise<void>((resolve) => {
      if (this.socket.destroyed) resolve()
      else this.socket.once('close', () => { resolve() })
    })
    this.socket.end(encode({ type: 'disconnect' }, this.protocolVersion))
    const timer = setTimeout(() => this.socket.destroy(), DISCONNECT_TIMEOUT_MS)
    await closed
    clearTimeout(timer)
  }

  private flush (): void {
    this.flushScheduled = false
    const n = this.queued.length
    if (n === 0 || this.socket.destroyed) {
      this.queued.length = 0
      return
    }
    this.wrote = true
    if (n === 1) {
      this.socket.write(this.queued[0] as Buffer)
    } else {
      this.socket.cork()
      for (const b of this.queued) this.socket.write(b)
      this.socket.uncork()
    }
    this.queued.length = 0
  }

  private onData (chunk: Buffer): void {
    const out = this.packets
    let failure: unknown
    try {
      this.decoder.pushInto(chunk, out)
    } catch (err) {
      failure = err // the packets before the bad bytes are still delivered
    }
    if (this.waiter !== undefined) this.offerToWaiter(out)
    if (out.length > 0) {
      if (this.sink !== undefined) this.sink.onPackets(out)
      else this.unexpected(out)
      out.length = 0
    }
    if (failure !== undefined) this.fail(`decode: ${describeError(failure)}`)
  }

  private offerToWaiter (out: Packet[]): void {
    for (let i = 0; i < out.length; i++) {
      const w = this.waiter
      const p = out[i] as Packet
      if (w === undefined) return
      if (p.type === w.type) {
        out.splice(i, 1)
        this.settleWaiter(p)
        return
      }
      if (p.type === 'disconnect') {
        this.settleWaiter(new BenchError(`disconnect: ${reasonCodeName(p.reasonCode ?? 0, 'disconnect')}`))
        return
      }
    }
  }

  // Packets before a sink is attached: only a DISCONNECT matters.
  private unexpected (packets: readonly Packet[]): void {
    for (const p of packets) {
      if (p.type === 'disconnect') this.disconnected(p.reasonCode)
    }
  }

  /** The broker sent DISCONNECT (5.0): the connection is lost, with its reason. */
  disconnected (reasonCode: number | undefined): void {
    this.fail(`disconnect: ${reasonCodeName(reasonCode ?? 0, 'disconnect')}`)
  }

  /** Ends the connection as lost, counting `reason`. */
  fail (reason: string): void {
    if (this.ended) return
    this.ended = true
    this.lostReason = reason
    this.settleWaiter(new BenchError(`${this.waiter?.type ?? 'packet'}: ${reason}`))
    this.socket.destroy()
    this.onLost?.(reason)
  }
}

/** The refusal reason of a CONNACK, or undefined when the connection was accepted. */
export function connackRefusal (connack: ConnackPacket, protocolVersion: ProtocolVersion): string | undefined {
  if (connack.reasonCode === 0) return undefined
  return protocolVersion === 5
    ? `connack: ${reasonCodeName(connack.reasonCode, 'connack')} (0x${connack.reasonCode.toString(16)})`
    : `connack: ${connackReturnCodeName(connack.reasonCode)} (${connack.reasonCode})`
}

/** A refusal for the credentials (as @petrel/client's NOT_AUTHORIZED): bad user name or password, not authorized, bad authentication method (5.0). */
export function isAuthRefusal (reasonCode: number, protocolVersion: ProtocolVersion): boolean {
  return protocolVersion === 5 ? reasonCode === 0x86 || reasonCode === 0x87 || reasonCode === 0x8c : reasonCode === 4 || reasonCode === 5
}

/**
 * Dials, sends CONNECT and waits for a successful CONNACK, all within `timeoutMs`; an abort of
 * `signal` ends it at once. Throws a BenchError; on any failure the socket is destroyed, so
 * that nothing of a failed attempt keeps the process alive.
 */
export async function openConnection (target: Target, tls: TlsMaterial, connect: ConnectPacket, timeoutMs: number,
  localAddress?: string, signal?: AbortSignal): Promise<{ conn: BenchConnection, connack: ConnackPacket }> {
  const started = performance.now()
  let socket
  try {
    socket = await dial(target, tls, timeoutMs, localAddress, signal)
  } catch (err) {
    const wasCancelled = (err as { code?: unknown }).code === 'ECANCELED'
    throw new BenchError(`connect: ${wasCancelled ? cancelled().message : describeError(err)}`, wasCancelled)
  }
  const conn = new BenchConnection(socket, connect.protocolVersion, connect.clientId)
  try {
    conn.write(encode(connect, connect.protocolVersion))
    const left = Math.max(1, timeoutMs - (performance.now() - started))
    const connack = await conn.next('connack', left, { signal, budgetMs: timeoutMs })
    const refusal = connackRefusal(connack, connect.protocolVersion)
    if (refusal !== undefined) throw new BenchError(refusal, false, isAuthRefusal(connack.reasonCode, connect.protocolVersion))
    return { conn, connack }
  } catch (err) {
    conn.socket.destroy()
    throw err instanceof BenchError ? err : new BenchError(`connack: ${describeError(err)}`)
  }
}
