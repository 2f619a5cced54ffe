// Authentication (password file, client certificates, anonymous policy) and ACL rules.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { pino } from 'pino'
import { createBroker, removeUser, setPassword, PasswordFile, type ClientInfo } from '@petrel/broker'
import { execFile, execFileSync, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { findProgram, makeTestCertificates, requirePeer, waitFor } from '@petrel/test-utils'
import { connected, memoryClient, withBroker } from './helpers.js'

const run = promisify(execFile)

async function passwordFile (users: Record<string, string>): Promise<string> {
  let text = ''
  for (const [u, p] of Object.entries(users)) text = await setPassword(text, u, p)
  const path = join(mkdtempSync(join(tmpdir(), 'petrel-pw-')), 'passwd')
  writeFileSync(path, text)
  return path
}

test('password file: scrypt hashes, never the password; verify right and wrong', async () => {
  const text = await setPassword('', 'alice', 'wonderland')
  assert.ok(!text.includes('wonderland'))
  assert.match(text, /^alice:\$scrypt\$16384\$8\$1\$/)
  const pf = new PasswordFile(await setPassword(text, 'bob', 'builder'))
  assert.equal(pf.size, 2)
  assert.equal(await pf.verify('alice', Buffer.from('wonderland')), true)
  assert.equal(await pf.verify('alice', Buffer.from('nope')), false)
  assert.equal(await pf.verify('carol', Buffer.from('x')), false)
  assert.throws(() => new PasswordFile('alice:plaintext\n'), /PASSWORD_FILE|scrypt/)
})

test('password file: removeUser drops the user\'s line only, and says when there was none', async () => {
  const text = await setPassword(await setPassword('', 'alice', 'wonderland'), 'bob', 'builder')
  const { text: left, removed } = removeUser(text, 'alice')
  assert.equal(removed, true)
  assert.equal(left, text.split('\n')[1] + '\n')
  assert.equal(await new PasswordFile(left).verify('bob', Buffer.from('builder')), true)
  assert.deepEqual(removeUser(left, 'alice'), { text: left, removed: false })
  assert.deepEqual(removeUser(left, 'bob'), { text: '', removed: true })
})

test('password file: mosquitto_passwd\'s hashes are read as they are ($7$ PBKDF2-SHA512, $6$ SHA-512)', async () => {
  // Written by mosquitto_passwd 2.0.11: `-b` (alice, $7$, its default) and `-H sha512 -b` (bob).
  const pf = new PasswordFile([
    'alice:$7$101$Wq7he/POLWMMY9+C$26U7pnXbxJ2HSv8oDtbyXQ7JHOa56q82CUPITAaJUxRvBbl9yvj801AA8gwAHwXa/ByEZE6OkaS7zStA9i5sHQ==',
    'bob:$6$BuOll9k3eyfuhTc4$sybNtvL+QXitFDmA/9fUr3C9phHa20UxoK2u9X10sywgYnA6IvYA4kRLjBWUY8FnENkl4gL7dZZd+viigmg86Q=='
  ].join('\n'))
  assert.equal(await pf.verify('alice', Buffer.from('secret')), true)
  assert.equal(await pf.verify('alice', Buffer.from('Secret')), false)
  assert.equal(await pf.verify('bob', Buffer.from('hunter2')), true)
  assert.equal(await pf.verify('bob', Buffer.from('hunter3')), false)
  assert.throws(() => new PasswordFile('carol:$7$0$c2FsdA==$aGFzaA=='), /iteration/)
  assert.throws(() => new PasswordFile('carol:$5$c2FsdA==$aGFzaA=='), /mosquitto_passwd/)
})

test('password file: an empty or short hash is refused at load (it would match any password)', () => {
  for (const line of ['dave:$7$101$c2FsdA==$', 'dave:$7$101$c2FsdA==$!!!!', 'dave:$scrypt$16384$8$1$c2FsdA==$', 'dave:$6$c2FsdA==$aGFzaA==']) {
    assert.throws(() => new PasswordFile(line), /PASSWORD_FILE|bytes/, line)
  }
})

test('password file: a password once verified is not hashed again (reconnects, clients sharing a user); a wrong one always is', async () => {
  const pf = new PasswordFile(await setPassword('', 'alice', 'wonderland'))
  const cpu = async (f: () => Promise<unknown>): Promise<number> => {
    const c0 = process.cpuUsage()
    await f()
    const c = process.cpuUsage(c0)
    return c.user + c.system
  }
  let first = false
  const once = await cpu(async () => { first = await pf.verify('alice', Buffer.from('wonderland')) })
  assert.equal(first, true)
  const results: boolean[] = []
  // Twenty at once and twenty after: what a scrypt each would cost twenty times over.
  const again = await cpu(async () => {
    results.push(...await Promise.all(Array.from({ length: 20 }, async () => await pf.verify('alice', Buffer.from('wonderland')))))
    for (let i = 0; i < 20; i++) results.push(await pf.verify('alice', Buffer.from('wonderland')))
  })
  assert.deepEqual(results, new Array(40).fill(true))
  assert.ok(again < 4 * once, `40 verifications of a known password took ${again} µs of CPU, one scrypt ${once} µs`)
  // The cache never admits what the file does not.
  assert.equal(await pf.verify('alice', Buffer.from('wonderland!')), false)
  assert.equal(await pf.verify('alice', undefined), false)
  assert.equal(await pf.verify('bob', Buffer.from('wonderland')), false)
  assert.equal(await pf.verify('alice', Buffer.from('wonderland')), true)
  // Simultaneous first logins with the same credentials share one hash.
  const fresh = new PasswordFile(await setPassword('', 'carol', 'pw'))
  const together = await cpu(async () => { await Promise.all(Array.from({ length: 10 }, async () => await fresh.verify('carol', Buffer.from('pw')))) })
  assert.ok(together < 4 * once, `10 simultaneous first logins took ${together} µs of CPU, one scrypt ${once} µs`)
})

test('password file: one made by the installed mosquitto_passwd admits its users', async (t) => {
  if (!requirePeer(t, 'mosquitto_passwd')) return
  const file = join(mkdtempSync(join(tmpdir(), 'petrel-mosq-passwd-')), 'passwd')
  execFileSync('mosquitto_passwd', ['-c', '-b', file, 'dave', 'pw-7'])
  execFileSync('mosquitto_passwd', ['-H', 'sha512', '-b', file, 'erin', 'pw-6'])
  await withBroker({ passwordFile: file, allowAnonymous: false }, async (broker) => {
    for (const [user, pw, rc] of [['dave', 'pw-7', 0], ['erin', 'pw-6', 0], ['dave', 'pw-6', 0x86]] as const) {
      const c = memoryClient(broker, 5)
      assert.equal((await c.connect({ username: user, password: Buffer.from(pw) })).reasonCode, rc, user)
    }
  })
})

for (const v of [4, 5] as const) {
  test(`v${v}: password file users connect; wrong passwords and anonymous (when disallowed) are refused`, async () => {
    await withBroker({ passwordFile: await passwordFile({ alice: 'pw' }), allowAnonymous: false }, async (broker) => {
      const ok = memoryClient(broker, v)
      assert.equal((await ok.connect({ username: 'alice', password: Buffer.from('pw') })).reasonCode, 0)
      const bad = memoryClient(broker, v)
      assert.equal((await bad.connect({ username: 'alice', password: Buffer.from('x') })).reasonCode, v === 5 ? 0x86 : 4)
      const anon = memoryClient(broker, v)
      assert.equal((await anon.connect({})).reasonCode, v === 5 ? 0x87 : 5)
    })
  })
}

test('anonymous is allowed by default on loopback listeners only', async () => {
  const broker = createBroker({ sysInterval: 0 })
  try {
    const loop = await broker.listen({ port: 0, host: '127.0.0.1' })
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${loop.port}`, { reconnectPeriod: 0 })
    await c.endAsync()
    const wide = await broker.listen({ port: 0, host: '0.0.0.0' })
    const refused = mqtt.connect(`mqtt://127.0.0.1:${wide.port}`, { reconnectPeriod: 0 })
    const err = await new Promise<Error & { code?: number }>((resolve) => refused.once('error', resolve))
    assert.equal(err.code, 5)
    refused.end(true)
  } finally {
    await broker.close()
  }
})

test('ACL: %u / %c substitution, read vs write, deny wins', async () => {
  await withBroker({
    acl: [
      { user: 'alice', topic: 'home/%u/#', access: 'readwrite' },
      { topic: 'clients/%c/in', access: 'read' },
      { topic: 'public/#', access: 'readwrite' },
      { topic: 'public/secret', access: 'deny' }
    ]
  }, async (broker) => {
    const a = await connected(broker, 5, { clientId: 'ca', username: 'alice' })
    a.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'home/alice/#', qos: 0 }, { topicFilter: 'home/bob/#', qos: 0 }, { topicFilter: 'clients/ca/in', qos: 0 }, { topicFilter: 'clients/other/in', qos: 0 }, { topicFilter: 'public/secret', qos: 0 }] })
    assert.deepEqual((await a.expect('suback')).reasonCodes, [0, 0x87, 0, 0x87, 0x87])
    const b = await connected(broker, 4, { clientId: 'cb', username: 'bob' })
    b.send({ type: 'publish', topicName: 'home/alice/x', payload: Buffer.from('no'), qos: 1, retain: false, dup: false, packetId: 1 })
    await b.expect('puback')
    b.send({ type: 'publish', topicName: 'clients/ca/in', payload: Buffer.from('no'), qos: 0, retain: false, dup: false })
    a.send({ type: 'publish', topicName: 'home/alice/x', payload: Buffer.from('yes'), qos: 1, retain: false, dup: false, packetId: 2 })
    assert.equal((await a.expect('puback')).reasonCode, 0)
    const m = await a.expect('publish')
    assert.equal(Buffer.from(m.payload).toString(), 'yes')
    assert.equal(broker.stats.drops.not_authorized, 2)
  })
})

