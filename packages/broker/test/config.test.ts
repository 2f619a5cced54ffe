// The TOML config: defaults, every section, and errors that name the key and the line.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { makeTestCertificates } from '@petrel/test-utils'
import { BrokerErrorCode, createBroker, parseConfig, loadConfig, startMetricsServer } from '@petrel/broker'
import { PetrelError } from '@petrel/wire'
import { connected, memoryClient, withBroker } from './helpers.js'

function fails (text: string, pattern: RegExp): void {
  assert.throws(() => parseConfig(text, 'petrel.toml'), (err: unknown) => {
    assert.ok(err instanceof PetrelError)
    assert.equal(err.code, BrokerErrorCode.CONFIG_INVALID)
    assert.match(err.message, pattern)
    return true
  })
}

test('an empty config gives defaults and no listeners (the CLI adds 127.0.0.1:1883)', () => {
  const c = parseConfig('', 'empty.toml')
  assert.deepEqual(c.listeners, [])
  assert.equal(c.metrics, undefined)
})

test('an unknown key names the key and its line', () => {
  fails('log_level = "info"\n\n[limits]\nmax_connections = 5\nmax_conections = 6\n', /petrel\.toml:5: limits\.max_conections: unknown key; did you mean max_connections\?/)
  fails('\nbogus = 1\n', /petrel\.toml:2: bogus: unknown key \(known: /)
  fails('[[listener]]\nport = 1\n[[listener]]\nport = 2\nprot = 3\n', /petrel\.toml:5: listener\.prot: unknown key/)
})

test('a bad value names the key, its line and what is expected', () => {
  fails('[limits]\nmax_packet_size = "big"\n', /petrel\.toml:2: limits\.max_packet_size: must be an integer/)
  fails('[limits]\nhook_timeout_ms = 50\n', /petrel\.toml:2: limits\.hook_timeout_ms: must be 0 \(no bound\) or an integer from 100/)
  assert.equal(parseConfig('[limits]\nhook_timeout_ms = 0\n', 'zero.toml').options.limits?.hookTimeoutMs, 0)
  fails('[limits]\nconnect_timeout_ms = 50\n', /petrel\.toml:2: limits\.connect_timeout_ms: must be 0 \(no bound\) or an integer from 100/)
  assert.equal(parseConfig('[limits]\nconnect_timeout_ms = 0\n', 'zero.toml').options.limits?.connectTimeoutMs, 0)
  fails('[[listener]]\ntype = "udp"\n', /petrel\.toml:2: listener\.type: must be one of "tcp", "tls", "ws", "wss"/)
  fails('[[listener]]\nport = 1883\n\n[[listener]]\nport = 70000\n', /petrel\.toml:5: listener\.port: must be an integer from 0 to 65535/)
  fails('[[acl]]\ntopic = "a/#/b"\n', /petrel\.toml:2: acl\.topic: must be a valid topic filter/)
  fails('[memory]\nmax_segment_count = 0\n', /petrel\.toml:2: memory\.max_segment_count/)
  fails('[[memory.filter]]\npattern = "x"\nmax_segment_size = -1\n', /memory\.filter\.max_segment_size/)
  fails('this is not toml', /petrel\.toml.*not valid TOML/)
})

test('every section is read', () => {
  const c = parseConfig(`
log_level = "info"
sys_interval = 0
response_information = "r/%c"
[[listener]]
type = "ws"
port = 0
path = "/mqtt"
[limits]
max_connections = 7
max_queued_messages = 3
max_inflight_bytes = 1048576
max_user_properties = 64
max_sessions = 0
max_offline_queued_bytes = 65536
max_outbound_topic_aliases = 0
max_outbound_topic_alias_bytes = 512
max_inbound_topic_alias_bytes = 1000
[auth]
allow_anonymous = false
[[acl]]
user = "u"
topic = "a/%u/#"
access = "read"
[memory]
max_segment_size = 100
max_segment_count = 2
[[memory.filter]]
pattern = "x/#"
max_segment_size = 10
[metrics]
port = 0
`, 'full.toml')
  assert.equal(c.options.logLevel, 'info')
  assert.equal(c.options.limits?.maxConnections, 7)
  assert.equal(c.options.limits?.maxInflightBytes, 1048576)
  assert.equal(c.options.limits?.maxUserProperties, 64)
  assert.equal(c.options.limits?.maxSessions, 0)
  assert.equal(c.options.limits?.maxOfflineQueuedBytes, 65536)
  assert.equal(c.options.limits?.maxOutboundTopicAliases, 0)
  assert.equal(c.options.limits?.maxOutboundTopicAliasBytes, 512)
  assert.equal(c.options.limits?.maxInboundTopicAliasBytes, 1000)
  assert.equal(c.options.allowAnonymous, false)
  assert.deepEqual(c.options.acl, [{ user: 'u', clientId: undefined, topic: 'a/%u/#', access: 'read' }])
  assert.deepEqual(c.options.memory?.filters, [{ pattern: 'x/#', maxSegmentSize: 10, maxSegmentCount: 2 }])
  assert.equal(c.listeners[0]?.type, 'ws')
  assert.deepEqual(c.metrics, { host: '127.0.0.1', port: 0 })
})

test('loadConfig resolves files relative to the config and reports unreadable ones with their line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-cfg-'))
  const path = join(dir, 'petrel.toml')
  writeFileSync(path, '[[listener]]\ntype = "tls"\ncert = "missing.crt"\nkey = "missing.key"\n')
  assert.throws(() => loadConfig(path), /petrel\.toml:3: listener\.cert: cannot read file "missing\.crt" \(looked for .*missing\.crt: paths are relative to the config file\): no such file/)
  writeFileSync(path, '[auth]\nallow_anonymous = false\npassword_file = "passwd"\n')
  assert.throws(() => loadConfig(path), /petrel\.toml:3: auth\.password_file: cannot read file "passwd"/)
})

