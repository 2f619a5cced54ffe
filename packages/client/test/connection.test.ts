import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Duplex } from 'node:stream'
import { Connection, type ConnectionHandler } from '../src/connection.js'
import { encode } from '@petrel/wire'

/** A stream that keeps every chunk it was given (by reference) and completes writes a turn later, as a busy socket does. */
function sink (): { stream: Duplex, chunks: Buffer[] } {
  const chunks: Buffer[] = []
  const stream = new Duplex({
    read () {},
    write (chunk: Buffer, _enc, cb) { chunks.push(chunk); setImmediate(cb) },
    writev (list, cb) { for (const c of list) chunks.push(c.chunk as Buffer); setImmediate(cb) }
  })
  return { stream, chunks }
}

const handler: ConnectionHandler = { onPacket () {}, onClose () {}, onDrain () {}, onPing () {}, readsMayPause: () => false }
const turn = async (): Promise<void> => { await new Promise((resolve) => setImmediate(resolve)) }
const bytes = (n: number, fill: number): Buffer => Buffer.alloc(n, fill)

test('a turn\'s packets leave in one write, in order, whether copied or written in place', async () => {
  const { stream, chunks } = sink()
  const c = new Connection(stream, 4, 1 << 20, handler)
  c.write(bytes(2, 1))
  const at = c.reserve(3)
  c.buffer.fill(2, at, at + 3)
  c.commit(3)
  c.write(bytes(40, 3))
  assert.equal(chunks.length, 0, 'nothing is written before the end of the turn')
  await turn()
  assert.equal(chunks.length, 1)
  assert.deepEqual(chunks[0], Buffer.concat([bytes(2, 1), bytes(3, 2), bytes(40, 3)]))
  assert.equal(c.bytesOut, 45)
  c.close(undefined)
})

test('a large packet between small ones keeps its place', async () => {
  const { stream, chunks } = sink()
  const c = new Connection(stream, 4, 1 << 20, handler)
  c.write(bytes(10, 1))
  c.write(bytes(5000, 2))
  c.write(bytes(10, 3))
  await turn()
  assert.deepEqual(Buffer.concat(chunks), Buffer.concat([bytes(10, 1), bytes(5000, 2), bytes(10, 3)]))
  c.close(undefined)
})

test('bytes handed to the stream are never overwritten by later packets', async () => {
  const { stream, chunks } = sink()
  const c = new Connection(stream, 4, 1 << 20, handler)
  const expected: Buffer[] = []
  for (let t = 0; t < 40; t++) {
    // Growing turns fill slabs of several sizes; every turn's bytes differ from the others'.
    for (let i = 0; i < t * 10; i++) {
      const b = bytes(1 + ((t + i) % 90), t)
      expected.push(b)
      if (i % 2 === 0) c.write(b)
      else {
        const at = c.reserve(b.length)
        b.copy(c.buffer, at)
        c.commit(b.length)
      }
    }
    await turn()
  }
  assert.deepEqual(Buffer.concat(chunks), Buffer.concat(expected))
  c.close(undefined)
})

test('64 KiB of packets go out at once, before the turn ends; after the burst a quiet connection holds a small slab', async () => {
  const { stream, chunks } = sink()
  const c = new Connection(stream, 4, 1 << 20, handler)
  for (let i = 0; i < 1000; i++) c.write(bytes(100, i & 0xff))
  assert.ok(chunks.length >= 1, 'a full batch is written without waiting for the end of the turn')
  await turn()
  assert.equal(Buffer.concat(chunks).length, 100_000)
  assert.ok(c.buffer.length > 1024, 'busy: a big slab')
  c.write(bytes(10, 1)) // a quiet turn
  await turn()
  c.reserve(10)
  assert.equal(c.buffer.length, 1024, 'quiet: the big slab was let go')
  c.close(undefined)
})

test('3.1.1: a malformed packet closes the link, but the acks for the good packets read before it still go out', async () => {
  const { stream, chunks } = sink()
  let closedWith: unknown
  const c = new Connection(stream, 4, 1 << 20, {
    ...handler,
    // As the client does: a QoS 1 PUBLISH is acked at once, into the turn's batch.
    onPacket (p) { if (p.type === 'publish' && p.packetId !== undefined) c.write(encode({ type: 'puback', packetId: p.packetId }, 4)) },
    onClose (err) { closedWith = err }
  })
  const good = encode({ type: 'publish', topicName: 'a/b', payload: Buffer.from('x'), qos: 1, packetId: 7, retain: false, dup: false }, 4)
  const malformed = Buffer.from([0x30, 0x02, 0x00, 0x05]) // topic length 5 in a 2-byte body
  stream.push(Buffer.concat([good, malformed]))
  await turn()
  await turn()
  assert.equal((closedWith as { code?: string } | undefined)?.code !== undefined, true, 'the link closed with a typed error')
  assert.ok(c.isClosed)
  assert.deepEqual(Buffer.concat(chunks), encode({ type: 'puback', packetId: 7 }, 4), 'the PUBACK was sent, and nothing else (no DISCONNECT under 3.1.1)')
})
