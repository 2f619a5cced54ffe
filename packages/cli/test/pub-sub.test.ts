import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createBroker } from '@petrel/broker'
import { Decoder, encode, type Packet } from '@petrel/wire'
import { freePort, hasProgram, makeTestCertificates, requirePeer, startMosquitto, waitFor, withTimeout, type Mosquitto } from '@petrel/test-utils'

// `petrel pub` / `petrel sub` as a person runs them, against mosquitto and its own tools.

const petrel = fileURLToPath(new URL('../src/bin/petrel.js', import.meta.url))

interface Run { code: number | null, stdout: string, stderr: string }

// Commands a failed test left running (a subscriber still waiting for its -C count) are
// killed when the file ends, so they neither hold the file open nor outlive it.
const running = new Set<ChildProcess>()

function start (cmd: string, args: string[], input?: string, env?: NodeJS.ProcessEnv): { child: ChildProcess, done: Promise<Run>, stdout: () => string } {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...(env === undefined ? {} : { env: { ...process.env, ...env } }) })
  running.add(child)
  child.on('exit', () => { running.delete(child) })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  if (input !== undefined) child.stdin?.end(input)
  else child.stdin?.end()
  const done = new Promise<Run>((resolve) => { child.on('close', (code) => { resolve({ code, stdout, stderr }) }) })
  return { child, done, stdout: () => stdout }
}

async function run (cmd: string, args: string[], input?: string, env?: NodeJS.ProcessEnv): Promise<Run> {
  const s = start(cmd, args, input, env)
  return await withTimeout(s.done, 15_000, `${cmd} ${args.join(' ')}`)
}

let broker: Mosquitto | undefined
before(async () => { if (hasProgram('mosquitto')) broker = await startMosquitto() })
after(async () => {
  for (const child of running) child.kill('SIGKILL')
  await broker?.stop()
})

const port = (): string => String((broker as Mosquitto).port)

/** Runs `action` again and again until the started command exits (no race with its SUBSCRIBE). */
async function untilExit (s: ReturnType<typeof start>, action: () => Promise<unknown>): Promise<Run> {
  let exited = false
  void s.done.then(() => { exited = true })
  await withTimeout((async () => {
    while (!exited) {
      await action()
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  })(), 10_000, 'command exit')
  return await s.done
}

for (const v of ['mqttv311', 'mqttv5']) {
  test(`${v}: petrel sub receives from mosquitto_pub (-v, -C, repeatable -t)`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const s = start('node', [petrel, 'sub', '-p', port(), '-V', v, '-t', 'cli/a', '-t', 'cli/b', '-v', '-q', '1', '-C', '1'])
    const r = await untilExit(s, async () => await run('mosquitto_pub', ['-p', port(), '-t', 'cli/b', '-m', 'hello world', '-q', '1']))
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, 'cli/b hello world\n')
  })

  test(`${v}: petrel pub reaches mosquitto_sub (-m, -q 2, -l, -f)`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const m = start('mosquitto_sub', ['-p', port(), '-t', `clip/${v}/m`, '-v', '-C', '1'])
    const rm = await untilExit(m, async () => await run('node', [petrel, 'pub', '-p', port(), '-V', v, '-t', `clip/${v}/m`, '-m', 'from petrel', '-q', '2']))
    assert.equal(rm.stdout, `clip/${v}/m from petrel\n`)
    const l = start('mosquitto_sub', ['-p', port(), '-t', `clip/${v}/l`, '-C', '2'])
    const rl = await untilExit(l, async () => await run('node', [petrel, 'pub', '-p', port(), '-V', v, '-t', `clip/${v}/l`, '-l', '-q', '1'], 'line one\nline two\n'))
    assert.equal(rl.stdout, 'line one\nline two\n')
    const f = start('mosquitto_sub', ['-p', port(), '-t', `clip/${v}/f`, '-C', '1'])
    const rf = await untilExit(f, async () => await run('node', [petrel, 'pub', '-p', port(), '-V', v, '-t', `clip/${v}/f`, '-f', petrel]))
    assert.ok(rf.stdout.startsWith('#!/usr/bin/env node'), rf.stdout)
  })
}

test('petrel pub -l sends what mosquitto_pub -l sends: split on LF only, CR kept, empty and last lines, bytes not decoded', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const input = Buffer.concat([Buffer.from('a\r\nb\rc\n\n'), Buffer.from([0xff, 0xfe, 0x0d]), Buffer.from('\nlast')])
  const got: string[] = []
  for (const tool of ['mosquitto_pub', 'petrel']) {
    const topic = `lines/${tool}`
    const s = start('mosquitto_sub', ['-p', port(), '-t', topic, '-F', '%x', '-q', '1'])
    try {
      // Subscribed once a marker comes through (then nothing else is sent to the topic).
      await waitFor(async () => {
        await run('mosquitto_pub', ['-p', port(), '-t', topic, '-m', 'M', '-q', '1'])
        return s.stdout().includes('4d\n')
      })
      const cmd = tool === 'petrel' ? ['node', [petrel, 'pub']] as const : ['mosquitto_pub', []] as const
      const p = spawn(cmd[0], [...cmd[1], '-p', port(), '-t', topic, '-l', '-q', '1'], { stdio: ['pipe', 'ignore', 'ignore'] })
      p.stdin.end(input)
      assert.equal(await new Promise((resolve) => p.on('close', resolve)), 0)
      const lines = (): string => s.stdout().replace(/^(4d\n)+/, '')
      await waitFor(() => lines().split('\n').length > 5)
      got.push(lines())
    } finally {
      s.child.kill()
      await s.done
    }
  }
  assert.equal(got[0], '610d\n620d63\n\nfffe0d\n6c617374\n')
  assert.equal(got[1], got[0])
})

test('petrel sub --json: one object per line, the same keys on every line (binary payloads in base64, v5 properties)', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const s = start('node', [petrel, 'sub', '-p', port(), '-V', '5', '-t', 'json/x', '--json', '-C', '1'])
  const r = await untilExit(s, async () => await run('mosquitto_pub', ['-p', port(), '-V', 'mqttv5', '-t', 'json/x', '-m', 'text', '-D', 'publish', 'user-property', 'k', 'v']))
  assert.equal(r.code, 0, r.stderr)
  const text = JSON.parse(r.stdout) as Record<string, unknown>
  assert.equal(text.topic, 'json/x')
  assert.equal(text.payload, 'text')
  // only what the publisher set: the subscription identifier is the client's own
  assert.deepEqual(text.properties, { userProperties: [['k', 'v']] })
  // A retained binary message arrives at once on subscribe.
  const bin = join(mkdtempSync(join(tmpdir(), 'petrel-cli-')), 'bin')
  writeFileSync(bin, Buffer.from([0xff, 0xfe, 0x00]))
  assert.equal((await run('node', [petrel, 'pub', '-p', port(), '-t', 'json/bin', '-f', bin, '-r', '-q', '1'])).code, 0)
  const rb = await run('node', [petrel, 'sub', '-p', port(), '-t', 'json/bin', '--json', '-C', '1'])
  const o = JSON.parse(rb.stdout) as Record<string, unknown>
  assert.deepEqual([o.payload, o.encoding, o.retain], ['//4A', 'base64', true])
  // One shape whatever the payload and version: a script need not check whether a key is there.
  const keys = ['topic', 'payload', 'encoding', 'qos', 'retain', 'properties']
  assert.deepEqual(Object.keys(text), keys)
  assert.deepEqual(Object.keys(o), keys)
  assert.deepEqual([text.encoding, o.properties], ['utf8', {}])
  await run('node', [petrel, 'pub', '-p', port(), '-t', 'json/bin', '-n', '-r', '-q', '1'])
})

