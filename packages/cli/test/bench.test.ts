import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { findProgram, freePort, makeTestCertificates, requirePeer, startMosquitto, type Mosquitto } from '@petrel/test-utils'
import { launch } from '../src/bench/launcher.js'
import { LatencyRecorder } from '../src/bench/latency.js'
import { Progress } from '../src/bench/progress.js'
import { Subscriber } from '../src/bench/subscriber.js'
import { nowMicros } from '../src/bench/stamp.js'
import type { BenchConnection } from '../src/bench/connection.js'
import { BenchStats } from '../src/bench/stats.js'
import { parseOptions, UsageError } from '../src/bench/options.js'
import { SequenceTracker } from '../src/bench/sequence-tracker.js'
import { PublishTemplate } from '../src/bench/publish-template.js'
import type { BenchSummary } from '../src/bench/summary.js'

const PETREL = fileURLToPath(new URL('../src/bin/petrel.js', import.meta.url))
const RUN_TIMEOUT_MS = 30_000

interface Result { code: number | null, stdout: string, stderr: string }

const children = new Set<ChildProcess>()
process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })

/** Runs `petrel bench ...args` to its end (killed after RUN_TIMEOUT_MS). */
function bench (args: string[], onStderr?: (text: string) => void): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PETREL, 'bench', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    children.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
      onStderr?.(stderr)
    })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, RUN_TIMEOUT_MS)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      children.delete(child)
      resolve({ code, stdout, stderr })
    })
  })
}

function summaryOf (r: Result): BenchSummary {
  assert.equal(r.code, 0, `exit ${r.code}\n${r.stderr}\n${r.stdout}`)
  return JSON.parse(r.stdout) as BenchSummary
}

async function mosquitto (t: TestContext): Promise<Mosquitto | undefined> {
  if (!requirePeer(t, 'mosquitto')) return undefined
  const broker = await startMosquitto({ websockets: true })
  t.after(() => broker.stop())
  return broker
}

function assertSaneLatency (s: BenchSummary): void {
  const l = s.receive?.latencyMs
  assert.ok(l !== null && l !== undefined, 'latency reported')
  assert.ok(l.count > 0)
  assert.ok(l.p50 > 0 && l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max, JSON.stringify(l))
  assert.ok(l.max < 10_000, `max latency ${l.max} ms`)
}

// --- units --------------------------------------------------------------------------------------

test('options: emqtt-bench style flags, URL and protocol version', () => {
  const o = parseOptions(['pub', '-h', '10.0.0.1', '-p', '1884', '-c', '10', '-I', '10', '-s', '64', '-q', '1', '-t', 't/%i/%c', '-V', 'mqttv5', '--inflight', '20'])
  assert.ok(o !== undefined)
  assert.equal(o.target.url, 'mqtt://10.0.0.1:1884')
  assert.equal(o.clients, 10)
  assert.equal(o.rate, 100)
  assert.equal(o.protocolVersion, 5)
  assert.equal(o.inflight, 20)
  const ws = parseOptions(['sub', '--url', 'wss://example.com', '-t', 'a/#'])
  assert.equal(ws?.target.url, 'wss://example.com:443/mqtt')
  assert.equal(ws?.subTopic, 'a/#')
  // emqtt-bench's short flags: -L limit, -n start number, -i connect interval, -S TLS, --ws
  const e = parseOptions(['pub', '-L', '500', '-n', '100', '-i', '4', '-S', '--ws', '-p', '8084'])
  assert.equal(e?.limit, 500)
  assert.equal(e?.startIndex, 100)
  assert.equal(e?.connRate, 250)
  assert.equal(e?.target.url, 'wss://127.0.0.1:8084/mqtt')
  assert.equal(parseOptions(['pub', '-S'])?.target.url, 'mqtts://127.0.0.1:8883')
  assert.equal(parseOptions(['pub', '--count', '7'])?.limit, 7)
  assert.throws(() => parseOptions(['pub', '-L', '1', '--count', '2']), UsageError)
  assert.throws(() => parseOptions(['pub', '-R', '1', '-i', '2']), UsageError)
  assert.throws(() => parseOptions(['pub', '--rate', '1', '-I', '2']), UsageError)
  assert.equal(parseOptions(['pub', '--help']), undefined)
  assert.throws(() => parseOptions(['pub', '-q', '3']), UsageError)
  assert.throws(() => parseOptions(['flood']), UsageError)
  assert.throws(() => parseOptions(['pub', '--url', 'http://x']), UsageError)
  assert.throws(() => parseOptions(['pub', '-L', 'mqtt://x']), UsageError)
  assert.throws(() => parseOptions(['pub', '--nope']), UsageError)
  assert.equal(parseOptions(['pubsub', '--warmup', '2.5'])?.warmup, 2.5)
  assert.equal(parseOptions(['pubsub'])?.warmup, 0)
  assert.throws(() => parseOptions(['pubsub', '--warmup', '-1']), UsageError)
})

