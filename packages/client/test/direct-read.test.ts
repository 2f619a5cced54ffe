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
