import type { Publisher } from './publisher.js'

/** How often paced publishers are topped up; each tick sends what their rate makes due. */
const TICK_MS = 1

/**
 * Drives publishers: unlimited (`rate` 0: each sends as fast as its socket drains and its window
 * allows, one batch per turn of the event loop so that reads interleave) or paced (`rate`
 * messages per second each, from one shared timer, catching up after a stall).
 */
export class PublishDriver {
  private readonly paced = new Set<Publisher>()
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly rate: number) {}

  add (p: Publisher): void {
    p.startedAt = performance.now()
    if (this.rate > 0) this.addPaced(p)
    else this.addUnlimited(p)
  }

  remove (p: Publisher): void {
    this.paced.delete(p)
    if (this.paced.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    this.paced.clear()
  }

  private addUnlimited (p: Publisher): void {
    const socket = p.conn.socket
    let waiting = false
    const loop = (): void => {
      waiting = false
      if (p.stopped || !p.conn.open) return
      const n = p.pump()
      // Nothing sent and the socket is not full: the window or the count is exhausted; acks call again.
      if (n === 0 && !socket.writableNeedDrain) return
      waiting = true
      if (socket.writableNeedDrain) socket.once('drain', loop)
      else setImmediate(loop)
    }
    p.onAcked = () => { if (!waiting) loop() }
    loop()
  }

  private addPaced (p: Publisher): void {
    this.paced.add(p)
    p.onAcked = () => { this.top(p, performance.now()) }
    this.top(p, p.startedAt)
    if (this.timer === undefined) {
      this.timer = setInterval(() => {
        const now = performance.now()
        for (const q of this.paced) this.top(q, now)
      }, TICK_MS)
    }
  }

  private top (p: Publisher, now: number): void {
    const due = Math.floor((now - p.startedAt) * this.rate / 1000) + 1
    while (p.pump(due) > 0);
  }
}