test('latency recorder: the warm-up is summarized apart and left out of the run\'s percentiles', () => {
  const r = new LatencyRecorder()
  for (let i = 0; i < 100; i++) r.record(5000) // a cold start: 5 ms
  r.endWarmup()
  for (let i = 0; i < 1000; i++) r.record(100 + (i % 10))
  r.endWarmup() // once only
  const s = r.summary()
  assert.equal(s.count, 1000)
  assert.ok(s.max < 0.2, JSON.stringify(s))
  assert.equal(r.warmup?.count, 100)
  assert.equal(r.warmup?.p50, 5)
})

test('launcher: --max-connecting keeps at most n handshakes in flight, and every client starts', async () => {
  let inFlight = 0
  let most = 0
  const started = await launch(40, 0, async (i) => {
    inFlight++
    most = Math.max(most, inFlight)
    await new Promise((resolve) => setTimeout(resolve, 2))
    inFlight--
    return i
  }, () => false, 3)
  assert.equal(most, 3)
  assert.deepEqual(started, Array.from({ length: 40 }, (_, i) => i))
  // Stopping ends the launch early: no new clients once stopping() says so.
  let n = 0
  const some = await launch(1000, 0, async (i) => { n++; await new Promise((resolve) => setTimeout(resolve, 1)); return i }, () => n >= 5, 1)
  assert.equal(some.length, 5)
})

test('subscriber: stamped payloads give latency and sequences; other traffic is counted apart', () => {
  const stats = new BenchStats()
  const written: Uint8Array[] = []
  const conn = { write: (b: Uint8Array) => { written.push(b); return true } } as unknown as BenchConnection
  const sub = new Subscriber(conn, stats, 0)
  const template = new PublishTemplate('t', 32, 1, 4)
  const batch = template.batch(2)
  template.patch(batch, 0, nowMicros() - 2000, 3, 0, 1)
  template.patch(batch, 1, nowMicros() - 1000, 3, 1, 2)
  const stamped = (i: number): Buffer => batch.subarray(i * template.length + template.payloadOffset, (i + 1) * template.length)
  sub.onPackets([
    { type: 'publish', topicName: 't', qos: 1, packetId: 1, retain: false, dup: false, payload: stamped(0) },
    { type: 'publish', topicName: 't', qos: 1, packetId: 2, retain: false, dup: false, payload: stamped(1) },
    { type: 'publish', topicName: 't', qos: 0, retain: false, dup: false, payload: Buffer.from('{"temperature": 21.5, "unit": "C"}') },
    { type: 'publish', topicName: 't', qos: 0, retain: false, dup: false, payload: Buffer.from('21.5') }
  ])
  assert.equal(stats.received, 4)
  assert.equal(stats.unstamped, 2)
  const lat = stats.latency.summary()
  assert.equal(lat.count, 2)
  assert.ok(lat.min >= 0.9 && lat.max < 1000, JSON.stringify(lat))
  assert.deepEqual(sub.tracker.report(), [{ publisher: 3, received: 2, missing: 0, duplicates: 0, outOfOrder: 0 }])
  // Both PUBACKs in one write
  assert.equal(written.length, 1)
  assert.deepEqual([...(written[0] ?? [])], [0x40, 2, 0, 1, 0x40, 2, 0, 2])
})

