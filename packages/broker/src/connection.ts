import type { Duplex } from 'node:stream'
import { Decoder, PetrelError, WireErrorCode, type Packet } from '@petrel/wire'
import type { BrokerCore } from './broker-core.js'
import { ServerConnection, type ConnectionInfo } from './server-connection.js'
import type { Transport } from './transport.js'
import { heldBytes, tlsAllowance } from './socket-backlog.js'

/** What a connection shell needs from the broker beyond the core. */
export interface ConnectionHost extends BrokerCore {
  /** Reused decode output: no array per chunk. */
  readonly scratch: Packet[]
  /** Counts event-loop turns (flush cycles): read budgets reset each turn. */
  readonly turn: number
  scheduleFlush (c: Connection): void
  /** An input chunk has been handled (see Broker.inputDone). */
  inputDone (): void
  /** Resume reading `c` on the next flush cycle (it used up its read budget this turn). */
  scheduleResume (c: Connection): void
  /** `c` was closed by us and lingers (see `end`): its socket still counts against max_connections. */
  lingerStarted (c: Connection): void
  /** `c`'s lingering socket is gone. */
  lingerEnded (c: Connection): void
}

/**
 * Batched output is written at once past this size rather than at the end of the turn: libuv
 * may hand us megabytes of input in one turn, and holding all of the output until then would
 * make every subscriber look slow.
 */
const FLUSH_AT = 64 * 1024
/**
 * Input bytes taken from one connection per event-loop turn before it is paused until the
 * next: one flooding publisher cannot starve the loop, the other clients' input, or output.
 */
const READ_BUDGET = 256 * 1024

const SHARED_EMPTY: Packet[] = []
const SHARED_TIMES: number[] = []

/**
 * The thin I/O shell around one `ServerConnection`: any Duplex in, a Decoder, and writes
 * batched per event-loop turn (one `write` per turn, or cork/uncork for large batches).
 * When the stream is backed up it reports `writable = false` and the session's own bounded
 * queue takes over; nothing on the publish path ever waits for this stream's 'drain'.
 */
export class Connection implements Transport {
  readonly protocol: ServerConnection
  private readonly decoder: Decoder
  private pending: Buffer[] | undefined
  private pendingBytes = 0
  private control: Buffer[] | undefined
  private blocked = false
  /**
   * write_high_water_mark, but never below the stream's own: 'drain' only comes after a write
   * the stream refused, so with a lower mark a socket holding a few KiB made us stop sending
   * while every write was still accepted, and nothing woke the session when it emptied.
   */
  private readonly highWaterMark: number
  /** What may wait above a TLS socket that the kernel takes everything from (see `heldBytes`). */
  private readonly allowance: number
  private ending = false
  /** Closed by us, half-open, reading what the client still sends (see `end`). */
  private lingering = false
  /** The client closed its side while what it sent is still routed (see `onEnd`): `end` cuts it. */
  private peerEnded = false
  /** Packets held while an async hook (auth, ACL) runs, in arrival order, and when each was read. */
  private backlog: Packet[] = SHARED_EMPTY
  private backlogAt: number[] = SHARED_TIMES
  private backlogError: PetrelError | undefined
  private busy = false
  /** Reading stopped while `busy`: the client sent more behind the pending hook (see `hold`). */
  private heldPaused = false
  private readTurn = -1
  private readBytes = 0
  private budgetPaused = false
  /** Input paused because the client does not read what it asked for (see `checkBacklog`). */
  private outputPaused = false
  dirty = false

  constructor (private readonly host: ConnectionHost, readonly stream: Duplex, info: ConnectionInfo, acceptedAt?: number) {
    // The payload format, and a PUBLISH's User Properties past the limit ('mark'), are checked
    // where a refusal can be an ack (ServerConnection.onPublish): closing the connection instead
    // would repeat for ever with a client that resends the message on every reconnect.
    this.decoder = new Decoder({
      maxPacketSize: host.limits.maxPacketSize, maxConnectPacketSize: host.limits.maxConnectPacketSize,
      maxUserProperties: host.limits.maxUserProperties, userPropertiesOverflow: 'mark', checkPayloadFormat: false
    })
    this.protocol = new ServerConnection(host, this, info, acceptedAt ?? host.now())
    this.highWaterMark = Math.max(host.limits.writeHighWaterMark, stream.writableHighWaterMark)
    this.allowance = tlsAllowance(this.highWaterMark)
    // Shared listeners, not closures: an emitter calls them with `this` = the stream, and the
    // stream points back here. Five closures and their context cost ~330 B per connection,
    // which is most of what an idle connection holds beyond node's own socket. 'drain' is
    // only listened for once a write has been refused (see `setBlocked`).
    ;(stream as LinkedStream)[kConnection] = this
    stream.on('data', onStreamData)
    stream.on('error', onStreamError)
    stream.on('end', onStreamEnd)
    stream.on('close', onStreamClose)
  }

