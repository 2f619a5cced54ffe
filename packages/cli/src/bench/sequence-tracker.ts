import { runIdText } from './stamp.js'

/** What one receiver saw of one publisher's sequence numbers. */
export interface SequenceReport {
  /** The publishing process's run id (hex), with `publisher` the identity of a publisher. */
  run: string
  /** The publisher's client index. */
  publisher: number
  received: number
  /**
   * Sequence numbers never seen: gaps between the lowest and the highest seen (a subscriber
   * that joined late cannot know what came before its subscription), or from 0 up to the count
   * sent when that is known (pubsub, whose subscribers are subscribed before anything is sent).
   */
  missing: number
  duplicates: number
  /** Messages that arrived after one with a higher sequence number. */
  outOfOrder: number
}

/** What the receiving side of a run saw: per-publisher reports, and the total it should have received when known. */
export interface ReceiveResult {
  reports: SequenceReport[]
  /** Messages the subscribers should have received (pubsub, where the publishers' counts are known). */
  expected?: number
  /** Shared subscriptions among the receivers: each group's members are counted as one receiver. */
  sharedGroups?: number
  /** (receiver, publisher) pairs that delivered anything: the independent streams in the receive rate. */
  streams?: number
  /** pubsub: its wait for messages on their way ran out (--drain-timeout) while they still arrived. */
  stillArriving?: boolean
  /**
   * Of the reports' out-of-order messages, those within members of shared subscriptions, whose
   * order MQTT does not require (5.0 [MQTT-4.6.0-6] orders non-shared subscriptions only).
   */
  outOfOrderShared?: number
  /** sub -L: the receivers given up on short of their count, nothing having arrived for --drain-timeout. */
  shortOfLimit?: LimitShortfall
}

/**
 * `sub -L`: receivers (a share group is one) that had messages, then none for `idleSeconds`
 * (--drain-timeout), short of their count: `received` of the `due` (-L times the subscribers).
 */
export interface LimitShortfall {
  receivers: number
  received: number
  due: number
  limit: number
  idleSeconds: number
}

/** What one receiver should have got from the publishers of one run: client index -> messages sent. */
export interface Expected {
  run: number
  sent: ReadonlyMap<number, number>
}

function bitCount (byte: number): number {
  let n = 0
  for (let b = byte; b !== 0; b &= b - 1) n++
  return n
}

/**
 * One publisher's sequence numbers as a bitmap, from `base` (a multiple of 8, at or below the
 * lowest seen) up: a subscriber that joins a long run late holds only what it saw.
 */
class Track {
  seen = new Uint8Array(1024)
  base = -1
  lowest = -1
  highest = -1
  unique = 0
  duplicates = 0
  outOfOrder = 0

  /** Records one receipt of `seq`; false when it is a duplicate. */
  record (seq: number): boolean {
    if (seq < this.base || this.base < 0) this.rebase(seq)
    const at = seq - this.base
    const byte = at >>> 3
    if (byte >= this.seen.length) {
      const grown = new Uint8Array(Math.max(this.seen.length * 2, byte + 1))
      grown.set(this.seen)
      this.seen = grown
    }
    const bit = 1 << (at & 7)
    const b = this.seen[byte] as number
    if ((b & bit) !== 0) {
      this.duplicates++
      return false
    }
    this.seen[byte] = b | bit
    this.unique++
    if (seq < this.lowest || this.lowest < 0) this.lowest = seq
    if (seq < this.highest) this.outOfOrder++
    else this.highest = seq
    return true
  }

