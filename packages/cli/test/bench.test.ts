import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { Decoder, encode, type ConnackProperties, type Packet } from '@petrel/wire'
import { findProgram, freePort, makeTestCertificates, requirePeer, startMosquitto, waitFor, withTimeout, type Mosquitto } from '@petrel/test-utils'
import { launch } from '../src/bench/launcher.js'
import { LatencyRecorder, type LatencySummary } from '../src/bench/latency.js'
import { Progress } from '../src/bench/progress.js'
import { Subscriber } from '../src/bench/subscriber.js'
import { nowMicros } from '../src/bench/stamp.js'
import type { BenchConnection } from '../src/bench/connection.js'
import { BenchStats } from '../src/bench/stats.js'
import { parseOptions, UsageError } from '../src/bench/options.js'
import { SequenceTracker } from '../src/bench/sequence-tracker.js'
import { PublishTemplate } from '../src/bench/publish-template.js'
import { buildSummary, formatSummary, type BenchSummary } from '../src/bench/summary.js'
import { serverName } from '../src/bench/transport.js'

const PETREL = fileURLToPath(new URL('../src/bin/petrel.js', import.meta.url))
const RUN_TIMEOUT_MS = 30_000

interface Result { code: number | null, stdout: string, stderr: string }

const children = new Set<ChildProcess>()
process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })

/** Runs `petrel bench ...args` to its end (killed after RUN_TIMEOUT_MS); `onSpawn` gets the child (to signal it). */
function bench (args: string[], onStderr?: (text: string) => void, onSpawn?: (child: ChildProcess) => void): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PETREL, 'bench', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    children.add(child)
    onSpawn?.(child)
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

/**
 * Starts `bench sub` (with --json, so progress goes to stderr) and resolves once its `conns`
 * subscribers are up: the first progress line comes once the subscriptions are made.
 */
async function subscribedSub (args: string[], conns = 1): Promise<{ done: Promise<Result> }> {
  let subscribed!: () => void
  const ready = new Promise<void>((resolve) => { subscribed = resolve })
  const up = new RegExp(`conns ${conns}/${conns}`)
  const sub = bench(['sub', ...args], (err) => { if (up.test(err)) subscribed() })
  await withTimeout(ready, 10_000, `${conns} subscriber(s) up`)
  return { done: sub } // wrapped: an async function returning the promise would wait for it
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

/** Starts `petrel broker` on an ephemeral port (killed after the test); resolves with its port. */
async function petrelBroker (t: TestContext): Promise<number> {
  const child = spawn(process.execPath, [PETREL, 'broker', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  t.after(() => { child.kill('SIGKILL'); children.delete(child) })
  return await new Promise<number>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => { reject(new Error(`petrel broker did not start: ${out}`)) }, 10_000)
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d
      const m = /mqtt:\/\/127\.0\.0\.1:(\d+)/.exec(out)
      if (m !== null) { clearTimeout(timer); resolve(Number(m[1])) }
    })
  })
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
  // ... and its long names (MQTTX bench's too), in their meaning: --count is clients, --interval
  // the milliseconds between connections, not messages.
  const long = parseOptions(['pub', '--count', '7', '--interval', '20', '--interval_of_msg', '100', '--startnumber', '3', '-S', '--certfile', 'c.pem', '--keyfile', 'k.pem'])
  assert.deepEqual([long?.clients, long?.connRate, long?.rate, long?.startIndex, long?.limit, long?.cert, long?.key], [7, 50, 10, 3, 0, 'c.pem', 'k.pem'])
  assert.equal(parseOptions(['pub', '--message-interval', '250'])?.rate, 4)
  for (const both of [['-c', '1', '--count', '2'], ['-i', '1', '--interval', '2'], ['-I', '1', '--interval_of_msg', '2'], ['--cert', 'a', '--certfile', 'b']]) {
    assert.throws(() => parseOptions(['pub', ...both]), (err: unknown) => err instanceof UsageError && / is --[a-z-]+: give one of them$/.test(err.message), both.join(' '))
  }
  // emqtt-bench's %u: the user name, in -t and --sub-topic; without one it is an error, not a literal '%u'.
  const u = parseOptions(['pubsub', '-u', 'alice', '-t', 'u/%u/%i', '--sub-topic', 'u/%u/#'])
  assert.deepEqual([u?.topic, u?.subTopic], ['u/alice/%i', 'u/alice/#'])
  assert.equal(parseOptions(['sub', '--url', 'mqtt://bob:pw@h', '-t', 'u/%u/#'])?.subTopic, 'u/bob/#')
  assert.throws(() => parseOptions(['pub', '-t', 'u/%u']), (err: unknown) => err instanceof UsageError && /%u is the user name, and no -u/.test(err.message))
  // emqtt-bench's -F (inflight) and --cacertfile are taken; its flags that are not say so and why.
  assert.equal(parseOptions(['pub', '-F', '7'])?.inflight, 7)
  assert.equal(parseOptions(['pub', '--cacertfile', 'ca.pem'])?.cafile, 'ca.pem')
  assert.throws(() => parseOptions(['pub', '--retain']), (err: unknown) => err instanceof UsageError && err.message === "unknown option '--retain': not supported: bench publishes are not retained")
  assert.throws(() => parseOptions(['pub', '-C', 'false']), (err: unknown) => err instanceof UsageError && /^unknown option '-C': not supported: every bench connection starts a clean session$/.test(err.message))
  assert.throws(() => parseOptions(['sub', '--payload-hdrs', 'cnt64']), (err: unknown) => err instanceof UsageError && /^unknown option '--payload-hdrs': not needed: every payload carries a stamp/.test(err.message))
  // Another tool's flag: said plainly, without Node's note on positionals after '--'.
  assert.throws(() => parseOptions(['pub', '--retained']), (err: unknown) => err instanceof UsageError && err.message === "unknown option '--retained'")
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
  const template = new PublishTemplate('t', 32, 1, 4, { run: 0xabc, publisher: 3 })
  const batch = template.batch(2)
  template.patch(batch, 0, nowMicros() - 2000, 0, 1)
  template.patch(batch, 1, nowMicros() - 1000, 1, 2)
  const stamped = (i: number): Buffer => batch.subarray(i * template.length + template.payloadOffset, (i + 1) * template.length)
  // Foreign payloads that a time check alone let through: all zeros (on a host up for less than
  // an hour), and a plausible send time at the start with no magic.
  const timeFirst = Buffer.alloc(64)
  timeFirst.writeDoubleBE(nowMicros() - 1000, 0)
  const zeros = Buffer.alloc(64)
  zeros.writeDoubleBE(nowMicros() - 1000, 8)
  sub.onPackets([
    { type: 'publish', topicName: 't', qos: 1, packetId: 1, retain: false, dup: false, payload: stamped(0) },
    { type: 'publish', topicName: 't', qos: 1, packetId: 2, retain: false, dup: false, payload: stamped(1) },
    { type: 'publish', topicName: 't', qos: 0, retain: false, dup: false, payload: Buffer.from('{"temperature": 21.5, "unit": "C"}') },
    { type: 'publish', topicName: 't', qos: 0, retain: false, dup: false, payload: Buffer.from('21.5') },
    { type: 'publish', topicName: 't', qos: 0, retain: false, dup: false, payload: timeFirst },
    { type: 'publish', topicName: 't', qos: 0, retain: false, dup: false, payload: zeros }
  ])
  assert.equal(stats.received, 6)
  assert.equal(stats.unstamped, 4)
  const lat = stats.latency.summary()
  assert.equal(lat.count, 2)
  assert.ok(lat.min >= 0.9 && lat.max < 1000, JSON.stringify(lat))
  assert.deepEqual(sub.tracker.report(), [{ run: '00000abc', publisher: 3, received: 2, missing: 0, duplicates: 0, outOfOrder: 0 }])
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
  for (const seq of [0, 1, 3, 2, 3, 5]) t.record(1, 7, seq)
  for (let seq = 0; seq < 10_000; seq++) t.record(1, 8, seq)
  const [a, b] = t.report()
  assert.deepEqual(a, { run: '00000001', publisher: 7, received: 6, missing: 1, duplicates: 1, outOfOrder: 1 })
  assert.deepEqual(b, { run: '00000001', publisher: 8, received: 10_000, missing: 0, duplicates: 0, outOfOrder: 0 })
  // Known sent counts reveal loss at the tail and publishers never heard from.
  const withSent = t.report({ run: 1, sent: new Map([[7, 8], [8, 10_000], [9, 5]]) })
  assert.equal(withSent[0]?.missing, 3)
  assert.deepEqual(withSent[2], { run: '00000001', publisher: 9, received: 0, missing: 5, duplicates: 0, outOfOrder: 0 })
})

test('sequence tracker: publishers of two runs with the same index are two publishers, not duplicates', () => {
  const t = new SequenceTracker()
  for (let seq = 0; seq < 100; seq++) {
    t.record(0xaaaa, 0, seq)
    t.record(0xbbbb, 0, seq)
  }
  assert.deepEqual(t.report().map((r) => [r.run, r.publisher, r.received, r.duplicates, r.missing]),
    [['0000aaaa', 0, 100, 0, 0], ['0000bbbb', 0, 100, 0, 0]])
})

test('sequence tracker: a subscriber that joins late counts from the first sequence it saw', () => {
  const t = new SequenceTracker()
  // Joined at 1,000,000 of a long run: nothing before it is missing; a gap after it is.
  for (let seq = 1_000_000; seq < 1_000_100; seq++) if (seq !== 1_000_050) t.record(5, 0, seq)
  // A reordered message below the first one seen extends the span down.
  t.record(5, 0, 999_990)
  const [r] = t.report()
  assert.deepEqual(r, { run: '00000005', publisher: 0, received: 100, missing: 10, duplicates: 0, outOfOrder: 1 })
  // Its bitmap covers what it saw, not everything since sequence 0.
  const seen = (t as unknown as { runs: Map<number, Map<number, { seen: Uint8Array }>> }).runs.get(5)?.get(0)?.seen
  assert.ok(seen !== undefined && seen.length < 4096, `bitmap of ${seen?.length ?? 0} bytes`)
})