test('errors a person can act on: refused connection, bad topic, usage, -L URL', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const closed = String(await freePort())
  const refused = await run('node', [petrel, 'pub', '-p', closed, '-t', 'x', '-m', 'y'])
  assert.equal(refused.code, 2)
  assert.match(refused.stderr, /Connection refused/)
  const bad = await run('node', [petrel, 'pub', '-p', port(), '-t', 'a/#', '-m', 'y'])
  assert.equal(bad.code, 1)
  assert.match(bad.stderr, /Bad topic/)
  // Checked before connecting, as mosquitto_pub/sub do: no broker needed to be told.
  const badFirst = await run('node', [petrel, 'sub', '-p', closed, '-t', 'a/#/b'])
  assert.deepEqual([badFirst.code, /Bad topic/.test(badFirst.stderr)], [1, true])
  // The will topic too: it printed the codec's error, then crashed with a stack trace.
  for (const cmd of [['pub', '-m', 'x'], ['sub']]) {
    const badWill = await run('node', [petrel, ...cmd, '-p', port(), '-t', 'ok', '--will-topic', 'w/#'])
    assert.equal(badWill.code, 1, badWill.stderr)
    assert.equal(badWill.stderr, `petrel ${cmd[0] as string}: Bad topic: invalid will topic "w/#": a topic name must not contain the wildcards + or # [MQTT-4.7.1-1]\n`)
  }
  // Another protocol on the port (a WebSocket listener's HTTP 400): a connection failure that says so, not exit 4 with a codec message alone.
  const http = createServer((socket) => { socket.once('data', () => { socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n') }) })
  await new Promise<void>((resolve) => { http.listen(0, '127.0.0.1', resolve) })
  try {
    for (const cmd of [['pub', '-m', 'x'], ['sub']]) {
      const notMqtt = await run('node', [petrel, ...cmd, '-p', String((http.address() as AddressInfo).port), '-t', 'x'])
      assert.equal(notMqtt.code, 2, notMqtt.stderr)
      assert.match(notMqtt.stderr, /Cannot connect to .*: its answer is not valid MQTT \(another protocol on this port\? a WebSocket listener takes -L ws:\/\/host:port\/path\)/)
    }
  } finally {
    http.close()
  }
  const usage = await run('node', [petrel, 'sub', '-p', port()])
  assert.equal(usage.code, 1)
  assert.match(usage.stderr, /topic filter is required/)
  const help = await run('node', [petrel, 'pub', '--help'])
  assert.equal(help.code, 0)
  assert.match(help.stdout, /-L URL/)
  const s = start('node', [petrel, 'sub', '-L', `mqtt://127.0.0.1:${port()}/url/t`, '-C', '1'])
  const r = await untilExit(s, async () => await run('node', [petrel, 'pub', '-L', `mqtt://127.0.0.1:${port()}/url/t`, '-m', 'via url']))
  assert.equal(r.stdout, 'via url\n')
  // A ws:// URL's path is the WebSocket's: the error says so instead of only asking for -t.
  for (const cmd of [['pub', '-m', 'x'], ['sub']]) {
    const ws = await run('node', [petrel, ...cmd, '-L', `ws://127.0.0.1:${closed}/home/#`])
    assert.equal(ws.code, 1)
    assert.match(ws.stderr, /-t .*: the path of a ws:\/\/ or wss:\/\/ -L URL is the WebSocket's, not a topic/)
    // An mqtt:// URL with no path: the topic goes there (mosquitto_pub: "topic missing").
    const bare = await run('node', [petrel, ...cmd, '-L', `mqtt://127.0.0.1:${closed}`])
    assert.equal(bare.code, 1)
    assert.match(bare.stderr, /-t .*\); this -L URL has none in its path \(mqtt:\/\/host:port\/TOPIC\)/)
  }
})

test('petrel sub and petrel pub -l ride out a broker restart; sub | head -1 ends quietly', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const m = await startMosquitto()
  let sub: ReturnType<typeof start> | undefined
  let pub: ChildProcess | undefined
  try {
    const p = String(m.port)
    sub = start('node', [petrel, 'sub', '-p', p, '-t', 'rs/#', '-v', '-q', '1'])
    pub = spawn('node', [petrel, 'pub', '-p', p, '-t', 'rs/l', '-l', '-q', '1'], { stdio: ['pipe', 'ignore', 'pipe'] })
    let pubErr = ''
    pub.stderr?.on('data', (d: Buffer) => { pubErr += d.toString() })
    const input = pub.stdin as NonNullable<ChildProcess['stdin']>
    const sees = sub.stdout
    // Lines until the subscriber prints one (it may subscribe after the first ones went).
    await withTimeout((async () => {
      while (!sees().includes('rs/l before')) {
        input.write('before\n')
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    })(), 10_000, 'before')
    await m.restart()
    input.write('after\n') // read while the link may still be down: sent once it is back
    // The publisher may be back before the subscriber has subscribed again (its session was
    // not kept), and that line reaches nobody: more follow until one is printed.
    await withTimeout((async () => {
      while (!sees().includes('rs/l after')) {
        await new Promise((resolve) => setTimeout(resolve, 500))
        input.write('after\n')
      }
    })(), 15_000, 'after the restart')
    input.end()
    const publisher = pub
    const pubExit = await withTimeout(new Promise((resolve) => publisher.on('close', resolve)), 10_000, 'pub -l exit')
    assert.equal(pubExit, 0)
    sub.child.kill('SIGINT')
    const r = await withTimeout(sub.done, 10_000, 'sub exit')
    assert.equal(r.code, 0)
    // Both ends of the outage said on stderr (a silent wait looked like a quiet topic); the
    // command's own DISCONNECT at Ctrl-C is no lost connection.
    const where = `mqtt://127\\.0\\.0\\.1:${p}`
    assert.match(r.stderr, new RegExp(`^petrel sub: lost the connection to ${where} \\([^)]+\\); reconnecting until Ctrl-C\n` +
      `(petrel sub: lost the connection to ${where} \\([^)]+\\); reconnecting until Ctrl-C\n|petrel sub: reconnected to ${where}\n)*$`))
    assert.match(r.stderr, /reconnected to .*\n$/)
    assert.match(pubErr, /^petrel pub: lost the connection to .*; reconnecting until Ctrl-C\n(.*\n)*petrel pub: reconnected to /)
    // A reader that goes away: no EPIPE stack trace, exit 0.
    const piped = start('node', [petrel, 'sub', '-p', p, '-t', 'rs/h'])
    const out = await untilExit(piped, async () => {
      await run('mosquitto_pub', ['-p', p, '-t', 'rs/h', '-m', 'one'])
      if (piped.stdout() !== '') piped.child.stdout?.destroy()
    })
    assert.deepEqual([out.code, out.stderr], [0, ''])
  } finally {
    // They reconnect forever: stop them whatever happened.
    sub?.child.kill('SIGKILL')
    pub?.kill('SIGKILL')
    await m.stop()
  }
})

test('not authorized: exit code 3 and a message naming -u/-P', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const locked = await startMosquitto({ allowAnonymous: false })
  try {
    const r = await run('node', [petrel, 'sub', '-p', String(locked.port), '-t', 'x', '-u', 'u', '-P', 'p'])
    assert.equal(r.code, 3)
    assert.match(r.stderr, /Not authorized/)
  } finally {
    await locked.stop()
  }
})

test('TLS with a client certificate: --cafile --cert --key, -i, -k, -r', async (t) => {
  if (!requirePeer(t, 'mosquitto') || !requirePeer(t, 'openssl')) return
  const certs = await makeTestCertificates()
  const m = await startMosquitto({ tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile, requireCertificate: true } })
  try {
    const tlsPort = String(m.tlsPort)
    const tls = ['--cafile', certs.caFile, '--cert', certs.clientCertFile, '--key', certs.clientKeyFile]
    const pub = await run('node', [petrel, 'pub', '-p', tlsPort, ...tls, '-t', 'tls/t', '-m', 'secret', '-r', '-q', '1', '-i', 'cli-tls-pub', '-k', '30'])
    assert.equal(pub.code, 0, pub.stderr)
    // Retained, so the subscriber started afterwards gets it at once.
    const sub = await run('node', [petrel, 'sub', '-p', tlsPort, ...tls, '-t', 'tls/t', '-C', '1', '-v', '-V', 'mqttv5'])
    assert.equal(sub.code, 0, sub.stderr)
    assert.equal(sub.stdout, 'tls/t secret\n')
    // Without the client certificate the handshake fails: a connection error, exit code 2.
    const noCert = await run('node', [petrel, 'sub', '-p', tlsPort, '--cafile', certs.caFile, '-t', 'tls/t', '-C', '1', '--connect-timeout', '3'])
    assert.equal(noCert.code, 2, noCert.stderr)
    assert.match(noCert.stderr, /connect/i)
    // --cert without --key (or the reverse) is a usage error before connecting, as mosquitto_pub says.
    for (const [flags, said] of [[['--cert', certs.clientCertFile], /--cert needs --key/], [['--key', certs.clientKeyFile], /--key needs --cert/]] as const) {
      const half = await run('node', [petrel, 'pub', '-p', tlsPort, '--cafile', certs.caFile, ...flags, '-t', 'tls/t', '-m', 'x'])
      assert.equal(half.code, 1, half.stderr)
      assert.match(half.stderr, said)
    }
    // --capath (a directory of PEM files), --tls-version as the lowest version, --ciphers.
    const capath = mkdtempSync(join(tmpdir(), 'petrel-capath-'))
    writeFileSync(join(capath, 'ca.pem'), readFileSync(certs.caFile))
    writeFileSync(join(capath, 'not-a-cert.txt'), 'hello')
    const client = ['--cert', certs.clientCertFile, '--key', certs.clientKeyFile]
    const viaCapath = await run('node', [petrel, 'sub', '-p', tlsPort, '--capath', capath, ...client, '--tls-version', 'tlsv1.2', '-t', 'tls/t', '-C', '1'])
    assert.equal(viaCapath.code, 0, viaCapath.stderr)
    assert.equal(viaCapath.stdout, 'secret\n')
    // TLS settings that cannot work (a cipher list matching nothing, a key not the certificate's)
    // are the command line's to fix: exit 1, nothing dialled.
    const badCiphers = await run('node', [petrel, 'sub', '-p', tlsPort, ...tls, '--ciphers', 'NO-SUCH-CIPHER', '-t', 'tls/t', '-C', '1'])
    assert.equal(badCiphers.code, 1, badCiphers.stderr)
    assert.match(badCiphers.stderr, /Cannot use the TLS settings: .*no cipher matches/)
    const wrongKey = await run('node', [petrel, 'pub', '-p', tlsPort, '--cafile', certs.caFile, '--cert', certs.clientCertFile, '--key', certs.keyFile, '-t', 'tls/t', '-m', 'x'])
    assert.equal(wrongKey.code, 1, wrongKey.stderr)
    assert.match(wrongKey.stderr, /Cannot use the TLS settings: .*the key does not belong to the certificate/)
    // The OS store does not know this test CA: the handshake fails.
    const osCerts = await run('node', [petrel, 'sub', '-p', tlsPort, '--tls-use-os-certs', ...client, '-t', 'tls/t', '-C', '1', '--connect-timeout', '3'])
    assert.equal(osCerts.code, 2, osCerts.stderr)
  } finally {
    await m.stop()
  }
})

test('--insecure skips the host name check only, as in mosquitto_pub: the chain is still verified, and alone it does not turn TLS on', async (t) => {
  if (!requirePeer(t, 'mosquitto') || !requirePeer(t, 'openssl')) return
  const certs = await makeTestCertificates()
  // A certificate from the test CA, for a name that is not the address dialled.
  const m = await startMosquitto({ tls: { certFile: certs.elsewhereCertFile, keyFile: certs.elsewhereKeyFile, caFile: certs.caFile } })
  try {
    const tlsPort = String(m.tlsPort)
    const pub = (...flags: string[]): Promise<Run> => run('node', [petrel, 'pub', '-t', 'tls/i', '-m', 'x', '--connect-timeout', '3', ...flags])
    const strict = await pub('-p', tlsPort, '--cafile', certs.caFile)
    assert.equal(strict.code, 2, strict.stderr)
    assert.match(strict.stderr, /elsewhere\.invalid|altnames|host ?name/i)
    const loose = await pub('-p', tlsPort, '--cafile', certs.caFile, '--insecure')
    assert.equal(loose.code, 0, loose.stderr)
    // A chain that does not lead to the CA given still fails: --insecure is no "trust anything".
    const wrongCa = await pub('-p', tlsPort, '--cafile', certs.clientCertFile, '--insecure')
    assert.equal(wrongCa.code, 2, wrongCa.stderr)
    // Alone, against the plain listener: plain MQTT, as mosquitto_pub does.
    const plain = await pub('-p', String(m.port), '--insecure')
    assert.equal(plain.code, 0, plain.stderr)
    // An mqtts:// -L URL turns TLS on by itself, and --insecure loosens that connection too (the
    // test CA trusted as a system CA would be, through NODE_EXTRA_CA_CERTS).
    const viaUrl = async (...flags: string[]): Promise<Run> => await run('node', [petrel, 'pub', '-L', `mqtts://127.0.0.1:${tlsPort}/tls/i`, '-m', 'x', '--connect-timeout', '3', ...flags],
      undefined, { NODE_EXTRA_CA_CERTS: certs.caFile })
    const urlStrict = await viaUrl()
    assert.equal(urlStrict.code, 2, urlStrict.stderr)
    const urlLoose = await viaUrl('--insecure')
    assert.equal(urlLoose.code, 0, urlLoose.stderr)
  } finally {
    await m.stop()
  }
})

test('TLS on one side only, or a broker certificate with no CA to check it, is named in the error with what to try', async (t) => {
  if (!requirePeer(t, 'mosquitto') || !requirePeer(t, 'openssl')) return
  const certs = await makeTestCertificates()
  const m = await startMosquitto({ tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile } })
  try {
    const pub = (...flags: string[]): Promise<Run> => run('node', [petrel, 'pub', '-m', 'x', '--connect-timeout', '3', ...flags])
    // Plain MQTT to the TLS listener: mosquitto resets the connection.
    const plainToTls = await pub('-p', String(m.tlsPort), '-t', 'tls/h')
    assert.equal(plainToTls.code, 2, plainToTls.stderr)
    assert.match(plainToTls.stderr, /if this port takes TLS, add --cafile/)
    // TLS to the plain listener: the handshake fails.
    const tlsToPlain = await pub('-L', `mqtts://127.0.0.1:${m.port}/tls/h`)
    assert.equal(tlsToPlain.code, 2, tlsToPlain.stderr)
    assert.match(tlsToPlain.stderr, /TLS handshake failed: if this port speaks plain MQTT/)
    // The right port, but the test CA is not among the system's.
    const noCa = await pub('-L', `mqtts://127.0.0.1:${m.tlsPort}/tls/h`)
    assert.equal(noCa.code, 2, noCa.stderr)
    assert.match(noCa.stderr, /certificate.*\(give the CA that signed the broker's certificate with --cafile\)/)
    const ok = await pub('-p', String(m.tlsPort), '-t', 'tls/h', '--cafile', certs.caFile)
    assert.equal(ok.code, 0, ok.stderr)
  } finally {
    await m.stop()
  }
})

test('petrel pub -l: more lines than it keeps in flight (1,000) all arrive, in order', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const lines = Array.from({ length: 2500 }, (_, i) => `line ${i}`)
  const sub = start('mosquitto_sub', ['-p', port(), '-t', 'many/l', '-C', '2500', '-q', '1'])
  await new Promise((resolve) => setTimeout(resolve, 500))
  const pub = await run('node', [petrel, 'pub', '-p', port(), '-t', 'many/l', '-l', '-q', '1', '-M', '10'], lines.join('\n') + '\n')
  assert.equal(pub.code, 0, pub.stderr)
  const r = await withTimeout(sub.done, 10_000, 'mosquitto_sub')
  assert.equal(r.stdout, lines.join('\n') + '\n')
})

test('petrel pub --repeat and -l keep -M publishes in flight: a broker that acks nothing until it holds that many gets them all, in order', async () => {
  // The broker holds every QoS 1/2 PUBLISH unacknowledged until -M (4) of them are outstanding,
  // then completes them all. A publisher that waited for each ack before the next (or for a
  // timer) would send one and stall here until the timeout.
  const M = 4
  let most = 0
  let got: string[] = []
  const server = createServer((socket) => {
    socket.on('error', () => {})
    const decoder = new Decoder()
    const held: number[] = []
    socket.on('data', (d: Buffer) => {
      const packets: Packet[] = []
      decoder.pushInto(d, packets)
      for (const p of packets) {
        if (p.type === 'connect') socket.write(encode({ type: 'connack', sessionPresent: false, reasonCode: 0 }, 4))
        else if (p.type === 'publish') {
          got.push(p.payload.toString())
          held.push(p.packetId ?? 0)
          most = Math.max(most, held.length)
          if (held.length < M) continue
          for (const packetId of held.splice(0)) socket.write(encode(p.qos === 1 ? { type: 'puback', packetId } : { type: 'pubrec', packetId }, 4))
        } else if (p.type === 'pubrel') socket.write(encode({ type: 'pubcomp', packetId: p.packetId }, 4))
        else if (p.type === 'disconnect') socket.end()
      }
    })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const p = String((server.address() as AddressInfo).port)
  try {
    for (const qos of ['1', '2']) {
      const common = ['pub', '-p', p, '-V', 'mqttv311', '-t', 'window', '-q', qos, '-M', String(M)]
      got = []
      most = 0
      const repeat = await run('node', [petrel, ...common, '-m', 'again', '--repeat', String(3 * M)])
      assert.equal(repeat.code, 0, repeat.stderr)
      assert.deepEqual(got, Array(3 * M).fill('again'))
      assert.equal(most, M, `--repeat -q ${qos}`)
      got = []
      most = 0
      const lines = Array.from({ length: 3 * M }, (_, i) => `line ${i}`)
      const piped = await run('node', [petrel, ...common, '-l'], lines.join('\n') + '\n')
      assert.equal(piped.code, 0, piped.stderr)
      assert.deepEqual(got, lines)
      assert.equal(most, M, `-l -q ${qos}`)
    }
  } finally {
    server.close()
  }
})

test('a port that accepts TCP and never answers the TLS handshake or the WebSocket upgrade: exit 2, saying which step timed out', async () => {
  const server = createServer((s) => { s.on('error', () => {}) })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const silent = (server.address() as AddressInfo).port
  try {
    for (const [url, step] of [[`mqtts://127.0.0.1:${silent}`, /TLS handshake/], [`ws://127.0.0.1:${silent}/mqtt`, /WebSocket upgrade/], [`wss://127.0.0.1:${silent}/mqtt`, /TLS handshake and WebSocket upgrade/]] as const) {
      const r = await run('node', [petrel, 'pub', '-L', url, '-t', 'x', '-m', 'x', '--connect-timeout', '1'])
      assert.equal(r.code, 2, r.stderr)
      assert.match(r.stderr, /^petrel pub: Timed out connecting to /)
      assert.match(r.stderr, step)
    }
  } finally {
    server.close()
  }
})

test('a WebSocket URL that fails names the WebSocket way out: a wrong path (HTTP 400), ws:// to a TLS or plain MQTT port, wss:// to a ws:// port', async () => {
  const certs = await makeTestCertificates()
  const broker = createBroker({ sysInterval: 0 })
  try {
    const tcp = await broker.listen({ type: 'tcp', port: 0 })
    const ws = await broker.listen({ type: 'ws', port: 0, path: '/mqtt' })
    const wss = await broker.listen({ type: 'wss', port: 0, cert: certs.cert, key: certs.key })
    const pub = async (url: string): Promise<Run> => await run('node', [petrel, 'pub', '-L', url, '-t', 'w/h', '-m', 'x', '--connect-timeout', '3', '--cafile', certs.caFile])
    const cases: Array<[string, RegExp]> = [
      [`ws://127.0.0.1:${ws.port}/nope`, /HTTP 400: check the path in the URL/],
      [`ws://127.0.0.1:${wss.port}/mqtt`, /before answering the WebSocket upgrade: if this port takes TLS, use a wss:\/\/ -L URL/],
      [`ws://127.0.0.1:${tcp.port}/mqtt`, /if it speaks MQTT without WebSocket, an mqtt:\/\/ one/],
      [`wss://127.0.0.1:${ws.port}/mqtt`, /the TLS handshake failed: .*ws:\/\/, no --cafile\)$/m]
    ]
    for (const [url, said] of cases) {
      const r = await pub(url)
      assert.equal(r.code, 2, r.stderr)
      assert.match(r.stderr, said, url)
      assert.doesNotMatch(r.stderr, /mqtts:\/\//, url)
    }
    const ok = await pub(`ws://127.0.0.1:${ws.port}/mqtt`)
    assert.equal(ok.code, 0, ok.stderr)
  } finally {
    await broker.close()
  }
})

test('a broker that requires a client certificate: none given, or one it does not take, is said so (exit 2), on mqtts:// and wss://, and by bench', async () => {
  const certs = await makeTestCertificates()
  const broker = createBroker({ sysInterval: 0 })
  try {
    const tls = { cert: certs.cert, key: certs.key, ca: certs.ca, requireClientCertificate: true }
    const mqtts = await broker.listen({ type: 'tls', port: 0, ...tls })
    const wss = await broker.listen({ type: 'wss', port: 0, ...tls })
    const urls = [`mqtts://localhost:${mqtts.port}`, `wss://localhost:${wss.port}/`]
    const pub = async (url: string, ...flags: string[]): Promise<Run> => await run('node', [petrel, 'pub', '-L', url, '-t', 'c/r', '-m', 'x', '--connect-timeout', '3', '--cafile', certs.caFile, ...flags])
    for (const url of urls) {
      const none = await pub(url)
      assert.equal(none.code, 2, none.stderr)
      assert.match(none.stderr, /\(the broker requires a client certificate: give one with --cert and --key\)$/m, url)
      // A certificate from the right CA, but for server authentication only: refused after the TLS 1.3 handshake.
      const wrong = await pub(url, '--cert', certs.elsewhereCertFile, '--key', certs.elsewhereKeyFile)
      assert.equal(wrong.code, 2, wrong.stderr)
      assert.match(wrong.stderr, /the TLS handshake went through, then the broker closed the connection .*it did not take this one/, url)
      assert.doesNotMatch(wrong.stderr, /plain MQTT/, url)
      const ok = await pub(url, '--cert', certs.clientCertFile, '--key', certs.clientKeyFile)
      assert.equal(ok.code, 0, ok.stderr)
    }
    const bench = await run('node', [petrel, 'bench', 'pub', '-p', String(mqtts.port), '-S', '--cafile', certs.caFile, '-c', '1', '-L', '1', '-t', 'c/b'])
    assert.equal(bench.code, 2, bench.stdout + bench.stderr)
    assert.match(bench.stdout + bench.stderr, /the broker requires a client certificate: give one with --cert and --key/)
  } finally {
    await broker.close()
  }
})

test('a broker certificate that has expired is said so (exit 2), on mqtts:// and wss://', async () => {
  const certs = await makeTestCertificates()
  const broker = createBroker({ sysInterval: 0 })
  try {
    const tls = { cert: readFileSync(certs.expiredCertFile), key: readFileSync(certs.expiredKeyFile) }
    const mqtts = await broker.listen({ type: 'tls', port: 0, ...tls })
    const wss = await broker.listen({ type: 'wss', port: 0, ...tls })
    for (const url of [`mqtts://localhost:${mqtts.port}`, `wss://localhost:${wss.port}/`]) {
      const r = await run('node', [petrel, 'pub', '-L', url, '-t', 'e/x', '-m', 'x', '--connect-timeout', '3', '--cafile', certs.caFile, '--insecure'])
      assert.equal(r.code, 2, r.stderr)
      assert.match(r.stderr, /certificate has expired \(the broker's certificate has expired \(or this machine's clock is wrong\): it must be renewed on the broker\)$/m, url)
    }
  } finally {
    await broker.close()
  }
})

test('TLS-PSK: --psk and --psk-identity against a mosquitto psk_file listener', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const dir = mkdtempSync(join(tmpdir(), 'petrel-psk-'))
  const pskFile = join(dir, 'psk.txt')
  writeFileSync(pskFile, 'cli-id:00c0ffee\n')
  const pskPort = await freePort()
  const m = await startMosquitto({ extraConfig: [`listener ${pskPort} 127.0.0.1`, 'psk_hint petrel', `psk_file ${pskFile}`].join('\n') })
  try {
    const psk = ['-p', String(pskPort), '--psk', '00c0ffee', '--psk-identity', 'cli-id']
    const sub = start('node', [petrel, 'sub', ...psk, '-t', 'psk/t', '-C', '1', '-v'])
    const r = await untilExit(sub, async () => await run('node', [petrel, 'pub', ...psk, '-t', 'psk/t', '-m', 'shared secret', '-q', '1']))
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, 'psk/t shared secret\n')
    const wrong = await run('node', [petrel, 'pub', '-p', String(pskPort), '--psk', '00c0fffe', '--psk-identity', 'cli-id', '-t', 'psk/t', '-m', 'x', '--connect-timeout', '3'])
    assert.equal(wrong.code, 2, wrong.stderr)
    const usage = await run('node', [petrel, 'pub', '-p', String(pskPort), '--psk', 'zz', '--psk-identity', 'cli-id', '-t', 'psk/t', '-m', 'x'])
    assert.equal(usage.code, 1)
    assert.match(usage.stderr, /hexadecimal/)
  } finally {
    await m.stop()
  }
})

