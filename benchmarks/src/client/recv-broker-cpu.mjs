#!/usr/bin/env node
// Who bounds "Receive 50,000 QoS 1": the client or mosquitto? Receives through a fresh mosquitto
// (the client suite's settings) with @petrel/client and with the raw socket, in turns, and
// prints each run's rate and the share of a core mosquitto used meanwhile (/proc/PID/stat).
//
//   flock /tmp/petrel-bench.lock node benchmarks/src/client/recv-broker-cpu.mjs [--runs 2]
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { connect } from '@petrel/client'
import { findProgram, freePort } from '@petrel/test-utils'
import { cpuSeconds } from '../e2e/lib/proc.mjs'
import { encodePublishes, frame, puback, rawConnect, subscribePacket, writeAll, SUBACK_TYPE } from './raw.mjs'

const { values: v } = parseArgs({ options: { runs: { type: 'string', default: '2' } } })
const N = 50_000
const TOPIC = 'bench/recv'

const port = await freePort()
const dir = mkdtempSync(join(tmpdir(), 'petrel-recv-cpu-'))
const conf = join(dir, 'mosquitto.conf')
writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 100\nmax_queued_messages 1000000\nset_tcp_nodelay true\n`)
const broker = spawn(findProgram('mosquitto'), ['-c', conf], { stdio: 'ignore' })
await new Promise((resolve) => setTimeout(resolve, 500))

/** A subscriber at QoS 1; `onMessage` per message; returns its close function. */
async function subscriber (impl, onMessage) {
  if (impl === 'raw') {
    const s = await rawConnect(port)
    let subacked
    const ready = new Promise((resolve) => { subacked = resolve })
    frame(s, (type, qos, id) => {
      if (type === 3) {
        if (qos === 1) s.write(puback(id))
        onMessage()
      } else if (type === SUBACK_TYPE) subacked()
    })
    s.write(subscribePacket(TOPIC, 1))
    await ready
    return () => { s.destroy() }
  }
  const c = await connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4 })
  await c.subscribe(TOPIC, { qos: 1 }, onMessage)
  return async () => { await c.end({ force: true }) }
}

try {
  for (let run = 1; run <= Number(v.runs); run++) {
    for (const impl of ['petrel', 'raw']) {
      let n = 0
      let done
      const all = new Promise((resolve) => { done = resolve })
      const close = await subscriber(impl, () => { if (++n === N) done() })
      const pub = await rawConnect(port)
      frame(pub, () => {})
      const pre = encodePublishes(TOPIC, Buffer.alloc(64, 0x62), 1, N)
      const m0 = cpuSeconds(broker.pid)
      const t0 = performance.now()
      await writeAll(pub, pre)
      await all
      const s = (performance.now() - t0) / 1000
      const m = cpuSeconds(broker.pid) - m0
      console.log(`run ${run} ${impl}: ${Math.round(N / s)} msg/s, mosquitto CPU ${(m * 1000).toFixed(0)} ms (${(m / s * 100).toFixed(0)}% of a core)`)
      pub.destroy()
      await close()
    }
  }
} finally {
  broker.kill('SIGTERM')
  await once(broker, 'exit')
  rmSync(dir, { recursive: true, force: true })
}
