import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { once } from 'node:events'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { makeTestCertificates, requirePeer, startMosquitto, SocketReader } from '../src/index.js'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')

// MQTT 3.1.1 CONNECT, clean session, keepalive 60, empty client id.
const CONNECT_CLEAN = hex('10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00')
const CONNACK_OK = hex('20 02 00 00')
// CONNECT, clean session 0, client id "tu1"; SUBSCRIBE a/b QoS 1, packet id 1; DISCONNECT.
const CONNECT_PERSISTENT = hex('10 0f 00 04 4d 51 54 54 04 00 00 3c 00 03 74 75 31')
const SUBSCRIBE = hex('82 08 00 01 00 03 61 2f 62 01')
const SUBACK = hex('90 03 00 01 01')
const DISCONNECT = hex('e0 00')

async function tcp (port: number): Promise<{ socket: Socket, reader: SocketReader }> {
  const socket = netConnect({ host: '127.0.0.1', port })
  const reader = new SocketReader(socket)
  await once(socket, 'connect')
  return { socket, reader }
}

test('startMosquitto answers a raw CONNECT with CONNACK', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const broker = await startMosquitto()
  t.after(() => broker.stop())
  assert.equal(broker.host, '127.0.0.1')
  assert.equal(broker.url, `mqtt://127.0.0.1:${broker.port}`)
  const { socket, reader } = await tcp(broker.port)
  try {
    socket.write(CONNECT_CLEAN)
    assert.deepEqual(await reader.read(4), CONNACK_OK, broker.logs())
  } finally {
    socket.destroy()
  }
})

test('restart keeps the port and, with persistence, the session', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const broker = await startMosquitto({ persistence: true })
  t.after(() => broker.stop())
  const port = broker.port

  const first = await tcp(broker.port)
  first.socket.write(Buffer.concat([CONNECT_PERSISTENT, SUBSCRIBE]))
  assert.deepEqual(await first.reader.read(4), CONNACK_OK)
  assert.deepEqual(await first.reader.read(5), SUBACK)
  first.socket.end(DISCONNECT)
  await first.reader.closed()

  await broker.restart()
  assert.equal(broker.port, port)
  assert.equal(broker.url, `mqtt://127.0.0.1:${port}`)

  const second = await tcp(broker.port)
  try {
    second.socket.write(CONNECT_PERSISTENT)
    assert.deepEqual(await second.reader.read(4), hex('20 02 01 00'), `session present expected:\n${broker.logs()}`)
  } finally {
    second.socket.destroy()
  }
})

test('kill() crashes the broker and restart() brings it back on the same port', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const broker = await startMosquitto()
  t.after(() => broker.stop())
  const { socket, reader } = await tcp(broker.port)
  socket.write(CONNECT_CLEAN)
  await reader.read(4)
  await broker.kill()
  await reader.closed()
  await assert.rejects(tcp(broker.port), /ECONNREFUSED/)
  await broker.restart()
  const again = await tcp(broker.port)
  try {
    again.socket.write(CONNECT_CLEAN)
    assert.deepEqual(await again.reader.read(4), CONNACK_OK)
  } finally {
    again.socket.destroy()
  }
})

test('websockets listener upgrades with the mqtt subprotocol', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const broker = await startMosquitto({ websockets: true })
  t.after(() => broker.stop())
  assert.equal(broker.wsUrl, `ws://127.0.0.1:${broker.wsPort}`)
  const { socket, reader } = await tcp(broker.wsPort!)
  try {
    socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n')
    assert.equal((await reader.read(12)).toString('latin1'), 'HTTP/1.1 101')
  } finally {
    socket.destroy()
  }
})

test('TLS listener with the test CA, requiring a client certificate', async (t) => {
  if (!requirePeer(t, 'mosquitto') || !requirePeer(t, 'openssl')) return
  const certs = await makeTestCertificates()
  const broker = await startMosquitto({
    tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile, requireCertificate: true }
  })
  t.after(() => broker.stop())
  assert.equal(broker.tlsUrl, `mqtts://127.0.0.1:${broker.tlsPort}`)
  const socket = tlsConnect({ host: '127.0.0.1', port: broker.tlsPort!, ca: certs.ca, cert: certs.clientCert, key: certs.clientKey })
  const reader = new SocketReader(socket)
  try {
    await once(socket, 'secureConnect')
    socket.write(CONNECT_CLEAN)
    assert.deepEqual(await reader.read(4), CONNACK_OK, broker.logs())
  } finally {
    socket.destroy()
  }
})

test('extraConfig lines reach mosquitto.conf', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const broker = await startMosquitto({ extraConfig: 'allow_zero_length_clientid false' })
  t.after(() => broker.stop())
  const { socket, reader } = await tcp(broker.port)
  try {
    socket.write(CONNECT_CLEAN)
    // Empty client id now refused: CONNACK 0x02 identifier rejected.
    assert.deepEqual(await reader.read(4), hex('20 02 00 02'), broker.logs())
  } finally {
    socket.destroy()
  }
})

test('stock leaves mosquitto\'s own limits: Receive Maximum 20 in an MQTT 5 CONNACK, 100 otherwise', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  // MQTT 5 CONNECT, clean start, keepalive 60, no properties, empty client id.
  const connect5 = hex('10 0d 00 04 4d 51 54 54 05 02 00 3c 00 00 00')
  for (const [stock, receiveMaximum] of [[true, '00 14'], [false, '00 64']] as const) {
    const broker = await startMosquitto({ stock })
    t.after(() => broker.stop())
    const { socket, reader } = await tcp(broker.port)
    try {
      socket.write(connect5)
      const head = await reader.read(2)
      assert.equal(head[0], 0x20, broker.logs())
      const rest = await reader.read(head[1] as number) // short: one length byte
      assert.ok(rest.includes(hex(`21 ${receiveMaximum}`)), `stock ${stock}: ${rest.toString('hex')}`)
    } finally {
      socket.destroy()
    }
  }
})

test('allowAnonymous false refuses a CONNECT without credentials', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const broker = await startMosquitto({ allowAnonymous: false })
  t.after(() => broker.stop())
  const { socket, reader } = await tcp(broker.port)
  try {
    socket.write(CONNECT_CLEAN)
    assert.deepEqual(await reader.read(4), hex('20 02 00 05'))
  } finally {
    socket.destroy()
  }
})

test('a test process ended by SIGTERM (a runner stopping it) takes its mosquitto with it', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const index = fileURLToPath(new URL('../src/index.js', import.meta.url))
  const script = `const { startMosquitto } = await import(${JSON.stringify(index)}); const b = await startMosquitto(); console.log(b.port); setInterval(() => {}, 1000)`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => { child.kill('SIGKILL') })
  const [line] = await once(child.stdout, 'data') as [Buffer]
  const port = Number(line.toString().trim())
  assert.ok(port > 0, line.toString())
  const first = await tcp(port) // it is up
  first.socket.destroy()
  child.kill('SIGTERM')
  const [, signal] = await once(child, 'exit') as [number | null, string | null]
  assert.equal(signal, 'SIGTERM') // still dies of the signal
  // SIGKILLed by the reaper: the port refuses within a moment.
  let refused = false
  for (let i = 0; i < 50 && !refused; i++) {
    refused = await new Promise<boolean>((resolve) => {
      const s = netConnect({ host: '127.0.0.1', port })
      s.once('connect', () => { s.destroy(); resolve(false) })
      s.once('error', () => { resolve(true) })
    })
    if (!refused) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  assert.ok(refused, `mosquitto on ${port} still accepting after its test process died of SIGTERM`)
})