test('--unix, -A, -I, -M, --quiet and --random-filter', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const dir = mkdtempSync(join(tmpdir(), 'petrel-unix-'))
  const socket = join(dir, 'mqtt.sock')
  const m = await startMosquitto({ extraConfig: `listener 0 ${socket}` })
  try {
    const sub = start('mosquitto_sub', ['--unix', socket, '-t', 'ux/#', '-C', '2', '-v'])
    const r = await untilExit(sub, async () => await run('node', [petrel, 'pub', '--unix', socket, '-t', 'ux/a', '-m', 'over unix', '-q', '1', '-M', '1']))
    assert.equal(r.stdout, 'ux/a over unix\nux/a over unix\n')
    const gone = await run('node', [petrel, 'pub', '--unix', join(dir, 'nothing.sock'), '-t', 'ux/a', '-m', 'x'])
    assert.equal(gone.code, 2)
    assert.match(gone.stderr, /no broker is listening on the Unix socket/)
    // -I: the id is the prefix and the process id; -A picks the local address.
    const debug = await run('node', [petrel, 'pub', '-p', String(m.port), '-A', '127.0.0.1', '-I', 'pfx-', '-t', 'ux/b', '-m', 'x', '-d'])
    assert.equal(debug.code, 0, debug.stderr)
    assert.match(debug.stderr, /^Client pfx-\d+ sending CONNECT/m)
    const quiet = await run('node', [petrel, 'pub', '-p', '1', '-t', 'ux/b', '-m', 'x', '--quiet'])
    assert.deepEqual([quiet.code, quiet.stderr], [2, ''])
    // --random-filter 0 prints nothing, yet the messages count for -C (as mosquitto_sub).
    const none = start('node', [petrel, 'sub', '-p', String(m.port), '-t', 'ux/r', '-C', '3', '--random-filter', '0'])
    const rn = await untilExit(none, async () => await run('mosquitto_pub', ['-p', String(m.port), '-t', 'ux/r', '-m', 'x']))
    assert.deepEqual([rn.code, rn.stdout], [0, ''])
  } finally {
    await m.stop()
  }
})