  get remoteAddress (): string | undefined {
    return (this.stream as { remoteAddress?: string | undefined }).remoteAddress
  }

  get backlogged (): boolean {
    return this.outputPaused
  }

  get writable (): boolean {
    if (this.blocked || this.ending) return false
    // heldBytes only when it can matter: over TLS it asks the TCP handle (~50 ns a call)
    const p = this.pendingBytes
    return p + this.stream.writableLength < this.highWaterMark || p + heldBytes(this.stream, this.allowance) < this.highWaterMark
  }

  write (bytes: Buffer): void {
    if (this.ending) return
    if (this.pending === undefined) this.pending = [bytes]
    else this.pending.push(bytes)
    this.pendingBytes += bytes.length
    if (this.pendingBytes >= FLUSH_AT) {
      // control packets batched earlier still go first: on a resumed session a queued PUBLISH of
      // 64 KiB or more otherwise reached the client ahead of its CONNACK [MQTT-3.2.0-1]
      this.flushControl()
      this.flushPending()
      return
    }
    if (!this.dirty) {
      this.dirty = true
      this.host.scheduleFlush(this)
    }
  }

  writeControl (bytes: Buffer): void {
    if (this.ending) return
    if (this.control === undefined) this.control = [bytes]
    else this.control.push(bytes)
    if (!this.dirty) {
      this.dirty = true
      this.host.scheduleFlush(this)
    }
  }

  /**
   * Sends queued control packets now, as their own write. Called when an input chunk has been
   * handled: with a client that has Nagle on (MQTT.js does), an ack that shares a segment with
   * a PUBLISH routed back to the same client makes the client's next PUBLISH wait for our
   * delayed ACK (~40 ms per round trip). Its own segment, sent first, avoids that.
   */
  private flushControl (): void {
    const c = this.control
    if (c === undefined) return
    this.control = undefined
    const s = this.stream
    if (s.destroyed) return
    s.write(c.length === 1 ? c[0] as Buffer : Buffer.concat(c))
    if (this.backedUp()) this.setBlocked()
  }

  /** Writes everything batched this turn in one go. */
  flush (): void {
    this.dirty = false
    this.flushControl()
    this.flushPending()
  }

  private flushPending (): void {
    const p = this.pending
    if (p === undefined) return
    const n = this.pendingBytes
    this.pending = undefined
    this.pendingBytes = 0
    const s = this.stream
    if (s.destroyed) return
    if (p.length === 1) s.write(p[0] as Buffer)
    else if (n <= 65536) s.write(Buffer.concat(p, n))
    else {
      s.cork()
      for (const b of p) s.write(b)
      s.uncork()
    }
    if (this.backedUp()) this.setBlocked()
    else this.pumpSession()
  }

  end (linger = true): void {
    if (this.ending) {
      if (this.peerEnded) {
        this.peerEnded = false
        this.stream.destroy()
      }
      return
    }
    this.flush()
    this.ending = true
    const s = this.stream
    if (s.destroyed) return
    if (this.blocked) {
      s.destroy() // a client that does not read gets no graceful goodbye
      return
    }
    if (!linger) {
      s.end(() => { s.destroy() })
    } else {
      // Half-close, then read (and drop) what the client still sends until it closes its side.
      // Destroying the socket as soon as our last bytes were written made the kernel answer the
      // packets already on their way (PUBRELs for our PUBRECs, more PUBLISHes) with a reset: a
      // client still writing got EPIPE/ECONNRESET and lost our DISCONNECT and its reason code
      // (0x93, 0x95...) unread in its socket [MQTT-4.13.1-1]. The socket still counts against
      // max_connections meanwhile, and is the first to go to make room (Broker.makeRoom): else
      // clients that ignore our FIN held sockets past the limit, two seconds each.
      this.lingering = true
      this.host.lingerStarted(this)
      s.end(() => { if (s.readableEnded) s.destroy() })
      s.resume()
    }
    // a peer that never reads its last bytes, or never closes, must not hold the socket (nor its
    // place: a stream may never emit 'close')
    setTimeout(() => { this.stopLingering(); s.destroy() }, 2000).unref()
  }

  /** Cuts a lingering close short: its place under max_connections is wanted, or its time is up. */
  stopLingering (): void {
    if (!this.lingering) return
    this.lingering = false
    this.host.lingerEnded(this)
    this.stream.destroy()
  }