test('ACL: a client id or user name with +, # or / never widens a %c / %u rule (mosquitto CVE-2017-7650)', async () => {
  const broker = createBroker({
    sysInterval: 0,
    acl: [{ topic: 'clients/%c/#', access: 'readwrite' }, { topic: 'home/%u/#', access: 'readwrite' }]
  })
  try {
    const { port } = await broker.listen({ port: 0 })
    const url = `mqtt://127.0.0.1:${port}`
    const victim = await mqtt.connectAsync(url, { clientId: 'alice', protocolVersion: 5, reconnectPeriod: 0 })
    const got: string[] = []
    victim.on('message', (topic) => { got.push(topic) })
    await victim.subscribeAsync('clients/alice/#', { qos: 1 })
    for (const [clientId, username, filter, topic] of [
      ['+', undefined, 'clients/+/#', 'clients/alice/in'],
      ['#', undefined, 'clients/#', 'clients/alice/in'],
      ['alice/x', undefined, 'clients/alice/x/#', 'clients/alice/x/in'],
      ['eve', '+', 'home/+/#', 'home/alice/in']
    ] as const) {
      const c = await mqtt.connectAsync(url, { clientId, ...(username === undefined ? {} : { username }), protocolVersion: 5, reconnectPeriod: 0 })
      await assert.rejects(c.subscribeAsync(filter, { qos: 1 }), /Not authorized/, `${clientId} ${filter}`)
      await assert.rejects(c.publishAsync(topic, 'forged', { qos: 1 }), /Not authorized/, `${clientId} ${topic}`)
      await c.endAsync()
    }
    // the rules still work for an ordinary client id
    const own = await mqtt.connectAsync(url, { clientId: 'bob', protocolVersion: 5, reconnectPeriod: 0 })
    await own.publishAsync('clients/bob/x', 'mine', { qos: 1 })
    await own.endAsync()
    await victim.publishAsync('clients/alice/self', 'ok', { qos: 1 })
    await waitFor(() => got.length > 0, { timeoutMs: 2000, message: 'alice gets her own message' })
    assert.deepEqual(got, ['clients/alice/self'])
    await victim.endAsync()
  } finally {
    await broker.close()
  }
})

