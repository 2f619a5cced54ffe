import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import mqtt from 'mqtt'
import { hasProgram, requirePeer, startMosquitto, waitFor, type Mosquitto } from '@petrel/test-utils'
import { connect } from '../src/index.js'

// Petrel <-> MQTT.js through mosquitto, both directions, both protocol versions.

let broker: Mosquitto | undefined
before(async () => { if (hasProgram('mosquitto')) broker = await startMosquitto() })
after(async () => { await broker?.stop() })

for (const v of [4, 5] as const) {
  test(`v${v}: MQTT.js publishes to Petrel and Petrel publishes to MQTT.js (QoS 0/1/2)`, async (t) => {
    if (!requirePeer(t, 'mosquitto')) return
    const url = (broker as Mosquitto).url
    const other = await mqtt.connectAsync(url, { protocolVersion: v, reconnectPeriod: 0 })
    const petrel = await connect(url, { protocolVersion: v })
    try {
      const fromPetrel: string[] = []
      other.on('message', (topic, payload) => { fromPetrel.push(`${topic}:${payload.toString()}`) })
      await other.subscribeAsync(`interop/${v}/to-mqttjs`, { qos: 2 })
      const fromMqttjs: string[] = []
      await petrel.subscribe(`interop/${v}/to-petrel`, { qos: 2 }, (m) => { fromMqttjs.push(`${m.qos}:${m.payload.toString()}`) })
      for (const q of [0, 1, 2] as const) {
        await other.publishAsync(`interop/${v}/to-petrel`, `m${q}`, { qos: q })
        await petrel.publish(`interop/${v}/to-mqttjs`, `p${q}`, { qos: q })
      }
      await waitFor(() => fromPetrel.length === 3 && fromMqttjs.length === 3, { timeoutMs: 5000, message: `${fromPetrel.length}/${fromMqttjs.length}` })
      assert.deepEqual(fromMqttjs.sort(), ['0:m0', '1:m1', '2:m2'])
      assert.deepEqual(fromPetrel.sort(), [0, 1, 2].map((q) => `interop/${v}/to-mqttjs:p${q}`))
    } finally {
      await petrel.end()
      await other.endAsync()
    }
  })
}

test('MQTT 3.1.1 against mosquitto\'s default max_inflight_messages (20): 1,000 QoS 2 publishes fired at once all arrive exactly once', { timeout: 30_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  // The harness raises the limit to 100; a stock mosquitto sends PUBREC for a QoS 2 PUBLISH past
  // 20 in flight and then drops it (with a window of 100, 200 of 1,000 arrived).
  const stock = await startMosquitto({ stock: true })
  t.after(() => stock.stop())
  const url = `mqtt://127.0.0.1:${stock.port}`
  const sub = await connect(url, { protocolVersion: 4 })
  const pub = await connect(url, { protocolVersion: 4 })
  try {
    const seen = new Map<string, number>()
    await sub.subscribe('stock/q2', { qos: 2 }, (m) => { const k = m.payload.toString(); seen.set(k, (seen.get(k) ?? 0) + 1) })
    const N = 1000
    await Promise.all(Array.from({ length: N }, (_, i) => pub.publish('stock/q2', String(i), { qos: 2 })))
    await waitFor(() => seen.size === N, { timeoutMs: 10_000, message: `all ${N} delivered` }).catch((e: unknown) => { throw new Error(`${seen.size} of ${N}: ${String(e)}`) })
    assert.ok([...seen.values()].every((n) => n === 1), 'exactly once')
  } finally {
    await pub.end()
    await sub.end()
  }
})

test('MQTT 5 against a stock mosquitto (Receive Maximum 20, Nagle on): 10,000 QoS 1 publishes fired at once do not wait out a delayed TCP ACK per window', { timeout: 60_000 }, async (t) => {
  if (!requirePeer(t, 'mosquitto')) return
  // mosquitto sends the first PUBACK of a window and holds the rest until our TCP ACK; waiting for
  // a quarter of the window before writing again left the ACK to the kernel's 40 ms delay:
  // 10,000 took ~20 s (mosquitto_pub: under 1 s). The bound is generous, not a speed check.
  const stock = await startMosquitto({ stock: true })
  t.after(() => stock.stop())
  const pub = await connect(stock.url, { protocolVersion: 5 })
  try {
    const N = 10_000
    const started = performance.now()
    const results = await Promise.all(Array.from({ length: N }, (_, i) => pub.publish('stock/q1', String(i), { qos: 1 })))
    const ms = performance.now() - started
    assert.equal(results.length, N)
    assert.ok(ms < 8000, `${N} QoS 1 publishes took ${Math.round(ms)} ms`)
  } finally {
    await pub.end()
  }
})