  /** @internal called through the shared 'close' listener */
  onClose (): void {
    if (this.lingering) {
      this.lingering = false
      this.host.lingerEnded(this)
    }
    // still routing what the client sent before it closed its side (see `onEnd`): the protocol
    // closes once that is done (a TCP socket closes itself once the peer has: allowHalfOpen false)
    if (this.peerEnded) return
    this.protocol.closed()
  }

  /**
   * Whether the stream holds write_high_water_mark after a write: the client counts as slow (as
   * CONFIG.md says), and what is routed to it waits in its session queue until 'drain'. What
   * `write` returns is not this: it is false past the stream's own 16 KiB mark (every 64 KiB
   * batch, the last write under cork) even when the socket took every byte at once, and TLS and
   * ws's stream hold a write's bytes until a later callback. Taken as a refusal, it made the
   * connection wait a tick or more, and what was routed to it meanwhile went to its queue: one
   * WebSocket message of a few hundred KiB of QoS 0 PUBLISHes, routed in one go, overflowed a
   * reading subscriber's queue and was dropped. 'drain' follows: a write that left this much
   * returned false. Over TLS only what the peer has not taken counts (see `heldBytes`).
   */
  private backedUp (): boolean {
    return this.stream.writableLength >= this.highWaterMark && heldBytes(this.stream, this.allowance) >= this.highWaterMark
  }

  /** The stream refused a write: wait for its 'drain' (one listener at a time, added on demand). */
  private setBlocked (): void {
    if (this.blocked) return
    this.blocked = true
    this.stream.once('drain', onStreamDrain)
  }

  /** @internal called through the shared 'drain' listener */
  onDrain (): void {
    this.blocked = false
    if (this.outputPaused) {
      this.outputPaused = false
      if (!this.heldPaused && !this.budgetPaused && !this.stream.destroyed) this.stream.resume()
    }
    this.pumpSession()
  }

  /**
   * Stops reading a client that does not read its answers. PUBLISH output stops at the write
   * high-water mark (the session queue takes over), but every PINGREQ, QoS 1/2 PUBLISH,
   * SUBSCRIBE... gets a control packet that is written regardless: a client flooding requests
   * without reading made the broker buffer their answers without bound (tens of MB a second
   * on loopback). Past what the publish path itself can leave buffered (the high-water mark
   * plus one packet) its input waits for 'drain'; TCP then pushes back on the client, and its
   * keepalive runs out if it never reads again. Cheap: nothing to do unless a write was refused.
   */
  private checkBacklog (): void {
    if (!this.blocked || this.outputPaused || this.stream.destroyed) return
    const limits = this.host.limits
    if (heldBytes(this.stream, this.allowance) <= this.highWaterMark + limits.maxPacketSize) return
    this.outputPaused = true
    this.stream.pause()
  }

  /** @internal called through the shared 'end' listener */
  onEnd (): void {
    // What it sent before goes first. Should that wait on a hook, nothing more is written (the
    // client has gone) and the socket is cut when the protocol closes (`end`).
    if (!this.ending && this.protocol.inputEnded()) {
      this.ending = true
      this.peerEnded = true
      return
    }
    if (!this.ending || this.stream.writableFinished) this.stream.destroy()
  }

  private pumpSession (): void {
    const pc = this.protocol
    const s = pc.session
    if (s !== undefined && s.outlet === pc && s.queueLength > 0) s.pump()
  }

  /** Called on the next turn after the read budget ran out. */
  resumeReading (): void {
    this.budgetPaused = false
    this.readBytes = 0
    if (!this.heldPaused && !this.outputPaused && !this.stream.destroyed) this.stream.resume()
  }

  /** @internal called through the shared 'data' listener */
  onData (chunk: Buffer): void {
    if (this.ending) return // lingering after our DISCONNECT (see `end`)
    this.host.stats.bytesIn += chunk.length
    const turn = this.host.turn
    if (turn !== this.readTurn) {
      this.readTurn = turn
      this.readBytes = 0
    }
    this.readBytes += chunk.length
    if (this.readBytes > READ_BUDGET && !this.budgetPaused) {
      this.budgetPaused = true
      this.stream.pause()
      this.host.scheduleResume(this)
    }
    if (this.busy) {
      this.pauseHeld()
      if (this.backlogError !== undefined) return
      const more: Packet[] = []
      try {
        this.decoder.pushInto(chunk, more)
      } catch (err) {
        this.backlogError = asPetrelError(err)
      }
      if (this.backlog === SHARED_EMPTY) { this.backlog = []; this.backlogAt = [] }
      const at = this.host.now()
      for (const p of more) { this.backlog.push(p); this.backlogAt.push(at) }
      return
    }
    const out = this.host.scratch
    let error: PetrelError | undefined
    try {
      this.decoder.pushInto(chunk, out)
    } catch (err) {
      error = asPetrelError(err)
    }
    const now = this.host.now()
    const n = out.length
    const pc = this.protocol
    for (let i = 0; i < n; i++) {
      const r = pc.receive(out[i] as Packet, now)
      if (r !== undefined) {
        this.backlog = out.slice(i + 1)
        this.backlogAt = this.backlog.map(() => now)
        this.backlogError = error
        out.length = 0
        this.hold(r)
        // the rest of this chunk is more than the held packet: its close must wait for it too
        if (this.moreBehindHold) this.pauseHeld()
        return
      }
    }
    out.length = 0
    if (error !== undefined) pc.protocolFailure(error, this.decoder.protocolVersion)
    this.flushControl()
    this.checkBacklog()
    this.host.inputDone()
  }