test('publish template: the patched fields land where @petrel/wire put them', () => {
  for (const version of [4, 5] as const) {
    const t = new PublishTemplate('a/b', 32, 1, version, { run: 0x01020304, publisher: 7 })
    const batch = t.batch(3)
    t.patch(batch, 2, 1234.5, 9, 0x0102)
    const p = batch.subarray(2 * t.length)
    assert.equal(p.readUInt16BE(t.packetIdOffset), 0x0102)
    // The documented layout (stamp.ts): magic "ptb1", run id, send time, publisher, sequence.
    assert.equal(p.subarray(t.payloadOffset, t.payloadOffset + 4).toString('latin1'), 'ptb1')
    assert.equal(p.readUInt32BE(t.payloadOffset + 4), 0x01020304)
    assert.equal(p.readDoubleBE(t.payloadOffset + 8), 1234.5)
    assert.equal(p.readUInt32BE(t.payloadOffset + 16), 7)
    assert.equal(p.readUInt32BE(t.payloadOffset + 20), 9)
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
  // Measured: the last PUBACK comes after the last send, and within the run.
  const p = s.publish
  assert.ok(p?.ackedSeconds !== undefined && p.ackedSeconds >= p.seconds && p.ackedSeconds <= s.elapsedSeconds, JSON.stringify(p))
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
  // The warm-up's messages are reported apart, out of the totals and rates.
  assert.ok(s.warmup !== undefined && s.publish !== undefined)
  assert.equal(r.latencyMs.count, r.received)
  assert.equal(warm.count, s.warmup.received)
  assert.ok(s.warmup.sent > 300 && s.publish.sent > 300 && s.publish.sent < 700, `${s.warmup.sent} + ${s.publish.sent} sent`)
  assert.ok(s.publish.seconds < 1.5, `published over ${s.publish.seconds} s`)
  assert.ok(s.publish.perSecond !== null && s.publish.perSecond > 400 && s.publish.perSecond < 600, `${s.publish.perSecond} msg/s at --rate 500`)
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
  const { done: sub } = await subscribedSub(['-p', port, '-t', 'two/#', '-q', '1', '-L', '2000', '--duration', '20', '--json'])
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

test('bench pub and pubsub with a count exit once done, not after --drain-timeout', async (t) => {
  const port = String(await petrelBroker(t))
  // The drain's timer lost the race to the acks but held the process for the whole timeout:
  // with 60 s, the run would be killed at RUN_TIMEOUT_MS (30 s) instead of exiting.
  for (const args of [['pub', '-L', '1'], ['pub', '-q', '1', '-L', '10'], ['pubsub', '-L', '10']]) {
    const started = performance.now()
    const r = await bench([...args, '-p', port, '--drain-timeout', '60', '--quiet'])
    assert.equal(r.code, 0, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`)
    assert.match(r.stdout, /errors\s+none/)
    assert.ok(performance.now() - started < 20_000, `${args.join(' ')} took ${Math.round(performance.now() - started)} ms`)
  }
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
  assert.match(plain.stdout, /latency\s+n\/a \(no bench stamps: payloads under 24 bytes/)
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
  // As petrel pub: 3 when every connection was refused for its credentials, 2 when none could be made.
  assert.equal(refused.code, 3)
  const refusedSummary = JSON.parse(refused.stdout) as BenchSummary
  assert.deepEqual(refusedSummary.errors, { 'connack: Not authorized (5)': 2 })
  assert.deepEqual(refusedSummary.failures, ['no connection could be made (see errors): the broker refused the credentials (check -u/-P, or the user in --url)'])
  const untrusted = await bench(['pub', '--url', url, '-u', 'alice', '-P', 'secret', '-L', '10', '--json', '--quiet'])
  assert.equal(untrusted.code, 2)
  assert.match(Object.keys((JSON.parse(untrusted.stdout) as BenchSummary).errors)[0] ?? '', /^connect: /)
  // The credentials in the URL, as mosquitto_pub -L takes them; the summary's URL leaves them out.
  const withUser = `mqtts://alice:secret@localhost:${broker.tlsPort ?? 0}`
  const s = summaryOf(await bench(['pubsub', '--url', withUser, '--cafile', certs.caFile, '-q', '1', '-L', '1000', '--json']))
  assert.equal(s.url, url)
  assert.equal(s.receive?.received, 1000)
  assert.equal(s.receive?.missing, 0)
  assertSaneLatency(s)
})

test('no connection for want of TLS, or with TLS to a plain port, or an unknown CA: the summary says what to try, as petrel pub does', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const certs = await makeTestCertificates()
  const broker = await startMosquitto({ tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile } })
  t.after(() => broker.stop())
  const cases = [
    [['-S', '-p', String(broker.port)], /: the TLS handshake failed: if this port speaks plain MQTT, connect without TLS: no -S, --url mqtt:\/\/\.\.\.$/],
    [['-p', String(broker.tlsPort)], /: it closed the connection before answering the CONNECT: if this port takes TLS, add -S \(or --url mqtts:\/\/\.\.\.\)$/],
    [['--url', `mqtts://localhost:${broker.tlsPort ?? 0}`], /: give the CA that signed the broker's certificate with --cafile \(a self-signed certificate is its own CA\)$/]
  ] as const
  const runs = await Promise.all(cases.map(async ([args]) => await bench(['pub', ...args, '-L', '10', '--json', '--quiet'])))
  for (const [i, r] of runs.entries()) {
    const [args, advice] = cases[i] as typeof cases[number]
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`)
    const s = JSON.parse(r.stdout) as BenchSummary
    assert.equal(s.failures.length, 1, `${args.join(' ')}: ${JSON.stringify(s.failures)}`)
    assert.match(s.failures[0] ?? '', advice, `${args.join(' ')}: ${JSON.stringify(s.errors)}`)
  }
})

test('--insecure skips the host name check only, as in petrel pub and mosquitto_pub: the chain is still verified', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const certs = await makeTestCertificates()
  // A certificate from the test CA for another name than the one dialled.
  const broker = await startMosquitto({ tls: { certFile: certs.elsewhereCertFile, keyFile: certs.elsewhereKeyFile, caFile: certs.caFile } })
  t.after(() => broker.stop())
  const run = async (...flags: string[]): Promise<Result> => await bench(['pub', '--url', `mqtts://127.0.0.1:${broker.tlsPort ?? 0}`, '-L', '10', '--json', '--quiet', ...flags])
  const [strict, loose, wrongCa, noCa] = await Promise.all([
    run('--cafile', certs.caFile),
    run('--cafile', certs.caFile, '--insecure'),
    // A CA that did not sign the broker's certificate, and none at all: --insecure is no "trust anything".
    run('--cafile', certs.clientCertFile, '--insecure'),
    run('--insecure')
  ])
  assert.equal(strict.code, 2, strict.stdout)
  assert.match((JSON.parse(strict.stdout) as BenchSummary).failures[0] ?? '', /: connect by a host name the certificate names, or --insecure to skip the host name check$/)
  assert.equal(summaryOf(loose).publish?.sent, 10)
  for (const r of [wrongCa, noCa]) {
    assert.equal(r.code, 2, r.stdout)
    assert.match((JSON.parse(r.stdout) as BenchSummary).failures[0] ?? '', /: give the CA that signed the broker's certificate with --cafile/)
  }
})

test('no connection because the port speaks HTTP (a WebSocket listener): the summary says so, as petrel pub does', async (t) => {
  // What a WebSocket listener answers to bytes that are not an upgrade request.
  const http = createServer((socket) => { socket.once('data', () => { socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n') }) })
  await new Promise<void>((resolve) => { http.listen(0, '127.0.0.1', resolve) })
  t.after(() => { http.close() })
  const r = await bench(['conn', '-p', String((http.address() as { port: number }).port), '-c', '2', '--json', '--quiet'])
  assert.equal(r.code, 2, `exit ${r.code}\n${r.stderr}`)
  const s = JSON.parse(r.stdout) as BenchSummary
  assert.deepEqual(s.failures, ['no connection could be made (see errors): its answer is not valid MQTT (another protocol on this port? a WebSocket listener takes --ws, or --url ws://host:port/path)'], JSON.stringify(s.errors))
})

test('MQTT 3.1.1 against mosquitto\'s default max_inflight_messages (20): the default window loses nothing it was acked for', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  // The harness raises it to 100; a user's mosquitto has 20, and acks (PUBREC) then drops a QoS 2 PUBLISH past it.
  const broker = await startMosquitto({ extraConfig: 'max_inflight_messages 20' })
  t.after(() => broker.stop())
  assert.equal(parseOptions(['pub'])?.inflight, 20)
  assert.equal(parseOptions(['pub', '-V', '5'])?.inflight, 100)
  const s = summaryOf(await bench(['pubsub', '-p', String(broker.port), '-q', '2', '-c', '3', '--subs', '2', '-L', '500', '--json', '--quiet']))
  assert.equal(s.publish?.acked, 1500)
  assert.equal(s.receive?.missing, 0, JSON.stringify(s.receive?.publishers))
  assert.equal(s.receive?.received, 3000)
})

test('against petrel broker: paced QoS 1 pubsub with %i/%c topics arrives whole', async (t) => {
  const port = await petrelBroker(t)
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

test('MQTT 3.1.1 publishes over petrel broker\'s 1 MiB max_packet_size: the lost connections are explained', async (t) => {
  const port = await petrelBroker(t)
  const r = await bench(['pub', '-p', String(port), '-s', '2000000', '-q', '1', '-L', '3', '--json', '--quiet'])
  assert.equal(r.code, 4, `exit ${r.code}\n${r.stderr}`)
  const s = JSON.parse(r.stdout) as BenchSummary
  assert.equal(s.failures.length, 1, JSON.stringify(s.failures))
  assert.match(s.failures[0] ?? '', /^every connection was lost before the end of the run \(see errors\): PUBLISH packets of -s 2000000 are over 1 MiB.*-V 5 to be told the limit$/)
})

test('bench conn without -R: at most 100 handshakes under way, so 1,000 connections never wait for a dropped SYN (mosquitto\'s backlog is 100)', async (t) => {
  const o = (...args: string[]): number | undefined => parseOptions(['conn', ...args])?.maxConnecting
  assert.equal(o(), 100)
  assert.equal(o('-R', '500'), 0)
  assert.equal(o('-i', '2'), 0)
  assert.equal(o('--max-connecting', '0'), 0)
  assert.equal(o('-R', '500', '--max-connecting', '50'), 50)
  const broker = await mosquitto(t)
  if (broker === undefined) return
  // All at once, a third or more waited out the kernel's 1 s SYN retransmission: p99 ~1.3 s.
  const s = summaryOf(await bench(['conn', '-p', String(broker.port), '-c', '1000', '--duration', '6', '--json', '--quiet']))
  assert.equal(s.connections.established, 1000)
  assert.ok(s.connections.connectMs.p99 < 1000, JSON.stringify(s.connections.connectMs))
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
  assert.ok(s.connections.perSecond !== null && s.connections.perSecond > 0 && s.connections.perSecond <= 1500, `${s.connections.perSecond}/s at -R 1000`)
})

test('a refused connection is counted by reason (exit 2); bad arguments exit 1', async () => {
  const port = await freePort()
  const r = await bench(['pub', '-p', String(port), '-c', '3', '--json', '--quiet'])
  assert.equal(r.code, 2)
  const s = JSON.parse(r.stdout) as BenchSummary
  assert.equal(s.connections.failed, 3)
  assert.deepEqual(s.errors, { 'connect: ECONNREFUSED': 3 })
  const bad = await bench(['pub', '-q', '7'])
  assert.equal(bad.code, 1)
  assert.match(bad.stderr, /--qos must be/)
})

// --- from a review: runs that end, accounting that holds, limits that are honoured ---------------

interface FakeBroker {
  port: number
  /** Packets received, per connection, in order. */
  received: Packet[][]
  accepted: number
}

/**
 * A TCP server on 127.0.0.1 that speaks just enough MQTT for one behaviour: `answer` returns the
 * packets to send back for each packet received (none: it stays silent). Closed, with every
 * socket it accepted, after the test.
 */
async function fakeBroker (t: TestContext, answer: (p: Packet) => Packet[], opts: { holdOnDisconnect?: boolean } = {}): Promise<FakeBroker> {
  const sockets = new Set<Socket>()
  const fake: FakeBroker = { port: 0, received: [], accepted: 0 }
  // holdOnDisconnect: the client's end of the stream is not answered by ours (half-open), so a
  // client waits for the close it asked for.
  const server: Server = createServer({ allowHalfOpen: opts.holdOnDisconnect === true }, (socket) => {
    fake.accepted++
    sockets.add(socket)
    socket.on('close', () => { sockets.delete(socket) })
    socket.on('error', () => {})
    const seen: Packet[] = []
    fake.received.push(seen)
    const decoder = new Decoder()
    let version: 3 | 4 | 5 = 4
    socket.on('data', (chunk: Buffer) => {
      let packets: Packet[]
      try {
        packets = decoder.push(chunk)
      } catch {
        socket.destroy()
        return
      }
      for (const p of packets) {
        seen.push(p)
        if (p.type === 'connect') version = p.protocolVersion
        for (const reply of answer(p)) socket.write(encode(reply, version))
      }
    })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  fake.port = (server.address() as { port: number }).port
  t.after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  })
  return fake
}

function connackWith (properties?: ConnackProperties): Packet {
  return { type: 'connack', sessionPresent: false, reasonCode: 0, ...(properties === undefined ? {} : { properties }) }
}

test('no connection left: sub and conn against a dead port print a summary and exit 2', async () => {
  const port = String(await freePort())
  const [sub, conn] = await Promise.all([
    bench(['sub', '-p', port, '-c', '2', '--json', '--quiet']),
    bench(['conn', '-p', port, '-c', '2', '--json', '--quiet'])
  ])
  for (const r of [sub, conn]) {
    assert.equal(r.code, 2, `exit ${r.code}\n${r.stderr}`)
    const s = JSON.parse(r.stdout) as BenchSummary
    assert.deepEqual(s.errors, { 'connect: ECONNREFUSED': 2 })
    assert.deepEqual(s.failures, [`no connection could be made (see errors): no broker is listening on 127.0.0.1:${port} (-h, -p, --url)`])
  }
})

test('no connection left: sub and conn whose broker dies mid-run stop with a summary and exit 4', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  const broker = await startMosquitto()
  t.after(() => broker.stop())
  const port = String(broker.port)
  let subUp = false
  let connUp = false
  // No --duration and no count: only the loss of every connection can end these runs.
  const sub = bench(['sub', '-p', port, '-c', '2', '-t', 'gone/#', '--json'], (err) => { if (/conns 2\/2/.test(err)) subUp = true })
  const conn = bench(['conn', '-p', port, '-c', '2', '--json'], (err) => { if (/conns 2\/2/.test(err)) connUp = true })
  await waitFor(() => subUp && connUp, { timeoutMs: 10_000, message: 'both runs connected' })
  await broker.kill()
  for (const r of await withTimeout(Promise.all([sub, conn]), 15_000, 'runs ending after the broker died')) {
    assert.equal(r.code, 4, `exit ${r.code}\n${r.stderr}\n${r.stdout}`)
    const s = JSON.parse(r.stdout) as BenchSummary
    assert.equal(s.connections.established, 2)
    assert.equal(s.connections.lost, 2)
    assert.deepEqual(s.failures, ['every connection was lost before the end of the run (see errors)'])
  }
})

test('a broker that never sends CONNACK: stable reason, the process exits, Ctrl-C ends handshakes at once', async (t) => {
  const silent = await fakeBroker(t, () => [])
  const port = String(silent.port)
  const started = performance.now()
  const [pub, sub] = await Promise.all([
    bench(['pub', '-p', port, '-c', '3', '--json', '--quiet']),
    bench(['sub', '-p', port, '-c', '3', '--json', '--quiet'])
  ])
  // The 10 s CONNACK timeout, then an exit (not a hang until the harness kills it at 30 s).
  assert.ok(performance.now() - started < 20_000, `took ${Math.round(performance.now() - started)} ms`)
  for (const r of [pub, sub]) {
    assert.equal(r.code, 2, `exit ${r.code}\n${r.stderr}`)
    assert.deepEqual((JSON.parse(r.stdout) as BenchSummary).errors, { 'connack: no answer within 10 s': 3 })
  }
  // Ctrl-C while the handshakes wait: the run ends now, not when the 10 s are up.
  const before = silent.accepted
  let child: ChildProcess | undefined
  const run = bench(['conn', '-p', port, '-c', '12', '--json', '--quiet'], undefined, (c) => { child = c })
  await waitFor(() => silent.accepted >= before + 12, { timeoutMs: 5000, message: 'twelve handshakes under way' })
  const signalled = performance.now()
  child?.kill('SIGINT')
  const r = await run
  assert.ok(performance.now() - signalled < 3000, `ended ${Math.round(performance.now() - signalled)} ms after SIGINT`)
  // Handshakes the user cut short are not the broker's failures: no error, and exit 0.
  assert.equal(r.code, 0, r.stdout)
  const cancelled = JSON.parse(r.stdout) as BenchSummary
  assert.deepEqual(cancelled.errors, {})
  assert.deepEqual(cancelled.failures, [])
  assert.equal(cancelled.connections.failed, 0)
  assert.equal(cancelled.connections.cancelled, 12)
  // Twelve handshakes wait on one abort signal: that is no listener leak to warn about.
  assert.doesNotMatch(r.stderr, /Warning/)
})

test('two bench pub processes are two publishers to one bench sub, not one with duplicates', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  const port = String(broker.port)
  const { done: sub } = await subscribedSub(['-p', port, '-t', 'twice/#', '-q', '1', '-L', '2000', '--duration', '20', '--json'])
  // Both processes' only publisher is client index 0 on topic twice/0.
  const pubs = await Promise.all([0, 1].map(async () => await bench(['pub', '-p', port, '-t', 'twice/%i', '-q', '1', '-L', '1000', '--rate', '5000', '--json', '--quiet'])))
  for (const p of pubs) assert.equal(summaryOf(p).publish?.acked, 1000)
  const r = summaryOf(await sub).receive
  assert.ok(r !== undefined)
  assert.equal(r.received, 2000)
  assert.equal(r.duplicates, 0)
  assert.equal(r.missing, 0)
  assert.deepEqual(r.publishers.map((p) => [p.publisher, p.received]), [[0, 1000], [0, 1000]])
  assert.notEqual(r.publishers[0]?.run, r.publishers[1]?.run)
})

test('bench sub that joins a running publisher late: no invented loss, and totals agree with the rows', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  const port = String(broker.port)
  let sending = false
  // An unlimited QoS 1 publisher, well under way before the subscriber exists.
  const pub = bench(['pub', '-p', port, '-t', 'late/%i', '-q', '1', '--duration', '6', '--json'], (err) => { if (/sent [\d.k]+\/s \(\d/.test(err)) sending = true })
  await waitFor(() => sending, { timeoutMs: 10_000, message: 'the publisher sends' })
  // It stops at its count while messages keep coming: what arrives after that is not counted.
  const r = summaryOf(await bench(['sub', '-p', port, '-t', 'late/#', '-q', '1', '-L', '5000', '--duration', '20', '--json', '--quiet'])).receive
  assert.ok(r !== undefined)
  assert.equal(r.publishers.length, 1)
  const row = r.publishers[0]
  assert.ok(row !== undefined && row.received >= 5000, JSON.stringify(row))
  assert.equal(r.missing, 0, JSON.stringify(r.publishers))
  assert.equal(r.duplicates, 0)
  assert.equal(r.received, row.received + r.unstamped, `received ${r.received}, rows ${row.received}, unstamped ${r.unstamped}`)
  assert.equal(summaryOf(await pub).errors['connection closed by the broker'], undefined)
})

test('MQTT 5.0 Server Keep Alive is the keep alive the connections keep [MQTT-3.2.2-21]', async (t) => {
  // The broker says 1 s where the client asked for 60 s: pings must come within about a second.
  const fake = await fakeBroker(t, (p) => p.type === 'connect' ? [connackWith({ serverKeepAlive: 1 })] : p.type === 'pingreq' ? [{ type: 'pingresp' }] : [])
  const s = summaryOf(await bench(['conn', '-p', String(fake.port), '-V', '5', '-k', '60', '-c', '2', '--duration', '2.5', '--json', '--quiet']))
  assert.equal(s.connections.established, 2)
  for (const packets of fake.received) {
    const pings = packets.filter((p) => p.type === 'pingreq').length
    assert.ok(pings >= 2, `${pings} PINGREQ in 2.5 s at a Server Keep Alive of 1 s`)
  }
})

test('MQTT 5.0 Maximum Packet Size: a PUBLISH that would not fit fails the run up front, saying why', async (t) => {
  const fake = await fakeBroker(t, (p) => p.type === 'connect' ? [connackWith({ maximumPacketSize: 200 })] : [])
  const r = await bench(['pub', '-p', String(fake.port), '-V', '5', '-s', '500', '-t', 'big', '-L', '10', '--json', '--quiet'])
  assert.equal(r.code, 4, r.stderr)
  const s = JSON.parse(r.stdout) as BenchSummary
  assert.equal(s.publish?.sent, 0)
  assert.match(s.failures.join('\n'), /at most 200 bytes \(CONNACK Maximum Packet Size\).*-s 500 on 'big' is 509 bytes: use -s 191 or less/)
  // Nothing past the limit reached the broker.
  assert.deepEqual(fake.received.flat().filter((p) => p.type === 'publish'), [])
})

test('refused subscriptions fail the run, named as each protocol names them', async (t) => {
  const fake = await fakeBroker(t, (p) => {
    if (p.type === 'connect') return [connackWith()]
    if (p.type === 'subscribe') return [{ type: 'suback', packetId: p.packetId, reasonCodes: [p.subscriptions[0]?.topicFilter === 'denied/#' ? 0x87 : 0] }]
    return []
  })
  const port = String(fake.port)
  // 3.1.1 has one failure code, 0x80 "Failure"; 5.0 says why (0x87 Not authorized).
  const fake311 = await fakeBroker(t, (p) => {
    if (p.type === 'connect') return [connackWith()]
    if (p.type === 'subscribe') return [{ type: 'suback', packetId: p.packetId, reasonCodes: [0x80] }]
    return []
  })
  const [v5, v311] = await Promise.all([
    bench(['sub', '-p', port, '-V', '5', '-c', '2', '-t', 'denied/#', '--duration', '10', '--json', '--quiet']),
    bench(['sub', '-p', String(fake311.port), '-t', 'denied/#', '--duration', '10', '--json', '--quiet'])
  ])
  for (const [r, reason, n] of [[v5, 'suback: Not authorized (0x87)', 2], [v311, 'suback: Failure (0x80)', 1]] as const) {
    assert.equal(r.code, 4, `exit ${r.code}\n${r.stderr}`)
    const s = JSON.parse(r.stdout) as BenchSummary
    assert.deepEqual(s.errors, { [reason]: n })
    // Every subscriber refused: nothing left to wait for, the run ends at once.
    assert.ok(s.elapsedSeconds < 5, `${s.elapsedSeconds} s`)
    assert.match(s.failures.join('\n'), new RegExp(`${n} of ${n} subscriptions failed`))
  }
})

test('options: topics, sizes and durations are checked before anything connects', () => {
  const usage = (args: string[], message: RegExp): void => {
    assert.throws(() => parseOptions(args), (err: unknown) => err instanceof UsageError && message.test(err.message), args.join(' '))
  }
  usage(['pub', '-t', 'bench/#'], /-t 'bench\/#' is no topic name to publish to: .*wildcards.*\[MQTT-4\.7\.1-1\]/)
  usage(['sub', '-t', 'a/#/b'], /-t 'a\/#\/b' is no topic filter to subscribe to: .*\[MQTT-4\.7\.1-2\]/)
  usage(['pubsub', '--sub-topic', 'a/b+'], /--sub-topic 'a\/b\+' is no topic filter/)
  usage(['pub', '--prefix', 'x#', '-t', 'a/%c'], /-t 'a\/%c' \(here 'a\/x#pub-0'\) is no topic name/)
  usage(['pub', '-s', '268435456'], /--size must be a number in 0\.\.268435455/)
  usage(['pub', '-s', '268435455', '-t', 'abc'], /--size 268435455 does not fit in one PUBLISH on 'abc': at most 268435450 bytes/)
  assert.equal(parseOptions(['pub', '-s', '268435450', '-t', 'abc'])?.payloadSize, 268435450)
  // Timers past 2^31 ms fire at once: a usage error, not a run that ends as it starts.
  usage(['pub', '--duration', '2147484'], /^--duration is at most 2147483 s/)
  usage(['pub', '--warmup', '2000000', '--duration', '200000'], /--warmup \+ --duration is at most/)
  assert.equal(parseOptions(['pub', '--duration', '2147483'])?.duration, 2147483)
  // --cert and --key go together.
  usage(['pub', '-S', '--cert', 'c.pem'], /--cert needs --key/)
  usage(['pub', '-S', '--key', 'k.pem'], /--key needs --cert/)
})

test('options: pubsub derives the subscription from -t, and refuses one that matches no publisher', () => {
  assert.equal(parseOptions(['pubsub', '-t', 'x/%i'])?.subTopic, 'x/+')
  assert.equal(parseOptions(['pubsub', '-t', 'x/%c/y'])?.subTopic, 'x/+/y')
  assert.equal(parseOptions(['pubsub'])?.subTopic, 'bench/+')
  assert.equal(parseOptions(['pubsub', '-t', 'fixed'])?.subTopic, 'fixed')
  assert.equal(parseOptions(['sub'])?.subTopic, 'bench/#')
  assert.throws(() => parseOptions(['pubsub', '-t', 'x/%i', '--sub-topic', 'bench/#']),
    (err: unknown) => err instanceof UsageError && /--sub-topic 'bench\/#' matches none of the publishers' topics \(-t 'x\/%i', e\.g\. 'x\/0'\)/.test(err.message))
  // Shared subscriptions match by their filter.
  assert.equal(parseOptions(['pubsub', '-t', 'x/%i', '--sub-topic', '$share/g/x/#'])?.subTopic, '$share/g/x/#')
  assert.equal(parseOptions(['pubsub', '--subs', '0', '-t', 'x/%i', '--sub-topic', 'nothing'])?.subscribers, 0)
})

test('options: credentials in the URL are used (the flags win) and never shown', () => {
  const o = parseOptions(['pub', '--url', 'mqtt://alice:s%40cret@10.0.0.1:1884'])
  assert.equal(o?.username, 'alice')
  assert.equal(o?.password, 's@cret')
  assert.equal(o?.target.url, 'mqtt://10.0.0.1:1884')
  const flags = parseOptions(['pub', '--url', 'mqtt://alice:secret@h', '-u', 'bob', '-P', 'pw'])
  assert.equal(flags?.username, 'bob')
  assert.equal(flags?.password, 'pw')
})

test('transport: no SNI for IP addresses, IPv6 with hex letters included', () => {
  assert.equal(serverName('fe80::abcd'), undefined)
  assert.equal(serverName('2001:db8::1'), undefined)
  assert.equal(serverName('127.0.0.1'), undefined)
  assert.equal(serverName('broker.example'), 'broker.example')
})

test('summary: no rate from a burst, no CPU alarm from a short run, a note on connect times with no limit on handshakes', () => {
  const o = parseOptions(['pubsub', '-c', '200'])
  assert.ok(o !== undefined)
  const s = new BenchStats()
  s.connectAttempts = 200
  s.connected = 200
  s.sent = 1000
  s.received = 1000
  // Everything went out in one write and arrived within 0.2 ms.
  s.firstSentAt = s.lastSentAt = s.startedAt + 1
  s.firstReceivedAt = s.startedAt + 1
  s.lastReceivedAt = s.startedAt + 1.2
  const short = buildSummary(o, s, s.startedAt + 100)
  assert.equal(short.publish?.perSecond, null)
  assert.equal(short.receive?.perSecond, null)
  const text = formatSummary({ ...short, cpu: { userSeconds: 0.15, systemSeconds: 0, percentOfCore: 150 } })
  assert.match(text, /published\s+1,000 sent over 0\.00 s \(first to last\): n\/a msg\/s \(too few messages, or a window under 10 ms/)
  assert.match(text, /received\s+1,000 over 0\.00 s \(first to last\): n\/a msg\/s/)
  assert.doesNotMatch(text, /may be the limit/)
  // 100 handshakes at a time by default: nothing to warn of. All at once, the kernel's timers.
  assert.doesNotMatch(text, /all handshakes at once/)
  // An open loop (-R) whose connect times reach the first SYN retry: said too; under it, nothing.
  const paced = { ...short, connRate: 5000, maxConnecting: 0 }
  const slow = { ...paced.connections, connectMs: { ...paced.connections.connectMs, count: 200, p99: 1040 } }
  assert.match(formatSummary({ ...paced, connections: slow }), /\n {14}connect p99 over 1 s at -R 5000: handshakes pile up once the broker falls behind the rate/)
  assert.doesNotMatch(formatSummary({ ...paced, connections: { ...slow, connectMs: { ...slow.connectMs, p99: 80 } } }), /pile up/)
  assert.match(formatSummary({ ...short, maxConnecting: 0 }), /\n {14}all handshakes at once \(--max-connecting 0\): connect times include each one's wait behind the others and, past the broker's listen backlog, the kernel's SYN retries after 1 s, 3 s\.\.\./)
  const long = formatSummary({ ...short, elapsedSeconds: 10, cpu: { userSeconds: 15, systemSeconds: 0, percentOfCore: 150 } })
  assert.match(long, /may be the limit/)
  assert.doesNotMatch(long, /EMFILE/)
  // A process that waited for a CPU for a tenth of the run or more: said, as the likely cause of
  // QoS 0 loss at low CPU; a short wait, or none known (not Linux), is not.
  const cpu = { userSeconds: 1, systemSeconds: 0.5, percentOfCore: 13 }
  const starved = formatSummary({ ...short, elapsedSeconds: 8, cpu: { ...cpu, waitSeconds: 1.8 } })
  assert.match(starved, /load tool\s+13% of one core \(user 1\.00 s, system 0\.50 s, waited 1\.80 s for a CPU\)\n {14}the machine is oversubscribed: this process's event loop was ready to run but waiting for a CPU for 1\.80 s/)
  assert.doesNotMatch(formatSummary({ ...short, elapsedSeconds: 8, cpu: { ...cpu, waitSeconds: 0.2 } }), /oversubscribed/)
  assert.match(formatSummary({ ...short, elapsedSeconds: 8, cpu }), /load tool\s+13% of one core \(user 1\.00 s, system 0\.50 s\)\n/)
  if (process.platform === 'linux') assert.equal(typeof short.cpu.waitSeconds, 'number')
  // Out of file descriptors: what to do about it, beside the count.
  const fds = formatSummary({ ...short, errors: { 'connect: EMFILE': 508 } })
  assert.match(fds, /errors\s+connect: EMFILE x508\n\s+EMFILE: this process ran out of file descriptors \(Node already raises its own limit to the hard one, ulimit -Hn\): raise that/)
})

test('usage errors: an invalid topic exits 1 with the reason, a missing --cafile names the flag', async () => {
  const topic = await bench(['pub', '-t', 'bench/#', '-p', '1'])
  assert.equal(topic.code, 1)
  assert.equal(topic.stdout, '')
  assert.match(topic.stderr, /^petrel bench: -t 'bench\/#' is no topic name to publish to/)
  assert.doesNotMatch(topic.stderr, /PetrelError|\n\s+at /)
  const ca = await bench(['pub', '-S', '--cafile', '/nonexistent/ca.pem', '-p', '1'])
  assert.equal(ca.code, 1)
  assert.match(ca.stderr, /--cafile: cannot read '\/nonexistent\/ca\.pem' \(ENOENT\)/)
})

test('bench pubsub -t with a pattern and no --sub-topic: the subscribers get every message', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  const s = summaryOf(await bench(['pubsub', '-p', String(broker.port), '-c', '2', '-t', 'x/%i', '-q', '1', '-L', '200', '--json']))
  assert.equal(s.receive?.received, 400)
  assert.equal(s.receive?.missing, 0)
  assert.equal(s.receive?.publishers.length, 2)
})

// --- from a second review -----------------------------------------------------------------------

test('sequence tracker union: the members of a share group are one receiver', () => {
  const a = new SequenceTracker()
  const b = new SequenceTracker()
  // Round robin between two members, sequence 6 lost, 9 delivered to both; b also saw 12..15 of a second publisher.
  for (let seq = 0; seq < 20; seq++) if (seq !== 6) (seq % 2 === 0 ? a : b).record(1, 0, seq)
  b.record(1, 0, 9)
  a.record(1, 0, 9)
  for (let seq = 12; seq < 16; seq++) b.record(1, 1, seq)
  // Alone, each member looks like it lost half.
  assert.ok((a.report()[0]?.missing ?? 0) >= 9)
  const u = SequenceTracker.union([a, b])
  assert.deepEqual(u.report({ run: 1, sent: new Map([[0, 20], [1, 16]]) }), [
    { run: '00000001', publisher: 0, received: 21, missing: 1, duplicates: 2, outOfOrder: 1 },
    { run: '00000001', publisher: 1, received: 4, missing: 12, duplicates: 0, outOfOrder: 0 }
  ])
  // A member whose bitmap starts lower than the other's (a long run, joined late) still lines up.
  const late = new SequenceTracker()
  const early = new SequenceTracker()
  for (let seq = 100_000; seq < 100_010; seq++) late.record(2, 0, seq)
  for (let seq = 99_995; seq < 100_000; seq++) early.record(2, 0, seq)
  assert.deepEqual(SequenceTracker.union([late, early]).report(), [{ run: '00000002', publisher: 0, received: 15, missing: 0, duplicates: 0, outOfOrder: 0 }])
})

test('shared subscriptions: pubsub and sub count a share group as one receiver (3.1.1 and 5.0)', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  const port = String(broker.port)
  for (const version of ['4', '5']) {
    const s = summaryOf(await bench(['pubsub', '-p', port, '-V', version, '-c', '1', '--subs', '2', '-q', '1', '-L', '2000', '--rate', '5000',
      '--sub-topic', '$share/g/bench/+', '--json', '--quiet']))
    const r = s.receive
    assert.ok(r !== undefined)
    assert.equal(r.received, 2000, `-V ${version}`)
    assert.equal(r.missing, 0, `-V ${version}: ${JSON.stringify(r.publishers)}`)
    assert.equal(r.duplicates, 0)
    assert.equal(r.sharedGroups, 1)
    assert.deepEqual(r.publishers.map((p) => [p.publisher, p.received, p.missing]), [[0, 2000, 0]])
  }
  // bench sub with two members of one group, and a bench pub in another process.
  const { done: sub } = await subscribedSub(['-p', port, '-t', '$share/g/shared/#', '-c', '2', '-q', '1', '--duration', '4', '--json'], 2)
  assert.equal(summaryOf(await bench(['pub', '-p', port, '-t', 'shared/%i', '-q', '1', '-L', '1000', '--rate', '5000', '--json', '--quiet'])).publish?.acked, 1000)
  const r = summaryOf(await sub).receive
  assert.ok(r !== undefined)
  assert.equal(r.received, 1000)
  assert.equal(r.missing, 0, JSON.stringify(r.publishers))
  assert.equal(r.duplicates, 0)
  assert.deepEqual(r.publishers.map((p) => p.received), [1000])
})

test('subscriber: a publisher on another clock is still checked for loss; only its latency is left out', () => {
  const stats = new BenchStats()
  const conn = { write: () => true } as unknown as BenchConnection
  const sub = new Subscriber(conn, stats, 0)
  const template = new PublishTemplate('t', 32, 0, 4, { run: 0xabc, publisher: 1 })
  const batch = template.batch(4)
  // Another host's monotonic clock: 10 hours ahead of ours, then 2 hours behind; sequence 2 lost, 1 twice.
  const now = nowMicros()
  template.patch(batch, 0, now + 36e9, 0, 0)
  template.patch(batch, 1, now + 36e9, 1, 0)
  template.patch(batch, 2, now - 7.2e9, 1, 0)
  template.patch(batch, 3, now - 7.2e9, 3, 0)
  const payload = (i: number): Buffer => batch.subarray(i * template.length + template.payloadOffset, (i + 1) * template.length)
  sub.onPackets([0, 1, 2, 3].map((i) => ({ type: 'publish', topicName: 't', qos: 0, retain: false, dup: false, payload: payload(i) })))
  assert.equal(stats.unstamped, 0)
  assert.equal(stats.clockNotComparable, 4)
  assert.equal(stats.latency.summary().count, 0)
  assert.deepEqual(sub.tracker.report(), [{ run: '00000abc', publisher: 1, received: 4, missing: 1, duplicates: 1, outOfOrder: 0 }])
  const o = parseOptions(['sub'])
  assert.ok(o !== undefined)
  stats.received = 4
  const s = buildSummary(o, stats, performance.now(), { reports: sub.tracker.report() })
  assert.equal(s.receive?.checked, 'sequence')
  assert.equal(s.receive?.missing, 1)
  const text = formatSummary(s)
  assert.match(text, /latency\s+n\/a \(send times this machine's clock cannot compare: publishers on another machine\?\)/)
  assert.match(text, /4 messages with send times .* left out of latency, still checked for loss/)
  assert.match(text, /loss\s+1 missing, 1 duplicated/)
  assert.doesNotMatch(text, /no bench stamps/)
})

test('bench sub -L: a subscriber lost on the way counts as done, and the run ends with a summary', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  const port = String(broker.port)
  let up = false
  let down = false
  let child: ChildProcess | undefined
  // --tolerate connections: the lost subscriber alone would fail the run (exit 4).
  const sub = bench(['sub', '-p', port, '-c', '2', '-t', 'kick/#', '-L', '50', '--prefix', 'kick-', '--tolerate', 'connections', '--json'], (err) => {
    if (/conns 2\/2/.test(err)) up = true
    if (/conns 1\/2/.test(err)) down = true
  }, (c) => { child = c })
  t.after(() => { child?.kill('SIGKILL') })
  await waitFor(() => up, { timeoutMs: 10_000, message: 'both subscribers up' })
  // Client-id takeover: the broker drops the subscriber kick-sub-1 (3.1.1: [MQTT-3.1.4-2]).
  const thief = await new Promise<Socket>((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port: broker.port }, () => { resolve(s) }).once('error', reject)
  })
  t.after(() => { thief.destroy() })
  thief.write(encode({ type: 'connect', protocolVersion: 4, clientId: 'kick-sub-1', cleanStart: true, keepAlive: 60 }, 4))
  await waitFor(() => down, { timeoutMs: 10_000, message: 'one subscriber lost' })
  assert.equal(summaryOf(await bench(['pub', '-p', port, '-t', 'kick/%i', '-L', '50', '--json', '--quiet'])).publish?.sent, 50)
  const r = await withTimeout(sub, 10_000, 'bench sub ending once the other subscriber has its count')
  const s = summaryOf(r)
  assert.equal(s.connections.lost, 1)
  assert.equal(s.receive?.received, 50)
  assert.equal(s.errors['connection closed by the broker'], 1)
})

/** Answers CONNECT and SUBSCRIBE, and nothing else: QoS 1/2 publishes are never acknowledged. */
function acksNothing (p: Packet): Packet[] {
  if (p.type === 'connect') return [connackWith()]
  if (p.type === 'subscribe') return [{ type: 'suback', packetId: p.packetId, reasonCodes: p.subscriptions.map((x) => x.qos) }]
  return []
}

test('Ctrl-C during the drain after --duration ends the drain and prints the summary', async (t) => {
  const fake = await fakeBroker(t, acksNothing)
  let child: ChildProcess | undefined
  // QoS 1 never acknowledged: after the 1 s run, the drain would wait its 20 s.
  const run = bench(['pubsub', '-p', String(fake.port), '-q', '1', '--rate', '100', '--duration', '1', '--drain-timeout', '20', '--json', '--quiet'],
    undefined, (c) => { child = c })
  t.after(() => { child?.kill('SIGKILL') })
  await waitFor(() => fake.received.flat().some((p) => p.type === 'publish'), { timeoutMs: 10_000, message: 'publishing' })
  // The run (started before the first publish) is over after 1 s: this signal comes during the drain.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const signalled = performance.now()
  child?.kill('SIGINT')
  const r = await withTimeout(run, 10_000, 'the run ending after SIGINT')
  assert.ok(performance.now() - signalled < 4000, `ended ${Math.round(performance.now() - signalled)} ms after SIGINT`)
  // Stopped by the user: what is left unacknowledged is counted, not failed, and what never
  // arrived may have been on its way.
  assert.equal(r.code, 0, r.stderr)
  const s = JSON.parse(r.stdout) as BenchSummary
  assert.equal(s.interrupted, true)
  assert.ok((s.receive?.missing ?? 0) > 0)
  assert.match(formatSummary(s), /\n {14}stopped by the user before what was on its way could arrive: missing counts it too, and does not fail the run\n/)
  assert.ok(s.elapsedSeconds < 6, `${s.elapsedSeconds} s`)
  assert.ok((s.publish?.sent ?? 0) > 0 && s.publish?.acked === 0)
  assert.equal(s.errors['publish: unacknowledged at the end of the run'], s.publish?.sent)
})

test('a second SIGTERM exits at once with 143 (a second SIGINT with 130)', async (t) => {
  // The broker never closes after DISCONNECT: after the first signal the run waits for it.
  const fake = await fakeBroker(t, acksNothing, { holdOnDisconnect: true })
  for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    const before = fake.received.length
    let child: ChildProcess | undefined
    const run = bench(['conn', '-p', String(fake.port), '-c', '2', '--json', '--quiet'], undefined, (c) => { child = c })
    t.after(() => { child?.kill('SIGKILL') })
    await waitFor(() => fake.received.length >= before + 2 && fake.received.slice(before).every((r) => r.length > 0), { timeoutMs: 10_000, message: 'two connections' })
    await new Promise((resolve) => setTimeout(resolve, 200))
    child?.kill(signal)
    await new Promise((resolve) => setTimeout(resolve, 300))
    child?.kill(signal)
    const r = await withTimeout(run, 10_000, `the run ending after a second ${signal}`)
    assert.equal(r.code, code, `${signal}: ${r.stderr}`)
    assert.equal(r.stdout, '')
  }
})

test('pubsub whose publishers are all lost fails, as pub does; a broker\'s Maximum QoS is checked up front [MQTT-3.2.2-11]', async (t) => {
  // Every publisher is sent away at its first PUBLISH (as a client-id takeover would); the subscriber stays.
  const kicks = await fakeBroker(t, (p) => p.type === 'publish' ? [{ type: 'disconnect', reasonCode: 0x8e }] : acksNothing(p))
  const lost = await bench(['pubsub', '-p', String(kicks.port), '-V', '5', '-c', '2', '--rate', '100', '--duration', '5', '--json', '--quiet'])
  assert.equal(lost.code, 4, `exit ${lost.code}\n${lost.stderr}`)
  const s = JSON.parse(lost.stdout) as BenchSummary
  assert.equal(s.connections.lost, 2)
  // What they sent before they went never arrived (this broker routes nothing): that fails too.
  const sent = (s.publish?.sent ?? 0).toLocaleString('en-US')
  assert.deepEqual(s.failures, ['every publisher was lost before the end of the run (see errors)', `${sent} of the ${sent} messages due never arrived (QoS 0; --tolerate loss to pass)`])
  assert.deepEqual(s.errors, { 'disconnect: Session taken over': 2 })
  // Maximum QoS 1: a QoS 2 run fails before any PUBLISH, saying what to use; subscriptions are just granted lower.
  const qos1 = await fakeBroker(t, (p) => p.type === 'connect' ? [connackWith({ maximumQoS: 1 })] : acksNothing(p))
  const r = await bench(['pubsub', '-p', String(qos1.port), '-V', '5', '-q', '2', '-L', '10', '--json', '--quiet'])
  assert.equal(r.code, 4, r.stderr)
  const q = JSON.parse(r.stdout) as BenchSummary
  assert.equal(q.publish?.sent, 0)
  assert.deepEqual(q.failures, ['the broker takes publishes of at most QoS 1 (CONNACK Maximum QoS), and -q 2 was asked: use -q 1'])
  assert.deepEqual(qos1.received.flat().filter((p) => p.type === 'publish'), [])
})

test('summary: a lone sub that received nothing says loss was not checked, not \'0 missing\'', () => {
  const o = parseOptions(['sub', '-t', 'wrong/#'])
  assert.ok(o !== undefined)
  const s = new BenchStats()
  s.connectAttempts = s.connected = 1
  const r = buildSummary(o, s, s.startedAt + 2000, { reports: [], streams: 0 })
  assert.equal(r.receive?.checked, 'none')
  assert.match(formatSummary(r), /loss\s+not checked \(nothing received: is a publisher sending to the filter\?\)/)
  // Something received: checked per publisher, counts with separators as the other lines.
  s.received = 12_345
  const rows = [{ run: 'r', publisher: 0, received: 12_345, missing: 23_456, duplicates: 0, outOfOrder: 0 }]
  const got = buildSummary(o, s, s.startedAt + 2000, { reports: rows, streams: 1 })
  assert.equal(got.receive?.checked, 'sequence')
  assert.match(formatSummary(got), /loss\s+23,456 missing, 0 duplicated/)
})

test('summary: QoS 1 messages acknowledged to every publisher and missing at the subscribers are said to be the broker\'s drops', () => {
  const o = parseOptions(['pubsub', '-q', '1', '-c', '2'])
  assert.ok(o !== undefined)
  const s = new BenchStats()
  s.connectAttempts = s.connected = 3
  s.sent = s.acked = 2000
  s.received = 1500
  const rows = [{ run: 'r', publisher: 0, received: 700, missing: 300, duplicates: 0, outOfOrder: 0 },
    { run: 'r', publisher: 1, received: 800, missing: 200, duplicates: 0, outOfOrder: 0 }]
  const dropped = formatSummary(buildSummary(o, s, s.startedAt + 2000, { reports: rows, streams: 2 }))
  assert.match(dropped, /loss\s+500 missing.*\n\s+every publish was acknowledged, so the broker dropped these after taking them: a queue limit/)
  // Not all acknowledged (a publisher lost, a broker that never acks): nothing to say about where.
  s.acked = 1900
  assert.doesNotMatch(formatSummary(buildSummary(o, s, s.startedAt + 2000, { reports: rows, streams: 2 })), /every publish was acknowledged/)
})

test('summary: a lone QoS 1 sub missing messages on a connection never lost says the broker did not send them', () => {
  const o = parseOptions(['sub', '-q', '1'])
  assert.ok(o !== undefined)
  const s = new BenchStats()
  s.connectAttempts = s.connected = 1
  s.received = 1500
  const rows = [{ run: 'r', publisher: 0, received: 1500, missing: 500, duplicates: 0, outOfOrder: 0 }]
  const note = /no subscriber connection was lost, so the broker never sent these: dropped for a slow subscriber \(mosquitto: max_queued_messages/
  assert.match(formatSummary(buildSummary(o, s, s.startedAt + 2000, { reports: rows, streams: 1 })), note)
  // A lost connection (a clean session: what was published meanwhile is gone) or QoS 0: nothing to say.
  s.lost = 1
  assert.doesNotMatch(formatSummary(buildSummary(o, s, s.startedAt + 2000, { reports: rows, streams: 1 })), note)
  s.lost = 0
  const q0 = parseOptions(['sub', '-q', '0'])
  assert.ok(q0 !== undefined)
  assert.doesNotMatch(formatSummary(buildSummary(q0, s, s.startedAt + 2000, { reports: rows, streams: 1 })), note)
})

test('summary: unpaced pubsub latencies of 100 ms and more are said to be mostly queueing', () => {
  const lat = (p50: number): LatencySummary => ({ count: 100, min: 1, mean: p50, p50, p95: p50, p99: p50, max: p50 })
  const text = (args: string[], p50: number): string => {
    const o = parseOptions(['pubsub', ...args])
    assert.ok(o !== undefined)
    const s = new BenchStats()
    s.connectAttempts = s.connected = 2
    s.sent = s.received = 100
    const r = buildSummary(o, s, s.startedAt + 1000, { reports: [], streams: 1 })
    assert.ok(r.receive !== undefined)
    return formatSummary({ ...r, receive: { ...r.receive, latencyMs: lat(p50) } })
  }
  const note = /\n {14}the publishers had no pace \(no -I or --rate\) and filled every queue on the way: these latencies are mostly that queueing/
  assert.match(text([], 2617), note)
  assert.doesNotMatch(text([], 6), note)
  assert.doesNotMatch(text(['--rate', '1000'], 2617), note)
})

test('summary: the span is measured (first to last), and a steady rate reads as configured: N messages of a paced publisher span N - 1 intervals', () => {
  // 200 publishers at 1 msg/s for 3 s: each sends at 0, 1 and 2 s, so the 600 messages span 2 s.
  const o = parseOptions(['pubsub', '-c', '200', '--rate', '1'])
  assert.ok(o !== undefined)
  const s = new BenchStats()
  s.sent = s.received = 600
  s.sendStreams = 200
  s.firstSentAt = s.startedAt + 10
  s.lastSentAt = s.firstSentAt + 2000
  s.firstReceivedAt = s.firstSentAt + 1
  s.lastReceivedAt = s.lastSentAt + 1
  const r = buildSummary(o, s, s.startedAt + 3000, { reports: [], streams: 200 })
  assert.equal(r.publish?.perSecond, 200)
  assert.equal(r.publish?.seconds, 2)
  assert.equal(r.receive?.perSecond, 200)
  assert.equal(r.receive?.seconds, 2)
  // 600 over 2 s reads as 300/s: the line says how the 200/s was taken.
  const text = formatSummary(r)
  assert.match(text, /published\s+600 sent over 2\.00 s \(first to last\): 200 msg\/s \(over the 400 intervals between the messages of each of 200 publishers\)\n/)
  assert.match(text, /received\s+600 over 2\.00 s \(first to last\): 200 msg\/s \(over the 400 intervals between the messages of each of 200 publisher-subscriber pairs\)\n/)
  // Many messages per publisher: count / seconds and the rate agree, nothing to explain.
  s.sent = s.received = 20_000
  assert.match(formatSummary(buildSummary(o, s, s.startedAt + 3000, { reports: [], streams: 200 })), /published\s+20,000 sent over 2\.00 s \(first to last\): 9900 msg\/s\n/)
  // One message per publisher: no interval, no rate.
  s.sent = 200
  s.lastSentAt = s.firstSentAt + 50
  assert.equal(buildSummary(o, s, s.startedAt + 1000).publish?.perSecond, null)
})

test('bench pubsub at a low rate per publisher reports the configured total rate', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  // 20 publishers at 2 msg/s: 40 msg/s (sent at 0, 0.5, 1 and 1.5 s of the 2 s run).
  const s = summaryOf(await bench(['pubsub', '-p', String(broker.port), '-c', '20', '--rate', '2', '--duration', '2', '--json', '--quiet']))
  for (const [what, perSecond] of [['sent', s.publish?.perSecond], ['received', s.receive?.perSecond]] as const) {
    assert.ok(perSecond !== null && perSecond !== undefined && perSecond >= 34 && perSecond <= 46, `${what}: ${perSecond} msg/s for 20 x 2 msg/s`)
  }
})

test('a reader that goes away (| head -1): the run stops quietly, exit 0, no EPIPE crash', async (t) => {
  const fake = await fakeBroker(t, acksNothing)
  let child: ChildProcess | undefined
  let closedAt = 0
  // Without --json the progress lines go to stdout: the first one arrives after a second.
  const run = bench(['pubsub', '-p', String(fake.port), '--rate', '10', '--duration', '8'], undefined, (c) => {
    child = c
    c.stdout?.once('data', () => {
      closedAt = performance.now()
      c.stdout?.destroy()
    })
  })
  t.after(() => { child?.kill('SIGKILL') })
  const r = await withTimeout(run, 15_000, 'the run ending after its reader went away')
  assert.ok(closedAt > 0, 'stdout was read')
  assert.equal(r.code, 0, r.stderr)
  assert.doesNotMatch(r.stderr, /EPIPE|Error|\n\s+at /)
  // The next progress line (a second later) hits the closed pipe and ends the run, well before --duration.
  assert.ok(performance.now() - closedAt < 5000, `ended ${Math.round(performance.now() - closedAt)} ms after the reader left`)
})

test('QoS 1 publishes never acknowledged fail the run, counted once per message', async (t) => {
  const fake = await fakeBroker(t, acksNothing)
  const r = await bench(['pub', '-p', String(fake.port), '-q', '1', '-L', '10', '--drain-timeout', '1', '--json', '--quiet'])
  assert.equal(r.code, 4, `exit ${r.code}\n${r.stderr}`)
  const s = JSON.parse(r.stdout) as BenchSummary
  assert.equal(s.publish?.acked, 0)
  assert.deepEqual(s.errors, { 'publish: unacknowledged at the end of the run': 10 })
  assert.deepEqual(s.failures, ['10 QoS 1 publishes were not acknowledged within --drain-timeout 1 s after the run'])
  assert.match(formatSummary(s), /errors\s+publish: unacknowledged at the end of the run x10\n/)
})

test('summary: a ramp cut short is said, and the publisher count is not capped with the rows', () => {
  // 50 clients asked for at 20/s, a 1 s run: 20 were started.
  const o = parseOptions(['conn', '-c', '50', '-R', '20', '--duration', '1'])
  assert.ok(o !== undefined)
  const s = new BenchStats()
  s.connectAttempts = s.connected = 20
  const conn = buildSummary(o, s, s.startedAt + 1000)
  assert.equal(conn.connections.notStarted, 30)
  assert.match(formatSummary(conn), /20\/20 established.*\n\s+the run ended before the ramp was through: 30 of 50 clients never started/)
  assert.doesNotMatch(formatSummary(buildSummary({ ...o, clients: 20 }, s, s.startedAt + 1000)), /ramp/)
  // 1,100 publishers: 1,000 rows, all 1,100 counted.
  const p = parseOptions(['pubsub', '-c', '1100'])
  assert.ok(p !== undefined)
  const rows = Array.from({ length: 1100 }, (_, i) => ({ run: '00000001', publisher: i, received: 1, missing: 0, duplicates: 0, outOfOrder: 0 }))
  const ps = new BenchStats()
  ps.received = 1100
  const sum = buildSummary(p, ps, ps.startedAt + 1000, { reports: rows })
  assert.equal(sum.receive?.publishers.length, 1000)
  assert.equal(sum.receive?.publisherCount, 1100)
  assert.match(formatSummary(sum), /\(1,100 publishers\)/)
})

test('a connection sent away in the same read as its CONNACK is counted lost, not held as established', async (t) => {
  // MQTT 5.0: every other CONNECT is accepted and at once sent away (DISCONNECT 0x89 Server busy).
  let connects = 0
  const fake = await fakeBroker(t, (p) => {
    if (p.type !== 'connect') return acksNothing(p)
    return connects++ % 2 === 0 ? [connackWith()] : [connackWith(), { type: 'disconnect', reasonCode: 0x89 }]
  })
  const r = await bench(['conn', '-p', String(fake.port), '-V', '5', '-c', '2', '--duration', '1', '--json', '--quiet'])
  const s = JSON.parse(r.stdout) as BenchSummary
  assert.equal(s.connections.established, 2)
  assert.equal(s.connections.lost, 1)
  assert.deepEqual(s.errors, { 'disconnect: Server busy': 1 })
  // Both sent away: the run ends at once as every connection lost, not after --duration.
  const gone = await fakeBroker(t, (p) => p.type === 'connect' ? [connackWith(), { type: 'disconnect', reasonCode: 0x89 }] : [])
  const started = performance.now()
  const all = await bench(['conn', '-p', String(gone.port), '-V', '5', '-c', '2', '--duration', '20', '--json', '--quiet'])
  assert.ok(performance.now() - started < 10_000, `took ${Math.round(performance.now() - started)} ms`)
  assert.equal(all.code, 4, all.stdout)
  assert.deepEqual((JSON.parse(all.stdout) as BenchSummary).failures, ['every connection was lost before the end of the run (see errors)'])
})

/**
 * A QoS 0 relay for one behaviour: every PUBLISH goes to every subscriber `copies(n)` times (n
 * counts the publishes from 0), `delayMs(n)` after it came, so a test can lose, duplicate or
 * delay messages at will.
 */
async function relayBroker (t: TestContext, copies: (n: number) => number, delayMs?: (n: number) => number): Promise<number> {
  const subscribers = new Set<Socket>()
  const sockets = new Set<Socket>()
  let n = 0
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => { subscribers.delete(socket); sockets.delete(socket) })
    const decoder = new Decoder()
    socket.on('data', (chunk: Buffer) => {
      for (const p of decoder.push(chunk)) {
        if (p.type === 'connect') socket.write(encode(connackWith(), 4))
        else if (p.type === 'subscribe') {
          subscribers.add(socket)
          socket.write(encode({ type: 'suback', packetId: p.packetId, reasonCodes: p.subscriptions.map(() => 0) }, 4))
        } else if (p.type === 'publish') {
          const bytes = encode({ type: 'publish', topicName: p.topicName, payload: p.payload, qos: 0, retain: false, dup: false }, 4)
          const times = copies(n)
          // The subscribers of now: a delayed copy is not for one that comes later.
          const targets = [...subscribers]
          const send = (): void => { for (const s of targets) if (!s.destroyed) for (let i = 0; i < times; i++) s.write(bytes) }
          const delay = delayMs?.(n) ?? 0
          n++
          if (delay > 0) setTimeout(send, delay).unref()
          else send()
        } else if (p.type === 'disconnect') socket.end()
      }
    })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  t.after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  })
  return (server.address() as { port: number }).port
}

test('pubsub waits for every message due, duplicates apart: they do not end the wait before the rest arrives', async (t) => {
  // Every message delivered twice: counting duplicates, the wait ended with half of them due.
  const port = String(await relayBroker(t, () => 2))
  const s = JSON.parse((await bench(['pubsub', '-p', port, '-c', '4', '-L', '5000', '--json', '--quiet'])).stdout) as BenchSummary
  assert.equal(s.receive?.duplicates, 20_000, JSON.stringify(s.receive?.publishers))
  assert.equal(s.receive?.missing, 0, JSON.stringify(s.receive?.publishers))
})

test('messages lost by the broker fail the run (exit 4) at QoS 1 and QoS 0, unless --tolerate loss', async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  // A queue of one message per subscriber, one in flight: publishers far faster than that lose most.
  const broker = await startMosquitto({ extraConfig: 'max_queued_messages 1\nmax_inflight_messages 1' })
  t.after(() => broker.stop())
  const args = ['pubsub', '-p', String(broker.port), '-c', '4', '-q', '1', '-L', '2000', '--json', '--quiet']
  const lossy = await bench(args)
  assert.equal(lossy.code, 4, `exit ${lossy.code}\n${lossy.stderr}\n${lossy.stdout}`)
  const s = JSON.parse(lossy.stdout) as BenchSummary
  const missing = s.receive?.missing ?? 0
  assert.ok(missing > 0 && s.publish?.acked === 8000, JSON.stringify(s.receive))
  assert.equal(s.receive?.expected, 8000)
  assert.deepEqual(s.failures, [`${missing.toLocaleString('en-US')} of the 8,000 messages due never arrived (QoS 1; --tolerate loss to pass)`])
  assert.match(formatSummary(s), /\n {2}FAILED {6}[\d,]+ of the 8,000 messages due never arrived/)
  // Tolerated: the same loss is reported, and the run passes.
  const tolerated = summaryOf(await bench([...args, '--tolerate', 'loss']))
  assert.ok((tolerated.receive?.missing ?? 0) > 0)
  assert.deepEqual(tolerated.failures, [])
  // QoS 0 loss fails as well: every tenth message dropped by the relay.
  const port = String(await relayBroker(t, (n) => n % 10 === 9 ? 0 : 1))
  const q0 = await bench(['pubsub', '-p', port, '-L', '100', '--json', '--quiet'])
  assert.equal(q0.code, 4, `exit ${q0.code}\n${q0.stdout}`)
  assert.deepEqual((JSON.parse(q0.stdout) as BenchSummary).failures, ['10 of the 100 messages due never arrived (QoS 0; --tolerate loss to pass)'])
  // A lone sub sees the gaps, with no total to compare against.
  const { done } = await subscribedSub(['-p', port, '-L', '90', '--duration', '20', '--json'])
  assert.equal(summaryOf(await bench(['pub', '-p', port, '-L', '100', '--json', '--quiet'])).publish?.sent, 100)
  const sub = await done
  assert.equal(sub.code, 4, sub.stdout)
  assert.deepEqual((JSON.parse(sub.stdout) as BenchSummary).failures, ['9 messages missing: gaps in the publishers\' sequences (QoS 0; --tolerate loss to pass)'])
})

test('bench sub -L short of its count: gives up once nothing has come for --drain-timeout, and fails for the loss (exit 4) unless --tolerate loss', async (t) => {
  // Every tenth message dropped, the last (seq 99) among them: 90 of -L 100 ever arrive.
  const lossy = String(await relayBroker(t, (n) => n % 10 === 9 ? 0 : 1))
  const { done } = await subscribedSub(['-p', lossy, '-L', '100', '--drain-timeout', '1', '--json'])
  assert.equal(summaryOf(await bench(['pub', '-p', lossy, '-L', '100', '--json', '--quiet'])).publish?.sent, 100)
  // Before: it waited for the other 10 for ever (no --duration).
  const r = await withTimeout(done, 15_000, 'bench sub -L giving up on what never comes')
  assert.equal(r.code, 4, `exit ${r.code}\n${r.stderr}\n${r.stdout}`)
  const s = JSON.parse(r.stdout) as BenchSummary
  assert.equal(s.receive?.received, 90)
  assert.deepEqual(s.receive?.shortOfLimit, { receivers: 1, received: 90, due: 100, limit: 100, idleSeconds: 1 })
  assert.deepEqual(s.failures, [
    '9 messages missing: gaps in the publishers\' sequences (QoS 0; --tolerate loss to pass)',
    'a subscriber stopped short of -L 100: 90 of 100 received, then nothing for 1 s (--drain-timeout) (QoS 0; --tolerate loss to pass)'
  ])
  assert.match(formatSummary(s), /\n {14}a subscriber stopped short of -L 100: 90 of 100 received, then nothing for 1 s \(--drain-timeout\): what did not come is lost/)
  // The last five dropped: no gap shows it, the count does. Tolerated, the run passes and still says so.
  const tail = String(await relayBroker(t, (n) => n >= 95 ? 0 : 1))
  const sub2 = await subscribedSub(['-p', tail, '-c', '2', '-L', '100', '--drain-timeout', '1', '--json'], 2)
  const sub3 = await subscribedSub(['-p', tail, '-L', '100', '--drain-timeout', '1', '--tolerate', 'loss', '--json'])
  assert.equal(summaryOf(await bench(['pub', '-p', tail, '-L', '100', '--json', '--quiet'])).publish?.sent, 100)
  const failed = await withTimeout(sub2.done, 15_000, 'two subscribers giving up')
  assert.equal(failed.code, 4, failed.stdout)
  const f = JSON.parse(failed.stdout) as BenchSummary
  assert.equal(f.receive?.missing, 0)
  assert.deepEqual(f.failures, ['2 subscribers stopped short of -L 100: 190 of 200 received, then nothing for 1 s (--drain-timeout) (QoS 0; --tolerate loss to pass)'])
  const passed = summaryOf(await withTimeout(sub3.done, 15_000, 'a tolerant subscriber giving up'))
  assert.deepEqual(passed.receive?.shortOfLimit, { receivers: 1, received: 95, due: 100, limit: 100, idleSeconds: 1 })
  assert.deepEqual(passed.failures, [])
})

test('messages received twice fail the run (exit 4), unless --tolerate duplicates', async (t) => {
  const port = String(await relayBroker(t, (n) => n % 4 === 0 ? 2 : 1))
  const r = await bench(['pubsub', '-p', port, '-L', '100', '--json', '--quiet'])
  assert.equal(r.code, 4, `exit ${r.code}\n${r.stdout}`)
  const s = JSON.parse(r.stdout) as BenchSummary
  assert.equal(s.receive?.duplicates, 25)
  assert.equal(s.receive?.missing, 0)
  assert.deepEqual(s.failures, ['25 messages were received more than once (QoS 0; --tolerate duplicates to pass)'])
  const tolerated = summaryOf(await bench(['pubsub', '-p', port, '-L', '100', '--tolerate', 'loss,duplicates', '--json', '--quiet']))
  assert.equal(tolerated.receive?.duplicates, 25)
})

test('messages of one publisher out of order fail the run (exit 4) unless --tolerate reorder; not within a $share group', async (t) => {
  // Every tenth message held back 300 ms: it arrives after the later ones (QoS 0, nothing lost).
  const port = String(await relayBroker(t, () => 1, (n) => n % 10 === 0 ? 300 : 0))
  const args = ['pubsub', '-p', port, '-L', '100', '--json', '--quiet']
  const r = await bench(args)
  assert.equal(r.code, 4, `exit ${r.code}\n${r.stderr}\n${r.stdout}`)
  const s = JSON.parse(r.stdout) as BenchSummary
  assert.equal(s.receive?.missing, 0)
  assert.equal(s.receive?.outOfOrder, 10)
  assert.deepEqual(s.failures, ['10 messages arrived out of order, after a later one from the same publisher on the same topic, which MQTT forbids outside shared subscriptions (QoS 0; --tolerate reorder to pass)'])
  for (const words of ['reorder', 'loss,reorder', 'all']) {
    const tolerated = summaryOf(await bench([...args, '--tolerate', words]))
    assert.equal(tolerated.receive?.outOfOrder, 10)
    assert.deepEqual(tolerated.failures, [])
  }
  // A shared subscription has no order to keep [MQTT-4.6.0-6]: reported, not failed.
  const shared = summaryOf(await bench([...args, '--sub-topic', '$share/g/bench/+']))
  assert.equal(shared.receive?.outOfOrder, 10)
  assert.equal(shared.receive?.outOfOrderShared, 10)
  assert.deepEqual(shared.failures, [])
})

test('some connections refused or lost while others held fail the run (exit 4), unless --tolerate connections', async (t) => {
  // MQTT 5.0: the first CONNECT is accepted, the second accepted then sent away, the third refused.
  let connects = 0
  const fake = await fakeBroker(t, (p) => {
    if (p.type !== 'connect') return acksNothing(p)
    const n = connects++ % 3
    if (n === 0) return [connackWith()]
    if (n === 1) return [connackWith(), { type: 'disconnect', reasonCode: 0x89 }]
    return [{ type: 'connack', sessionPresent: false, reasonCode: 0x88 }]
  })
  const args = ['conn', '-p', String(fake.port), '-V', '5', '-c', '3', '--duration', '2', '--json', '--quiet']
  const r = await bench(args)
  assert.equal(r.code, 4, `exit ${r.code}\n${r.stderr}\n${r.stdout}`)
  const s = JSON.parse(r.stdout) as BenchSummary
  assert.equal(s.connections.established, 2)
  assert.equal(s.connections.failed, 1)
  assert.equal(s.connections.lost, 1)
  assert.deepEqual(s.failures, [
    '1 of 3 connections could not be made (see errors; --tolerate connections to pass)',
    '1 of 2 connections were lost during the run (see errors; --tolerate connections to pass)'
  ])
  const tolerated = summaryOf(await bench([...args, '--tolerate', 'all']))
  assert.equal(tolerated.connections.failed, 1)
  assert.deepEqual(tolerated.failures, [])
  // Bad words are a usage error.
  assert.throws(() => parseOptions(['conn', '--tolerate', 'loss,nothing']), /--tolerate takes loss, duplicates, reorder, connections or all \(comma-separated\), got 'nothing'/)
})

test('publishes the broker refuses (PUBACK 0x80 and above) fail the run (exit 4)', async (t) => {
  const fake = await fakeBroker(t, (p) => p.type === 'publish' ? [{ type: 'puback', packetId: p.packetId ?? 0, reasonCode: 0x87 }] : acksNothing(p))
  const r = await bench(['pub', '-p', String(fake.port), '-V', '5', '-q', '1', '-L', '5', '--json', '--quiet'])
  assert.equal(r.code, 4, `exit ${r.code}\n${r.stdout}`)
  const s = JSON.parse(r.stdout) as BenchSummary
  assert.equal(s.publish?.acked, 5)
  assert.deepEqual(s.errors, { 'puback: Not authorized': 5 })
  assert.deepEqual(s.failures, ['5 publishes were refused by the broker (their reason codes are under errors)'])
})

test('pubsub whose wait for messages on their way runs out while they still arrive says they may be late, not lost', async (t) => {
  // One message every 10 ms whatever the publisher's pace: 300 take 3 s, the wait gives 1 s.
  const port = String(await relayBroker(t, () => 1, (n) => 10 * (n % 300)))
  const r = await bench(['pubsub', '-p', port, '-L', '300', '--drain-timeout', '1', '--json', '--quiet'])
  assert.equal(r.code, 4, r.stdout)
  const s = JSON.parse(r.stdout) as BenchSummary
  const missing = s.receive?.missing ?? 0
  assert.ok(missing > 0 && s.receive?.stillArriving === true, JSON.stringify(s.receive))
  assert.deepEqual(s.failures, [`${missing} of the 300 messages due had not arrived when --drain-timeout ran out, with messages still arriving (QoS 0; --tolerate loss to pass)`])
  assert.match(formatSummary(s), /\n {14}the wait for messages on their way \(--drain-timeout\) ran out while they still arrived: some of these may be late, not lost/)
  // Given the time, they all come.
  const whole = summaryOf(await bench(['pubsub', '-p', port, '-L', '300', '--drain-timeout', '10', '--json', '--quiet']))
  assert.equal(whole.receive?.missing, 0)
  assert.equal(whole.receive?.stillArriving, undefined)
})