test('a listener\'s cert, key and ca that TLS cannot use: the message names the line, the key and the file (openssl-made files mixed up)', async () => {
  const certs = await makeTestCertificates()
  const dir = mkdtempSync(join(tmpdir(), 'petrel-cfg-'))
  const path = join(dir, 'petrel.toml')
  const other = join(dir, 'other.key')
  execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', other])
  const listener = (cert: string, key: string, ca = certs.caFile): string =>
    `log_level = "warn"\n\n[[listener]]\nport = 1883\n\n[[listener]]\ntype = "tls"\ncert = ${JSON.stringify(cert)}\nkey = ${JSON.stringify(key)}\nca = ${JSON.stringify(ca)}\n`
  const cases: Array<[string, RegExp]> = [
    [listener(certs.keyFile, certs.keyFile), /petrel\.toml:8: listener\.cert: ".*server\.key" is not a PEM certificate/],
    [listener(certs.certFile, certs.certFile), /petrel\.toml:9: listener\.key: ".*server\.crt" is not a PEM private key/],
    [listener(certs.certFile, other), /petrel\.toml:9: listener\.key: ".*other\.key" is not the private key of the certificate in ".*server\.crt"/],
    [listener(certs.certFile, certs.keyFile, certs.keyFile), /petrel\.toml:10: listener\.ca: ".*server\.key" is not a PEM CA certificate/]
  ]
  for (const [text, pattern] of cases) {
    writeFileSync(path, text)
    assert.throws(() => loadConfig(path), (err: unknown) => {
      assert.ok(err instanceof PetrelError)
      assert.equal(err.code, BrokerErrorCode.CONFIG_INVALID)
      assert.match(err.message, pattern)
      return true
    })
  }
  writeFileSync(path, listener(certs.certFile, certs.keyFile))
  assert.equal(loadConfig(path).listeners[1]?.type, 'tls')
  // mosquitto's require_certificate, and the optional-but-verified request
  writeFileSync(path, `${listener(certs.certFile, certs.keyFile)}request_client_certificate = true\n`)
  assert.deepEqual([loadConfig(path).listeners[1]?.requestClientCertificate, loadConfig(path).listeners[1]?.requireClientCertificate], [true, undefined])
  writeFileSync(path, `${listener(certs.certFile, certs.keyFile)}request_client_certificate = "yes"\n`)
  assert.throws(() => loadConfig(path), /petrel\.toml:11: listener\.request_client_certificate: must be true or false/)
  // the same mix-up through the API: this listener's LISTEN_FAILED, not a bare OpenSSL error
  const broker = createBroker({ sysInterval: 0 })
  try {
    await assert.rejects(broker.listen({ type: 'wss', port: 0, cert: certs.key, key: certs.cert }), (err: unknown) => {
      assert.ok(err instanceof PetrelError)
      assert.equal(err.code, BrokerErrorCode.LISTEN_FAILED)
      assert.match(err.message, /the wss listener on 127\.0\.0\.1:0 cannot use its cert\/key\/ca/)
      return true
    })
  } finally {
    await broker.close()
  }
})

test('per-filter memory override applies to matching filters only', async () => {
  await withBroker({ memory: { maxSegmentSize: 1000, maxSegmentCount: 1, filters: [{ pattern: 'small/#', maxSegmentSize: 10, maxSegmentCount: 1 }] }, limits: { writeHighWaterMark: 1024 } }, async (broker) => {
    const s = await connected(broker, 4, { clientId: 'off', cleanStart: false })
    s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'small/+', qos: 1 }, { topicFilter: 'big/+', qos: 1 }] })
    await s.expect('suback')
    s.destroy()
    await new Promise((resolve) => setTimeout(resolve, 50))
    const p = await connected(broker, 4, { clientId: 'p' })
    for (let i = 1; i <= 3; i++) {
      p.send({ type: 'publish', topicName: 'small/x', payload: Buffer.from('12345'), qos: 1, retain: false, dup: false, packetId: i })
      p.send({ type: 'publish', topicName: 'big/x', payload: Buffer.from('12345'), qos: 1, retain: false, dup: false, packetId: 10 + i })
    }
    for (let i = 0; i < 6; i++) await p.expect('puback')
    // small/+ holds 10 bytes: no 12-byte message (payload + topic) fits; big/+ holds all 3
    assert.equal(broker.sessions.get('off')?.queueLength, 3)
    assert.equal(broker.stats.drops.filter_limit, 3)
  })
})

test('metrics endpoint serves Prometheus text', async () => {
  const broker = createBroker({ sysInterval: 0 })
  const m = await startMetricsServer(broker, '127.0.0.1', 0)
  try {
    const c = memoryClient(broker, 5)
    await c.connect({ clientId: 'm' })
    const res = await fetch(`http://127.0.0.1:${m.port}/metrics`)
    assert.equal(res.status, 200)
    const body = await res.text()
    assert.match(body, /petrel_clients_connected 1/)
    assert.match(body, /petrel_messages_dropped_total\{reason="queue_full"\} 0/)
    assert.equal((await fetch(`http://127.0.0.1:${m.port}/other`)).status, 404)
  } finally {
    await m.close()
    await broker.close()
  }
})
