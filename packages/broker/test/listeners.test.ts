// Listener options derived from the broker's limits.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as tlsConnect } from 'node:tls'
import { encode, Decoder } from '@petrel/wire'
import { createBroker } from '@petrel/broker'
import { makeTestCertificates } from '@petrel/test-utils'

test('a connect_timeout_ms past what a timer can wait (2^31 ms) gives TLS clients their handshake, without a TimeoutOverflowWarning', async () => {
  const certs = await makeTestCertificates()
  const broker = createBroker({ sysInterval: 0, limits: { connectTimeoutMs: 2 ** 31 } })
  const warnings: string[] = []
  const onWarning = (w: Error): void => { warnings.push(`${w.name}: ${w.message}`) }
  process.on('warning', onWarning)
  try {
    const { port } = await broker.listen({ type: 'tls', port: 0, cert: certs.cert, key: certs.key })
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: certs.ca, servername: 'localhost' })
    try {
      // the handshake (and the CONNECT after it) must not be cut after 1 ms, as an overflowing timer is
      const decoder = new Decoder({ protocolVersion: 5 })
      const connack = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error('no CONNACK within 5 s')) }, 5000)
        socket.on('error', (err) => { clearTimeout(timer); reject(err) })
        socket.on('close', () => { clearTimeout(timer); reject(new Error('closed before CONNACK')) })
        socket.on('secureConnect', () => {
          // wait a little past the handshake: an overflowed handshake timer fired after 1 ms
          setTimeout(() => { socket.write(encode({ type: 'connect', protocolVersion: 5, clientId: 'tls', cleanStart: true, keepAlive: 0 }, 5)) }, 50)
        })
        socket.on('data', (chunk: Buffer) => {
          for (const p of decoder.push(chunk)) { clearTimeout(timer); resolve(p) }
        })
      })
      assert.equal((connack as { type: string }).type, 'connack')
    } finally {
      socket.destroy()
    }
    await new Promise((resolve) => setImmediate(resolve))
    assert.deepEqual(warnings.filter((w) => w.includes('TimeoutOverflow')), [])
  } finally {
    process.off('warning', onWarning)
    await broker.close()
  }
})
