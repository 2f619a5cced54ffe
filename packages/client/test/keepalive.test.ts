import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Keepalive, KeepaliveAction } from '../src/keepalive.js'

test('ping when either direction is idle for the interval; timeout after the ping timeout', () => {
  const ka = new Keepalive(60_000, 0)
  assert.equal(ka.pingTimeoutMs, 10_000)
  ka.sent(30_000) // outbound traffic alone does not postpone the ping: inbound has been idle
  assert.equal(ka.nextDeadline(), 60_000)
  assert.equal(ka.poll(59_999), KeepaliveAction.none)
  assert.equal(ka.poll(60_000), KeepaliveAction.ping)
  assert.equal(ka.nextDeadline(), 70_000)
  assert.equal(ka.poll(69_999), KeepaliveAction.none)
  assert.equal(ka.poll(70_000), KeepaliveAction.timeout)
})

test('any inbound packet answers the ping', () => {
  const ka = new Keepalive(10_000, 0)
  assert.equal(ka.pingTimeoutMs, 5_000, 'min(10 s, ka/2)')
  assert.equal(ka.poll(10_000), KeepaliveAction.ping)
  ka.received(10_500)
  assert.equal(ka.poll(14_000), KeepaliveAction.none)
  assert.equal(ka.nextDeadline(), 20_000)
})

test('a dead link is detected within keepalive + ping timeout', () => {
  const ka = new Keepalive(4_000, 0)
  let t = 0
  let dead = -1
  while (t < 20_000 && dead < 0) {
    t = ka.nextDeadline()
    const a = ka.poll(t)
    if (a === KeepaliveAction.timeout) dead = t
    else ka.sent(t)
  }
  assert.equal(dead, 6_000)
})

test('interval 0 disables keepalive', () => {
  const ka = new Keepalive(0, 0)
  assert.equal(ka.nextDeadline(), Infinity)
  assert.equal(ka.poll(1e9), KeepaliveAction.none)
})
