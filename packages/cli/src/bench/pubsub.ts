import { setTimeout as sleep } from 'node:timers/promises'
import { topicMatches } from '@petrel/wire'
import type { RunContext } from './context.js'
import { PublishDriver } from './driver.js'
import { allSent, startPublishers, stopPublishers, type RunningPublisher } from './pub.js'
import type { Expected, ReceiveResult } from './sequence-tracker.js'
import { RUN_ID, STAMP_BYTES } from './stamp.js'
import { finishReceiving, receiversOf, startSubscribers, type Receiver } from './sub.js'

const POLL_MS = 20
/** The drain ends early once nothing has arrived for this long (QoS 0 losses never arrive). */
const IDLE_MS = 1000

/**
 * For each receiver, the messages each publisher (of this run) sent that its filter matches: a
 * share group is one receiver, matched by the filter after `$share/{ShareName}/`.
 */
function expectations (receivers: Receiver[], pubs: RunningPublisher[]): Expected[] {
  return receivers.map((r) => {
    const m = new Map<number, number>()
    for (const p of pubs) {
      if (topicMatches(r.topicFilter, p.topicName)) m.set(p.publisher.id, (m.get(p.publisher.id) ?? 0) + p.publisher.seq)
    }
    return { run: RUN_ID, sent: m }
  })
}

/**
 * `bench pubsub`: subscribers first (all subscribed), then publishers; once the publishers are
 * done, waits for what is still on its way, and reports loss against what was really sent.
 */
export async function runPubSub (ctx: RunContext): Promise<ReceiveResult> {
  const o = ctx.options
  const subs = await startSubscribers(ctx, o.subscribers, 0)
  const driver = new PublishDriver(o.rate)
  let pubs: RunningPublisher[] = []
  if (!ctx.stopping) {
    pubs = await startPublishers(ctx, driver)
    ctx.allStarted()
    await Promise.race([allSent(pubs), ctx.stopped()])
  }
  await stopPublishers(ctx, driver, pubs, o.drainTimeout * 1000)
  const receivers = receiversOf(subs)
  const expected = expectations(receivers, pubs)
  const total = expected.reduce((n, e) => n + [...e.sent.values()].reduce((a, b) => a + b, 0), 0)
  const deadline = performance.now() + o.drainTimeout * 1000
  // Duplicates are no part of what is due: counted, they would end the wait before the rest came.
  while (ctx.stats.received - ctx.stats.duplicatesSeen < total && performance.now() < deadline && !ctx.interrupted) {
    const last = ctx.stats.lastReceivedAt
    if (performance.now() - Math.max(last, ctx.stats.lastSentAt) > IDLE_MS) break
    await sleep(POLL_MS)
  }
  // Cut by --drain-timeout while messages still came in: what is missing may only be late.
  const now = performance.now()
  const stillArriving = !ctx.interrupted && ctx.stats.received - ctx.stats.duplicatesSeen < total && now >= deadline &&
    now - ctx.stats.lastReceivedAt <= IDLE_MS
  const received = { ...finishReceiving(receivers, expected), stillArriving }
  // Payloads too small for the stamp carry no sequence numbers: only the counts can be compared.
  if (o.payloadSize < STAMP_BYTES) {
    // No stamps, no tracks: the streams are the (receiver, publisher) pairs that should deliver.
    const streams = expected.reduce((n, e) => n + [...e.sent.values()].filter((sent) => sent > 0).length, 0)
    return { ...received, reports: [], expected: total, streams }
  }
  return { ...received, expected: total }
}
