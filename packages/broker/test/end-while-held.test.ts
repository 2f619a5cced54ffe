// A client's last PUBLISHes, its DISCONNECT (or none) and its FIN, read together while the broker
// holds its input (a pending async hook, the per-read budget, a client that does not read, flow
// control): every message it sent is routed, in order, and its will goes out only without a
// DISCONNECT, after them. Raw TCP, everything after the setup in one write ending in a FIN; and
// ws: one message, then the close frame.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as netConnect, type Socket } from 'node:net'
import { encode, type Packet } from '@petrel/wire'
import { createBroker, type Broker, type BrokerOptions } from '@petrel/broker'
import { waitFor } from '@petrel/test-utils'
import { WebSocket } from 'ws'
import { sleep, tcpClient, text, type RawClient } from './helpers.js'

interface Case {
  name: string
  options?: BrokerOptions
  /** Before the publisher writes: makes the broker hold its input (a slow subscriber...). */
  setup?: (port: number, broker: Broker, clients: RawClient[]) => Promise<void>
  /** QoS 0 PUBLISHes sent in the one write (besides `before`). */
  n: number
  payloadBytes?: number
  /** Packets ahead of the PUBLISHes in the same write (after the CONNECT). */
  before?: Packet[]
  /** Extra bytes ahead of the PUBLISHes in the same write. */
  filler?: Buffer
  /** The publisher does not read until this long after its write (input paused as not reading). */
  readAfterMs?: number
  /** Whether the case did hold input, checked after. */
  held?: (broker: Broker) => boolean
}

async function run (c: Case, disconnect: boolean, over: 'tcp' | 'ws'): Promise<void> {
  const broker = createBroker({ sysInterval: 0, sweepIntervalMs: 50, ...c.options })
  const clients: RawClient[] = []
  let s: Socket | undefined
  let ws: WebSocket | undefined
  try {
    const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
    const wsUrl = over === 'ws' ? (await broker.listen({ type: 'ws', host: '127.0.0.1', port: 0, path: '/mqtt' })).url : undefined
    const watch = await tcpClient(port, 4)
    clients.push(watch)
    await watch.connect({ clientId: 'watch' })
    watch.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'end/#', qos: 0 }] })
    await watch.expect('suback')
    await c.setup?.(port, broker, clients)
    const sock = over === 'tcp' ? (s = netConnect({ host: '127.0.0.1', port })) : undefined
    const w = wsUrl !== undefined ? (ws = new WebSocket(wsUrl, 'mqtt')) : undefined
    sock?.on('error', () => {})
    w?.on('error', () => {})
    await new Promise<void>((resolve) => { sock?.once('connect', resolve); w?.once('open', resolve) })
    if (c.readAfterMs !== undefined) sock?.pause()
    else sock?.resume()
    const parts: Buffer[] = [encode({ type: 'connect', protocolVersion: 4, clientId: 'pub', cleanStart: true, keepAlive: 0, will: { topicName: 'end/will', payload: Buffer.from('will'), qos: 0, retain: false } }, 4)]
    for (const p of c.before ?? []) parts.push(encode(p, 4))
    if (c.filler !== undefined) parts.push(c.filler)
    const pad = Buffer.alloc(c.payloadBytes ?? 0)
    for (let i = 1; i <= c.n; i++) {
      parts.push(encode({ type: 'publish', topicName: 'end/q0', payload: Buffer.concat([Buffer.from(`m${i} `), pad]), qos: 0, retain: false, dup: false }, 4))
    }
    if (disconnect) parts.push(encode({ type: 'disconnect' }, 4))
    if (w !== undefined) {
      // one message, then the close frame: both leave in the same turn
      w.send(Buffer.concat(parts))
      w.close()
    } else {
      sock?.end(Buffer.concat(parts))
    }
    if (c.readAfterMs !== undefined && sock !== undefined) {
      await waitFor(() => [...broker.connections].some((x) => (x as unknown as { transport: { backlogged: boolean } }).transport.backlogged), { timeoutMs: 10_000, message: `${c.name}: input paused as not reading` })
      await sleep(c.readAfterMs)
      sock.resume()
    }
    const want = (c.before ?? []).filter((p) => p.type === 'publish').length + c.n
    const seen: string[] = []
    for (;;) {
      let m
      try {
        m = await watch.expect('publish', disconnect && seen.length >= want ? 500 : 10_000)
      } catch {
        break
      }
      const t = text(m.payload)
      seen.push(t.slice(0, t.indexOf(' ') === -1 ? undefined : t.indexOf(' ')))
      if (t === 'will') break
    }
    const q0 = seen.filter((t) => /^m\d+$/.test(t))
    assert.deepEqual(q0, Array.from({ length: c.n }, (_, i) => `m${i + 1}`), `${c.name}: every QoS 0 message, in order`)
    assert.equal(seen.includes('will'), !disconnect, `${c.name}: the will ${disconnect ? 'not sent (DISCONNECT 0x00)' : 'sent'}`)
    if (!disconnect) assert.equal(seen.at(-1), 'will', `${c.name}: the will after the messages`)
    if (c.held !== undefined) assert.ok(c.held(broker), `${c.name}: input was held`)
    await waitFor(() => broker.connections.size === clients.length, { timeoutMs: 3000, message: `${c.name}: the publisher's connection closed` })
  } finally {
    s?.destroy()
    ws?.terminate()
    for (const x of clients) x.destroy()
    await broker.close()
  }
}

