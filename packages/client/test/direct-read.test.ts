import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Socket } from 'node:net'
import { once } from 'node:events'
import { connectDirect, directReaderOf } from '../src/direct-read.js'
import type { ReadModerationOptions } from '../src/read-moderation.js'

type Dial = (moderation?: ReadModerationOptions | false, localAddress?: string) => Promise<{ socket: Socket, peer: Socket }>

/** A loopback server for `fn`; `dial` opens a direct socket to it and resolves with it and the server's end. */
async function withServer (fn: (dial: Dial) => Promise<void>): Promise<void> {
  const peers: Socket[] = []
  const opened: Socket[] = []
  const server = createServer((s) => { peers.push(s); opened.push(s) }).listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  const dial: Dial = async (moderation, localAddress) => {
    const socket = connectDirect('127.0.0.1', port, moderation, localAddress)
    opened.push(socket)
    await once(socket, 'connect')
    while (peers.length === 0) await new Promise((resolve) => setImmediate(resolve))
    return { socket, peer: peers.shift() as Socket }
  }
  try {
    await fn(dial)
  } finally {
    for (const s of opened) s.destroy()
    server.close()
  }
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

test('direct TCP reads: bytes sent before a reader attaches are kept, reads own their bytes, end and close still fire', async () => {
  await withServer(async (dial) => {
    const { socket, peer } = await dial()
    peer.write('early')
    await sleep(50)
    const reader = directReaderOf(socket)
    assert.ok(reader !== undefined)
    const chunks: Buffer[] = []
    reader.attach((c) => { chunks.push(c) })
    assert.equal(Buffer.concat(chunks).toString(), 'early')
    peer.write('later')
    await sleep(50)
    // Each read is its own copy: the reused read buffer never shows through an earlier chunk.
    assert.equal(Buffer.concat(chunks).toString(), 'earlylater')
    assert.equal(chunks[0]?.toString(), 'early')
    const ended = once(socket, 'end')
    const closed = once(socket, 'close')
    peer.end()
    await ended
    await closed
    assert.equal(directReaderOf(peer), undefined, 'other streams are not direct')
  })
})

test('direct TCP reads with moderation: a busy stream is read in fewer, bigger reads and nothing is lost or reordered', async () => {
  await withServer(async (dial) => {
    // Reads counted per client socket; `moderation` as the client passes it.
    async function receive (moderation: { pauseMs: number, busyGapMs: number, busyReads: number } | false): Promise<{ reads: number, text: string }> {
      const { socket, peer } = await dial(moderation)
      let reads = 0
      const chunks: Buffer[] = []
      directReaderOf(socket)?.attach((c) => { reads++; chunks.push(c) })
      // 150 small writes, 1 ms apart: an eager reader takes about one read each.
      for (let i = 0; i < 150; i++) {
        peer.write(`${i},`)
        await sleep(1)
      }
      const closed = once(socket, 'close')
      peer.end()
      await closed
      return { reads, text: Buffer.concat(chunks).toString() }
    }
    const expected = Array.from({ length: 150 }, (_, i) => `${i},`).join('')
    const eager = await receive(false)
    assert.equal(eager.text, expected)
    // Every read counts as busy here (gap under 1 s); after 3 of them reading pauses 25 ms at a time.
    const moderated = await receive({ pauseMs: 25, busyGapMs: 1000, busyReads: 3 })
    assert.equal(moderated.text, expected, 'all bytes, in order')
    assert.ok(moderated.reads <= 20, `moderated: ${moderated.reads} reads for 150 writes over ~150+ ms`)
    assert.ok(eager.reads > 40, `eager: ${eager.reads} reads for 150 writes 1 ms apart`)
  })
})

test('direct TCP reads from a chosen source address; without moderation every read is delivered at once', async () => {
  await withServer(async (dial) => {
    // 127.0.0.0/8 is all loopback on Linux: 127.0.0.2 is a distinct local address.
    const { socket, peer } = await dial(false, '127.0.0.2')
    assert.equal(peer.remoteAddress, '127.0.0.2')
    assert.equal(socket.localAddress, '127.0.0.2')
    const chunks: string[] = []
    directReaderOf(socket)?.attach((c) => { chunks.push(c.toString()) })
    peer.write('ping')
    while (chunks.length === 0) await sleep(5)
    assert.deepEqual(chunks, ['ping'])
  })
})

test('direct TCP reads: sockets sharing the read buffer keep their own bytes', async () => {
  await withServer(async (dial) => {
    const a = await dial(false)
    const b = await dial(false)
    const got = { a: [] as Buffer[], b: [] as Buffer[] }
    directReaderOf(a.socket)?.attach((c) => { got.a.push(c) })
    directReaderOf(b.socket)?.attach((c) => { got.b.push(c) })
    for (let i = 0; i < 20; i++) {
      a.peer.write(`a${i};`)
      b.peer.write(`b${i};`)
      await sleep(1)
    }
    await sleep(50)
    const expected = (p: string): string => Array.from({ length: 20 }, (_, i) => `${p}${i};`).join('')
    assert.equal(Buffer.concat(got.a).toString(), expected('a'))
    assert.equal(Buffer.concat(got.b).toString(), expected('b'))
  })
})