for (const v of ['mqttv311', 'mqttv5']) {
  test(`${v}: persistent sessions: -c -i -E creates one, later runs get what was queued, -U removes a subscription`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const id = `cli-persist-${v}-${process.pid}`
    const p = port()
    const created = await run('node', [petrel, 'sub', '-p', p, '-V', v, '-c', '-i', id, '-q', '1', '-t', `ps/${v}/a`, '-E'])
    assert.equal(created.code, 0, created.stderr)
    for (const m of ['m1', 'm2', 'm3']) await run('mosquitto_pub', ['-p', p, '-q', '1', '-t', `ps/${v}/a`, '-m', m])
    // Queued while away; the broker sends them right after CONNACK, before petrel's SUBSCRIBE.
    // What arrives past -C is left unacknowledged: the next run gets it.
    const one = await run('node', [petrel, 'sub', '-p', p, '-V', v, '-c', '-i', id, '-q', '1', '-t', `ps/${v}/a`, '-C', '1'])
    assert.equal(one.stdout, 'm1\n', one.stderr)
    const resumed = await run('node', [petrel, 'sub', '-p', p, '-V', v, '-c', '-i', id, '-q', '1', '-t', `ps/${v}/a`, '-C', '2'])
    assert.equal(resumed.stdout, 'm2\nm3\n', resumed.stderr)
    // A run with another filter still prints what the session's older subscription brings, in order.
    await run('node', [petrel, 'sub', '-p', p, '-V', v, '-c', '-i', id, '-q', '1', '-t', `ps/${v}/b`, '-E'])
    await run('mosquitto_pub', ['-p', p, '-q', '1', '-t', `ps/${v}/a`, '-m', 'old filter'])
    await run('mosquitto_pub', ['-p', p, '-q', '1', '-t', `ps/${v}/b`, '-m', 'new filter'])
    const both = await run('node', [petrel, 'sub', '-p', p, '-V', v, '-c', '-i', id, '-q', '1', '-t', `ps/${v}/b`, '-C', '2', '-v'])
    assert.equal(both.stdout, `ps/${v}/a old filter\nps/${v}/b new filter\n`, both.stderr)
    // The same holds for messages of an older subscription: past -C they stay unacknowledged.
    for (const m of ['o1', 'o2', 'o3']) await run('mosquitto_pub', ['-p', p, '-q', '1', '-t', `ps/${v}/a`, '-m', m])
    const firstOld = await run('node', [petrel, 'sub', '-p', p, '-V', v, '-c', '-i', id, '-q', '1', '-t', `ps/${v}/b`, '-C', '1'])
    assert.equal(firstOld.stdout, 'o1\n', firstOld.stderr)
    const restOld = await run('node', [petrel, 'sub', '-p', p, '-V', v, '-c', '-i', id, '-q', '1', '-t', `ps/${v}/b`, '-C', '2'])
    assert.equal(restOld.stdout, 'o2\no3\n', restOld.stderr)
    const removed = await run('node', [petrel, 'sub', '-p', p, '-V', v, '-c', '-i', id, '-U', `ps/${v}/a`, '-U', `ps/${v}/b`, '-E'])
    assert.equal(removed.code, 0, removed.stderr)
    await run('mosquitto_pub', ['-p', p, '-q', '1', '-t', `ps/${v}/a`, '-m', 'nobody'])
    const empty = await run('node', [petrel, 'sub', '-p', p, '-V', v, '-c', '-i', id, '-q', '1', '-t', `ps/${v}/c`, '-W', '1'])
    assert.equal(empty.code, 27)
    assert.equal(empty.stdout, '')
    assert.equal(empty.stderr, 'Timed out\n')
  })
}

