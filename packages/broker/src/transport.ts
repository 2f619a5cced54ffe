/**
 * What the protocol logic needs from a connection's byte stream. The stream shell
 * (`Connection`) implements it over any Duplex; tests can implement it over an array.
 */
export interface Transport {
  /** Queues PUBLISH bytes; they go out batched, once per event-loop turn. */
  write (bytes: Buffer): void
  /**
   * Queues a control packet (acks, CONNACK, SUBACK, PINGRESP, DISCONNECT). These go out at the
   * end of the input chunk that caused them, ahead of batched PUBLISH bytes: a publisher gets
   * its PUBACK in its own segment, before any copy routed back to it (see Connection).
   */
  writeControl (bytes: Buffer): void
  /** False while the stream is backed up past the high-water mark. */
  readonly writable: boolean
  /**
   * Flushes what is queued, then closes. `linger` (default true): half-close and read what the
   * client still sends until it closes its side (at most 2 s), so its last packets are not met
   * with a reset before it read ours; false when it has nothing to read (evicted, no CONNECT).
   */
  end (linger?: boolean): void
  readonly remoteAddress: string | undefined
  /** Input paused because the client does not read what it is sent (petrel_publishers_paused). */
  readonly backlogged: boolean
}
