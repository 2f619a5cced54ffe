/**
 * FIFO queue on a growable ring buffer: O(1) push, shift and unshift with no per-item
 * allocation (an array's `shift()` is O(n) once it leaves V8's fast path).
 */
export class Deque<T> {
  private items: Array<T | undefined>
  private head = 0
  private count = 0

  constructor (capacity = 16) {
    this.items = new Array<T | undefined>(capacity)
  }

  get length (): number {
    return this.count
  }

  push (item: T): void {
    if (this.count === this.items.length) this.grow()
    this.items[(this.head + this.count) % this.items.length] = item
    this.count++
  }

  unshift (item: T): void {
    if (this.count === this.items.length) this.grow()
    this.head = (this.head - 1 + this.items.length) % this.items.length
    this.items[this.head] = item
    this.count++
  }

  peek (): T | undefined {
    return this.count === 0 ? undefined : this.items[this.head]
  }

  shift (): T | undefined {
    if (this.count === 0) return undefined
    const item = this.items[this.head]
    this.items[this.head] = undefined
    this.head = (this.head + 1) % this.items.length
    this.count--
    return item
  }

  /** Removes and returns every item, oldest first. */
  drain (): T[] {
    const out: T[] = []
    for (let item = this.shift(); item !== undefined; item = this.shift()) out.push(item)
    return out
  }

  private grow (): void {
    const old = this.items
    const next = new Array<T | undefined>(Math.max(16, old.length * 2))
    for (let i = 0; i < this.count; i++) next[i] = old[(this.head + i) % old.length]
    this.items = next
    this.head = 0
  }
}