test('a stock mosquitto keeps 1,000 of 5,000 QoS 1 messages published while a -c session was away: petrel sub -c prints those, each once, in order', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const stock = await startMosquitto({ stock: true })
  t.after(() => stock.stop())
  const p = String(stock.port)
  for (const v of ['mqttv311', 'mqttv5']) {
    const id = `cli-stock-${v}-${process.pid}`
    const created = await run('node', [petrel, 'sub', '-p', p, '-V', v, '-c', '-i', id, '-q', '1', '-t', 'away', '-E'])
    assert.equal(created.code, 0, created.stderr)
    const lines = Array.from({ length: 5000 }, (_, i) => String(i + 1))
    const published = await run('mosquitto_pub', ['-p', p, '-t', 'away', '-q', '1', '-l'], lines.join('\n') + '\n')
    assert.equal(published.code, 0, published.stderr)
    // max_queued_messages 1000: mosquitto keeps the first 1,000 and drops the rest (its log says so).
    const back = await run('node', [petrel, 'sub', '-p', p, '-V', v, '-c', '-i', id, '-q', '1', '-t', 'away', '-W', '3'])
    assert.equal(back.code, 27, back.stderr)
    assert.equal(back.stdout, lines.slice(0, 1000).join('\n') + '\n', `${v}: ${back.stdout.split('\n').length - 1} lines`)
  }
})

