import type { Writable } from 'node:stream'

/** A TLSSocket's handle: the TLS wrap, over the TCP handle it writes to (`_parent`). */
interface WrappedHandle { _handle?: { _parent?: { writeQueueSize?: unknown } } | null }

/**
 * Over TLS, bytes waiting for the socket's next write that do not count against
 * write_high_water_mark while the kernel takes everything it is given: what Linux takes from a
 * TCP socket at most before refusing (tcp_wmem's default maximum, 4 MiB), and never less than
 * 3 × that mark. It was 3 × the mark (768 KiB): a turn routing more than that plus the session
 * queue to one subscriber (a 1.2 MB burst, or four unpaced publishers' reads) dropped QoS 0
 * messages (queue_full) for a client reading at full speed, with the kernel refusing nothing,
 * where a TCP socket (ws) handed the same bytes to the kernel and dropped none.
 */
export function tlsAllowance (highWaterMark: number): number {
  return Math.max(4 * 1024 * 1024, 3 * highWaterMark)
}

/**
 * The bytes written to `stream` that count against write_high_water_mark: those its peer has not
 * taken yet, as far as can be told.
 *
 * A TCP socket hands a write to the kernel at once, so what it still holds (`writableLength`) is
 * what the kernel refused: the peer is behind. A TLSSocket completes every write a tick later,
 * even one the kernel took in full, and holds each write made meanwhile until then: a subscriber
 * reading over TLS (tls, wss) at full speed was counted as slow by any turn that routed it more
 * than the mark, and a burst past that plus its session queue was dropped (queue_full). What the
 * TCP handle under the TLS layer holds (`writeQueueSize`, bytes the kernel refused) tells the
 * two apart: while it is empty, what waits above it counts only past `allowance` (bounding what a
 * turn may leave there, as the kernel's send buffer bounds it on TCP); once the kernel refuses,
 * all of it counts, as on TCP.
 */
export function heldBytes (stream: Writable, allowance: number): number {
  const n = stream.writableLength
  if (n === 0) return 0
  const refused = (stream as WrappedHandle)._handle?._parent?.writeQueueSize
  if (typeof refused !== 'number' || refused > 0) return n
  return n > allowance ? n - allowance : 0
}