test('options: --ifaddr takes IP addresses, used in turn', () => {
  assert.deepEqual(parseOptions(['conn', '--ifaddr', '127.0.0.2, 127.0.0.3'])?.localAddresses, ['127.0.0.2', '127.0.0.3'])
  assert.deepEqual(parseOptions(['conn'])?.localAddresses, [])
  assert.throws(() => parseOptions(['conn', '--ifaddr', 'eth0']), UsageError)
  assert.equal(parseOptions(['conn', '--max-connecting', '64'])?.maxConnecting, 64)
})

test('sequence tracker: missing, duplicated and out-of-order per publisher', () => {
  const t = new SequenceTracker()
  for (const seq of [0, 1, 3, 2, 3, 5]) t.record(7, seq)
  for (let seq = 0; seq < 10_000; seq++) t.record(8, seq)
  const [a, b] = t.report()
  assert.deepEqual(a, { publisher: 7, received: 6, missing: 1, duplicates: 1, outOfOrder: 1 })
  assert.deepEqual(b, { publisher: 8, received: 10_000, missing: 0, duplicates: 0, outOfOrder: 0 })
  // Known sent counts reveal loss at the tail and publishers never heard from.
  const withSent = t.report(new Map([[7, 8], [8, 10_000], [9, 5]]))
  assert.equal(withSent[0]?.missing, 3)
  assert.deepEqual(withSent[2], { publisher: 9, received: 0, missing: 5, duplicates: 0, outOfOrder: 0 })
})

test('publish template: the patched fields land where @petrel/wire put them', () => {
  for (const version of [4, 5] as const) {
    const t = new PublishTemplate('a/b', 32, 1, version)
    const batch = t.batch(3)
    t.patch(batch, 2, 1234.5, 7, 9, 0x0102)
    const p = batch.subarray(2 * t.length)
    assert.equal(p.readUInt16BE(t.packetIdOffset), 0x0102)
    assert.equal(p.readDoubleBE(t.payloadOffset), 1234.5)
    assert.equal(p.readUInt32BE(t.payloadOffset + 8), 7)
    assert.equal(p.readUInt32BE(t.payloadOffset + 12), 9)
  }
})

test('progress: redrawn in place on a terminal, plain lines otherwise', async () => {
  const lines = async (isTTY: boolean): Promise<string> => {
    let text = ''
    const out = Object.assign(new Writable({ write (chunk: Buffer, _enc, done) { text += chunk.toString(); done() } }), { isTTY })
    const stats = new BenchStats()
    stats.connected = 2
    stats.sent = 5000
    stats.acked = 4000
    const p = new Progress(stats, 'pub', out, 2)
    p.start()
    await new Promise((resolve) => setTimeout(resolve, 1100))
    p.stop()
    return text
  }
  const tty = await lines(true)
  // Rates are over the real interval (about a second), totals are exact.
  const line = ' +1s {2}conns 2/2 {2}sent \\d+/s \\(5000\\) {2}acked \\d+/s {2}\\d conn/s {2}errors 0'
  assert.match(tty, new RegExp(`^\\r${line}\\x1b\\[K\\n$`))
  const plain = await lines(false)
  assert.match(plain, new RegExp(`^${line}\\n$`))
})

// --- against a real mosquitto -------------------------------------------------------------------

test('bench pubsub QoS 1: every message arrives once, with latency', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  const s = summaryOf(await bench(['pubsub', '-p', String(broker.port), '-c', '3', '--subs', '2', '-q', '1', '-L', '3000', '-s', '64', '--json']))
  assert.equal(s.publish?.sent, 9000)
  assert.equal(s.publish?.acked, 9000)
  assert.equal(s.receive?.received, 18_000)
  assert.equal(s.receive?.missing, 0)
  assert.equal(s.receive?.duplicates, 0)
  assert.equal(s.receive?.outOfOrder, 0)
  assert.equal(s.receive?.publishers.length, 3)
  assert.deepEqual(s.errors, {})
  assert.equal(s.connections.established, 5)
  assertSaneLatency(s)
  // The load tool reports its own CPU, so a user can tell when it is the limit.
  assert.ok(s.cpu.userSeconds > 0 && s.cpu.percentOfCore > 0 && s.cpu.percentOfCore <= 200, JSON.stringify(s.cpu))
  assert.ok((s.receive?.perSecond ?? 0) > 0)
})