for (const v of [4, 5] as const) {
  test(`ACL v${v}: a deny rule inside a subscribed filter holds back each message it covers, live and retained (mosquitto_pub -> MQTT.js)`, async (t) => {
    if (!requirePeer(t, 'mosquitto_pub')) return
    const broker = createBroker({
      sysInterval: 0,
      acl: [
        { topic: 'home/%u/#', access: 'readwrite' },
        { user: 'reader', topic: 'home/#', access: 'read' },
        { user: 'reader', topic: 'home/alice/secret', access: 'deny' }
      ]
    })
    try {
      const { port } = await broker.listen({ port: 0 })
      const pub = async (topic: string, payload: string, retain: boolean): Promise<void> => {
        await promisify(execFile)(findProgram('mosquitto_pub') as string, ['-h', '127.0.0.1', '-p', String(port), '-u', 'alice',
          '-t', topic, '-m', payload, '-q', '1', ...(retain ? ['-r'] : [])])
      }
      await pub('home/alice/secret', 'retained secret', true)
      await pub('home/alice/open', 'retained open', true)
      const reader = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: 'reader', protocolVersion: v, reconnectPeriod: 0 })
      const got: string[] = []
      reader.on('message', (topic, payload) => { got.push(`${topic} ${payload.toString()}`) })
      const granted = await reader.subscribeAsync('home/#', { qos: 1 })
      assert.equal(granted[0]?.qos, 1) // the subscription itself is allowed: reader may read home/#
      await pub('home/alice/secret', 'live secret', false)
      await pub('home/alice/open', 'live open', false)
      await waitFor(() => got.length >= 2, { timeoutMs: 5000, message: 'the open messages arrive' })
      await new Promise((resolve) => setTimeout(resolve, 200))
      assert.deepEqual(got.sort(), ['home/alice/open live open', 'home/alice/open retained open'])
      await reader.endAsync()
    } finally {
      await broker.close()
    }
  })
}

