import type { Duplex } from 'node:stream'
import { Decoder, encode, PetrelError, WireErrorCode, type Packet, type ProtocolVersion } from '@petrel/wire'
import { directReaderOf } from './direct-read.js'
import { ClientErrorCode, clientError } from './errors.js'
import { Keepalive, KeepaliveAction } from './keepalive.js'

/** What a {@link Connection} reports to its owner. */
export interface ConnectionHandler {
  onPacket (packet: Packet): void
  /** Once, when the link is gone; `error` is why (undefined: closed by us without error). */
  onClose (error: PetrelError | undefined): void
  /** The write buffer went below its high-water mark after `write` returned false. */
  onDrain (): void
  /** A PINGREQ went out (keepalive). */
  onPing (): void
  /** Whether read moderation may delay inbound bytes now (not while sends wait on acks). */
  readsMayPause (): boolean
}

/** Sees every packet of a connection, decoded: `in` from the broker, `out` to it (debugging). */
export type PacketTrace = (direction: 'in' | 'out', packet: Packet) => void

/** Bytes the connection buffers (ours + the stream's) before `write` reports it is full. */
const HIGH_WATER_MARK = 512 * 1024
/**
 * A batch this big is written at once instead of at the end of the tick: the broker starts on it
 * while we encode the rest (a burst of thousands of publishes would otherwise leave as one
 * half-megabyte write after all of them were encoded).
 */
const FLUSH_BYTES = 64 * 1024
/** Packets up to this size are copied (or written in place) into the batch's slab; bigger ones go out as they are. */
const COPY_MAX = 4096
/** Slab sizes: twice the last batch within these bounds, so a quiet client holds little. */
const SLAB_MIN = 1024
const SLAB_MAX = 64 * 1024
const PINGREQ = Buffer.from([0xc0, 0])
/** setTimeout's longest delay (a longer one fires after 1 ms). */
export const MAX_TIMER_MS = 2 ** 31 - 1
/**
 * Bytes written while the buffer is over its high-water mark (PUBLISHes are held then: these are
 * acks and control packets) past which the broker's bytes are no longer read until it drains. A
 * broker that sends QoS 1/2 without reading our acks would otherwise have us buffer 4 bytes per
 * message without end. A broker within our Receive Maximum cannot cause this many (65,535
 * unacked x PUBREC + PUBCOMP is 512 KiB), so reading stops only for one that never reads.
 */
const READ_HOLD_BYTES = 4 * 1024 * 1024
/**
 * Subscription Identifiers accepted in one PUBLISH: a broker sends one per subscription of ours
 * that matches it, far fewer than this; without a bound a 256 MiB PUBLISH of them decodes into
 * 134 million numbers (1.4 GB of heap, half a minute of decoding).
 */
export const MAX_SUBSCRIPTION_IDENTIFIERS = 65_535

const now = (): number => performance.now()

/**
 * One live transport with MQTT framing: decodes inbound bytes into packets, batches outbound
 * packets into one write per tick, runs the keepalive timer, and closes once. It knows nothing
 * of sessions.
 */
export class Connection {
  readonly stream: Duplex
  bytesIn = 0
  bytesOut = 0
  /** The broker's bytes did not decode: the link was closed for a malformed packet. */
  decodeFailed = false
  private readonly decoder: Decoder
  private readonly handler: ConnectionHandler
  private readonly version: ProtocolVersion
  // The batch: small packets are copied one after another into `slab` (from `slabStart` to
  // `slabPos`), so a turn's packets leave as one buffer without a Buffer per packet or a concat.
  // Bytes below `slabPos` are never written again (a flushed region may still sit in the
  // stream); a full slab is replaced, not reused. `chunks` holds what precedes the open region.
  private chunks: Buffer[] = []
  private slab: Buffer | undefined
  private slabStart = 0
  private slabPos = 0
  private batchBytes = 0
  private lastBatchBytes = 0
  private flushScheduled = false
  private full = false
  /** Bytes written since the buffer went over its high-water mark (see READ_HOLD_BYTES). */
  private overflowBytes = 0
  private readsHeld = false
  private closed = false
  private keepalive: Keepalive | undefined
  private timer: NodeJS.Timeout | undefined
  private readonly scratch: Packet[] = []
  private readonly trace: PacketTrace | undefined
  /** Decodes what we send, for `trace` only. */
  private traceDecoder: Decoder | undefined
  private readonly flushNow = (): void => {
    this.flushScheduled = false
    this.flush()
  }

