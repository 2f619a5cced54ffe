import { Socket } from 'node:net'

/**
 * One read buffer for every accepted TCP connection: each read is copied out of it (into
 * Buffer's pool below 4 KiB) before the next read can happen, so nothing is held per connection.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024)

/**
 * An accepted TCP socket (from a server made with `pauseOnConnect: true`), re-wrapped so that its
 * reads go through net's `onread` into one shared buffer instead of the Readable stream path,
 * which allocates 64 KiB per read and runs push, 'data' and the stream's bookkeeping for every
 * chunk. With many clients at moderate rates each read is one packet, and that per-read cost
 * is a good part of the broker's work: measured here with 200 publishers at 100 msg/s each, the
 * broker spent 10-15% less CPU on the same messages. The returned socket emits 'data' (an owned
 * copy per read), 'end', 'close' and 'error', and pauses and resumes, as before.
 *
 * net.Server offers `onread` only to sockets it connects, not to ones it accepts, so this moves
 * the accepted socket's handle into a new `net.Socket({ handle, onread })` (the constructor form
 * Node uses itself for handles it passes between processes); the old wrapper is discarded
 * without closing the handle. Should a Node version not expose the handle, the accepted socket
 * is used as it is. The server no longer counts the adopted socket: whoever adopts it tracks it.
 */
export function adoptDirect (accepted: Socket): Socket {
  const holder = accepted as unknown as { _handle?: object | null }
  const handle = holder._handle
  if (handle === null || handle === undefined || accepted.destroyed) {
    accepted.resume()
    return accepted
  }
  let socket: Socket
  try {
    socket = new Socket({ handle, onread: { buffer: READ_BUFFER, callback: onRead } } as ConstructorParameters<typeof Socket>[0])
  } catch {
    accepted.resume()
    return accepted
  }
  socket.setNoDelay(true)
  holder._handle = null
  accepted.destroy()
  return socket
}

// Called by net as a method of the socket (`this`): one function for all connections.
function onRead (this: Socket, n: number, buf: Uint8Array): boolean {
  const chunk = Buffer.allocUnsafe(n)
  chunk.set(n === buf.length ? buf : buf.subarray(0, n))
  this.emit('data', chunk)
  return true
}
