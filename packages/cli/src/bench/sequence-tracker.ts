/** What one receiver saw of one publisher's sequence numbers. */
export interface SequenceReport {
  publisher: number
  received: number
  /** Sequence numbers never seen: gaps below the highest seen, or below the count sent when known. */
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
}

class Track {
  seen = new Uint8Array(1024)
  highest = -1
  unique = 0
  duplicates = 0
  outOfOrder = 0

  record (seq: number): void {
    const byte = seq >>> 3
    if (byte >= this.seen.length) {
      const grown = new Uint8Array(Math.max(this.seen.length * 2, byte + 1))
      grown.set(this.seen)
      this.seen = grown
    }
    const bit = 1 << (seq & 7)
    const b = this.seen[byte] as number
    if ((b & bit) !== 0) {
      this.duplicates++
      return
    }
    this.seen[byte] = b | bit
    this.unique++
    if (seq < this.highest) this.outOfOrder++
    else this.highest = seq
  }
}

/** Loss, duplicate and reordering detection for the messages one subscriber receives, per publisher. */
export class SequenceTracker {
  private readonly tracks = new Map<number, Track>()
  private last: Track | undefined
  private lastPublisher = -1

  record (publisher: number, seq: number): void {
    // Consecutive messages mostly come from the same publisher: skip the map lookup.
    let t = this.last
    if (publisher !== this.lastPublisher || t === undefined) {
      t = this.tracks.get(publisher)
      if (t === undefined) {
        t = new Track()
        this.tracks.set(publisher, t)
      }
      this.last = t
      this.lastPublisher = publisher
    }
    t.record(seq)
  }

  /** Publishers seen so far. */
  publishers (): number[] {
    return [...this.tracks.keys()]
  }

  /**
   * One report per publisher seen, plus one for each publisher of `expected` never seen.
   * `expected` maps a publisher to the number of messages it sent to this receiver, when known.
   */
  report (expected?: ReadonlyMap<number, number>): SequenceReport[] {
    const out: SequenceReport[] = []
    for (const [publisher, t] of this.tracks) {
      const sent = expected?.get(publisher)
      const span = sent === undefined ? t.highest + 1 : Math.max(sent, t.highest + 1)
      out.push({ publisher, received: t.unique + t.duplicates, missing: span - t.unique, duplicates: t.duplicates, outOfOrder: t.outOfOrder })
    }
    if (expected !== undefined) {
      for (const [publisher, sent] of expected) {
        if (!this.tracks.has(publisher) && sent > 0) out.push({ publisher, received: 0, missing: sent, duplicates: 0, outOfOrder: 0 })
      }
    }
    return out
  }
}
