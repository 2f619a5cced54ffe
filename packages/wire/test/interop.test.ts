// Interop sanity for the codec alone: what mosquitto_pub, mosquitto_sub and MQTT.js put on the
// wire decodes to what they meant, and the packets we encode (CONNACK, acks, SUBACK, PUBLISH)
// are accepted by them. A scripted TCP server stands in for the broker: it decodes with
// Decoder, answers with encode(), and records every packet; no broker logic is involved.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server, type Socket } from 'node:net'
import { execFile } from 'node:child_process'
import { connect as mqttConnect } from 'mqtt'
import { findProgram, requirePeer, withTimeout } from '@petrel/test-utils'
import { Decoder, encode, type Packet, type ProtocolVersion } from '../src/index.js'

type Reply = (packet: Packet, socket: Socket, version: ProtocolVersion) => void

interface Scripted { port: number, packets: Packet[], closed: Promise<void>, server: Server }

/** Accepts one connection, decodes everything it sends, answers through `reply`. */
async function scriptedServer (reply: Reply): Promise<Scripted> {
  const packets: Packet[] = []
  let onClosed: () => void = () => {}
  const closed = new Promise<void>((resolve) => { onClosed = resolve })
  const server = createServer((socket) => {
    const decoder = new Decoder({}) // protocol version learnt from the CONNECT
    let version: ProtocolVersion = 4
    socket.on('data', (chunk: Buffer) => {
      for (const p of decoder.push(chunk)) {
        if (p.type === 'connect') version = p.protocolVersion
        packets.push(p)
        reply(p, socket, version)
      }
    })
    socket.on('error', () => {})
    socket.on('close', onClosed)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  assert.ok(address !== null && typeof address === 'object')
  return { port: address.port, packets, closed, server }
}

/** A broker that says yes to everything, in the peer's protocol version. */
const acceptAll: Reply = (p, socket, v) => {
  switch (p.type) {
    case 'connect': socket.write(encode({ type: 'connack', sessionPresent: false, reasonCode: 0 }, v)); break
    case 'publish':
      if (p.qos === 1) socket.write(encode({ type: 'puback', packetId: p.packetId ?? 0 }, v))
      if (p.qos === 2) socket.write(encode({ type: 'pubrec', packetId: p.packetId ?? 0 }, v))
      break
    case 'pubrel': socket.write(encode({ type: 'pubcomp', packetId: p.packetId }, v)); break
    case 'subscribe': socket.write(encode({ type: 'suback', packetId: p.packetId, reasonCodes: p.subscriptions.map((s) => s.qos) }, v)); break
    case 'pingreq': socket.write(encode({ type: 'pingresp' }, v)); break
    default: break
  }
}

function run (program: string, args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile(findProgram(program) ?? program, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolve({ code, stdout, stderr })
    })
  })
}

/** Plain data for comparisons: byte arrays as UTF-8 text, absent fields dropped. */
function plain (v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString()
  if (Array.isArray(v)) return v.map(plain)
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, plain(x)]))
  }
  return v
}

function strip (p: Packet | undefined): Record<string, unknown> {
  assert.ok(p !== undefined, 'packet received')
  return plain(p) as Record<string, unknown>
}

