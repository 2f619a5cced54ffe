import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as tcpConnect } from 'node:net'
import { freePort, makeTestCertificates, requirePeer, startMosquitto, waitFor, withTimeout } from '@petrel/test-utils'
import { connect, type Message } from '../src/index.js'

/** Whether something accepts TCP connections on localhost:port. */
async function accepts (port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const s = tcpConnect({ host: 'localhost', port })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => { s.destroy(); resolve(false) })
  })
}

async function roundTrip (url: string, opts: Parameters<typeof connect>[1]): Promise<Message> {
  const c = await connect(url, opts)
  try {
    const sub = await c.subscribe('tr/t', { qos: 1 })
    await c.publish('tr/t', 'over the wire', { qos: 1 })
    const it = sub[Symbol.asyncIterator]()
    const r = await withTimeout(it.next(), 5000, 'message')
    return r.value as Message
  } finally {
    await c.end()
  }
}

test('TLS (mqtts://) with a CA, and with a required client certificate, both versions', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const certs = await makeTestCertificates()
  const m = await startMosquitto({ tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile, requireCertificate: true } })
  try {
    const url = m.tlsUrl as string
    assert.match(url, /^mqtts:/)
    for (const v of [4, 5] as const) {
      const msg = await roundTrip(url, { protocolVersion: v, tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } })
      assert.equal(msg.payload.toString(), 'over the wire')
    }
    // Without the client certificate the broker refuses the handshake.
    await assert.rejects(connect(url, { tls: { ca: certs.ca }, connectTimeoutMs: 3000 }), (err: { code: string }) =>
      err.code === 'PETREL_ERR_CONNECTION_FAILED' || err.code === 'PETREL_ERR_CONNECT_TIMEOUT')
    // Without the CA the broker's certificate is not trusted.
    await assert.rejects(connect(url, { tls: { cert: certs.clientCert, key: certs.clientKey }, connectTimeoutMs: 3000 }), { code: 'PETREL_ERR_CONNECTION_FAILED' })
  } finally {
    await m.stop()
  }
})

test('WebSocket (ws://, subprotocol mqtt), both versions', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const m = await startMosquitto({ websockets: true })
  try {
    for (const v of [4, 5] as const) {
      const msg = await roundTrip(m.wsUrl as string, { protocolVersion: v })
      assert.equal(msg.payload.toString(), 'over the wire')
    }
  } finally {
    await m.stop()
  }
})

test('secure WebSocket (wss://) with a CA, both versions; an untrusted certificate is refused', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const certs = await makeTestCertificates()
  const wssPort = await freePort()
  const m = await startMosquitto({
    extraConfig: [`listener ${wssPort} 127.0.0.1`, 'protocol websockets', `cafile ${certs.caFile}`,
      `certfile ${certs.certFile}`, `keyfile ${certs.keyFile}`].join('\n')
  })
  try {
    // startMosquitto waits for its main listener only; libwebsockets opens this one a little later.
    await waitFor(async () => await accepts(wssPort), { timeoutMs: 5000, message: 'wss listener up' })
    const url = `wss://localhost:${wssPort}/`
    for (const v of [4, 5] as const) {
      const msg = await roundTrip(url, { protocolVersion: v, tls: { ca: certs.ca } })
      assert.equal(msg.payload.toString(), 'over the wire')
    }
    await assert.rejects(connect(url, { connectTimeoutMs: 3000 }), { code: 'PETREL_ERR_CONNECTION_FAILED' })
    // tls.extra applies to wss:// as to mqtts:// (here a certificate check that refuses).
    await assert.rejects(connect(url, { connectTimeoutMs: 3000, tls: { ca: certs.ca, extra: { checkServerIdentity: () => new Error('refused by the app') } } }),
      (err: { code: string, message: string }) => err.code === 'PETREL_ERR_CONNECTION_FAILED' && /refused by the app/.test(err.message))
  } finally {
    await m.stop()
  }
})

test('several broker URLs rotate: a dead first URL falls through to the next', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const m = await startMosquitto()
  const dead = await startMosquitto()
  const deadUrl = dead.url
  await dead.stop()
  try {
    const c = await connect([deadUrl, m.url], { connectTimeoutMs: 2000 })
    let url: URL | undefined
    c.on('connect', (e) => { url = e.url })
    c.reconnect()
    await new Promise((resolve) => c.once('connect', resolve))
    assert.equal(url?.port, String(m.port), 'connected through the second URL')
    assert.equal(c.connected, true)
    await c.end()
  } finally {
    await m.stop()
  }
})

test('end() gets its DISCONNECT through on TCP, TLS and WebSocket: the broker keeps the will', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const certs = await makeTestCertificates()
  const m = await startMosquitto({ websockets: true, tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile } })
  const watcher = await connect(m.url, { clientId: 'will-watcher' })
  try {
    const wills: string[] = []
    await watcher.subscribe('gone/#', { qos: 1 }, (msg) => { wills.push(msg.topic) })
    for (const [name, url] of [['tcp', m.url], ['tls', m.tlsUrl], ['ws', m.wsUrl]] as const) {
      for (const v of [4, 5] as const) {
        const c = await connect(url as string, { protocolVersion: v, tls: { ca: certs.ca }, will: { topic: `gone/${name}/${v}`, payload: 'lost', qos: 1 } })
        // A QoS 0 publish right before end(): the DISCONNECT then leaves in a write still under way.
        await c.publish('alive/x', 'x', { qos: 0 })
        await c.end()
      }
    }
    // A big QoS 0 message right before end(): resolved once written, so it must reach the broker.
    let big = 0
    await watcher.subscribe('big/x', { qos: 0 }, (msg) => { big = msg.payload.length })
    const c = await connect(m.url, { will: { topic: 'gone/big', payload: 'lost' } })
    await c.publish('big/x', Buffer.alloc(8 * 1024 * 1024, 1))
    await c.end()
    await waitFor(() => big > 0, { timeoutMs: 5000, message: '8 MiB message' })
    assert.equal(big, 8 * 1024 * 1024)
    // A will would be published at once when a connection drops without DISCONNECT.
    await new Promise((resolve) => setTimeout(resolve, 1000))
    assert.deepEqual(wills, [])
  } finally {
    await watcher.end()
    await m.stop()
  }
})
