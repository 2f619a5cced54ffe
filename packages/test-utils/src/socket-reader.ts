// Reads exact byte counts from a raw socket, for tests that speak MQTT in hand-written hex.
import type { Duplex } from 'node:stream'

/** Buffers everything a socket sends and hands it out in exact-length reads. */
export class SocketReader {
  // Chunks are joined only when a read needs them: concatenating on every 'data' event made a
  // large transfer quadratic (16 MiB took seconds of copying on a loaded machine).
  #chunks: Buffer[] = []
  #length = 0
  #ended = false
  #wake: (() => void) | undefined

  constructor (socket: Duplex) {
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk)
      this.#length += chunk.length
      this.#wake?.()
    })
    socket.on('close', () => { this.#ended = true; this.#wake?.() })
    socket.on('error', () => {})
  }

  get ended (): boolean { return this.#ended }
  get available (): number { return this.#length }

  /** Resolves with exactly `n` bytes; rejects on close or after `timeoutMs`. */
  async read (n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs
    while (this.#length < n) {
      if (this.#ended) throw new Error(`socket closed after ${this.#length} of ${n} bytes`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`read ${this.#length} of ${n} bytes in ${timeoutMs} ms`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#wake = () => { clearTimeout(timer); this.#wake = undefined; resolve() }
      })
    }
    // join only the chunks that cover n bytes: a small read off a large backlog copies little
    let k = 0
    let covered = 0
    while (covered < n) covered += this.#chunks[k++]!.length
    const head = k === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks.slice(0, k), covered)
    const rest = this.#chunks.slice(k)
    if (covered > n) rest.unshift(head.subarray(n))
    this.#chunks = rest
    this.#length -= n
    return head.subarray(0, n)
  }

  /** Resolves when the socket has closed; rejects after `timeoutMs`. */
  async closed (timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!this.#ended) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`socket still open after ${timeoutMs} ms`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#wake = () => { clearTimeout(timer); this.#wake = undefined; resolve() }
      })
    }
  }
}