for (const [flag, version] of [['mqttv311', 4], ['mqttv5', 5]] as const) {
  for (const qos of [0, 1, 2] as const) {
    test(`mosquitto_pub ${flag} QoS ${qos}: its CONNECT/PUBLISH decode as meant; our acks complete its flow`, async (t) => {
      if (!requirePeer(t, 'mosquitto_pub')) return
      const s = await scriptedServer(acceptAll)
      try {
        const args = ['-h', '127.0.0.1', '-p', String(s.port), '-V', flag, '-i', `pub-${qos}`, '-t', 'sensors/1/temp',
          '-m', 'hello', '-q', String(qos), '-r', '-u', 'alice', '-P', 's3cret', '-k', '30',
          '--will-topic', 'status/pub', '--will-payload', 'gone', '--will-qos', '1']
        if (version === 5) {
          args.push('-D', 'publish', 'user-property', 'k', 'v1', '-D', 'publish', 'user-property', 'k', 'v2',
            '-D', 'publish', 'content-type', 'text/plain', '-D', 'publish', 'message-expiry-interval', '60',
            '-D', 'connect', 'session-expiry-interval', '120')
        }
        const r = await run('mosquitto_pub', args)
        // exit 0 means mosquitto_pub accepted our CONNACK and the PUBACK / PUBREC+PUBCOMP flow
        assert.equal(r.code, 0, `mosquitto_pub failed: ${r.stderr}`)
        await withTimeout(s.closed, 5000, 'connection closed')
        const [connect, publish] = s.packets
        const c = strip(connect)
        assert.equal(c.type, 'connect')
        assert.equal(c.protocolVersion, version)
        assert.equal(c.clientId, `pub-${qos}`)
        assert.equal(c.keepAlive, 30)
        assert.equal(c.username, 'alice')
        assert.equal(c.password, 's3cret')
        assert.deepEqual(c.will, { topicName: 'status/pub', payload: 'gone', qos: 1, retain: false })
        const p = strip(publish)
        assert.equal(p.type, 'publish')
        assert.equal(p.topicName, 'sensors/1/temp')
        assert.equal(p.payload, 'hello')
        assert.equal(p.qos, qos)
        assert.equal(p.retain, true)
        assert.equal(p.dup, false)
        if (qos > 0) assert.ok(typeof p.packetId === 'number' && p.packetId > 0)
        if (version === 5) {
          assert.deepEqual((c.properties as Record<string, unknown>).sessionExpiryInterval, 120)
          const props = p.properties as Record<string, unknown>
          assert.deepEqual(props.userProperties, [['k', 'v1'], ['k', 'v2']]) // order and repeats kept
          assert.equal(props.contentType, 'text/plain')
          assert.equal(props.messageExpiryInterval, 60)
        }
        const types = s.packets.map((x) => x.type)
        assert.deepEqual(types, ['connect', 'publish', ...(qos === 2 ? ['pubrel'] : []), 'disconnect'])
      } finally {
        s.server.close()
      }
    })
  }

  test(`mosquitto_sub ${flag}: its SUBSCRIBE decodes as meant; it prints the PUBLISH we encode`, async (t) => {
    if (!requirePeer(t, 'mosquitto_sub')) return
    const s = await scriptedServer((p, socket, v) => {
      acceptAll(p, socket, v)
      if (p.type === 'subscribe') {
        socket.write(encode({
          type: 'publish', topicName: 'a/b', payload: Buffer.from('from petrel'), qos: 1, retain: false, dup: false, packetId: 7,
          ...(v === 5 ? { properties: { userProperties: [['x', 'y']], contentType: 'text/plain' } } : {})
        }, v))
      }
    })
    try {
      const format = version === 5 ? ['-F', '%t|%p|%q|%C|%P'] : ['-v']
      const r = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(s.port), '-V', flag, '-i', 'sub',
        '-t', 'a/+', '-t', 'c/#', '-q', '2', '-C', '1', ...format])
      assert.equal(r.code, 0, `mosquitto_sub failed: ${r.stderr}`)
      assert.equal(r.stdout.trim(), version === 5 ? 'a/b|from petrel|1|text/plain|x:y' : 'a/b from petrel')
      const sub = strip(s.packets.find((x) => x.type === 'subscribe'))
      assert.deepEqual((sub.subscriptions as Array<Record<string, unknown>>).map((x) => [x.topicFilter, x.qos]), [['a/+', 2], ['c/#', 2]])
      // it acknowledged our QoS 1 PUBLISH with the id we chose
      const ack = s.packets.find((x) => x.type === 'puback')
      assert.equal(ack?.type === 'puback' ? ack.packetId : -1, 7)
    } finally {
      s.server.close()
    }
  })

  test(`MQTT.js ${flag}: CONNECT, SUBSCRIBE with options, PUBLISH with properties decode as meant`, async () => {
    const s = await scriptedServer(acceptAll)
    const client = mqttConnect({ host: '127.0.0.1', port: s.port, protocolVersion: version, clientId: 'mqttjs', reconnectPeriod: 0, keepalive: 45, clean: true })
    try {
      await withTimeout(new Promise<void>((resolve, reject) => { client.once('connect', () => { resolve() }); client.once('error', reject) }), 5000, 'MQTT.js connected')
      await withTimeout(client.subscribeAsync('x/#', { qos: 1, ...(version === 5 ? { nl: true, rap: true, rh: 2, properties: { subscriptionIdentifier: 9 } } : {}) }), 5000, 'suback')
      await withTimeout(client.publishAsync('x/y', Buffer.from([0, 1, 2, 255]), {
        qos: 2, ...(version === 5 ? { properties: { responseTopic: 'reply/1', correlationData: Buffer.from('c1'), userProperties: { a: ['1', '2'] } } } : {})
      }), 5000, 'QoS 2 flow')
      await withTimeout(client.endAsync(), 5000, 'end')
      await withTimeout(s.closed, 5000, 'closed')
      const c = strip(s.packets[0])
      assert.equal(c.type, 'connect')
      assert.equal(c.protocolVersion, version)
      assert.equal(c.keepAlive, 45)
      const sub = s.packets.find((x) => x.type === 'subscribe')
      assert.ok(sub?.type === 'subscribe')
      assert.deepEqual(sub.subscriptions[0], version === 5
        ? { topicFilter: 'x/#', qos: 1, noLocal: true, retainAsPublished: true, retainHandling: 2 }
        : { topicFilter: 'x/#', qos: 1 })
      if (version === 5) assert.equal(sub.properties?.subscriptionIdentifier, 9)
      const pub = s.packets.find((x) => x.type === 'publish')
      assert.ok(pub?.type === 'publish')
      assert.deepEqual([...pub.payload], [0, 1, 2, 255])
      assert.equal(pub.qos, 2)
      if (version === 5) {
        assert.equal(pub.properties?.responseTopic, 'reply/1')
        assert.equal(Buffer.from(pub.properties?.correlationData ?? []).toString(), 'c1')
        assert.deepEqual(pub.properties?.userProperties, [['a', '1'], ['a', '2']])
      }
      assert.deepEqual(s.packets.map((x) => x.type), ['connect', 'subscribe', 'publish', 'pubrel', 'disconnect'])
    } finally {
      client.end(true)
      s.server.close()
    }
  })
}
