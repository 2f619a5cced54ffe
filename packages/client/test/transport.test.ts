import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as tcpConnect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net'
import { createServer as createHttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createTlsServer } from 'node:tls'
import { readFileSync } from 'node:fs'
import { createHash, generateKeyPairSync } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { Decoder, encode, type Packet } from '@petrel/wire'
import { freePort, makeTestCertificates, requirePeer, startMosquitto, waitFor, withTimeout } from '@petrel/test-utils'
import { connect, createClient, type Message } from '../src/index.js'

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

test('ws is loaded only for a WebSocket URL: importing the client and connecting over TCP do not load it (a short-lived process paid its load time)', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const broker = await startMosquitto()
  t.after(() => broker.stop())
  const index = new URL('../src/index.js', import.meta.url).href
  const script = `
    import { createRequire } from 'node:module'
    const { connect } = await import(${JSON.stringify(index)})
    const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => /[\\/]node_modules[\\/]ws[\\/]/.test(k))
    const c = await connect(${JSON.stringify(broker.url)})
    await c.publish('tr/lazy', 'x', { qos: 1 })
    await c.end()
    const tcp = loaded()
    await import('ws')
    console.log(JSON.stringify([tcp, loaded()]))`
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 })
  assert.equal(r.status, 0, r.stderr)
  // The second value shows the check sees ws once it is loaded.
  assert.deepEqual(JSON.parse(r.stdout), [false, true])
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

/**
 * A WebSocket server (subprotocol mqtt) that writes raw frames, so a test can send what a broker
 * may: several MQTT packets in one message, or a frame header announcing more than it sends.
 * `onLink` gets the socket once the client's CONNECT has arrived.
 */