  /**
   * Holds input until an async step settles, then replays what arrived meanwhile in order.
   *
   * The stream is paused only once the client sends something more: a paused stream never emits
   * 'end' (nor 'close' for a FIN), so a client that gave up on a slow authenticate and closed
   * its socket kept its connection, its place under max_connections and its session until the
   * hook settled (30 s for a 30 s hook). Read on, its close is seen at once: the connection
   * closes and the hook's signal aborts (ServerConnection.closed). Once it has sent more, the
   * stream is paused as before, so that what it sent is handled, in order, before its close is
   * seen: a client that writes CONNECT, PUBLISH, DISCONNECT and closes without waiting for its
   * CONNACK must not lose the PUBLISH (nor, read on, would its close wait for the hook: Node
   * ends the writing side at 'end', before the CONNACK could go out).
   */
  private hold (r: Promise<void>): void {
    this.busy = true
    this.protocol.holdInput(this.host.now())
    // Hooks never reject here (a failing one answers HOOK_ERROR, see Broker.timed): this is a
    // fault of the broker's own, and the connection is all it takes down.
    r.then(() => { this.release() }, (err: unknown) => {
      this.host.log.error({ err }, 'handling a packet failed; closing the connection')
      this.protocol.fail(0x80, 'internal error')
    })
  }

  /** The client sent more than the packet a hook holds (packets, a decode error, part of one): see `hold`. */
  private get moreBehindHold (): boolean {
    return this.backlog.length > 0 || this.backlogError !== undefined || this.decoder.bufferedBytes > 0
  }

  /** The client sent more behind a pending hook: stop reading until the hook settles (see `hold`). */
  private pauseHeld (): void {
    if (this.heldPaused) return
    this.heldPaused = true
    this.stream.pause()
  }

  private unpauseHeld (): void {
    if (!this.heldPaused) return
    this.heldPaused = false
    if (!this.budgetPaused && !this.outputPaused && !this.stream.destroyed) this.stream.resume()
  }

  private release (): void {
    const pc = this.protocol
    while (this.backlog.length > 0) {
      const p = this.backlog.shift() as Packet
      // its Message Expiry Interval runs from when it was read (ServerConnection.onPublish)
      const r = pc.receive(p, this.host.now(), this.backlogAt.shift())
      if (r !== undefined) {
        this.hold(r)
        // nothing more behind this one: read on, so that a close is seen (see `hold`)
        if (!this.moreBehindHold) this.unpauseHeld()
        return
      }
    }
    this.flushControl()
    this.busy = false
    this.heldPaused = false
    pc.resumeInput(this.host.now())
    this.backlog = SHARED_EMPTY
    this.backlogAt = SHARED_TIMES
    const err = this.backlogError
    this.backlogError = undefined
    if (err !== undefined) { pc.protocolFailure(err, this.decoder.protocolVersion); return }
    this.checkBacklog()
    if (!this.stream.destroyed && !this.budgetPaused && !this.outputPaused) this.stream.resume()
  }
}

const kConnection = Symbol('petrel.connection')
type LinkedStream = Duplex & { [kConnection]: Connection }

function onStreamData (this: LinkedStream, chunk: Buffer): void { this[kConnection].onData(chunk) }
function onStreamDrain (this: LinkedStream): void { this[kConnection].onDrain() }
function onStreamEnd (this: LinkedStream): void { this[kConnection].onEnd() }
function onStreamClose (this: LinkedStream): void { this[kConnection].onClose() }
function onStreamError (this: Duplex): void { this.destroy() }

function asPetrelError (err: unknown): PetrelError {
  return err instanceof PetrelError ? err : new PetrelError(WireErrorCode.MALFORMED_PACKET, String(err), { reasonCode: 0x81 })
}
