// Head-to-head: @petrel/wire against mqtt-packet (the codec inside MQTT.js and Aedes), same
// process, same run, same inputs. Each case is measured in packets per second: a warm-up, then
// ROUNDS timed rounds that alternate between the two codecs (so machine noise hits both alike);
// the median round is reported. Run with `npm run bench:wire --workspace benchmarks` (from the
// repository root after `npm run build`), or `node --expose-gc benchmarks/src/wire.mjs`.
//
// Environment: BENCH_ROUNDS (default 9), BENCH_ROUND_MS (default 250), BENCH_OUT (results file,
// default benchmarks/RESULTS-wire.md; set to '-' to skip writing).
import { createRequire } from 'node:module'
import { cpus } from 'node:os'
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import mqtt from 'mqtt-packet'
import { encode, Decoder } from '@petrel/wire'
import { prng } from './lib/prng.mjs'

const require = createRequire(import.meta.url)

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9)
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 250)

// --- inputs -------------------------------------------------------------------------------------

const smallPublish = { type: 'publish', topicName: 'sensors/kitchen/temp', payload: Buffer.from('21.5'), qos: 0, retain: false, dup: false }
const smallPublishMp = { cmd: 'publish', topic: 'sensors/kitchen/temp', payload: Buffer.from('21.5'), qos: 0, retain: false, dup: false }

const payload64 = Buffer.alloc(64, 0x61)
const v5Publish = {
  type: 'publish',
  topicName: 'factory/line-3/press/telemetry',
  payload: payload64,
  qos: 1,
  retain: false,
  dup: false,
  packetId: 4242,
  properties: { messageExpiryInterval: 3600, contentType: 'application/json', userProperties: [['trace-id', 'b7f3c9a1']] }
}
const v5PublishMp = {
  cmd: 'publish',
  topic: 'factory/line-3/press/telemetry',
  payload: payload64,
  qos: 1,
  retain: false,
  dup: false,
  messageId: 4242,
  properties: { messageExpiryInterval: 3600, contentType: 'application/json', userProperties: { 'trace-id': 'b7f3c9a1' } }
}

const subscribe = {
  type: 'subscribe',
  packetId: 7,
  subscriptions: [{ topicFilter: 'sensors/+/temp', qos: 1 }, { topicFilter: 'alerts/#', qos: 2 }]
}
const subscribeMp = {
  cmd: 'subscribe',
  messageId: 7,
  subscriptions: [{ topic: 'sensors/+/temp', qos: 1 }, { topic: 'alerts/#', qos: 2 }]
}
const suback = { type: 'suback', packetId: 7, reasonCodes: [1, 2] }
const subackMp = { cmd: 'suback', messageId: 7, granted: [1, 2] }

/** 10,000 mixed 3.1.1 packets in one byte stream, cut into the same random chunks for both codecs. */
function mixedStream () {
  const rnd = prng(0x5eed)
  const parts = []
  for (let i = 0; i < 10_000; i++) {
    const r = rnd()
    const id = 1 + Math.floor(rnd() * 65535)
    let p
    if (r < 0.45) {
      const size = [0, 4, 16, 64, 256, 1024, 4096][Math.floor(rnd() * 7)]
      const qos = rnd() < 0.5 ? 0 : 1
      p = { type: 'publish', topicName: `devices/dev-${i % 97}/state`, payload: Buffer.alloc(size, 0x30 + (i % 10)), qos, retain: rnd() < 0.1, dup: false, packetId: qos > 0 ? id : undefined }
    } else if (r < 0.7) p = { type: 'puback', packetId: id }
    else if (r < 0.78) p = { type: 'subscribe', packetId: id, subscriptions: [{ topicFilter: `devices/dev-${i % 97}/#`, qos: 1 }] }
    else if (r < 0.86) p = { type: 'suback', packetId: id, reasonCodes: [1] }
    else if (r < 0.9) p = { type: 'unsubscribe', packetId: id, topicFilters: [`devices/dev-${i % 97}/#`] }
    else if (r < 0.94) p = { type: 'unsuback', packetId: id }
    else if (r < 0.97) p = { type: 'pingreq' }
    else p = { type: 'pingresp' }
    parts.push(encode(p, 4))
  }
  const all = Buffer.concat(parts)
  const chunks = []
  for (let off = 0; off < all.length;) {
    const n = Math.min(all.length - off, 1 + Math.floor(rnd() * 2048))
    // Each chunk is its own Buffer, as a socket would deliver it.
    chunks.push(Buffer.from(all.subarray(off, off + n)))
    off += n
  }
  return { chunks, count: parts.length, bytes: all.length }
}