async function rawWebSocketBroker (onLink: (socket: Socket, clientFrames: Buffer[]) => void): Promise<{ url: string, close: () => Promise<void> }> {
  const server = createHttpServer()
  const sockets = new Set<Socket>()
  server.on('upgrade', (req, socket: Socket) => {
    sockets.add(socket)
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n`)
    const frames: Buffer[] = []
    let pending = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      // Client frames are always masked.
      pending = Buffer.concat([pending, chunk])
      for (;;) {
        if (pending.length < 2) return
        let len = (pending[1] as number) & 0x7f
        let at = 2
        if (len === 126) { if (pending.length < 4) return; len = pending.readUInt16BE(2); at = 4 }
        if (len === 127) { if (pending.length < 10) return; len = Number(pending.readBigUInt64BE(2)); at = 10 }
        if (pending.length < at + 4 + len) return
        const mask = pending.subarray(at, at + 4)
        const payload = Buffer.from(pending.subarray(at + 4, at + 4 + len))
        for (let i = 0; i < len; i++) payload[i] = (payload[i] as number) ^ (mask[i & 3] as number)
        frames.push(Buffer.concat([pending.subarray(0, 1), payload]))
        pending = pending.subarray(at + 4 + len)
        if (frames.length === 1) onLink(socket, frames)
      }
    })
    socket.on('error', () => {})
    socket.on('close', () => { sockets.delete(socket) })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }
  }
}

/** A binary frame from the server (unmasked) with `payload`, or with only a header claiming `claimed` bytes; `first` 0x81 makes it a text frame. */
function serverFrame (payload: Buffer, claimed = payload.length, first = 0x82): Buffer {
  const head = Buffer.alloc(10)
  head[0] = first
  head[1] = 127
  head.writeBigUInt64BE(BigInt(claimed), 2)
  return Buffer.concat([head, payload])
}

const CONNACK_V5 = encode({ type: 'connack', sessionPresent: false, reasonCode: 0 }, 5)

test('WebSocket: a message over what maximumPacketSize allows is refused from its frame header (1009), not buffered', async () => {
  const closeCodes: number[] = []
  const broker = await rawWebSocketBroker((socket, frames) => {
    socket.write(serverFrame(CONNACK_V5))
    // A message announcing 50 MiB, against a client that accepts 64 KiB packets: ws's own default
    // (100 MiB) would have the client wait for, and buffer, all of it.
    // (A moment after CONNACK: the test listens for the disconnect once connect() resolved.)
    setTimeout(() => { socket.write(serverFrame(Buffer.alloc(1024), 50 * 1024 * 1024)) }, 200)
    socket.on('data', () => {
      for (const f of frames) if (f[0] === 0x88 && f.length >= 3) closeCodes.push(f.readUInt16BE(1))
    })
  })
  const c = await connect(broker.url, { protocolVersion: 5, maximumPacketSize: 64 * 1024, reconnect: false })
  try {
    const gone = await withTimeout(new Promise<{ error: { code: string, reasonCode?: number | undefined } | undefined }>((resolve) => { c.once('disconnect', resolve) }), 3000, 'disconnect')
    assert.equal(gone.error?.code, 'PETREL_ERR_PACKET_TOO_LARGE')
    assert.equal(gone.error?.reasonCode, 0x95)
    await waitFor(() => closeCodes.length > 0, { timeoutMs: 3000, message: 'close frame' })
    assert.equal(closeCodes[0], 1009, 'close: Message Too Big')
    assert.equal(c.stats().bytesIn < 64 * 1024, true)
  } finally {
    await c.end()
    await broker.close()
  }
})

test('WebSocket: publishes made in one turn leave in few binary frames of at most 64 KiB, in order (each over 4 KiB was a frame of its own)', async () => {
  let clientFrames: Buffer[] = []
  const broker = await rawWebSocketBroker((socket, frames) => {
    clientFrames = frames
    socket.write(serverFrame(CONNACK_V5))
  })
  const c = await connect(broker.url, { protocolVersion: 5, reconnect: false })
  try {
    const before = clientFrames.length
    // 20 x 8 KiB: each packet is a write of its own (past the 4 KiB copied into the batch), the
    // batch goes out corked at 64 KiB and at the end of the turn
    await Promise.all(Array.from({ length: 20 }, async (_, i) => { await c.publish('ws/batch', Buffer.alloc(8192, i)) }))
    const decoder = new Decoder({ protocolVersion: 5 })
    const got: Packet[] = []
    let seen = before
    await waitFor(() => {
      for (; seen < clientFrames.length; seen++) got.push(...decoder.push((clientFrames[seen] as Buffer).subarray(1)))
      return got.length >= 20
    }, { timeoutMs: 3000, message: 'the publishes' })
    assert.deepEqual(got.map((p) => p.type === 'publish' ? p.payload[0] : p.type), Array.from({ length: 20 }, (_, i) => i))
    const frames = clientFrames.slice(before)
    assert.ok(frames.length <= 6, `${frames.length} frames for 20 PUBLISHes`)
    for (const f of frames) assert.ok(f.length - 1 <= 64 * 1024, `a frame of ${f.length - 1} B`)
  } finally {
    await c.end()
    await broker.close()
  }
})

test('WebSocket: one message holding two packets of exactly maximumPacketSize is delivered whole', async () => {
  const max = 64 * 1024
  const packet = (n: number): Buffer => {
    const head = encode({ type: 'publish', topicName: 'ws/big', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false }, 5)
    // Fill the payload so that the packet is `max` bytes, header included (3 length bytes here).
    return encode({ type: 'publish', topicName: 'ws/big', payload: Buffer.alloc(max - head.length - 2, n), qos: 0, retain: false, dup: false }, 5)
  }
  const one = packet(1)
  assert.equal(one.length, max)
  const broker = await rawWebSocketBroker((socket) => {
    socket.write(serverFrame(CONNACK_V5))
    socket.write(serverFrame(Buffer.concat([one, packet(2)])))
  })
  const got: number[] = []
  const c = await connect(broker.url, { protocolVersion: 5, maximumPacketSize: max, reconnect: false })
  try {
    c.on('unrouted', (m) => { got.push(m.payload[0] as number) })
    await waitFor(() => got.length === 2, { timeoutMs: 3000, message: `messages ${got.join(',')}` })
    assert.deepEqual(got, [1, 2])
    assert.equal(c.connected, true)
  } finally {
    await c.end()
    await broker.close()
  }
})

test('[MQTT-6.0.0-1] WebSocket: a text frame from the broker closes the connection (1003, PETREL_ERR_CLIENT_PROTOCOL_ERROR) and is not decoded', async () => {
  const closeCodes: number[] = []
  const publish = encode({ type: 'publish', topicName: 'ws/text', payload: Buffer.from('in a text frame'), qos: 0, retain: false, dup: false }, 5)
  const broker = await rawWebSocketBroker((socket, frames) => {
    socket.write(serverFrame(CONNACK_V5))
    setTimeout(() => { socket.write(serverFrame(publish, publish.length, 0x81)) }, 200)
    socket.on('data', () => {
      for (const f of frames) if (f[0] === 0x88 && f.length >= 3) closeCodes.push(f.readUInt16BE(1))
    })
  })
  const c = await connect(broker.url, { protocolVersion: 5, reconnect: false })
  const got: string[] = []
  c.on('unrouted', (m) => { got.push(m.topic) })
  try {
    const gone = await withTimeout(new Promise<{ error: { code: string, reasonCode?: number | undefined } | undefined }>((resolve) => { c.once('disconnect', resolve) }), 3000, 'disconnect')
    assert.equal(gone.error?.code, 'PETREL_ERR_CLIENT_PROTOCOL_ERROR')
    assert.equal(gone.error?.reasonCode, 0x82)
    await waitFor(() => closeCodes.length > 0, { timeoutMs: 3000, message: 'close frame' })
    assert.equal(closeCodes[0], 1003, 'close: unsupported data')
    assert.deepEqual(got, [])
  } finally {
    await c.end()
    await broker.close()
  }
})

test('a TLS handshake or WebSocket upgrade that never ends: PETREL_ERR_CONNECT_TIMEOUT naming the step, and neither it nor end() during the upgrade throws out of the process', async () => {
  // Accepts TCP and never answers: no ServerHello, no HTTP 101.
  const sockets = new Set<Socket>()
  const server = createTcpServer((s) => { sockets.add(s); s.on('error', () => {}) })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const port = (server.address() as AddressInfo).port
  const uncaught: unknown[] = []
  const onUncaught = (err: unknown): void => { uncaught.push(err) }
  process.on('uncaughtException', onUncaught)
  try {
    for (const [scheme, step] of [['mqtts', /TLS handshake/], ['ws', /WebSocket upgrade/], ['wss', /TLS handshake and WebSocket upgrade/]] as const) {
      await assert.rejects(connect(`${scheme}://127.0.0.1:${port}`, { connectTimeoutMs: 300, reconnect: false }),
        (err: { code: string, message: string }) => err.code === 'PETREL_ERR_CONNECT_TIMEOUT' && step.test(err.message) && !/CONNACK/.test(err.message))
    }
    // end() while the upgrade is under way
    const c = createClient(`ws://127.0.0.1:${port}`, { connectTimeoutMs: 5000 })
    c.on('error', () => {})
    await waitFor(() => sockets.size >= 4, { timeoutMs: 3000, message: 'the upgrade request arrived' })
    await c.end()
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.deepEqual(uncaught, [])
  } finally {
    process.off('uncaughtException', onUncaught)
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  }
})