for (const v of [4, 5] as const) {
  test(`ACL v${v}: a persistent session is resumed by its own user only; another user with the same client id starts a new one and reads nothing the session held (MQTT.js)`, async () => {
    const broker = createBroker({ sysInterval: 0, acl: [{ topic: 'home/%u/#', access: 'readwrite' }] })
    try {
      const { port } = await broker.listen({ port: 0 })
      const url = `mqtt://127.0.0.1:${port}`
      const as = async (username: string): Promise<{ c: mqtt.MqttClient, sessionPresent: boolean, got: string[] }> => {
        const got: string[] = []
        const c = mqtt.connect(url, { clientId: 'shared-id', username, clean: false, protocolVersion: v, reconnectPeriod: 0, ...(v === 5 ? { properties: { sessionExpiryInterval: 300 } } : {}) })
        c.on('message', (topic, payload) => { got.push(`${topic} ${payload.toString()}`) })
        const connack = await new Promise<mqtt.IConnackPacket>((resolve, reject) => { c.once('connect', resolve); c.once('error', reject) })
        return { c, sessionPresent: connack.sessionPresent, got }
      }
      const queue = async (payload: string): Promise<void> => {
        const p = await mqtt.connectAsync(url, { username: 'alice', protocolVersion: v, reconnectPeriod: 0 })
        await p.publishAsync('home/alice/door', payload, { qos: 1 })
        await p.endAsync()
      }
      const alice = await as('alice')
      await alice.c.subscribeAsync('home/alice/#', { qos: 1 })
      await alice.c.endAsync()
      await queue('one')
      // Her own reconnect resumes the session and gets what it held.
      const again = await as('alice')
      assert.equal(again.sessionPresent, true)
      await waitFor(() => again.got.length === 1, { timeoutMs: 3000, message: 'the held message' })
      assert.deepEqual(again.got, ['home/alice/door one'])
      await again.c.endAsync()
      await queue('two')
      // Mallory, claiming her client id, does not get her session, its subscription or its queue.
      const mallory = await as('mallory')
      assert.equal(mallory.sessionPresent, false)
      await queue('three')
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.deepEqual(mallory.got, [])
      await mallory.c.endAsync()
    } finally {
      await broker.close()
    }
  })
}

