// Interop with real peers: mosquitto_pub/mosquitto_sub and MQTT.js, MQTT 3.1.1 and 5.0,
// over TCP, TLS, WebSocket and secure WebSocket.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import mqtt from 'mqtt'
import { createBroker, type Broker, type ListenerType } from '@petrel/broker'
import { findProgram, makeTestCertificates, requirePeer, waitFor, type TestCertificates } from '@petrel/test-utils'

const run = promisify(execFile)
let broker: Broker
let certs: TestCertificates
const ports: Partial<Record<ListenerType, number>> = {}

before(async () => {
  certs = await makeTestCertificates()
  broker = createBroker({ sysInterval: 0 })
  for (const type of ['tcp', 'tls', 'ws', 'wss'] as const) {
    const tls = type === 'tls' || type === 'wss' ? { cert: certs.cert, key: certs.key } : {}
    ports[type] = (await broker.listen({ type, port: 0, ...tls })).port
  }
})

after(async () => {
  await broker.close()
})

function url (type: ListenerType): string {
  const scheme = { tcp: 'mqtt', tls: 'mqtts', ws: 'ws', wss: 'wss' }[type]
  return `${scheme}://127.0.0.1:${ports[type] as number}`
}

function tlsArgs (type: ListenerType): string[] {
  return type === 'tls' ? ['--cafile', certs.caFile] : []
}

for (const type of ['tcp', 'tls'] as const) {
  for (const V of ['mqttv311', 'mqttv5']) {
    test(`mosquitto_pub -> mosquitto_sub (${V}, ${type}), QoS 0/1/2 and retained`, async (t) => {
      if (!requirePeer(t, 'mosquitto_pub') || !requirePeer(t, 'mosquitto_sub')) return
      const port = String(ports[type])
      const topic = `interop/${type}/${V}`
      await run(findProgram('mosquitto_pub') as string, ['-V', V, '-h', '127.0.0.1', '-p', port, ...tlsArgs(type), '-t', `${topic}/retained`, '-m', 'kept', '-r', '-q', '1'])
      const sub = spawn(findProgram('mosquitto_sub') as string, ['-V', V, '-h', '127.0.0.1', '-p', port, ...tlsArgs(type), '-t', `${topic}/#`, '-q', '2', '-v', '-C', '4', '-W', '10'])
      let out = ''
      sub.stdout.on('data', (d: Buffer) => { out += d.toString() })
      const exited = new Promise<number | null>((resolve) => sub.on('close', resolve))
      await waitFor(() => out.includes('kept'), { timeoutMs: 5000, message: 'retained message at mosquitto_sub' })
      for (const q of [0, 1, 2]) {
        await run(findProgram('mosquitto_pub') as string, ['-V', V, '-h', '127.0.0.1', '-p', port, ...tlsArgs(type), '-t', `${topic}/q${q}`, '-m', `m${q}`, '-q', String(q)])
      }
      assert.equal(await exited, 0)
      assert.deepEqual(out.trim().split('\n'), [`${topic}/retained kept`, `${topic}/q0 m0`, `${topic}/q1 m1`, `${topic}/q2 m2`])
    })
  }
}

for (const type of ['tcp', 'tls', 'ws', 'wss'] as const) {
  for (const protocolVersion of [4, 5] as const) {
    test(`MQTT.js v${protocolVersion} over ${type}: QoS 0/1/2 round trip`, async () => {
      const opts = { protocolVersion, ca: certs.ca, rejectUnauthorized: true, reconnectPeriod: 0, connectTimeout: 5000 }
      const sub = await mqtt.connectAsync(url(type), { ...opts, clientId: `js-sub-${type}-${protocolVersion}` })
      const pub = await mqtt.connectAsync(url(type), { ...opts, clientId: `js-pub-${type}-${protocolVersion}` })
      try {
        const topic = `js/${type}/${protocolVersion}`
        const got: string[] = []
        sub.on('message', (t, payload) => { if (t === topic) got.push(payload.toString()) })
        await sub.subscribeAsync(topic, { qos: 2 })
        for (const qos of [0, 1, 2] as const) await pub.publishAsync(topic, `m${qos}`, { qos })
        await waitFor(() => got.length === 3, { timeoutMs: 5000, message: `3 messages, got ${got.length}` })
        assert.deepEqual(got, ['m0', 'm1', 'm2'])
      } finally {
        await sub.endAsync()
        await pub.endAsync()
      }
    })
  }
}

test('a WebSocket listener with a path (a leading / added if missing): its url carries the path, and MQTT.js dialling that url connects', async () => {
  const b = createBroker({ sysInterval: 0 })
  try {
    for (const path of ['/mqtt', 'mqtt']) {
      const address = await b.listen({ type: 'ws', port: 0, path })
      assert.equal(address.url, `ws://127.0.0.1:${address.port}/mqtt`, `path ${JSON.stringify(path)}`)
      const c = await mqtt.connectAsync(address.url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000 })
      await c.endAsync()
    }
  } finally {
    await b.close()
  }
})

test('mosquitto_pub v5 -> MQTT.js v4 subscriber over WebSocket', async (t) => {
  if (!requirePeer(t, 'mosquitto_pub')) return
  const sub = await mqtt.connectAsync(url('ws'), { protocolVersion: 4, reconnectPeriod: 0 })
  try {
    const got: string[] = []
    sub.on('message', (_t, p) => { got.push(p.toString()) })
    await sub.subscribeAsync('cross/#', { qos: 1 })
    await run(findProgram('mosquitto_pub') as string, ['-V', 'mqttv5', '-h', '127.0.0.1', '-p', String(ports.tcp), '-t', 'cross/x', '-m', 'across', '-q', '1'])
    await waitFor(() => got.length === 1, { timeoutMs: 5000 })
    assert.deepEqual(got, ['across'])
  } finally {
    await sub.endAsync()
  }
})

test('MQTT.js v5 persistent session gets queued QoS 1 on return, session present', async () => {
  const opts = { protocolVersion: 5 as const, reconnectPeriod: 0, clean: false, clientId: 'js-persist', properties: { sessionExpiryInterval: 60 } }
  const a = await mqtt.connectAsync(url('tcp'), opts)
  await a.subscribeAsync('persist/js', { qos: 1 })
  await a.endAsync()
  const pub = await mqtt.connectAsync(url('tcp'), { protocolVersion: 5, reconnectPeriod: 0 })
  await pub.publishAsync('persist/js', 'while-away', { qos: 1 })
  await pub.endAsync()
  const got: string[] = []
  const b = mqtt.connect(url('tcp'), opts)
  b.on('message', (_t, p) => { got.push(p.toString()) })
  try {
    const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => { b.once('connect', resolve); b.once('error', reject) })
    assert.equal(connack.sessionPresent, true)
    await waitFor(() => got.length === 1, { timeoutMs: 5000 })
    assert.deepEqual(got, ['while-away'])
  } finally {
    await b.endAsync()
  }
})
