// Reads exact byte counts from a raw socket, for tests that speak MQTT in hand-written hex.
import type { Duplex } from 'node:stream'

/** Buffers everything a socket sends and hands it out in exact-length reads. */
export class SocketReader {
  #buffered = Buffer.alloc(0)
  #ended = false
  #wake: (() => void) | undefined

  constructor (socket: Duplex) {
    socket.on('data', (chunk: Buffer) => {
      this.#buffered = Buffer.concat([this.#buffered, chunk])
      this.#wake?.()
    })
    socket.on('close', () => { this.#ended = true; this.#wake?.() })
    socket.on('error', () => {})
  }

  get ended (): boolean { return this.#ended }
  get available (): number { return this.#buffered.length }

  /** Resolves with exactly `n` bytes; rejects on close or after `timeoutMs`. */
  async read (n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs
    while (this.#buffered.length < n) {
      if (this.#ended) throw new Error(`socket closed after ${this.#buffered.length} of ${n} bytes`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`read ${this.#buffered.length} of ${n} bytes in ${timeoutMs} ms`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#wake = () => { clearTimeout(timer); this.#wake = undefined; resolve() }
      })
    }
    const out = this.#buffered.subarray(0, n)
    this.#buffered = this.#buffered.subarray(n)
    return out
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