for (const v of [4, 5] as const) {
  test(`ACL v${v}: a subscription wider than the read rules (#, as MQTT Explorer makes) is granted and delivers only what the client may read, live and retained; one no read rule reaches is refused`, async () => {
    const broker = createBroker({ sysInterval: 0, acl: [{ topic: 'home/%u/#', access: 'readwrite' }, { topic: 'home/+/live', access: 'write' }, { topic: 'public/#', access: 'write' }] })
    try {
      const { port } = await broker.listen({ port: 0 })
      const url = `mqtt://127.0.0.1:${port}`
      const bob = await mqtt.connectAsync(url, { username: 'bob', protocolVersion: v, reconnectPeriod: 0 })
      await bob.publishAsync('home/bob/retained', 'bob r', { qos: 1, retain: true })
      const alice = await mqtt.connectAsync(url, { username: 'alice', protocolVersion: v, reconnectPeriod: 0 })
      await alice.publishAsync('home/alice/retained', 'alice r', { qos: 1, retain: true })
      const got: string[] = []
      alice.on('message', (topic, payload) => { got.push(`${topic} ${payload.toString()}`) })
      for (const filter of ['#', '$share/g/home/+/live']) {
        const granted = await alice.subscribeAsync(filter, { qos: 1 })
        assert.equal(granted[0]?.qos, 1, filter)
      }
      // Nothing readable under public/ (write only) or other/: refused, not granted to deliver nothing.
      for (const filter of ['other/#', 'public/#']) {
        await assert.rejects(alice.subscribeAsync(filter, { qos: 1 }), v === 5 ? /Not authorized/ : /Unspecified error/, filter)
      }
      await bob.publishAsync('home/bob/live', 'bob live', { qos: 1 })
      await bob.publishAsync('public/news', 'public', { qos: 1 })
      await bob.publishAsync('home/alice/live', 'to alice', { qos: 1 })
      await waitFor(() => got.length >= 2, { timeoutMs: 3000, message: `alice gets her messages (got ${JSON.stringify(got)})` })
      await new Promise((resolve) => setTimeout(resolve, 200))
      // home/alice/live matches # and the shared subscription: one copy [MQTT-3.3.4-2].
      assert.deepEqual(got.sort(), ['home/alice/live to alice', 'home/alice/retained alice r'])
      await alice.endAsync()
      await bob.endAsync()
    } finally {
      await broker.close()
    }
  })
}

test('ACL: a will is a publish: one to a topic the client may not write is never sent (mosquitto_sub --will-topic, 3.1.1 and 5.0)', async (t) => {
  if (!requirePeer(t, 'mosquitto_sub')) return
  const broker = createBroker({ sysInterval: 0, acl: [{ topic: 'home/%u/#', access: 'readwrite' }] })
  try {
    const { port } = await broker.listen({ port: 0 })
    const alice = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: 'alice', reconnectPeriod: 0 })
    const got: string[] = []
    alice.on('message', (_topic, payload) => { got.push(payload.toString()) })
    await alice.subscribeAsync('home/alice/#', { qos: 1 })
    const dieWithWill = async (user: string, version: string, payload: string): Promise<void> => {
      const p = spawn(findProgram('mosquitto_sub') as string, ['-V', version, '-h', '127.0.0.1', '-p', String(port), '-u', user,
        '-t', `home/${user}/in`, '--will-topic', 'home/alice/status', '--will-payload', payload, '--will-qos', '1'])
      const exited = new Promise((resolve) => p.once('exit', resolve))
      try {
        // its stdout is a pipe, so block-buffered: the broker says when it has subscribed
        await waitFor(() => broker.router.subscriptionCount === 2, { timeoutMs: 5000, message: `${user} (${version}) connected and subscribed` })
      } finally {
        p.kill('SIGKILL') // no DISCONNECT: the will is due [MQTT-3.1.2-8]
        await exited
      }
      await waitFor(() => broker.router.subscriptionCount === 1, { timeoutMs: 5000, message: `${user}'s session ended` })
    }
    for (const v of ['mqttv311', 'mqttv5']) await dieWithWill('bob', v, `forged by bob ${v}`)
    await dieWithWill('alice', 'mqttv5', 'alice offline')
    await waitFor(() => got.length > 0, { timeoutMs: 5000, message: 'alice\'s own will arrives' })
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.deepEqual(got, ['alice offline'])
    assert.equal(broker.stats.drops.not_authorized, 2)
    await alice.endAsync()
  } finally {
    await broker.close()
  }
})

