import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Socket } from 'node:net'
import { once } from 'node:events'
import { connectDirect, directReaderOf } from '../src/direct-read.js'

test('direct TCP reads: bytes sent before a reader attaches are kept, reads own their bytes, end and close still fire', async () => {
  const peers: Socket[] = []
  const server = createServer((s) => { peers.push(s) }).listen(0, '127.0.0.1')
  await once(server, 'listening')
  try {
    const port = (server.address() as { port: number }).port
    const socket = connectDirect('127.0.0.1', port)
    await once(socket, 'connect')
    while (peers.length === 0) await new Promise((resolve) => setImmediate(resolve))
    const peer = peers[0] as Socket
    peer.write('early')
    await new Promise((resolve) => setTimeout(resolve, 50))
    const reader = directReaderOf(socket)
    assert.ok(reader !== undefined)
    const chunks: Buffer[] = []
    reader.attach((c) => { chunks.push(c) })
    assert.equal(Buffer.concat(chunks).toString(), 'early')
    peer.write('later')
    await new Promise((resolve) => setTimeout(resolve, 50))
    // Each read is its own copy: the reused read buffer never shows through an earlier chunk.
    assert.equal(Buffer.concat(chunks).toString(), 'earlylater')
    assert.equal(chunks[0]?.toString(), 'early')
    const ended = once(socket, 'end')
    const closed = once(socket, 'close')
    peer.end()
    await ended
    await closed
    assert.equal(directReaderOf(peer), undefined, 'other streams are not direct')
  } finally {
    server.close()
  }
})

test('direct TCP reads with moderation: a busy stream is read in fewer, bigger reads and nothing is lost or reordered', async () => {
  const peers: Socket[] = []
  const server = createServer((s) => { peers.push(s) }).listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  // Reads counted per client socket; `moderation` as the client passes it.
  async function receive (moderation: { pauseMs: number, busyGapMs: number, busyReads: number } | false): Promise<{ reads: number, text: string }> {
    const socket = connectDirect('127.0.0.1', port, moderation)
    await once(socket, 'connect')
    while (peers.length === 0) await new Promise((resolve) => setImmediate(resolve))
    const peer = peers.shift() as Socket
    let reads = 0
    const chunks: Buffer[] = []
    directReaderOf(socket)?.attach((c) => { reads++; chunks.push(c) })
    // 150 small writes, 1 ms apart: an eager reader takes about one read each.
    for (let i = 0; i < 150; i++) {
      peer.write(`${i},`)
      await new Promise((resolve) => setTimeout(resolve, 1))
    }
    const closed = once(socket, 'close')
    peer.end()
    await closed
    return { reads, text: Buffer.concat(chunks).toString() }
  }
  try {
    const expected = Array.from({ length: 150 }, (_, i) => `${i},`).join('')
    const eager = await receive(false)
    assert.equal(eager.text, expected)
    // Every read counts as busy here (gap under 1 s); after 3 of them reading pauses 25 ms at a time.
    const moderated = await receive({ pauseMs: 25, busyGapMs: 1000, busyReads: 3 })
    assert.equal(moderated.text, expected, 'all bytes, in order')
    assert.ok(moderated.reads <= 20, `moderated: ${moderated.reads} reads for 150 writes over ~150+ ms`)
    assert.ok(eager.reads > 40, `eager: ${eager.reads} reads for 150 writes 1 ms apart`)
  } finally {
    server.close()
  }
})

test('direct TCP reads from a chosen source address; without moderation every read is delivered at once', async () => {
  const peers: Socket[] = []
  const server = createServer((s) => { peers.push(s) }).listen(0, '127.0.0.1')
  await once(server, 'listening')
  try {
    const port = (server.address() as { port: number }).port
    // 127.0.0.0/8 is all loopback on Linux: 127.0.0.2 is a distinct local address.
    const socket = connectDirect('127.0.0.1', port, false, '127.0.0.2')
    await once(socket, 'connect')
    while (peers.length === 0) await new Promise((resolve) => setImmediate(resolve))
    const peer = peers[0] as Socket
    assert.equal(peer.remoteAddress, '127.0.0.2')
    assert.equal(socket.localAddress, '127.0.0.2')
    const chunks: string[] = []
    directReaderOf(socket)?.attach((c) => { chunks.push(c.toString()) })
    peer.write('ping')
    while (chunks.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
    assert.deepEqual(chunks, ['ping'])
    socket.destroy()
  } finally {
    for (const p of peers) p.destroy()
    server.close()
  }
})

test('direct TCP reads: sockets sharing the read buffer keep their own bytes', async () => {
  const peers: Socket[] = []
  const server = createServer((s) => { peers.push(s) }).listen(0, '127.0.0.1')
  await once(server, 'listening')
  try {
    const port = (server.address() as { port: number }).port
    const a = connectDirect('127.0.0.1', port, false)
    await once(a, 'connect')
    while (peers.length < 1) await new Promise((resolve) => setImmediate(resolve))
    const b = connectDirect('127.0.0.1', port, false)
    await once(b, 'connect')
    while (peers.length < 2) await new Promise((resolve) => setImmediate(resolve))
    const got = { a: [] as Buffer[], b: [] as Buffer[] }
    directReaderOf(a)?.attach((c) => { got.a.push(c) })
    directReaderOf(b)?.attach((c) => { got.b.push(c) })
    for (let i = 0; i < 20; i++) {
      peers[0]?.write(`a${i};`)
      peers[1]?.write(`b${i};`)
      await new Promise((resolve) => setTimeout(resolve, 1))
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
    const expected = (p: string): string => Array.from({ length: 20 }, (_, i) => `${p}${i};`).join('')
    assert.equal(Buffer.concat(got.a).toString(), expected('a'))
    assert.equal(Buffer.concat(got.b).toString(), expected('b'))
    a.destroy()
    b.destroy()
  } finally {
    for (const p of peers) p.destroy()
    server.close()
  }
})