test('petrel sub -F, -T, --retained-only, --remove-retained; petrel pub --repeat', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const p = port()
  for (const [topic, m] of [['fmt/a', 'kept a'], ['fmt/b', 'kept b'], ['fmt/skip', 'skipped']]) {
    assert.equal((await run('node', [petrel, 'pub', '-p', p, '-t', topic as string, '-m', m as string, '-r', '-q', '1'])).code, 0)
  }
  // Retained ones, then the first live message ends --retained-only; -T hides fmt/skip.
  const s = start('node', [petrel, 'sub', '-p', p, '-t', 'fmt/#', '-T', 'fmt/skip', '--retained-only', '--remove-retained', '-F', '%t|%p|%q|%r|%l|%x\\t.'])
  const r = await untilExit(s, async () => await run('mosquitto_pub', ['-p', p, '-t', 'fmt/live', '-m', 'live']))
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout, `fmt/a|kept a|0|1|6|${Buffer.from('kept a').toString('hex')}\t.\nfmt/b|kept b|0|1|6|${Buffer.from('kept b').toString('hex')}\t.\n`)
  // --remove-retained cleared a and b (not the filtered-out one).
  const left = await run('mosquitto_sub', ['-p', p, '-t', 'fmt/#', '-W', '1', '-v'])
  assert.equal(left.stdout, 'fmt/skip skipped\n')
  await run('mosquitto_pub', ['-p', p, '-t', 'fmt/skip', '-n', '-r'])
  const m = start('mosquitto_sub', ['-p', p, '-t', 'fmt/rep', '-C', '5', '-q', '1'])
  const rep = await untilExit(m, async () => await run('node', [petrel, 'pub', '-p', p, '-t', 'fmt/rep', '-m', 'again', '--repeat', '5', '-q', '1']))
  assert.equal(rep.stdout, 'again\n'.repeat(5))
})

test('v5 properties (-D) both ways with mosquitto_pub/sub, %J and %P formats', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const p = port()
  const m = start('mosquitto_sub', ['-p', p, '-V', 'mqttv5', '-t', 'props/in', '-C', '1', '-F', '%P|%C|%E|%R|%p'])
  const r = await untilExit(m, async () => await run('node', [petrel, 'pub', '-p', p, '-V', 'mqttv5', '-t', 'props/in', '-m', 'x',
    '-D', 'publish', 'user-property', 'k', 'v', '-D', 'publish', 'content-type', 'text/plain', '-D', 'publish', 'message-expiry-interval', '60',
    '-D', 'publish', 'response-topic', 'back/here']))
  assert.equal(r.stdout, 'k:v|text/plain|60|back/here|x\n')
  const s = start('node', [petrel, 'sub', '-p', p, '-V', 'mqttv5', '-t', 'props/out', '-C', '1', '-F', '%J|%P|%C'])
  const out = await untilExit(s, async () => await run('mosquitto_pub', ['-p', p, '-V', 'mqttv5', '-t', 'props/out', '-m', '{"a":1}',
    '-D', 'publish', 'user-property', 'x', 'y', '-D', 'publish', 'content-type', 'application/json']))
  assert.equal(out.code, 0, out.stderr)
  const [json, userProps, contentType] = out.stdout.trimEnd().split('|')
  const o = JSON.parse(json as string) as Record<string, unknown>
  assert.deepEqual(o.payload, { a: 1 })
  assert.equal(o.topic, 'props/out')
  assert.deepEqual((o.properties as Record<string, unknown>)['user-properties'], { x: 'y' })
  assert.deepEqual([userProps, contentType], ['x:y', 'application/json'])
})

test('petrel sub -F prints what mosquitto_sub -F prints for the same format (widths, %m, @@, empty messages)', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  // Its own broker, logging SUBSCRIBEs to stderr (stdout is block-buffered into a pipe), so the
  // publishes wait until all six are subscribed (a fixed sleep was too short on a busy machine).
  const own = await startMosquitto({ extraConfig: 'log_type subscribe\nlog_dest stderr' })
  t.after(async () => { await own.stop() })
  const p = String(own.port)
  // Date-level @ letters only (the two processes print at slightly different times); no @Z,
  // whose names differ between glibc and ICU for some zones.
  const format = '|%15t|%-15t|%.3t|%8p|%-8p|%3m|%03m|%-3m|%04l|%5C|%-5C|%3E|%2F|%q|%r|%%|@@|@x|@G-@V|@U@W|@%|'
  const common = ['-p', p, '-V', 'mqttv5', '-t', 'same/#', '-q', '1', '-C', '3']
  const theirs = start('mosquitto_sub', [...common, '-F', format])
  const ours = start('node', [petrel, 'sub', ...common, '-F', format])
  const plain = start('node', [petrel, 'sub', '-p', p, '-t', 'same/#', '-C', '3'])
  const verbose = start('node', [petrel, 'sub', '-p', p, '-t', 'same/#', '-C', '3', '-v'])
  const refPlain = start('mosquitto_sub', ['-p', p, '-t', 'same/#', '-C', '3'])
  const refVerbose = start('mosquitto_sub', ['-p', p, '-t', 'same/#', '-C', '3', '-v'])
  // Publish once all six are subscribed: each gets exactly three messages.
  await waitFor(() => own.logs().split(' same/#').length - 1 >= 6)
  await run('mosquitto_pub', ['-p', p, '-V', 'mqttv5', '-t', 'same/abcdefgh', '-m', 'payload-long', '-q', '1',
    '-D', 'publish', 'content-type', 'tx', '-D', 'publish', 'message-expiry-interval', '30'])
  await run('mosquitto_pub', ['-p', p, '-t', 'same/x', '-m', 'pp'])
  await run('mosquitto_pub', ['-p', p, '-t', 'same/empty', '-n'])
  const [a, b, c, d, e, f] = await Promise.all([theirs, ours, plain, verbose, refPlain, refVerbose].map(async (s) => await withTimeout(s.done, 10_000, 'sub')))
  assert.equal((a as Run).code, 0)
  assert.equal((b as Run).code, 0, (b as Run).stderr)
  assert.equal((b as Run).stdout, (a as Run).stdout)
  assert.match((b as Run).stdout, /\| {2}same\/abcdefgh\|same\/abcdefgh {2}\|sam\|payload-\|/)
  // Without -F an empty message prints nothing, and `topic (null)` with -v.
  assert.equal((c as Run).stdout, (e as Run).stdout)
  assert.equal((d as Run).stdout, (f as Run).stdout)
  assert.equal((d as Run).stdout, 'same/abcdefgh payload-long\nsame/x pp\nsame/empty (null)\n')
})

test('petrel sub -W stops after that long even while messages keep coming (exit 27, as mosquitto_sub)', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const started = Date.now()
  const s = start('node', [petrel, 'sub', '-p', port(), '-t', 'wait/x', '-W', '2'])
  const r = await untilExit(s, async () => await run('mosquitto_pub', ['-p', port(), '-t', 'wait/x', '-m', 'tick']))
  assert.equal(r.code, 27, r.stderr)
  assert.equal(r.stderr, 'Timed out\n')
  assert.match(r.stdout, /^(tick\n)+$/)
  assert.ok(Date.now() - started < 8000)
})

test('the will: --will-topic/--will-payload/--will-qos/--will-retain reach mosquitto_sub when petrel dies', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const p = port()
  const watcher = start('mosquitto_sub', ['-p', p, '-t', 'will/cli', '-C', '1', '-v'])
  const dying = start('node', [petrel, 'sub', '-p', p, '-t', 'will/alive', '-q', '1', '--will-topic', 'will/cli', '--will-payload', 'gone', '--will-qos', '1', '--will-retain'])
  // Once petrel prints a message to will/alive, it is connected (and the will registered).
  await withTimeout((async () => {
    while (!dying.stdout().includes('ping')) {
      await run('mosquitto_pub', ['-p', p, '-t', 'will/alive', '-m', 'ping'])
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  })(), 10_000, 'petrel sub connected')
  dying.child.kill('SIGKILL')
  const w = await withTimeout(watcher.done, 10_000, 'will')
  assert.equal(w.stdout, 'will/cli gone\n')
  const retained = await run('mosquitto_sub', ['-p', p, '-t', 'will/cli', '-C', '1', '-F', '%r %p'])
  assert.equal(retained.stdout, '1 gone\n')
  await run('mosquitto_pub', ['-p', p, '-t', 'will/cli', '-n', '-r'])
})