test('TLS client certificate: a hook sees its CN whenever the listener asked for one; under use_identity_as_username the CN is the user name, whatever the CONNECT claims', async () => {
  const certs = await makeTestCertificates()
  const seen: Array<{ username: string | undefined, identity: string | undefined }> = []
  const hooked = createBroker({ sysInterval: 0, authenticate: (r) => { seen.push({ username: r.username, identity: r.certificateIdentity }); return true } })
  const users: Array<string | undefined> = []
  const plain = createBroker({ sysInterval: 0, authorizeSubscribe: (c) => { users.push(c.username); return true } })
  try {
    const tls = { cert: certs.cert, key: certs.key, ca: certs.ca }
    const required = await hooked.listen({ type: 'tls', port: 0, ...tls, requireClientCertificate: true })
    const id = await hooked.listen({ type: 'wss', port: 0, ...tls, useIdentityAsUsername: true })
    const client = { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey, reconnectPeriod: 0, username: 'admin', password: 'guess' }
    for (const url of [required.url, id.url.replace('127.0.0.1', 'localhost')]) {
      const c = await mqtt.connectAsync(url, client)
      await c.endAsync()
    }
    assert.deepEqual(seen, [
      { username: 'admin', identity: 'petrel-test-client' }, // required only: the CONNECT's user name, and the CN beside it
      { username: 'petrel-test-client', identity: 'petrel-test-client' } // use_identity_as_username
    ])

    // The built-in check: the CN is the user (ACL %u) even when the CONNECT names another.
    const { port } = await plain.listen({ type: 'tls', port: 0, ...tls, useIdentityAsUsername: true })
    const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, client)
    await c.subscribeAsync('x', { qos: 0 })
    await c.endAsync()
    assert.deepEqual(users, ['petrel-test-client'])
  } finally {
    await hooked.close()
    await plain.close()
  }
})

test('use_identity_as_username without require_client_certificate: a client with no certificate, or one the CA did not sign, is refused (0x86, 3.1.1: 4) as by mosquitto, not let in under the user name it claims (MQTT.js, mosquitto_sub)', async (t) => {
  if (!requirePeer(t, 'mosquitto_sub') || !requirePeer(t, 'openssl')) return
  const certs = await makeTestCertificates()
  const stranger = { cert: join(certs.dir, 'stranger.crt'), key: join(certs.dir, 'stranger.key') }
  await run(findProgram('openssl') as string, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=stranger', '-days', '2',
    '-keyout', stranger.key, '-out', stranger.cert])
  const users: Array<string | undefined> = []
  // no password file: before, the CONNECT's user name was taken as it came
  const broker = createBroker({ sysInterval: 0, allowAnonymous: true, authorizeSubscribe: (c) => { users.push(c.username); return true } })
  try {
    const tls = { cert: certs.cert, key: certs.key, ca: certs.ca, useIdentityAsUsername: true }
    const { port } = await broker.listen({ type: 'tls', port: 0, ...tls })
    const wss = await broker.listen({ type: 'wss', port: 0, ...tls })
    const outcome = async (url: string, opts: mqtt.IClientOptions): Promise<string> => {
      const c = mqtt.connect(url, { ca: certs.ca, reconnectPeriod: 0, connectTimeout: 5000, username: 'someone', ...opts })
      try {
        return await new Promise<string>((resolve) => {
          c.once('connect', () => { c.subscribe('x', () => { resolve('connected') }) })
          c.once('error', (e) => { resolve(`refused ${(e as { code?: number }).code}`) })
          c.once('close', () => { resolve('closed') })
        })
      } finally {
        c.end(true)
      }
    }
    const strangerCert = { cert: readFileSync(stranger.cert), key: readFileSync(stranger.key) }
    for (const url of [`mqtts://localhost:${port}`, wss.url.replace('127.0.0.1', 'localhost')]) {
      assert.equal(await outcome(url, {}), 'refused 4', `${url}: no certificate, 3.1.1`)
      assert.equal(await outcome(url, { protocolVersion: 5 }), 'refused 134', `${url}: no certificate, 5.0`)
      assert.equal(await outcome(url, strangerCert), 'refused 4', `${url}: a stranger's certificate`)
      assert.equal(await outcome(url, { cert: certs.clientCert, key: certs.clientKey }), 'connected', `${url}: a certificate the CA signed`)
    }
    // mosquitto_sub: "Connection error: Connection Refused: bad user name or password."
    const sub = await run(findProgram('mosquitto_sub') as string, ['-h', 'localhost', '-p', String(port), '--cafile', certs.caFile, '-u', 'someone', '-t', 'x', '-C', '1', '-W', '5'])
      .then(() => 'connected', (err: { stderr: string }) => err.stderr)
    assert.match(sub, /bad user name or password/i)
    assert.deepEqual(users, ['petrel-test-client', 'petrel-test-client'])
  } finally {
    await broker.close()
  }
})