test('bench pubsub --warmup: the run lasts warm-up + duration, and latency is split between them', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  const s = summaryOf(await bench(['pubsub', '-p', String(broker.port), '--rate', '500', '-s', '64', '--warmup', '1', '--duration', '1', '--json']))
  const r = s.receive
  assert.ok(r !== undefined)
  assert.ok(s.elapsedSeconds >= 2, `elapsed ${s.elapsedSeconds} s`)
  const warm = r.warmupLatencyMs
  assert.ok(warm !== undefined && r.latencyMs !== null)
  // About 500 each side of the split; together they are every message that arrived.
  assert.ok(warm.count > 300 && r.latencyMs.count > 300, `${warm.count} + ${r.latencyMs.count}`)
  assert.equal(warm.count + r.latencyMs.count, r.received)
  assert.equal(r.missing, 0)
  assertSaneLatency(s)
})

test('bench pubsub QoS 2 over MQTT 5.0 and QoS 0 over WebSocket', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  const q2 = summaryOf(await bench(['pubsub', '-p', String(broker.port), '-V', '5', '-q', '2', '-L', '2000', '--json']))
  assert.equal(q2.protocolVersion, 5)
  assert.equal(q2.receive?.received, 2000)
  assert.equal(q2.receive?.missing, 0)
  assert.equal(q2.receive?.duplicates, 0)
  assertSaneLatency(q2)
  assert.ok(broker.wsUrl !== undefined)
  const ws = summaryOf(await bench(['pubsub', '--url', `${broker.wsUrl}/`, '-L', '2000', '--rate', '20000', '--json']))
  assert.equal(ws.url, `ws://127.0.0.1:${broker.wsPort}/mqtt`)
  assert.equal(ws.receive?.received, 2000)
  assertSaneLatency(ws)
})

test('bench pub and bench sub as two processes: the subscriber reports what it got', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  const port = String(broker.port)
  let subscribed!: () => void
  const ready = new Promise<void>((resolve) => { subscribed = resolve })
  // Progress goes to stderr under --json; its first line comes once the subscription is made.
  const sub = bench(['sub', '-p', port, '-t', 'two/#', '-q', '1', '-L', '2000', '--duration', '20', '--json'], (err) => {
    if (/conns 1\/1/.test(err)) subscribed()
  })
  await ready
  const pub = summaryOf(await bench(['pub', '-p', port, '-t', 'two/%i', '-c', '2', '-q', '1', '-L', '1000', '--rate', '5000', '--json']))
  assert.equal(pub.publish?.acked, 2000)
  const s = summaryOf(await sub)
  assert.equal(s.receive?.received, 2000)
  assert.equal(s.receive?.missing, 0)
  assert.deepEqual(s.receive?.publishers.map((p) => p.received), [1000, 1000])
  assertSaneLatency(s)
})

test('bench pub with a count stops by itself; plain output without --json', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  const r = await bench(['pub', '-p', String(broker.port), '-c', '2', '-L', '5000', '--quiet'])
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /published\s+10,000 sent/)
  assert.match(r.stdout, /errors\s+none/)
  assert.match(r.stdout, /load tool\s+\d+% of one core/)
})

test('payloads too small for the stamp: loss by count, never invented per publisher', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  const s = summaryOf(await bench(['pubsub', '-p', String(broker.port), '-q', '1', '-s', '8', '-L', '500', '--json']))
  assert.equal(s.receive?.received, 500)
  assert.equal(s.receive?.checked, 'count')
  assert.equal(s.receive?.missing, 0)
  assert.equal(s.receive?.latencyMs, null)
  const plain = await bench(['pubsub', '-p', String(broker.port), '-s', '0', '-L', '100', '--quiet'])
  assert.equal(plain.code, 0, plain.stderr)
  assert.match(plain.stdout, /latency\s+n\/a \(no bench stamps: payloads under 16 bytes/)
  assert.match(plain.stdout, /0 missing by count/)
})