test('a broker certificate that cannot be verified (unknown CA, expired, another host name) fails with PETREL_ERR_CONNECTION_FAILED and the TLS error code as its cause, on mqtts:// and wss://', async () => {
  const certs = await makeTestCertificates()
  const servers: Array<{ close: (cb: () => void) => unknown }> = []
  const listen = async (type: 'tls' | 'wss', certFile: string, keyFile: string): Promise<number> => {
    const opts = { cert: readFileSync(certFile), key: readFileSync(keyFile) }
    const server = type === 'tls' ? createTlsServer(opts, (s) => { s.destroy() }) : createHttpsServer(opts)
    server.on('tlsClientError', () => {})
    servers.push(server)
    await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
    return (server.address() as AddressInfo).port
  }
  try {
    const cases = [
      { name: 'no CA given', certFile: certs.certFile, keyFile: certs.keyFile, ca: undefined, code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' },
      { name: 'another CA', certFile: certs.certFile, keyFile: certs.keyFile, ca: certs.clientCert, code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' },
      { name: 'expired', certFile: certs.expiredCertFile, keyFile: certs.expiredKeyFile, ca: certs.ca, code: 'CERT_HAS_EXPIRED' },
      { name: 'another host name', certFile: certs.elsewhereCertFile, keyFile: certs.elsewhereKeyFile, ca: certs.ca, code: 'ERR_TLS_CERT_ALTNAME_INVALID' }
    ]
    for (const k of cases) {
      for (const type of ['tls', 'wss'] as const) {
        const port = await listen(type, k.certFile, k.keyFile)
        const url = `${type === 'tls' ? 'mqtts' : 'wss'}://localhost:${port}/`
        await assert.rejects(connect(url, { connectTimeoutMs: 3000, reconnect: false, tls: { ca: k.ca } }),
          (err: { code: string, cause?: { code?: string } }) => {
            assert.equal(err.code, 'PETREL_ERR_CONNECTION_FAILED', `${k.name}, ${type}`)
            assert.equal(err.cause?.code, k.code, `${k.name}, ${type}`)
            return true
          })
      }
    }
  } finally {
    for (const s of servers) await new Promise<void>((resolve) => { s.close(() => { resolve() }) })
  }
})

test('a tls key or certificate that cannot be used (not PEM, not the certificate\'s key, a wrong passphrase) fails at once with PETREL_ERR_TLS_CONFIG, retryInitialConnect or not, on mqtts:// and wss://, and nothing is dialled', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const certs = await makeTestCertificates()
  const m = await startMosquitto({ tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile, requireCertificate: true } })
  // Stands for a wss:// broker: any connection to it would be a dial the check should have spared.
  let dialled = 0
  const counter = createTcpServer((s) => { dialled++; s.destroy() })
  await new Promise<void>((resolve) => { counter.listen(0, '127.0.0.1', resolve) })
  const { privateKey: encryptedKey } = generateKeyPairSync('ec', {
    namedCurve: 'P-256',
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'right' }
  })
  try {
    const cases = [
      { name: 'the server\'s key with the client\'s certificate', tls: { cert: certs.clientCert, key: certs.key }, cause: 'ERR_OSSL_X509_KEY_VALUES_MISMATCH' },
      { name: 'a key that is not PEM', tls: { cert: certs.clientCert, key: 'not a key' }, cause: 'ERR_OSSL_UNSUPPORTED' },
      { name: 'a certificate that is not PEM', tls: { cert: 'not a certificate', key: certs.clientKey }, cause: 'ERR_OSSL_PEM_NO_START_LINE' },
      { name: 'a wrong passphrase', tls: { key: encryptedKey, passphrase: 'wrong' }, cause: 'ERR_OSSL_BAD_DECRYPT' }
    ]
    const urls = [m.tlsUrl as string, `wss://127.0.0.1:${(counter.address() as AddressInfo).port}/`]
    for (const k of cases) {
      for (const url of urls) {
        const what = `${k.name}, ${url.slice(0, 5)}`
        const expected = (err: { code: string, cause?: { code?: string } }): boolean => {
          assert.equal(err.code, 'PETREL_ERR_TLS_CONFIG', what)
          assert.equal(err.cause?.code, k.cause, what)
          return true
        }
        assert.throws(() => createClient(url, { tls: { ca: certs.ca, ...k.tls } }), expected)
        // Retried, it failed the same way on every attempt, for ever.
        await withTimeout(assert.rejects(connect(url, { retryInitialConnect: true, tls: { ca: certs.ca, ...k.tls } }), expected), 2000, what)
      }
    }
    assert.equal(dialled, 0)
    // The right key and certificate still connect (the check refuses nothing usable).
    const c = await connect(m.tlsUrl as string, { tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } })
    await c.end()
  } finally {
    await new Promise<void>((resolve) => { counter.close(() => { resolve() }) })
    await m.stop()
  }
})
