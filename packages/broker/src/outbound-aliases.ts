// Topic aliases the broker uses toward one 5.0 client (§3.3.2.3.4): which topic gets which alias.
// Sans-I/O: the caller encodes and writes, then commits what it sent.

/** Recently refused topics remembered, at most (4 bytes each; see `seen`). */
const MAX_SEEN = 1024

/**
 * Aliases are handed out first come, first served while both bounds allow. Once they are all
 * taken, a topic without one takes over the least recently used alias on its second miss, so a
 * busy topic that arrived late still gets one, while a stream of distinct one-off topics (a
 * subscriber to `#`) does not re-map an alias on every message and cost each one an alias
 * property for nothing. (LRU as MQTT.js's autoAssignTopicAlias and the AWS CRT client use, with
 * a second-hit admission against churn.) "Least recently used" is CLOCK's approximation: a hit
 * only sets a bit (a Map reorder per delivery cost ~5x a lookup), the hand passes over aliases
 * used since it last went by. Misses are remembered as 32-bit hashes in a small direct-mapped
 * table: a collision only admits a topic early, it never mis-encodes one.
 */
export class OutboundAliases {
  private readonly byTopic = new Map<string, number>()
  /** Alias → its topic (undefined: free or not yet used); index 0 unused. */
  private readonly topics: Array<string | undefined> = [undefined]
  /** Alias → 1 when used since the hand last passed it. */
  private readonly used: number[] = [0]
  private hand = 1
  /** Length (UTF-16 code units) of the names kept. */
  private length = 0
  /** Aliases given up to make room by length: reused before `next`. */
  private readonly free: number[] = []
  private next = 1
  private seen: Int32Array | undefined

  /**
   * @param max aliases at most (the client's Topic Alias Maximum capped by ours) [MQTT-3.3.2-11]
   * @param maxLength length of the names kept at most (limits.maxOutboundTopicAliasBytes)
   */
  constructor (readonly max: number, readonly maxLength: number) {}

  /** Names kept. */
  get size (): number {
    return this.byTopic.size
  }

  /** Their length, as `maxLength` counts it. */
  get keptLength (): number {
    return this.length
  }

  /**
   * The alias to send `topic` with: 0 none, -alias in place of the name (an empty Topic Name),
   * +alias with the name. A new or re-mapped alias must go with the full Topic Name (only a name
   * and an alias together set a mapping, §3.3.2.3.4), and `commit` must follow once that packet
   * is written. The mapping does not change until then, so a packet that is not sent (over the
   * client's Maximum Packet Size) leaves it as the client has it.
   */
  choose (topic: string): number {
    const a = this.byTopic.get(topic)
    if (a !== undefined) {
      this.used[a] = 1
      return -a
    }
    if (topic.length > this.maxLength) return 0
    if (this.byTopic.size < this.max && this.length + topic.length <= this.maxLength) {
      return this.free.length > 0 ? this.free[this.free.length - 1] as number : this.next
    }
    if (this.byTopic.size === 0 || !this.secondMiss(topic)) return 0
    // re-map the least recently used alias (when only length is short, `commit` frees more)
    return this.victim()
  }

  /** Records that `topic` went out with its name and `alias` (a positive `choose`). */
  commit (topic: string, alias: number): void {
    if (this.free.length > 0 && this.free[this.free.length - 1] === alias) {
      this.free.pop()
    } else if (alias === this.next) {
      this.next++
      this.topics.push(undefined)
      this.used.push(0)
    } else {
      this.drop(alias)
      while (this.byTopic.size > 0 && this.length + topic.length > this.maxLength) {
        const x = this.victim()
        this.drop(x)
        this.free.push(x)
      }
      this.hand = alias + 1
    }
    this.topics[alias] = topic
    this.used[alias] = 0
    this.byTopic.set(topic, alias)
    this.length += topic.length
  }

  private drop (alias: number): void {
    const t = this.topics[alias]
    if (t === undefined) return
    this.byTopic.delete(t)
    this.length -= t.length
    this.topics[alias] = undefined
  }

  /** The first alias from the hand on not used since it last passed (left under the hand). */
  private victim (): number {
    const { topics, used } = this
    let h = this.hand
    for (;;) {
      if (h >= this.next) h = 1
      if (topics[h] !== undefined) {
        if (used[h] === 0) break
        used[h] = 0
      }
      h++
    }
    this.hand = h
    return h
  }
  /** Whether `topic` was refused an alias before (recently); remembers it if not. */
  private secondMiss (topic: string): boolean {
    const seen = this.seen ??= new Int32Array(Math.min(MAX_SEEN, 2 ** Math.ceil(Math.log2(4 * this.max))))
    let h = 0x811c9dc5 // FNV-1a
    for (let i = 0; i < topic.length; i++) h = Math.imul(h ^ topic.charCodeAt(i), 0x01000193)
    if (h === 0) h = 1 // 0 marks an empty slot
    const slot = h & (seen.length - 1)
    if (seen[slot] === h) {
      seen[slot] = 0
      return true
    }
    seen[slot] = h
    return false
  }
}
