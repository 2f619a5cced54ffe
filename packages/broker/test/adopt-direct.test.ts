import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, createServer, type Socket } from 'node:net'
import { once } from 'node:events'
import { adoptDirect } from '../src/adopt-direct.js'

const tick = async (ms = 20): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

test('adoptDirect: an accepted socket reads through onread; chunks are owned copies; pause, resume, end and close work', async () => {
  const adopted: Socket[] = []
  const accepted: Socket[] = []
  const server = createServer({ pauseOnConnect: true }, (s) => {
    accepted.push(s)
    adopted.push(adoptDirect(s))
  }).listen(0, '127.0.0.1')
  await once(server, 'listening')
  const client = connect((server.address() as { port: number }).port, '127.0.0.1')
  try {
    await once(client, 'connect')
    while (adopted.length === 0) await tick(5)
    const s = adopted[0] as Socket
    assert.notEqual(s, accepted[0], 'a new socket owns the handle')
    assert.equal(accepted[0]?.destroyed, true, 'the old wrapper is discarded')
    assert.equal(s.remoteAddress, '127.0.0.1')
    assert.equal(s.remotePort, client.localPort)
    const chunks: Buffer[] = []
    s.on('data', (c: Buffer) => { chunks.push(c) })
    client.write('first')
    await tick()
    client.write('second')
    await tick()
    // Each read is its own copy: the shared read buffer never shows through an earlier chunk.
    assert.deepEqual(chunks.map(String), ['first', 'second'])
    // Paused: nothing is read until resumed, then nothing is lost.
    s.pause()
    client.write('third')
    await tick()
    assert.equal(chunks.length, 2)
    s.resume()
    await tick()
    assert.equal(Buffer.concat(chunks).toString(), 'firstsecondthird')
    // Writing back works as on any socket.
    s.write('pong')
    const [reply] = await once(client, 'data') as [Buffer]
    assert.equal(reply.toString(), 'pong')
    const ended = once(s, 'end')
    const closed = once(s, 'close')
    client.end()
    await ended
    s.end()
    await closed
  } finally {
    client.destroy()
    server.close()
  }
})

test('adoptDirect: a socket without a handle is used as it is, and resumed', async () => {
  const server = createServer({ pauseOnConnect: true }, () => {}).listen(0, '127.0.0.1')
  await once(server, 'listening')
  const client = connect((server.address() as { port: number }).port, '127.0.0.1')
  try {
    await once(client, 'connect')
    client.destroy()
    await once(client, 'close')
    assert.equal(adoptDirect(client), client, 'a destroyed socket has no handle to move')
  } finally {
    server.close()
  }
})