test('usage errors for the session, will, -D and -F flags', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['sub', '-t', 'x', '-c'], /-c needs a client id/],
    [['sub', '-t', 'x', '-x', '10'], /-x is an MQTT 5 property/],
    [['sub', '-t', 'x', '-x', '-1'], /-x is an MQTT 5 property/],
    [['sub', '-t', 'x', '-V', '5', '-x', '-2'], /-x must be an integer/],
    [['pub', '-t', 'x', '-m', 'y', '-D', 'publish', 'content-type', 'a'], /add -V mqttv5/],
    [['pub', '-t', 'x', '-m', 'y', '-V', '5', '-D', 'publish', 'topic-alias', '1'], /assigns it itself/],
    [['pub', '-t', 'x', '-m', 'y', '-V', '5', '-D', 'connect', 'receive-maximum', 'lots'], /integer from 0 to 65535/],
    [['pub', '-t', 'x', '-m', 'y', '-D', 'publish'], /needs a command, a property and a value/],
    [['pub', '-t', 'x', '-m', 'y', '--will-payload', 'z'], /need --will-topic/],
    [['sub', '-t', 'x', '-F', '%k'], /unsupported %k/],
    [['sub', '-t', 'x', '-R', '--retained-only'], /exclude each other/],
    [['sub', '-t', 'x', '-T', 'a/#/b'], /-T: invalid topic filter/],
    [['pub', '-t', 'x', '-l', '--repeat', '2'], /does not apply to -l/],
    [['pub', '-t', 'x', '-m', 'y', '-V', '6'], /-V must be mqttv311 \(or 311\), mqttv5 \(or 5\) or mqttv31 \(or 31\), got '6'/],
    [['pub', '-t', 'x', '-s'], /-s: zero length input .*-n/] // stdin is empty here, as mosquitto_pub -s refuses
  ]
  for (const [args, message] of cases) {
    const r = await run('node', [petrel, args[0] as string, '-p', '1', ...args.slice(1)])
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`)
    assert.match(r.stderr, message, args.join(' '))
  }
})

test('values the codec refuses (a -D value the spec forbids, an -i over 65,535 bytes) are usage errors, exit 1, with nothing sent', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const cases: Array<[string[], RegExp]> = [
    [['-V', '5', '-D', 'connect', 'receive-maximum', '0'], /Bad argument: receiveMaximum must be 1\.\.65535/],
    [['-V', '5', '-D', 'connect', 'maximum-packet-size', '0'], /Bad argument: maximumPacketSize must be 1/],
    [['-i', 'x'.repeat(70_000)], /Bad argument: .*65,535 bytes/]
  ]
  for (const [flags, message] of cases) {
    const r = await run('node', [petrel, 'pub', '-p', port(), '-t', 'bad/arg', '-m', 'y', ...flags])
    assert.equal(r.code, 1, `${flags.join(' ').slice(0, 60)}: ${r.stderr}`)
    assert.match(r.stderr, message)
  }
})

test('-d prints each packet in the words of mosquitto_pub, on stderr', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const r = await run('node', [petrel, 'pub', '-p', port(), '-t', 'dbg/x', '-m', 'hello', '-q', '1', '-d', '-i', 'dbg-pub'])
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout, '')
  assert.deepEqual(r.stderr.trimEnd().split('\n'), [
    'Client dbg-pub sending CONNECT',
    'Client dbg-pub received CONNACK (0)',
    "Client dbg-pub sending PUBLISH (d0, q1, r0, m1, 'dbg/x', ... (5 bytes))",
    'Client dbg-pub received PUBACK (m1, rc0)',
    'Client dbg-pub sending DISCONNECT'
  ])
})

test('petrel pub -l -q 2 under 3.1.1: all 300 reach a default mosquitto (max_inflight_messages 20)', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  // mosquitto's default quota (startMosquitto raises it to 100; the later line wins).
  const m = await startMosquitto({ extraConfig: 'max_inflight_messages 20' })
  let sub: ReturnType<typeof start> | undefined
  try {
    const p = String(m.port)
    const lines = Array.from({ length: 300 }, (_, i) => String(i + 1))
    sub = start('mosquitto_sub', ['-p', p, '-t', 'ql/p', '-q', '2', '-C', '300'])
    await new Promise((resolve) => setTimeout(resolve, 500))
    const pub = await run('node', [petrel, 'pub', '-p', p, '-V', 'mqttv311', '-t', 'ql/p', '-l', '-q', '2'], lines.join('\n') + '\n')
    assert.equal(pub.code, 0, pub.stderr)
    // Lost messages would leave mosquitto_sub waiting: bound the wait, then compare what came.
    const got = await Promise.race([sub.done, new Promise<undefined>((resolve) => setTimeout(() => { resolve(undefined) }, 5000))])
    assert.equal(got?.stdout ?? sub.stdout(), lines.join('\n') + '\n')
  } finally {
    sub?.child.kill('SIGKILL')
    await m.stop()
  }
})

test('-L takes the topic verbatim after the host, as mosquitto_pub/sub: #, ?, a lone % and %xx', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const base = `mqtt://127.0.0.1:${port()}`
  const started: Array<ReturnType<typeof start>> = []
  try {
    // A filter with '#': URL parsing took it for a fragment and subscribed to 'lt/'.
    const s = start('node', [petrel, 'sub', '-L', `${base}/lt/#`, '-v', '-C', '1'])
    started.push(s)
    const r = await untilExit(s, async () => await run('mosquitto_pub', ['-p', port(), '-t', 'lt/deep/x', '-m', 'hi']))
    assert.deepEqual([r.code, r.stdout], [0, 'lt/deep/x hi\n'], r.stderr)
    // '?' cut the topic; a lone '%' threw URIError; '%25' was decoded to '%'. mosquitto_pub keeps all three as typed.
    for (const topic of ['lu/what?now', 'lu/rate/100%', 'lu/a%25b']) {
      for (const publisher of ['petrel', 'mosquitto_pub']) {
        const w = start('mosquitto_sub', ['-p', port(), '-t', topic, '-v', '-C', '1'])
        started.push(w)
        const args = ['-L', `${base}/${topic}`, '-m', 'x']
        const got = await untilExit(w, async () => {
          const p = publisher === 'petrel' ? await run('node', [petrel, 'pub', ...args]) : await run('mosquitto_pub', args)
          assert.equal(p.code, 0, `${publisher} -L ${base}/${topic}: ${p.stderr}`)
        })
        assert.equal(got.stdout, `${topic} x\n`, `${publisher} -L ${base}/${topic}`)
      }
    }
  } finally {
    for (const s of started) s.child.kill('SIGKILL')
  }
})

/** Runs a command to its end and keeps stdout as bytes; killed if it outlives `ms`. */
async function runBytes (cmd: string, args: string[], ms = 10_000): Promise<{ code: number | null, stdout: Buffer, stderr: string }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const out: Buffer[] = []
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { out.push(d) })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const done = new Promise<number | null>((resolve) => { child.on('close', resolve) })
  try {
    const code = await withTimeout(done, ms, `${cmd} ${args.join(' ')}`)
    return { code, stdout: Buffer.concat(out), stderr }
  } finally {
    child.kill('SIGKILL')
  }
}

test('petrel sub prints binary payloads byte for byte, as mosquitto_sub (-N, -v, -F %p)', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const p = port()
  const payload = randomBytes(1000)
  const file = join(mkdtempSync(join(tmpdir(), 'petrel-bin-')), 'payload')
  writeFileSync(file, payload)
  // Retained: each subscriber below gets it at once on subscribing.
  assert.equal((await run('mosquitto_pub', ['-p', p, '-t', 'bin/raw', '-f', file, '-r', '-q', '1'])).code, 0)
  try {
    const cases: Array<[string[], Buffer]> = [
      [['-N'], payload],
      [['-v'], Buffer.concat([Buffer.from('bin/raw '), payload, Buffer.from('\n')])],
      [['-F', '%p'], Buffer.concat([payload, Buffer.from('\n')])]
    ]
    for (const [flags, expected] of cases) {
      const common = ['-p', p, '-t', 'bin/raw', '-C', '1', ...flags]
      const ours = await runBytes('node', [petrel, 'sub', ...common])
      const theirs = await runBytes('mosquitto_sub', common)
      assert.equal(ours.code, 0, ours.stderr)
      assert.ok(ours.stdout.equals(expected), `petrel sub ${flags.join(' ')}: ${ours.stdout.length} bytes, expected ${expected.length}`)
      assert.ok(theirs.stdout.equals(ours.stdout), `mosquitto_sub ${flags.join(' ')} printed other bytes`)
    }
  } finally {
    await run('mosquitto_pub', ['-p', p, '-t', 'bin/raw', '-n', '-r'])
  }
})

