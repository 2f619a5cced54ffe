#!/usr/bin/env node
// CPU time of @petrel/client publishing over ws:// with ws's JavaScript frame masking and with the
// native `bufferutil` (the decision in packages/client/README.md, WebSocket section). Each run is
// a child process (its own CPU time), the two kinds alternating; medians of `runs`.
//
//   npm install --no-save bufferutil        (ws picks it up; WS_NO_BUFFER_UTIL=1 turns it off)
//   flock /tmp/petrel-bench.lock node benchmarks/src/client/ws-mask.mjs [runs, default 7]
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const SELF = fileURLToPath(import.meta.url)

if (process.argv[2] === '--child') {
  // One run: `count` QoS 0 publishes of `size` bytes, awaited 1,000 at a time with a QoS 1 barrier.
  const { connect } = await import('@petrel/client')
  const [url, size, count] = [process.argv[3], Number(process.argv[4]), Number(process.argv[5])]
  const c = await connect(url, { protocolVersion: 4 })
  const payload = Buffer.alloc(size, 1)
  for (let i = 0; i < 2000; i++) c.publish('bench/ws', payload)
  await c.publish('bench/ws', 'b', { qos: 1 })
  const cpu0 = process.cpuUsage()
  for (let i = 0; i < count; i += 1000) {
    const ps = []
    for (let j = 0; j < 1000 && i + j < count; j++) ps.push(c.publish('bench/ws', payload))
    await Promise.all(ps)
    await c.publish('bench/ws', 'b', { qos: 1 })
  }
  const cpu = process.cpuUsage(cpu0)
  await c.end()
  console.log((cpu.user + cpu.system) / 1000)
} else {
  // Resolved as ws resolves it (from the client's ws).
  const wsRequire = createRequire(createRequire(import.meta.url).resolve('ws'))
  try { wsRequire('bufferutil') } catch { console.error('bufferutil is not installed: npm install --no-save bufferutil'); process.exit(1) }
  const { startMosquitto } = await import('@petrel/test-utils')
  const m = await startMosquitto({ websockets: true })
  const url = `ws://127.0.0.1:${m.wsPort}/`
  const cases = [[64, 200_000], [1024, 100_000], [16 * 1024, 10_000], [256 * 1024, 800]]
  const runs = Number(process.argv[2] ?? 7)
  const res = new Map(cases.map(([size]) => [size, { js: [], native: [] }]))
  try {
    for (let r = 0; r < runs; r++) {
      for (const [size, count] of cases) {
        for (const kind of r % 2 === 0 ? ['js', 'native'] : ['native', 'js']) {
          const env = { ...process.env }
          if (kind === 'js') env.WS_NO_BUFFER_UTIL = '1'
          else delete env.WS_NO_BUFFER_UTIL
          const out = spawnSync(process.execPath, [SELF, '--child', url, String(size), String(count)], { env, encoding: 'utf8' })
          if (out.status !== 0) throw new Error(out.stderr)
          res.get(size)[kind].push(Number(out.stdout.trim()))
        }
      }
    }
  } finally {
    await m.stop()
  }
  const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]
  console.log('| payload x messages | JavaScript masking | bufferutil | ratio |\n|---|---|---|---|')
  for (const [size, count] of cases) {
    const { js, native } = res.get(size)
    console.log(`| ${size} B x ${count.toLocaleString('en')} | ${med(js).toFixed(0)} ms | ${med(native).toFixed(0)} ms | ${(med(native) / med(js)).toFixed(2)} |`)
  }
}