  /**
   * `maxUserProperties`: User Property pairs accepted in one inbound packet (default: no limit);
   * Subscription Identifiers in one PUBLISH are bounded by MAX_SUBSCRIPTION_IDENTIFIERS (past
   * either, the message is refused: see ClientSession.refuse).
   */
  constructor (stream: Duplex, protocolVersion: ProtocolVersion, maxPacketSize: number, handler: ConnectionHandler, trace?: PacketTrace, maxUserProperties?: number) {
    this.stream = stream
    this.version = protocolVersion
    this.handler = handler
    this.trace = trace
    // A message's payload is delivered as received, whatever its Payload Format Indicator says.
    // A PUBLISH past maxUserProperties or MAX_SUBSCRIPTION_IDENTIFIERS is marked rather than failing
    // the link: the session refuses that one message with its ack (closing, the broker would send
    // it again on every connection).
    this.decoder = new Decoder({
      protocolVersion, maxPacketSize, checkPayloadFormat: false, maxUserProperties, userPropertiesOverflow: 'mark',
      maxSubscriptionIdentifiers: MAX_SUBSCRIPTION_IDENTIFIERS, subscriptionIdentifiersOverflow: 'mark'
    })
    const direct = directReaderOf(stream)
    if (direct !== undefined) direct.attach((chunk) => { this.onData(chunk) }, () => handler.readsMayPause())
    else stream.on('data', (chunk: Buffer) => { this.onData(chunk) })
    stream.on('drain', () => { this.onStreamDrain() })
    stream.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        // A WebSocket message over the transport's bound (see maxWebSocketMessage): refused from
        // its frame header, as the decoder refuses a packet from its fixed header.
        this.decodeFailed = true
        this.finish(new PetrelError(WireErrorCode.PACKET_TOO_LARGE, `a WebSocket message larger than this client accepts: ${err.message}`, { reasonCode: 0x95, cause: err }))
        return
      }
      // The transport's own verdict (a WebSocket text frame from the broker, say) as it is.
      this.finish(err instanceof PetrelError ? err : clientError(ClientErrorCode.CONNECTION_FAILED, `connection error: ${err.message}`, { cause: err }))
    })
    stream.on('close', () => { this.finish(clientError(ClientErrorCode.CONNECTION_FAILED, 'the connection closed')) })
    stream.on('end', () => { this.finish(clientError(ClientErrorCode.CONNECTION_FAILED, 'the broker closed the connection')) })
  }

  get isClosed (): boolean {
    return this.closed
  }

  /** Bytes written here but not yet handed to the OS: batched, or held by the stream. */
  get unsentBytes (): number {
    return this.batchBytes + this.stream.writableLength
  }

  /** Starts keepalive with `intervalMs` (0: off). */
  startKeepalive (intervalMs: number, pingTimeoutMs: number | undefined): void {
    if (intervalMs <= 0) return
    this.keepalive = new Keepalive(intervalMs, now(), pingTimeoutMs)
    this.schedule()
  }

  /** Queues bytes for the flush at the end of this event-loop turn; false when the buffer is over its high-water mark. */
  write (bytes: Buffer): boolean {
    if (this.closed) return false
    const length = bytes.length
    if (length <= COPY_MAX) {
      const at = this.reserve(length)
      const slab = this.slab as Buffer
      if (length < 16) for (let i = 0; i < length; i++) slab[at + i] = bytes[i] as number
      else slab.set(bytes, at)
      this.slabPos = at + length
    } else {
      this.closeRegion()
      this.chunks.push(bytes)
    }
    return this.queued(length)
  }

  /**
   * Writing in place, for a small packet (at most 4 KiB) encoded by the caller: write its `size`
   * bytes into `buffer` at the offset this returns, then `commit(size)`. No Buffer per packet.
   */
  reserve (size: number): number {
    const slab = this.slab
    if (slab === undefined || this.slabPos + size > slab.length) this.newSlab(size)
    return this.slabPos
  }

  /** The slab that `reserve` made room in. */
  get buffer (): Buffer {
    return this.slab as Buffer
  }

  /** Queues the `size` bytes written after `reserve(size)`; the result is `write`'s. */
  commit (size: number): boolean {
    if (this.closed) return false
    this.slabPos += size
    return this.queued(size)
  }

  private queued (length: number): boolean {
    this.batchBytes += length
    if (this.batchBytes >= FLUSH_BYTES) this.flush(true)
    else if (!this.flushScheduled) {
      this.flushScheduled = true
      // setImmediate, not nextTick: it runs after this poll phase, so the acks for every chunk
      // read in one event-loop turn (and publishes made meanwhile) share one write syscall.
      setImmediate(this.flushNow)
    }
    if (this.batchBytes + this.stream.writableLength >= HIGH_WATER_MARK) {
      if (this.full && (this.overflowBytes += length) > READ_HOLD_BYTES && !this.readsHeld) this.holdReads(true)
      this.full = true
      return false
    }
    return true
  }

  /** Stops (or starts again) reading the broker's bytes: while held, nothing it sends is read. */
  private holdReads (hold: boolean): void {
    this.readsHeld = hold
    const direct = directReaderOf(this.stream)
    if (direct !== undefined) direct.held = hold
    if (hold) this.stream.pause()
    else this.stream.resume()
  }

  /** The buffer went below its high-water mark. */
  private drainedBelowMark (): void {
    this.full = false
    this.overflowBytes = 0
    if (this.readsHeld && !this.closed) this.holdReads(false)
    this.handler.onDrain()
  }

  writePacket (packet: Packet): boolean {
    return this.write(encode(packet, this.version))
  }

  /**
   * Writes what is batched now (one write, or a corked series for large packets). From inside
   * `write` (`nested`), it does not report a drain: the caller may be mid-pump, and the stream's
   * own 'drain' event reports it (we are only full while the stream holds far more than its
   * high-water mark).
   */
  flush (nested = false): void {
    if (this.closed || this.batchBytes === 0) return
    this.closeRegion()
    const batch = this.chunks
    const bytes = this.batchBytes
    this.chunks = []
    this.bytesOut += bytes
    this.batchBytes = 0
    this.lastBatchBytes = bytes
    // A slab far bigger than the traffic (a burst is over) is let go; the next one is sized to it.
    if (this.slab !== undefined && this.slab.length > SLAB_MIN && this.slab.length > 4 * bytes) this.slab = undefined
    this.keepalive?.sent(now())
    if (this.trace !== undefined) this.traceOut(batch, this.trace)
    let ok: boolean
    if (batch.length === 1) ok = this.stream.write(batch[0] as Buffer)
    else {
      this.stream.cork()
      ok = true
      for (const b of batch) ok = this.stream.write(b)
      this.stream.uncork()
    }
    if (!nested && ok && this.full && this.stream.writableLength < HIGH_WATER_MARK) this.drainedBelowMark()
  }

  /**
   * Closes the link. With `disconnect`, a DISCONNECT packet goes out first (v5: carrying its
   * reason code) and buffered bytes are flushed; `error` is reported to the handler.
   */
  close (error: PetrelError | undefined, disconnect?: { reasonCode: number } | undefined): void {
    if (this.closed) return
    if (disconnect !== undefined) {
      this.write(encode({ type: 'disconnect', reasonCode: disconnect.reasonCode }, this.version))
      this.flushAndEnd()
    } else {
      this.stream.destroy()
    }
    this.finish(error, disconnect === undefined)
  }

  /**
   * Closes the link because the broker broke the protocol [MQTT-4.13.1-1]: v5 says why in a
   * DISCONNECT with `reasonCode`; 3.1.1 has no DISCONNECT that means "error" (one would discard the
   * will), so there the stream is only ended. Either way the acks batched for the good packets
   * read before go out first: lost, they would have the broker send those messages again.
   */
  closeForProtocolError (error: PetrelError, reasonCode: number): void {
    if (this.closed) return
    if (this.version === 5) {
      this.close(error, { reasonCode })
      return
    }
    this.flushAndEnd()
    this.finish(error, false)
  }

  /**
   * Sends what is batched, then ends the stream. end(), not destroy(): TLS and WebSocket streams
   * write asynchronously, and destroying now would drop the last bytes still on their way (a
   * DISCONNECT, without which the broker publishes the will; acks, without which it redelivers).
   */
  private flushAndEnd (): void {
    this.flush()
    const s = this.stream
    // Once all is flushed, the broker gets a moment to close first; a broker that never reads
    // what is left (a stall) does not hold the socket forever.
    const stuck = setTimeout(() => { s.destroy() }, 10_000).unref()
    s.once('finish', () => {
      clearTimeout(stuck)
      setTimeout(() => { s.destroy() }, 1000).unref()
    })
    s.end()
  }

  private finish (error: PetrelError | undefined, destroy = true): void {
    if (this.closed) return
    this.closed = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.chunks = []
    this.slab = undefined
    this.batchBytes = 0
    if (destroy && !this.stream.destroyed) this.stream.destroy()
    this.handler.onClose(error)
  }

  private onData (chunk: Buffer): void {
    if (this.closed) return
    this.bytesIn += chunk.length
    this.keepalive?.received(now())
    const packets = this.scratch
    let failure: PetrelError | undefined
    try {
      this.decoder.pushInto(chunk, packets)
    } catch (err) {
      failure = err instanceof PetrelError ? err : clientError(ClientErrorCode.PROTOCOL_ERROR, String(err))
    }
    // Packets before the bad bytes are handled: their acks must not be lost.
    for (let i = 0; i < packets.length && !this.closed; i++) {
      if (this.trace !== undefined) this.trace('in', packets[i] as Packet)
      this.handler.onPacket(packets[i] as Packet)
    }
    packets.length = 0
    if (failure === undefined || this.closed) return
    this.decodeFailed = true
    this.closeForProtocolError(failure, failure.reasonCode ?? 0x81)
  }

  private traceOut (batch: Buffer[], trace: PacketTrace): void {
    const decoder = this.traceDecoder ??= new Decoder({ protocolVersion: this.version })
    const packets: Packet[] = []
    for (const b of batch) decoder.pushInto(b, packets)
    for (const p of packets) trace('out', p)
  }

  /** Ends the open slab region: it becomes a chunk of the batch. */
  private closeRegion (): void {
    if (this.slabPos === this.slabStart || this.slab === undefined) return
    this.chunks.push(this.slab.subarray(this.slabStart, this.slabPos))
    this.slabStart = this.slabPos
  }

  /** A fresh slab for at least `length` bytes, sized for a batch like the last (or this) one. */
  private newSlab (length: number): void {
    this.closeRegion()
    const recent = Math.max(this.lastBatchBytes, this.batchBytes)
    this.slab = Buffer.allocUnsafeSlow(Math.max(length, Math.min(SLAB_MAX, Math.max(SLAB_MIN, 2 * recent))))
    this.slabStart = 0
    this.slabPos = 0
  }

  private onStreamDrain (): void {
    if (this.full && this.batchBytes + this.stream.writableLength < HIGH_WATER_MARK) this.drainedBelowMark()
  }

  private schedule (): void {
    const ka = this.keepalive
    if (ka === undefined || this.closed) return
    const delay = Math.max(0, ka.nextDeadline() - now())
    // a pingTimeoutMs past a timer's range (Infinity: no bound) fired after 1 ms, again and
    // again while the PINGREQ went unanswered; the longest wait polls again, which is harmless
    this.timer = setTimeout(() => { this.onTimer() }, Math.min(Math.ceil(delay), MAX_TIMER_MS))
    this.timer.unref()
  }

  private onTimer (): void {
    const ka = this.keepalive
    if (ka === undefined || this.closed) return
    const action = ka.poll(now())
    if (action === KeepaliveAction.timeout) {
      this.close(clientError(ClientErrorCode.PING_TIMEOUT, `no answer to PINGREQ within ${ka.pingTimeoutMs} ms`))
      return
    }
    if (action === KeepaliveAction.ping) {
      this.write(PINGREQ)
      this.handler.onPing()
    }
    this.schedule()
  }
}