// --- harness ------------------------------------------------------------------------------------

let sink = 0

/** Runs `fn` (which handles `perCall` packets) for about `ms`; returns packets per second. */
function timed (fn, perCall, ms) {
  let calls = 0
  const start = performance.now()
  let now = start
  const deadline = start + ms
  while (now < deadline) {
    for (let i = 0; i < 64; i++) fn()
    calls += 64
    now = performance.now()
  }
  return (calls * perCall) / ((now - start) / 1000)
}

function median (xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

function compare (name, petrel, peer, perCall = 1) {
  // Warm-up: let both reach their optimised tiers before anything is timed.
  timed(petrel, perCall, ROUND_MS * 2)
  timed(peer, perCall, ROUND_MS * 2)
  const a = []
  const b = []
  for (let r = 0; r < ROUNDS; r++) {
    globalThis.gc?.()
    if (r % 2 === 0) { a.push(timed(petrel, perCall, ROUND_MS)); b.push(timed(peer, perCall, ROUND_MS)) } else { b.push(timed(peer, perCall, ROUND_MS)); a.push(timed(petrel, perCall, ROUND_MS)) }
  }
  return { name, petrel: median(a), peer: median(b), rounds: { petrel: a, peer: b } }
}

/** A check that both sides really decoded what was asked, so a broken case cannot look fast. */
function expectCount (what, got, want) {
  if (got !== want) throw new Error(`${what}: decoded ${got} packets, expected ${want}`)
}

// --- cases --------------------------------------------------------------------------------------

function decodeCase (name, bytes, version) {
  const dec = new Decoder({ protocolVersion: version, maxPacketSize: 1 << 20 })
  const parser = mqtt.parser({ protocolVersion: version })
  let n = 0
  parser.on('packet', (p) => { n++; sink += p.length })
  parser.on('error', (err) => { throw err })
  const petrel = () => { sink += dec.push(bytes).length }
  const peer = () => { parser.parse(bytes) }
  const check = dec.push(bytes).length
  expectCount(`${name} (petrel)`, check, 1)
  peer()
  expectCount(`${name} (mqtt-packet)`, n, 1)
  return compare(name, petrel, peer)
}

function streamCase () {
  const { chunks, count } = mixedStream()
  const run = {
    petrel: () => {
      const dec = new Decoder({ protocolVersion: 4 })
      let got = 0
      for (let i = 0; i < chunks.length; i++) got += dec.push(chunks[i]).length
      return got
    },
    peer: () => {
      const parser = mqtt.parser({ protocolVersion: 4 })
      let got = 0
      parser.on('packet', () => { got++ })
      parser.on('error', (err) => { throw err })
      for (let i = 0; i < chunks.length; i++) parser.parse(chunks[i])
      return got
    }
  }
  expectCount('stream (petrel)', run.petrel(), count)
  expectCount('stream (mqtt-packet)', run.peer(), count)
  return compare(`decode stream of ${count.toLocaleString('en')} mixed 3.1.1 packets, random chunks`,
    () => { sink += run.petrel() }, () => { sink += run.peer() }, count)
}

function encodeCase (name, packet, packetMp, version) {
  const a = encode(packet, version)
  const b = mqtt.generate(packetMp, { protocolVersion: version })
  if (a.length !== b.length) throw new Error(`${name}: petrel wrote ${a.length} bytes, mqtt-packet ${b.length}`)
  return compare(name, () => { sink += encode(packet, version).length }, () => { sink += mqtt.generate(packetMp, { protocolVersion: version }).length })
}

function roundTripCase (name, packet, packetMp, version) {
  const dec = new Decoder({ protocolVersion: version })
  const parser = mqtt.parser({ protocolVersion: version })
  parser.on('packet', (p) => { sink += p.length })
  parser.on('error', (err) => { throw err })
  const petrel = () => { sink += dec.push(encode(packet, version)).length }
  const peer = () => { parser.parse(mqtt.generate(packetMp, { protocolVersion: version })) }
  return compare(name, petrel, peer)
}

const results = [
  decodeCase('decode 3.1.1 QoS 0 PUBLISH (20-byte topic, 4-byte payload)', encode(smallPublish, 4), 4),
  decodeCase('decode 5.0 QoS 1 PUBLISH with 3 properties, 64-byte payload', encode(v5Publish, 5), 5),
  streamCase(),
  encodeCase('encode 3.1.1 QoS 0 PUBLISH (small)', smallPublish, smallPublishMp, 4),
  encodeCase('encode 5.0 QoS 1 PUBLISH with properties', v5Publish, v5PublishMp, 5),
  roundTripCase('SUBSCRIBE (2 filters) encode + decode, 3.1.1', subscribe, subscribeMp, 4),
  roundTripCase('SUBACK (2 codes) encode + decode, 3.1.1', suback, subackMp, 4)
]

// --- report -------------------------------------------------------------------------------------

const fmt = (x) => Math.round(x).toLocaleString('en')
const lines = [
  '| case | petrel ops/s | mqtt-packet ops/s | ratio |',
  '|---|---:|---:|---:|',
  ...results.map((r) => `| ${r.name} | ${fmt(r.petrel)} | ${fmt(r.peer)} | ${(r.petrel / r.peer).toFixed(2)}x |`)
]
const table = lines.join('\n')
process.stdout.write(`${table}\n`)
if (sink === 0.5) process.stdout.write('\n') // keeps `sink` observable

const mpVersion = require('mqtt-packet/package.json').version
const machine = [
  `- node ${process.version}, ${process.platform}/${process.arch}`,
  `- CPU: ${cpus()[0]?.model ?? 'unknown'} x ${cpus().length}`,
  `- mqtt-packet ${mpVersion}`,
  `- ${ROUNDS} alternating rounds of ${ROUND_MS} ms per codec after a warm-up; median round reported`
].join('\n')
const out = process.env.BENCH_OUT ?? fileURLToPath(new URL('../RESULTS-wire.md', import.meta.url))
if (out !== '-') {
  writeFileSync(out, `# @petrel/wire vs mqtt-packet\n\nPackets per second, higher is better; ratio = petrel / mqtt-packet.\n\n${table}\n\n` +
    `Command: \`npm run build && npm run bench:wire --workspace benchmarks\` (runs \`node --expose-gc src/wire.mjs\` in benchmarks/)\n\n` +
    `Machine:\n\n${machine}\n\nThe machine is shared and noisy: compare the ratios of one run, not absolute numbers across runs.\n`)
}
// The same results for the results page (benchmarks/src/report.mjs); BENCH_JSON_OUT='-' skips it.
const jsonOut = process.env.BENCH_JSON_OUT ?? fileURLToPath(new URL('../results/wire.json', import.meta.url))
if (jsonOut !== '-') {
  const result = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), rounds: xs.length })
  mkdirSync(dirname(jsonOut), { recursive: true })
  writeFileSync(jsonOut, JSON.stringify({
    suite: 'wire',
    command: 'node --expose-gc benchmarks/src/wire.mjs',
    date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model.trim() ?? 'unknown CPU', cores: cpus().length, node: `node ${process.version}` },
    versions: { node: process.version, 'mqtt-packet': mpVersion },
    notes: [`${ROUNDS} alternating rounds of ${ROUND_MS} ms per codec after a warm-up; median round (min-max).`],
    scenarios: results.map((r) => ({
      id: r.name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, ''),
      title: r.name,
      group: r.name.startsWith('decode') ? 'decode' : r.name.startsWith('encode') ? 'encode' : 'round-trip',
      metric: 'packets per second',
      unit: 'ops/s',
      higherIsBetter: true,
      results: { '@petrel/wire': result(r.rounds.petrel), 'mqtt-packet': result(r.rounds.peer) }
    }))
  }, null, 2) + '\n')
}
