// Async hooks that take their time: input is held in order meanwhile, which must not cost a
// healthy client its connection.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createBroker, type BrokerOptions } from '@petrel/broker'
import type { Packet } from '@petrel/wire'
import { sleep, tcpClient, versions, type RawClient } from './helpers.js'

async function withTcpBroker (options: BrokerOptions, fn: (port: number) => Promise<void>): Promise<void> {
  const broker = createBroker({ sysInterval: 0, sweepIntervalMs: 50, ...options })
  try {
    const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
    await fn(port)
  } finally {
    await broker.close()
  }
}

/** Everything the client received within `ms`, stopping early if the broker closes it. */
async function collect (c: RawClient, ms: number): Promise<Packet[]> {
  const out: Packet[] = []
  const deadline = Date.now() + ms
  for (;;) {
    const left = deadline - Date.now()
    if (left <= 0 || c.closed) return out
    try {
      out.push(await c.next(left))
    } catch {
      return out
    }
  }
}

for (const v of versions) {
  test(`v${v}: a 2 s authorizePublish does not cost a client with keepalive 1 s and PINGREQs flowing its connection [MQTT-3.1.2-22]`, { timeout: 20_000 }, async () => {
    const authorizePublish = async (): Promise<boolean> => { await sleep(2000); return true }
    await withTcpBroker({ authorizePublish }, async (port) => {
      const c = await tcpClient(port, v)
      assert.equal((await c.connect({ clientId: 'patient', keepAlive: 1 })).reasonCode, 0)
      c.send({ type: 'publish', topicName: 'slow/hook', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 1 })
      // PINGREQs every 400 ms for 3.2 s: the broker holds them behind the hook for 2 s
      const pings = setInterval(() => { c.send({ type: 'pingreq' }) }, 400)
      let got: Packet[]
      try {
        got = await collect(c, 3200)
      } finally {
        clearInterval(pings)
      }
      assert.equal(c.closed, false, `closed; received ${got.map((p) => p.type).join(', ')}`)
      assert.deepEqual(got.filter((p) => p.type === 'disconnect'), [])
      const ack = got.find((p) => p.type === 'puback')
      assert.ok(ack !== undefined && ack.packetId === 1 && (ack.reasonCode ?? 0) === 0, 'PUBACK 0 for the held publish')
      // the PINGREQs held behind the hook are answered, in order, after its PUBACK
      assert.ok(got.filter((p) => p.type === 'pingresp').length >= 6)
      assert.equal(got[0]?.type, 'puback')
      c.end()
    })
  })
}
