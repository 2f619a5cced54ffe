// Hostile and careless clients over real sockets: each is answered or held back on its own,
// and neither the process nor the other clients pay for it (memory, event loop, state).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as netConnect, type Socket } from 'node:net'
import { encode } from '@petrel/wire'
import { createBroker, type Broker, type BrokerOptions } from '@petrel/broker'
import { waitFor } from '@petrel/test-utils'

async function withTcpBroker (options: BrokerOptions, fn: (broker: Broker, port: number) => Promise<void>): Promise<void> {
  const broker = createBroker({ sysInterval: 0, sweepIntervalMs: 50, ...options })
  const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
  try {
    await fn(broker, port)
  } finally {
    await broker.close()
  }
}

async function rawSocket (port: number): Promise<Socket> {
  const s = netConnect({ host: '127.0.0.1', port })
  s.on('error', () => {})
  await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
  return s
}

test('a client that floods PINGREQ without reading is paused, not buffered for: every PINGRESP still arrives once it reads', async () => {
  const limits = { writeHighWaterMark: 16 * 1024, maxPacketSize: 16 * 1024 }
  await withTcpBroker({ limits }, async (broker, port) => {
    const s = await rawSocket(port)
    s.pause() // never reads, for now
    s.write(encode({ type: 'connect', protocolVersion: 4, clientId: 'flooder', cleanStart: true, keepAlive: 0 }, 4))
    const chunk = Buffer.alloc(64 * 1024)
    for (let i = 0; i < chunk.length; i += 2) chunk[i] = 0xc0 // PINGREQ, remaining length 0
    const chunks = 128 // 8 MiB of PINGREQ: 4 Mi answers, more than the kernel's socket buffers hold
    for (let i = 0; i < chunks; i++) s.write(chunk)
    const server = [...broker.connections][0]
    assert.ok(server !== undefined)
    const stream = (server.transport as unknown as { stream: Socket }).stream
    let most = 0
    const t0 = Date.now()
    while (Date.now() - t0 < 1500) {
      most = Math.max(most, stream.writableLength)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    // the high-water mark plus one packet, plus what one read can ask for
    assert.ok(most < 1024 * 1024, `the broker buffered ${most} bytes of answers for a client that does not read`)
    // now it reads: nothing was lost, every PINGREQ is answered
    let got = 0
    s.on('data', (b: Buffer) => { got += b.length })
    s.resume()
    const expected = 4 + chunks * chunk.length // CONNACK + one PINGRESP per PINGREQ
    await waitFor(() => got >= expected, { timeoutMs: 30_000, message: `got ${got} of ${expected} bytes` })
    assert.equal(got, expected)
    s.destroy()
  })
})