const slowHook = async (ms: number): Promise<boolean> => { await sleep(ms); return true }

/** A QoS 1 subscriber that acks nothing: a publisher reaching it is held back (flow control). */
const slowSubscriber = async (port: number, _broker: Broker, clients: RawClient[]): Promise<void> => {
  const slow = await tcpClient(port, 4)
  clients.push(slow)
  await slow.connect({ clientId: 'slow' })
  slow.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'end/q1', qos: 1 }] })
  await slow.expect('suback')
}
const q1s: Packet[] = Array.from({ length: 4 }, (_, i) => ({ type: 'publish', topicName: 'end/q1', payload: Buffer.from(`q1-${i + 1}`), qos: 1, retain: false, dup: false, packetId: i + 1 }))

const cases: Case[] = [
  { name: 'async authorizePublish on every PUBLISH', options: { authorizePublish: async () => await slowHook(20) }, n: 5 },
  { name: 'async authorizePublish on the last PUBLISH only', options: { authorizePublish: async (_c, p) => p.payload.length > 0 && text(p.payload).startsWith('m5') ? await slowHook(50) : true }, n: 5 },
  { name: 'async authenticate', options: { authenticate: async () => await slowHook(100) }, n: 5 },
  // more than a connection's read budget (256 KiB a turn): what loopback hands over in one turn
  // past it waits, with the FIN, in the paused stream
  { name: 'read budget (1 MiB in one write)', n: 1024, payloadBytes: 1024 },
  {
    // PINGREQs it does not read the PINGRESPs of: its input is paused until it reads (16 MiB of
    // PINGRESPs: more than loopback's socket buffers take)
    name: 'a client that does not read', options: { limits: { writeHighWaterMark: 16 * 1024, maxPacketSize: 16 * 1024 } },
    filler: Buffer.alloc(16 * 1024 * 1024, Buffer.from([0xc0, 0x00])), n: 5, readAfterMs: 200
  },
  {
    name: 'flow control (parked behind a slow subscriber)', options: { limits: { maxQueuedMessages: 4, maxInflightMessages: 1 } },
    setup: slowSubscriber, before: q1s, n: 5, held: (b) => b.stats.flowControlHolds > 0
  },
  {
    name: 'flow control and an async authorizePublish', options: { authorizePublish: async () => await slowHook(10), limits: { maxQueuedMessages: 4, maxInflightMessages: 1 } },
    setup: slowSubscriber, before: q1s, n: 5, held: (b) => b.stats.flowControlHolds > 0
  }
]

for (const over of ['tcp', 'ws'] as const) {
  for (const c of cases) {
    // a ws client's own socket is not paused here: the not-reading case is TCP's
    if (over === 'ws' && c.readAfterMs !== undefined) continue
    for (const disconnect of [true, false]) {
      test(`${c.name}: PUBLISHes${disconnect ? ', DISCONNECT' : ''} and ${over === 'ws' ? 'a close frame' : 'FIN'} in one write: all routed in order, ${disconnect ? 'no will' : 'then the will'} (${over})`, { timeout: 30_000 }, async () => {
        await run(c, disconnect, over)
      })
    }
  }
}