test('TLS client certificate optional but verified (request_client_certificate), tls and wss: a client without one connects, a verified one\'s CN reaches the hook, one the CA did not sign is closed after the handshake (mosquitto_pub and MQTT.js)', async (t) => {
  if (!requirePeer(t, 'mosquitto_pub') || !requirePeer(t, 'openssl')) return
  const certs = await makeTestCertificates()
  // a client certificate from no CA the broker knows
  const stranger = { cert: join(certs.dir, 'stranger.crt'), key: join(certs.dir, 'stranger.key') }
  await run(findProgram('openssl') as string, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=stranger', '-days', '2',
    '-keyout', stranger.key, '-out', stranger.cert])
  const seen: Array<string | undefined> = []
  const lines: string[] = []
  const logger = pino({ level: 'warn' }, { write: (l: string) => { lines.push(l) } })
  const broker = createBroker({ sysInterval: 0, logger, authenticate: (r) => { seen.push(r.certificateIdentity); return true } })
  try {
    const tls = { cert: certs.cert, key: certs.key, ca: certs.ca, requestClientCertificate: true }
    const tlsListener = await broker.listen({ type: 'tls', port: 0, ...tls })
    const wssListener = await broker.listen({ type: 'wss', port: 0, ...tls })
    const pub = async (extra: string[]): Promise<number> => {
      try {
        await run(findProgram('mosquitto_pub') as string, ['-h', 'localhost', '-p', String(tlsListener.port), '--cafile', certs.caFile, '-t', 't', '-m', 'x', '-q', '1', ...extra])
        return 0
      } catch (err) {
        return (err as { code: number }).code
      }
    }
    assert.equal(await pub([]), 0, 'no certificate')
    assert.equal(await pub(['--cert', certs.clientCertFile, '--key', certs.clientKeyFile]), 0, 'a certificate the CA signed')
    assert.notEqual(await pub(['--cert', stranger.cert, '--key', stranger.key]), 0, 'a certificate from elsewhere')
    assert.deepEqual(seen, [undefined, 'petrel-test-client'])
    const wssUrl = wssListener.url.replace('127.0.0.1', 'localhost')
    for (const [cert, key, ok] of [[undefined, undefined, true], [certs.clientCert, certs.clientKey, true], [readFileSync(stranger.cert), readFileSync(stranger.key), false]] as const) {
      const c = mqtt.connect(wssUrl, { ca: certs.ca, ...(cert === undefined || key === undefined ? {} : { cert, key }), reconnectPeriod: 0, connectTimeout: 3000 })
      const outcome = await new Promise<string>((resolve) => {
        c.once('connect', () => { resolve('connected') })
        c.once('error', (e) => { resolve(`error ${e.message}`) })
        c.once('close', () => { resolve('closed') })
      })
      assert.equal(outcome === 'connected', ok, `wss with ${cert === undefined ? 'no' : ok ? 'a good' : 'a stranger\'s'} certificate: ${outcome}`)
      c.end(true)
    }
    assert.deepEqual(seen, [undefined, 'petrel-test-client', undefined, 'petrel-test-client'])
    const warnings = lines.filter((l) => l.includes('did not verify'))
    assert.equal(warnings.length, 1, 'one warning per 10 s')
    assert.match(warnings[0] ?? '', /a client certificate did not verify \(\w+.*\): connection closed/)
    await waitFor(() => broker.connections.size + broker.handshakes.size === 0, { timeoutMs: 3000, message: 'every place freed' })
  } finally {
    await broker.close()
  }
})

test('TLS client certificate: required, and its CN used as the user name', async () => {
  const certs = await makeTestCertificates()
  let seenUser: string | undefined
  const broker = createBroker({
    sysInterval: 0,
    authorizeSubscribe: (c) => { seenUser = c.username; return true }
  })
  try {
    const { port } = await broker.listen({ type: 'tls', port: 0, cert: certs.cert, key: certs.key, ca: certs.ca, requireClientCertificate: true, useIdentityAsUsername: true })
    const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey, reconnectPeriod: 0 })
    await c.subscribeAsync('x', { qos: 0 })
    assert.equal(seenUser, 'petrel-test-client')
    await c.endAsync()
    const noCert = mqtt.connect(`mqtts://127.0.0.1:${port}`, { ca: certs.ca, reconnectPeriod: 0, connectTimeout: 2000 })
    let failed = false
    noCert.on('error', () => { failed = true })
    noCert.on('close', () => { failed = true })
    await waitFor(() => failed, { timeoutMs: 5000, message: 'a client without a certificate is refused' })
    assert.equal(noCert.connected, false)
    noCert.end(true)
  } finally {
    await broker.close()
  }
})

