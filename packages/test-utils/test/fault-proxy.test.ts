import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { FaultProxy, SocketReader, waitFor } from '../src/index.js'

/** A TCP echo server on 127.0.0.1 that remembers its sockets. */
async function echoServer (t: TestContext): Promise<{ server: Server, port: number, sockets: Set<Socket> }> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.pipe(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  const address = server.address()
  assert.ok(address !== null && typeof address !== 'string')
  return { server, port: address.port, sockets }
}

async function proxied (t: TestContext, delayMs = 0): Promise<{ proxy: FaultProxy, echo: Awaited<ReturnType<typeof echoServer>> }> {
  const echo = await echoServer(t)
  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: echo.port }, delayMs })
  t.after(() => proxy.close())
  return { proxy, echo }
}

async function dial (t: TestContext, proxy: FaultProxy): Promise<{ socket: Socket, reader: SocketReader }> {
  const socket = connect({ host: '127.0.0.1', port: proxy.port })
  const reader = new SocketReader(socket)
  t.after(() => { socket.destroy() })
  await once(socket, 'connect')
  return { socket, reader }
}

test('forwards bytes both ways and counts connections', async (t) => {
  const { proxy } = await proxied(t)
  assert.equal(proxy.url, `mqtt://127.0.0.1:${proxy.port}`)
  const { socket, reader } = await dial(t, proxy)
  socket.write('hello')
  assert.equal((await reader.read(5)).toString(), 'hello')
  assert.equal(proxy.connections, 1)
  assert.equal(proxy.accepted, 1)
  socket.end()
  await reader.closed()
  await waitFor(() => proxy.connections === 0, { timeoutMs: 2000, message: 'connection not released' })
  assert.equal(proxy.accepted, 1)
})

test('cut() closes both sides at once', async (t) => {
  const { proxy, echo } = await proxied(t)
  const { socket, reader } = await dial(t, proxy)
  socket.write('x')
  await reader.read(1)
  assert.equal(echo.sockets.size, 1)
  proxy.cut()
  await reader.closed(2000)
  await waitFor(() => echo.sockets.size === 0, { timeoutMs: 2000, message: 'upstream not closed' })
  assert.equal(proxy.connections, 0)
})

test('cut({ reset: true }) resets the client connection', async (t) => {
  const { proxy } = await proxied(t)
  const { socket, reader } = await dial(t, proxy)
  socket.write('x')
  await reader.read(1)
  const error = once(socket, 'error')
  proxy.cut({ reset: true })
  const [err] = await error as [NodeJS.ErrnoException]
  assert.equal(err.code, 'ECONNRESET')
})

test('blackhole drops bytes both ways and keeps the sockets open', async (t) => {
  const { proxy, echo } = await proxied(t)
  const { socket, reader } = await dial(t, proxy)
  socket.write('a')
  assert.equal((await reader.read(1)).toString(), 'a')
  proxy.blackhole(true)
  socket.write('lost')
  await sleep(150)
  assert.equal(reader.available, 0)
  assert.equal(reader.ended, false)
  // Closing the client is hidden from the target too.
  socket.destroy()
  await sleep(100)
  assert.equal(echo.sockets.size, 1)
  proxy.blackhole(false)
  await waitFor(() => echo.sockets.size === 0, { timeoutMs: 2000, message: 'orphan upstream not reaped' })
})

test('blackhole off: new bytes flow again', async (t) => {
  const { proxy } = await proxied(t)
  const { socket, reader } = await dial(t, proxy)
  proxy.blackhole(true)
  socket.write('lost')
  await sleep(100)
  proxy.blackhole(false)
  socket.write('kept')
  assert.equal((await reader.read(4)).toString(), 'kept')
  await sleep(50)
  assert.equal(reader.available, 0)
})

test('delayMs adds latency in each direction', async (t) => {
  const delayMs = 100
  const { proxy } = await proxied(t, delayMs)
  const { socket, reader } = await dial(t, proxy)
  const started = performance.now()
  socket.write('ping')
  assert.equal((await reader.read(4)).toString(), 'ping')
  const rtt = performance.now() - started
  assert.ok(rtt >= 2 * delayMs - 5, `round trip ${rtt} ms, expected >= ${2 * delayMs}`)
  proxy.delayMs = 0
  const again = performance.now()
  socket.write('pong')
  await reader.read(4)
  assert.ok(performance.now() - again < delayMs, 'delay 0 should be fast')
})

test('delay keeps order across many small writes', async (t) => {
  const { proxy } = await proxied(t, 20)
  const { socket, reader } = await dial(t, proxy)
  const expected: number[] = []
  for (let i = 0; i < 200; i++) {
    expected.push(i)
    socket.write(Buffer.from([i]))
    if (i % 50 === 0) await sleep(5)
  }
  assert.deepEqual([...await reader.read(200)], expected)
})

test('stall holds bytes, resume flushes them in order', async (t) => {
  const { proxy } = await proxied(t)
  const { socket, reader } = await dial(t, proxy)
  socket.write('0')
  await reader.read(1)
  proxy.stall()
  const big = Buffer.alloc(16 << 20)
  for (let i = 0; i < big.length; i++) big[i] = i % 251
  socket.write('1')
  socket.write(big)
  socket.write('2')
  await sleep(200)
  assert.equal(reader.available, 0)
  assert.ok(socket.writableLength > 0, 'backpressure should build while stalled')
  assert.equal(reader.ended, false)
  proxy.resume()
  const got = await reader.read(big.length + 2, 10_000)
  assert.equal(got.subarray(0, 1).toString(), '1')
  assert.ok(got.subarray(1, big.length + 1).equals(big))
  assert.equal(got.subarray(big.length + 1).toString(), '2')
})

test('refuse() drops new connections but keeps existing ones', async (t) => {
  const { proxy } = await proxied(t)
  const existing = await dial(t, proxy)
  proxy.refuse(true)
  const refused = await dial(t, proxy)
  await refused.reader.closed(2000)
  assert.equal(proxy.accepted, 2)
  existing.socket.write('ok')
  assert.equal((await existing.reader.read(2)).toString(), 'ok')
  proxy.refuse(false)
  const later = await dial(t, proxy)
  later.socket.write('yes')
  assert.equal((await later.reader.read(3)).toString(), 'yes')
  assert.equal(proxy.accepted, 3)
})

test('an unreachable target closes the client connection', async (t) => {
  const echo = await echoServer(t)
  const port = echo.port
  await new Promise((resolve) => echo.server.close(resolve))
  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port } })
  t.after(() => proxy.close())
  const { reader } = await dial(t, proxy)
  await reader.closed(2000)
})

test('close() ends connections and the listener', async (t) => {
  const { proxy } = await proxied(t)
  const { reader } = await dial(t, proxy)
  await proxy.close()
  await reader.closed(2000)
  const socket = connect({ host: '127.0.0.1', port: proxy.port })
  const [err] = await once(socket, 'error') as [NodeJS.ErrnoException]
  assert.equal(err.code, 'ECONNREFUSED')
})