test('petrel sub -W: a refused subscription ends it at once with only the refusal (exit 4)', async () => {
  // mosquitto grants ACL-denied subscriptions; the Petrel broker refuses them in SUBACK.
  const dir = mkdtempSync(join(tmpdir(), 'petrel-acl-'))
  const p = await freePort()
  const config = join(dir, 'petrel.toml')
  writeFileSync(config, `[[listener]]\ntype = "tcp"\nhost = "127.0.0.1"\nport = ${p}\n\n[[acl]]\ntopic = "ok/#"\n`)
  const broker = start('node', [petrel, 'broker', '--config', config])
  try {
    await waitFor(() => /listening on/.test(broker.stdout()) || broker.child.exitCode !== null, { timeoutMs: 10_000, message: 'petrel broker start-up line' })
    for (const v of ['mqttv311', 'mqttv5']) {
      const started = Date.now()
      // -W 8 kept it alive for 8 s after the refusal, printing 'the connection ... ended' and 'Timed out' too.
      const r = await run('node', [petrel, 'sub', '-p', String(p), '-V', v, '-t', 'deny/#', '-W', '8'])
      assert.equal(r.code, 4, `${v}: ${r.stderr}`)
      // the code's name too, as mosquitto_sub prints it
      assert.match(r.stderr, v === 'mqttv5'
        ? /^petrel sub: the broker refused the subscription to "deny\/#" with reason code 0x87 \(Not authorized\)\n$/
        : /^petrel sub: the broker refused the subscription to "deny\/#" with reason code 0x80 \(Failure\)\n$/, v)
      assert.ok(Date.now() - started < 4000, `${v}: took ${Date.now() - started} ms`)
      // One filter of two refused: the run goes on, and the warning reads like the refusal above.
      const partial = await run('node', [petrel, 'sub', '-p', String(p), '-V', v, '-t', 'ok/x', '-t', 'deny/#', '-W', '1'])
      assert.equal(partial.code, 27, `${v}: ${partial.stderr}`)
      assert.match(partial.stderr, v === 'mqttv5'
        ? /^petrel sub: the broker refused the subscription to "deny\/#" with reason code 0x87 \(Not authorized\)\n/
        : /^petrel sub: the broker refused the subscription to "deny\/#" with reason code 0x80 \(Failure\)\n/, v)
    }
  } finally {
    broker.child.kill('SIGKILL')
  }
})

test('petrel pub on SIGINT: disconnects cleanly (no will) and exits 0, with --repeat and with -l', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const p = port()
  const watcher = start('mosquitto_sub', ['-p', p, '-t', 'sig/#', '-v'])
  let pub: ChildProcess | undefined
  try {
    await new Promise((resolve) => setTimeout(resolve, 300))
    for (const mode of ['repeat', 'lines']) {
      const will = ['--will-topic', `sig/${mode}/will`, '--will-payload', 'gone']
      const args = mode === 'repeat'
        ? ['-t', `sig/${mode}/data`, '-m', 'x', '--repeat', '100', '--repeat-delay', '1', ...will]
        : ['-t', `sig/${mode}/data`, '-l', '-q', '1', ...will]
      // stdin stays open for -l: the pipe of a producer that is still running.
      const child = spawn('node', [petrel, 'pub', '-p', p, ...args], { stdio: ['pipe', 'ignore', 'pipe'] })
      pub = child
      let stderr = ''
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
      const exited = new Promise<number | null>((resolve) => { child.on('close', (code) => { resolve(code) }) })
      if (mode === 'lines') child.stdin.write('x\n')
      await waitFor(() => watcher.stdout().includes(`sig/${mode}/data x`), { timeoutMs: 10_000, message: `${mode}: first message` })
      child.kill('SIGINT')
      const code = await withTimeout(exited, 5000, `${mode}: exit after SIGINT`)
      // mosquitto publishes a will at once when a client goes without DISCONNECT.
      await new Promise((resolve) => setTimeout(resolve, 1000))
      assert.doesNotMatch(watcher.stdout(), new RegExp(`sig/${mode}/will`), mode)
      assert.deepEqual([code, stderr], [0, ''], mode)
    }
  } finally {
    pub?.kill('SIGKILL')
    watcher.child.kill('SIGKILL')
  }
})

test('petrel pub on SIGINT waits briefly for acks a broker never sends; a second SIGINT exits at once', async () => {
  // A broker that accepts the connection and never acknowledges a PUBLISH.
  let published = false
  const server = createServer((socket) => {
    socket.once('data', () => { socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00])) })
    socket.on('data', (d: Buffer) => { if (d[0] === 0x32) published = true })
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const p = String((server.address() as AddressInfo).port)
  const started: Array<ReturnType<typeof start>> = []
  try {
    for (const signals of [1, 2]) {
      published = false
      const s = start('node', [petrel, 'pub', '-p', p, '-t', 'never/acked', '-m', 'x', '-q', '1'])
      started.push(s)
      await waitFor(() => published, { timeoutMs: 10_000, message: 'PUBLISH sent' })
      const t0 = Date.now()
      s.child.kill('SIGINT')
      if (signals === 2) {
        await new Promise((resolve) => setTimeout(resolve, 200))
        s.child.kill('SIGINT')
      }
      const r = await withTimeout(s.done, 8000, `exit after ${signals} SIGINT`)
      const took = Date.now() - t0
      if (signals === 1) {
        // The grace is bounded (2 s), then DISCONNECT and exit 0.
        assert.equal(r.code, 0, r.stderr)
        assert.ok(took >= 1500 && took < 5000, `one SIGINT: exited after ${took} ms`)
      } else {
        assert.equal(r.code, 130, r.stderr)
        assert.ok(took < 1200, `two SIGINTs: exited after ${took} ms`)
      }
    }
  } finally {
    for (const s of started) s.child.kill('SIGKILL')
    server.close()
  }
})

test('petrel sub -F %j prints what mosquitto_sub prints: repeated user-property names, tst, no subscription id of its own', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const p = port()
  const common = ['-p', p, '-V', 'mqttv5', '-t', 'up/rep', '-C', '1', '-F', '%j|%S|%2S|']
  const ours = start('node', [petrel, 'sub', ...common])
  const theirs = start('mosquitto_sub', common)
  try {
    await new Promise((resolve) => setTimeout(resolve, 1000))
    await run('mosquitto_pub', ['-p', p, '-V', 'mqttv5', '-t', 'up/rep', '-m', 'x', '-q', '1',
      '-D', 'publish', 'user-property', 'k', 'v', '-D', 'publish', 'user-property', 'k', 'v2'])
    const [a, b] = await Promise.all([ours, theirs].map(async (s) => await withTimeout(s.done, 10_000, 'sub')))
    const props = (r: Run | undefined): string | undefined => /"user-properties":\{[^}]*\}/.exec(r?.stdout ?? '')?.[0]
    assert.equal(props(a), '"user-properties":{"k":"v","k":"v2"}', a?.stderr)
    // The same line but for the time itself (microseconds apart), in mosquitto's form.
    const tst = /^\{"tst":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z[+-]\d{4}",/
    assert.match(a?.stdout ?? '', tst)
    assert.match(b?.stdout ?? '', tst)
    assert.equal(a?.stdout.replace(tst, ''), b?.stdout.replace(tst, ''))
    assert.match(a?.stdout ?? '', /\}\|\| {2}\|\n$/)
  } finally {
    ours.child.kill('SIGKILL')
    theirs.child.kill('SIGKILL')
  }
})
