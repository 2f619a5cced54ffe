import { test } from 'node:test'
import assert from 'node:assert/strict'
import { propertiesCost, type PublishProperties } from '@petrel/wire'
import { Message } from '../src/message.js'
import { messageBytes, Subscription, type OverflowPolicy, type SubscriptionOwner } from '../src/subscription.js'

// The iterator queue of one subscription, alone: its bounds and what it drops.

function owner (): SubscriptionOwner & { drops: number } {
  return {
    drops: 0,
    async unsubscribeEntry () {},
    messageDropped () { this.drops++ },
    handlerFailed () {}
  }
}

const msg = (tag: string, size: number, properties?: PublishProperties): Message =>
  new Message('t', Buffer.alloc(size, tag), 0, false, false, 0, properties, undefined, undefined)

const tags = async (sub: Subscription): Promise<string[]> => {
  const out: string[] = []
  while (sub.queued > 0) out.push(((await sub.next()).value as Message).payload.toString()[0] as string)
  return out
}

test('the queue is bounded by bytes as well as by count: dropOldest drops from the head until the new message fits', async () => {
  const o = owner()
  const sub = new Subscription(o, ['t'], undefined, 100, 'dropOldest', 1000)
  for (const t of ['a', 'b', 'c']) sub.push(msg(t, 399)) // 400 bytes each with the topic
  assert.equal(sub.queued, 2)
  assert.equal(sub.queuedBytes, 800)
  assert.equal(sub.dropped, 1)
  assert.equal(o.drops, 1)
  // One message bigger than the bound empties the queue and is kept alone.
  sub.push(msg('d', 5000))
  assert.equal(sub.dropped, 3)
  assert.equal(sub.queuedBytes, 5001)
  assert.deepEqual(await tags(sub), ['d'])
  assert.equal(sub.queuedBytes, 0)
})

test('dropNewest keeps what is queued and drops the message that does not fit (by bytes or count)', async () => {
  for (const [limit, bytes] of [[100, 1000], [2, Number.POSITIVE_INFINITY]] as const) {
    const sub = new Subscription(owner(), ['t'], undefined, limit, 'dropNewest' as OverflowPolicy, bytes)
    for (const t of ['a', 'b', 'c']) sub.push(msg(t, 399))
    assert.equal(sub.dropped, 1)
    assert.deepEqual(await tags(sub), ['a', 'b'], `limit ${limit}, bytes ${bytes}`)
  }
})

test('a message counts its payload, topic and properties as they cost decoded, by the estimate the broker\'s queues use (propertiesCost)', async () => {
  assert.equal(messageBytes(msg('a', 10)), 11)
  const props: PublishProperties = { userProperties: Array.from({ length: 100 }, () => ['', ''] as [string, string]), correlationData: Buffer.alloc(16), responseTopic: 'r/1' }
  // The properties object 64, the response topic 16 + 3, the correlation data 64 + 16, 72 a pair.
  assert.equal(propertiesCost(props), 64 + 19 + 80 + 100 * 72)
  assert.equal(messageBytes(msg('a', 10, props)), 11 + propertiesCost(props))
  const ids = { subscriptionIdentifiers: [1, 2, 3] }
  assert.equal(messageBytes(msg('a', 10, ids)), 11 + 64 + 3 * 8)
  assert.equal(messageBytes(msg('a', 10, ids)), 11 + propertiesCost(ids))
  // 200 tiny messages of 100 empty pairs each would be 8 MB of heap; a 64 KiB bound keeps 8.
  const sub = new Subscription(owner(), ['t'], undefined, 10_000, 'dropOldest', 64 * 1024)
  for (let i = 0; i < 200; i++) sub.push(msg('a', 0, props))
  assert.equal(sub.queued, 8)
  // Leaving the loop drops (and acks) what is left: the byte count goes back to 0.
  await sub.return()
  assert.equal(sub.queuedBytes, 0)
})

test('a queued payload that is a view into a much larger buffer (a socket read, a WebSocket message) is charged that buffer, once for the messages queued from it in a row', async () => {
  const MiB = 1024 * 1024
  const [x, y, z] = [Buffer.alloc(MiB), Buffer.alloc(MiB), Buffer.alloc(MiB)]
  const from = (chunk: Buffer, tag: number): Message => {
    chunk[tag] = tag
    return new Message('t', chunk.subarray(tag, tag + 4), 0, false, false, 0, undefined, undefined, undefined)
  }
  const sub = new Subscription(owner(), ['t'], undefined, 100, 'dropOldest', 2.5 * MiB)
  // A reader already waiting takes it at once: not queued, not charged, still a view.
  const waiting = sub.next()
  sub.push(from(x, 9))
  assert.equal(((await waiting).value as Message).payload.buffer, x.buffer)
  sub.push(from(x, 1))
  sub.push(from(x, 2))
  sub.push(from(y, 3))
  assert.equal(sub.queuedBytes, 2 * MiB + 15, 'x once, y once, 5 bytes each')
  // A third buffer does not fit: the oldest goes (the one charged for x).
  sub.push(from(z, 4))
  assert.equal(sub.dropped, 1)
  assert.equal(sub.queuedBytes, 2 * MiB + 15)
  assert.deepEqual((await Promise.all([sub.next(), sub.next(), sub.next()])).map((r) => (r.value as Message).payload[0]), [2, 3, 4])
  assert.equal(sub.queuedBytes, 0)
  // Small buffers (Node's pool) are not charged beyond the message.
  sub.push(new Message('t', Buffer.from('abcd'), 0, false, false, 0, undefined, undefined, undefined))
  assert.equal(sub.queuedBytes, 5)
})
