/** Settings of {@link ReadModeration}; every field has a default. */
export interface ReadModerationOptions {
  /** How long to leave the socket unread once moderating, in ms. Default 1 (a timer's resolution). */
  pauseMs?: number
  /** Reads closer together than this (ms) count as back-to-back. Default 0.1. */
  busyGapMs?: number
  /** Back-to-back small reads in a row that start moderation. Default 64. */
  busyReads?: number
  /** A read below this many bytes is small (a fast reader keeping up gets one or two packets). Default 16 KiB. */
  smallReadBytes?: number
  /** A pause that gathers fewer bytes than this is quiet. Default 1 KiB. */
  quietBytes?: number
  /** Quiet pauses in a row that end moderation (the stream slowed down). Default 3. */
  quietPauses?: number
}

/**
 * Read interrupt moderation, sans I/O: given each read's size and time, says how long to leave the
 * socket unread before the next one (0: read on).
 *
 * A reader that keeps up with a fast stream gets one or two packets per read, and then the read
 * syscall, the epoll round and the call into JavaScript cost more than the packets themselves
 * (measured here: about 8 µs per read against under 1 µs to decode and dispatch a small PUBLISH).
 * After a sustained run of small back-to-back reads it pauses reading for `pauseMs`, so the next
 * read takes what arrived meanwhile in one go, as NICs coalesce interrupts. It adds at most about
 * `pauseMs` of latency, and only while the stream is that busy; a few pauses in a row that gather
 * little end it. Big reads are never delayed: they are already cheap per byte.
 */
export class ReadModeration {
  private readonly pauseMs: number
  private readonly busyGapMs: number
  private readonly busyReads: number
  private readonly smallReadBytes: number
  private readonly quietBytes: number
  private readonly quietPauses: number
  private quiet = 0
  private lastReadAt = -Infinity
  private streak = 0
  private moderating = false

  constructor (options: ReadModerationOptions = {}) {
    this.pauseMs = options.pauseMs ?? 1
    this.busyGapMs = options.busyGapMs ?? 0.1
    this.busyReads = options.busyReads ?? 64
    this.smallReadBytes = options.smallReadBytes ?? 16 * 1024
    this.quietBytes = options.quietBytes ?? 1024
    this.quietPauses = options.quietPauses ?? 3
  }

  /** Whether reads are being paused now. */
  get active (): boolean {
    return this.moderating
  }

  /** One read of `bytes` at `now` (ms); returns the pause before the next read in ms (0: none). */
  onRead (bytes: number, now: number): number {
    const gap = now - this.lastReadAt
    this.lastReadAt = now
    if (this.moderating) {
      // One quiet pause may be the sender being descheduled; a few in a row mean the stream slowed.
      if (bytes >= this.quietBytes) this.quiet = 0
      else if (++this.quiet >= this.quietPauses) {
        this.moderating = false
        this.streak = 0
        this.quiet = 0
        return 0
      }
      return bytes < this.smallReadBytes ? this.pauseMs : 0
    }
    if (bytes >= this.smallReadBytes) {
      this.streak = 0
      return 0
    }
    // A small read soon after the last one extends the run; after a gap it starts a new one.
    this.streak = gap < this.busyGapMs ? this.streak + 1 : 1
    if (this.streak < this.busyReads) return 0
    this.moderating = true
    return this.pauseMs
  }
}
