/** What a pending handshake reports to when it ends, one way or the other. */
export interface HandshakeOwner {
  handshakeEnded (h: PendingHandshake): void
}

/**
 * A socket a listener accepted whose TLS handshake or WebSocket upgrade has not finished yet:
 * it holds a place under `max_connections` from accept, as a plain TCP socket does, until it
 * is handed to the broker as a connection or closes. `close()` (eviction, broker shutdown)
 * frees the place at once, not when the socket's 'close' comes.
 */
export class PendingHandshake {
  private ended = false

  constructor (private readonly owner: HandshakeOwner, private readonly abort: () => void, readonly startedAt: number) {}

  /** The handshake finished or failed: the place is free. Idempotent. */
  release (): void {
    if (this.ended) return
    this.ended = true
    this.owner.handshakeEnded(this)
  }

  /** Frees the place and closes the socket. */
  close (): void {
    this.release()
    this.abort()
  }
}
