import { connect as netConnect, type Socket } from 'node:net'
import { ReadModeration, type ReadModerationOptions } from './read-moderation.js'

/**
 * The buffer every direct socket reads into: each read is copied out of it before its callback
 * returns, and reads happen one at a time on this thread, so one serves any number of
 * connections (a load tool holding 50,000 of them must not hold 64 KiB each).
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024)

const kReader = Symbol('petrel.directReader')

/**
 * Where a direct socket's reads go. Reads that come before the connection attaches (none should:
 * the broker speaks only after CONNECT) are kept, not lost.
 */
export class DirectReader {
  private target: ((chunk: Buffer) => void) | undefined = undefined
  private early: Buffer[] | undefined = undefined
  /** Whether read moderation may pause now; the connection's owner knows (see {@link attach}). */
  mayPause: () => boolean = () => true
  /** Reading is held (paused) by the connection: read moderation must not resume it. */
  held = false

  /** @internal From the socket's `onread` callback. */
  deliver (chunk: Buffer): void {
    const t = this.target
    if (t !== undefined) t(chunk)
    else (this.early ??= []).push(chunk)
  }

  attach (target: (chunk: Buffer) => void, mayPause?: () => boolean): void {
    this.target = target
    if (mayPause !== undefined) this.mayPause = mayPause
    const early = this.early
    this.early = undefined
    if (early !== undefined) for (const c of early) target(c)
  }
}

/**
 * A TCP socket that reads through net's `onread` into one reused buffer instead of the Readable
 * stream path. A fast reader gets a few packets per read, so the per-read cost dominates the
 * receive path: the default path allocates a 64 KiB buffer per read, then runs push, `data` and a
 * nextTick per chunk. Here each read costs one small copy (from Buffer's pool below 4 KiB), which
 * also gives the decoder what it needs: bytes nobody overwrites, so payloads stay zero-copy views
 * and a partial packet can wait for the next read. `end`, `close` and `error` work as usual; no
 * `data` events: take the bytes with `directReaderOf(socket).attach(...)`. `localAddress` picks
 * the source address.
 */
export function connectDirect (host: string, port: number, moderation: ReadModerationOptions | false = {}, localAddress?: string): Socket {
  const reader = new DirectReader()
  const moderator = moderation === false ? undefined : new ReadModeration(moderation)
  let resumeTimer: NodeJS.Timeout | undefined
  const resume = (): void => { if (!reader.held) socket.resume() }
  const socket: Socket = netConnect({
    host,
    port,
    ...(localAddress === undefined ? {} : { localAddress }),
    noDelay: true,
    onread: {
      buffer: READ_BUFFER,
      callback: (n: number, buf: Uint8Array): boolean => {
        const chunk = Buffer.allocUnsafe(n)
        chunk.set(n === buf.length ? buf : buf.subarray(0, n))
        reader.deliver(chunk)
        if (reader.held) return false
        if (moderator === undefined) return true
        const pauseMs = moderator.onRead(n, performance.now())
        if (pauseMs === 0 || socket.destroyed || !reader.mayPause()) return true
        // Returning false pauses the socket; one reused timer resumes it.
        if (resumeTimer === undefined) resumeTimer = setTimeout(resume, pauseMs)
        else resumeTimer.refresh()
        return false
      }
    }
  })
  socket.once('close', () => { clearTimeout(resumeTimer) })
  ;(socket as Socket & { [kReader]?: DirectReader })[kReader] = reader
  return socket
}

/** The direct reader of a socket made by {@link connectDirect}, or undefined for any other stream. */
export function directReaderOf (stream: object): DirectReader | undefined {
  return (stream as { [kReader]?: DirectReader })[kReader]
}
