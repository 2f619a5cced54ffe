/**
 * Packet identifiers 1..65535 for one direction of one session. An id is never handed out
 * while it is still in use [MQTT-2.2.1-3]; allocation walks forward from the last id so a
 * freshly released id is not reused at once (a late duplicate ack then cannot hit a new flow).
 */
export class PacketIdPool {
  private readonly used = new Uint8Array(65536)
  private last = 0
  private inUse = 0

  /** Ids currently allocated. */
  get size (): number {
    return this.inUse
  }

  /** The next free id, or undefined when all 65,535 are in use. */
  allocate (): number | undefined {
    if (this.inUse >= 65535) return undefined
    let id = this.last
    do {
      id = id === 65535 ? 1 : id + 1
    } while (this.used[id] === 1)
    this.used[id] = 1
    this.last = id
    this.inUse++
    return id
  }

  /** Marks `id` as in use (a session restored from a store); returns false if it already was. */
  claim (id: number): boolean {
    // A non-integer index would be silently ignored by the typed array and corrupt the count.
    if (!Number.isInteger(id) || id < 1 || id > 65535 || this.used[id] === 1) return false
    this.used[id] = 1
    this.inUse++
    return true
  }

  has (id: number): boolean {
    return this.used[id] === 1
  }

  release (id: number): void {
    if (this.used[id] === 1) {
      this.used[id] = 0
      this.inUse--
    }
  }

  clear (): void {
    this.used.fill(0)
    this.inUse = 0
  }
}
