import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { freePort, requirePeer, startMosquitto, type Mosquitto } from '@petrel/test-utils'
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
  const ws = parseOptions(['sub', '-L', 'wss://example.com', '-t', 'a/#'])
  assert.equal(ws?.target.url, 'wss://example.com:443/mqtt')
  assert.equal(ws?.subTopic, 'a/#')
  assert.equal(parseOptions(['pub', '--help']), undefined)
  assert.throws(() => parseOptions(['pub', '-q', '3']), UsageError)
  assert.throws(() => parseOptions(['flood']), UsageError)
  assert.throws(() => parseOptions(['pub', '-L', 'http://x']), UsageError)
  assert.throws(() => parseOptions(['pub', '--nope']), UsageError)
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

// --- against a real mosquitto -------------------------------------------------------------------

test('bench pubsub QoS 1: every message arrives once, with latency', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  const s = summaryOf(await bench(['pubsub', '-p', String(broker.port), '-c', '3', '--subs', '2', '-q', '1', '-n', '3000', '-s', '64', '--json']))
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
  assert.ok((s.receive?.perSecond ?? 0) > 0)
})

test('bench pubsub QoS 2 over MQTT 5.0 and QoS 0 over WebSocket', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  const q2 = summaryOf(await bench(['pubsub', '-p', String(broker.port), '-V', '5', '-q', '2', '-n', '2000', '--json']))
  assert.equal(q2.protocolVersion, 5)
  assert.equal(q2.receive?.received, 2000)
  assert.equal(q2.receive?.missing, 0)
  assert.equal(q2.receive?.duplicates, 0)
  assertSaneLatency(q2)
  assert.ok(broker.wsUrl !== undefined)
  const ws = summaryOf(await bench(['pubsub', '-L', `${broker.wsUrl}/`, '-n', '2000', '--rate', '20000', '--json']))
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
  const sub = bench(['sub', '-p', port, '-t', 'two/#', '-q', '1', '-n', '2000', '--duration', '20', '--json'], (err) => {
    if (/conns 1\/1/.test(err)) subscribed()
  })
  await ready
  const pub = summaryOf(await bench(['pub', '-p', port, '-t', 'two/%i', '-c', '2', '-q', '1', '-n', '1000', '--rate', '5000', '--json']))
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
  const r = await bench(['pub', '-p', String(broker.port), '-c', '2', '-n', '5000', '--quiet'])
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /published\s+10,000 sent/)
  assert.match(r.stdout, /errors\s+none/)
})

test('bench conn establishes N connections at the connection rate and reports connect times', async (t) => {
  const broker = await mosquitto(t)
  if (broker === undefined) return
  const s = summaryOf(await bench(['conn', '-p', String(broker.port), '-c', '200', '-R', '1000', '--duration', '1.5', '--json']))
  assert.equal(s.connections.attempted, 200)
  assert.equal(s.connections.established, 200)
  assert.equal(s.connections.failed, 0)
  assert.equal(s.connections.lost, 0)
  assert.equal(s.connections.connectMs.count, 200)
  assert.ok(s.connections.connectMs.p50 > 0 && s.connections.connectMs.p99 < 5000)
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