  /**
   * Adds what another receiver saw of the same publisher (members of one share group): a
   * sequence both saw is a duplicate; out-of-order counts stay each member's own, since the
   * order between members' streams is not defined.
   */
  absorb (o: Track): void {
    if (o.base < 0) return
    if (this.base < 0 || o.base < this.base) this.rebase(o.base)
    const shift = (o.base - this.base) >>> 3
    if (shift + o.seen.length > this.seen.length) {
      const grown = new Uint8Array(shift + o.seen.length)
      grown.set(this.seen)
      this.seen = grown
    }
    for (let i = 0; i < o.seen.length; i++) {
      const b = o.seen[i] as number
      if (b === 0) continue
      const a = this.seen[shift + i] as number
      const both = bitCount(a & b)
      this.duplicates += both
      this.unique += bitCount(b) - both
      this.seen[shift + i] = a | b
    }
    this.duplicates += o.duplicates
    this.outOfOrder += o.outOfOrder
    this.lowest = this.lowest < 0 ? o.lowest : Math.min(this.lowest, o.lowest)
    this.highest = Math.max(this.highest, o.highest)
  }

  /** Moves the base down to `seq` (the first record, or one below everything seen so far). */
  private rebase (seq: number): void {
    const base = seq - (seq & 7)
    if (this.base >= 0) {
      const shift = (this.base - base) >>> 3
      const moved = new Uint8Array(this.seen.length + shift)
      moved.set(this.seen, shift)
      this.seen = moved
    }
    this.base = base
  }
}

/** Loss, duplicate and reordering detection for the messages one subscriber receives, per publisher. */
export class SequenceTracker {
  /** run id -> client index -> track */
  private readonly runs = new Map<number, Map<number, Track>>()
  private last: Track | undefined
  private lastRun = -1
  private lastPublisher = -1

  /**
   * One tracker for receivers that share the work (the members of one shared subscription): a
   * message reaches one of them, so only their union says what was lost or duplicated.
   */
  static union (trackers: readonly SequenceTracker[]): SequenceTracker {
    if (trackers.length === 1) return trackers[0] as SequenceTracker
    const out = new SequenceTracker()
    for (const t of trackers) {
      for (const [run, tracks] of t.runs) {
        let into = out.runs.get(run)
        if (into === undefined) {
          into = new Map()
          out.runs.set(run, into)
        }
        for (const [publisher, track] of tracks) {
          let m = into.get(publisher)
          if (m === undefined) {
            m = new Track()
            into.set(publisher, m)
          }
          m.absorb(track)
        }
      }
    }
    return out
  }

  /** Records one receipt; false when this tracker has seen that sequence of that publisher before. */
  record (run: number, publisher: number, seq: number): boolean {
    // Consecutive messages mostly come from the same publisher: skip the map lookups.
    let t = this.last
    if (publisher !== this.lastPublisher || run !== this.lastRun || t === undefined) {
      let tracks = this.runs.get(run)
      if (tracks === undefined) {
        tracks = new Map()
        this.runs.set(run, tracks)
      }
      t = tracks.get(publisher)
      if (t === undefined) {
        t = new Track()
        tracks.set(publisher, t)
      }
      this.last = t
      this.lastRun = run
      this.lastPublisher = publisher
    }
    return t.record(seq)
  }

  /**
   * One report per publisher seen, plus one for each publisher of `expected` never seen.
   * With `expected` (the publishers of one run and what each sent to this receiver), loss of
   * those publishers is counted from sequence 0 up to what they sent; otherwise from the lowest
   * sequence seen to the highest.
   */
  report (expected?: Expected): SequenceReport[] {
    const out: SequenceReport[] = []
    for (const [run, tracks] of this.runs) {
      const known = expected !== undefined && expected.run === run ? expected.sent : undefined
      for (const [publisher, t] of tracks) {
        const sent = known?.get(publisher)
        const span = sent === undefined ? t.highest - t.lowest + 1 : Math.max(sent, t.highest + 1)
        out.push({ run: runIdText(run), publisher, received: t.unique + t.duplicates, missing: span - t.unique, duplicates: t.duplicates, outOfOrder: t.outOfOrder })
      }
    }
    if (expected !== undefined) {
      const tracks = this.runs.get(expected.run)
      for (const [publisher, sent] of expected.sent) {
        if (tracks?.has(publisher) !== true && sent > 0) out.push({ run: runIdText(expected.run), publisher, received: 0, missing: sent, duplicates: 0, outOfOrder: 0 })
      }
    }
    return out
  }
}