test('ACL under enhanced authentication: the hook sees the user name the CONNECT claims and sets the one the session runs as; %u follows the hook, not the claim (MQTT.js)', async () => {
  const seen: Array<string | undefined> = []
  // a token names its user; the user name in the CONNECT is only a claim
  const authenticateEnhanced = (r: { username: string | undefined, data: Buffer | undefined }): { reasonCode: number, username?: string } => {
    seen.push(r.username)
    const token = r.data?.toString()
    return token === 'alice-token' ? { reasonCode: 0, username: 'alice' } : { reasonCode: 0x87 }
  }
  await withBroker({ authenticateEnhanced, acl: [{ topic: 'home/%u/#', access: 'readwrite' }] }, async (broker) => {
    const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
      clientId: 'claims-bob', username: 'bob', protocolVersion: 5, reconnectPeriod: 0,
      properties: { authenticationMethod: 'token', authenticationData: Buffer.from('alice-token') }
    })
    try {
      assert.deepEqual(seen, ['bob'])
      await c.publishAsync('home/alice/x', 'mine', { qos: 1 })
      await assert.rejects(c.publishAsync('home/bob/x', 'claimed', { qos: 1 }), /Not authorized/)
    } finally {
      await c.endAsync()
    }
  })
})

test('hooks get a read-only view of the client, the same one for every call on a connection, not the connection itself (MQTT.js)', async () => {
  const seen: Array<{ hook: string, client: ClientInfo }> = []
  await withBroker({
    authenticate: (r) => r.username === 'alias' ? { ok: true, username: 'alice' } : true,
    authorizePublish: (client, p) => { seen.push({ hook: `publish ${p.topicName}`, client }); return true },
    authorizeSubscribe: (client) => { seen.push({ hook: 'subscribe', client }); return true }
  }, async (broker) => {
    const { port } = await broker.listen({ host: '127.0.0.1', port: 0 })
    const url = `mqtt://127.0.0.1:${port}`
    const a = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, clientId: 'a', username: 'alias', will: { topic: 'will/a', payload: Buffer.from('w'), qos: 0, retain: false } })
    const b = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clientId: 'b' })
    try {
      await a.subscribeAsync('t/#', { qos: 1 })
      await a.publishAsync('t/1', 'x', { qos: 1 })
      await a.publishAsync('t/2', 'y', { qos: 1 })
      await b.publishAsync('t/3', 'z', { qos: 1 })
      assert.deepEqual(seen.map((s) => s.hook), ['publish will/a', 'subscribe', 'publish t/1', 'publish t/2', 'publish t/3'])
      const [will, sub, p1, p2, other] = seen.map((s) => s.client) as [ClientInfo, ClientInfo, ClientInfo, ClientInfo, ClientInfo]
      // one object per connection: nothing made per message, and a WeakMap can key by it
      assert.ok(will === sub && sub === p1 && p1 === p2, 'the same view for every call on one connection')
      assert.notEqual(other, p1)
      // read-only, and nothing else of the broker behind it (it used to be the connection: its
      // session, transport, core, close()...)
      assert.ok(Object.isFrozen(p1))
      assert.throws(() => { (p1 as { clientId: string }).clientId = 'b' }, TypeError)
      assert.throws(() => { (p1 as unknown as Record<string, unknown>).session = undefined }, TypeError)
      for (const key of ['session', 'transport', 'core', 'state', 'close', 'fail', 'will']) {
        assert.equal(key in p1, false, `${key} reachable from the hook's client`)
      }
      // the documented fields, current: the user name the authenticate hook set
      assert.equal(p1.clientId, 'a')
      assert.equal(p1.username, 'alice')
      assert.equal(p1.protocolVersion, 5)
      assert.equal(other.protocolVersion, 4)
      assert.equal(p1.remoteAddress, '127.0.0.1')
      assert.equal(p1.certificateIdentity, undefined)
      assert.equal(p1.signal.aborted, false)
      assert.equal(broker.online.get('a')?.clientId, 'a')
    } finally {
      await Promise.all([a.endAsync(), b.endAsync()])
    }
    const view = seen[0]?.client
    await waitFor(() => view?.signal.aborted === true, { timeoutMs: 3000, message: 'its signal aborts once the connection is gone' })
  })
})