test('TLS with a CA file, and username/password: refused without, accepted with', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const certs = await makeTestCertificates()
  const dir = mkdtempSync(join(tmpdir(), 'petrel-bench-pw-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  const passwordFile = join(dir, 'pw')
  execFileSync(findProgram('mosquitto_passwd') ?? 'mosquitto_passwd', ['-c', '-b', passwordFile, 'alice', 'secret'])
  const broker = await startMosquitto({ tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile }, allowAnonymous: false, passwordFile })
  t.after(() => broker.stop())
  const url = `mqtts://localhost:${broker.tlsPort ?? 0}`
  const refused = await bench(['pub', '--url', url, '--cafile', certs.caFile, '-c', '2', '-L', '10', '--json', '--quiet'])
  assert.equal(refused.code, 1)
  assert.deepEqual((JSON.parse(refused.stdout) as BenchSummary).errors, { 'connack: Not authorized (5)': 2 })
  const untrusted = await bench(['pub', '--url', url, '-u', 'alice', '-P', 'secret', '-L', '10', '--json', '--quiet'])
  assert.equal(untrusted.code, 1)
  assert.match(Object.keys((JSON.parse(untrusted.stdout) as BenchSummary).errors)[0] ?? '', /^connect: /)
  const s = summaryOf(await bench(['pubsub', '--url', url, '--cafile', certs.caFile, '-u', 'alice', '-P', 'secret', '-q', '1', '-L', '1000', '--json']))
  assert.equal(s.url, url)
  assert.equal(s.receive?.received, 1000)
  assert.equal(s.receive?.missing, 0)
  assertSaneLatency(s)
})

test('against petrel broker: paced QoS 1 pubsub with %i/%c topics arrives whole', async (t) => {
  const child = spawn(process.execPath, [PETREL, 'broker', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  t.after(() => { child.kill('SIGKILL'); children.delete(child) })
  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => { reject(new Error(`petrel broker did not start: ${out}`)) }, 10_000)
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d
      const m = /mqtt:\/\/127\.0\.0\.1:(\d+)/.exec(out)
      if (m !== null) { clearTimeout(timer); resolve(Number(m[1])) }
    })
  })
  // Subscriber i listens on its own publisher's topic (index and client id in the name).
  const s = summaryOf(await bench(['pubsub', '-p', String(port), '-c', '2', '--subs', '2', '-q', '1', '--prefix', 'pt-',
    '-t', 'pt/%i/pt-pub-%i', '--sub-topic', 'pt/%i/+', '-L', '2000', '--rate', '4000', '-V', '5', '--json']))
  assert.equal(s.publish?.acked, 4000)
  assert.equal(s.receive?.received, 4000)
  assert.equal(s.receive?.missing, 0)
  assert.equal(s.receive?.duplicates, 0)
  assert.deepEqual(s.receive?.publishers.map((p) => [p.publisher, p.received]), [[0, 2000], [1, 2000]])
  assertSaneLatency(s)
})

test('bench conn establishes N connections at the connection rate and reports connect times', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  // Two source addresses in turn (127.0.0.0/8 is all loopback on Linux).
  const s = summaryOf(await bench(['conn', '-p', String(broker.port), '-c', '200', '-R', '1000', '--ifaddr', '127.0.0.2,127.0.0.3', '--duration', '1.5', '--json']))
  assert.equal(s.connections.attempted, 200)
  assert.equal(s.connections.established, 200)
  assert.equal(s.connections.failed, 0)
  assert.equal(s.connections.lost, 0)
  assert.equal(s.connections.connectMs.count, 200)
  assert.ok(s.connections.connectMs.p50 > 0 && s.connections.connectMs.p99 < 5000)
  assert.ok(s.connections.perSecond > 0 && s.connections.perSecond <= 1500, `${s.connections.perSecond}/s at -R 1000`)
})

test('a refused connection is counted by reason; bad arguments exit 2', async () => {
  const port = await freePort()
  const r = await bench(['pub', '-p', String(port), '-c', '3', '--json', '--quiet'])
  assert.equal(r.code, 1)
  const s = JSON.parse(r.stdout) as BenchSummary
  assert.equal(s.connections.failed, 3)
  assert.deepEqual(s.errors, { 'connect: ECONNREFUSED': 3 })
  const bad = await bench(['pub', '-q', '7'])
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /--qos must be/)
})
