import { parseSharedSubscription } from '@petrel/wire'
import { BenchError, describeError } from './connection.js'
import type { RunContext } from './context.js'
import { launch } from './launcher.js'
import { expandTopic } from './options.js'
import { SequenceTracker, type Expected, type ReceiveResult } from './sequence-tracker.js'
import { Subscriber } from './subscriber.js'
import { mergeReports } from './summary.js'

const SUBSCRIBE_TIMEOUT_MS = 10_000

export interface RunningSubscriber {
  subscriber: Subscriber
  topicFilter: string
  /** Resolves once the subscriber's count is reached or its connection is lost (without a count, only on loss). */
  finished: Promise<void>
}

/**
 * Subscribers that receive as one: the members of one shared subscription (same ShareName and
 * filter), each message going to only one of them (MQTT 5.0 §4.8.2), or a subscriber alone.
 */
export interface Receiver {
  members: RunningSubscriber[]
  /** The filter messages are matched against: a shared one's without `$share/{ShareName}/`. */
  topicFilter: string
  shared: boolean
}

export function receiversOf (running: readonly RunningSubscriber[]): Receiver[] {
  const out: Receiver[] = []
  const groups = new Map<string, Receiver>()
  for (const r of running) {
    const share = parseSharedSubscription(r.topicFilter)
    if (share === undefined) {
      out.push({ members: [r], topicFilter: r.topicFilter, shared: false })
      continue
    }
    let g = groups.get(r.topicFilter)
    if (g === undefined) {
      g = { members: [], topicFilter: share.topicFilter, shared: true }
      groups.set(r.topicFilter, g)
      out.push(g)
    }
    g.members.push(r)
  }
  return out
}

/** Connects and subscribes `count` subscribers at the connection rate. */
export async function startSubscribers (ctx: RunContext, count: number, limit: number): Promise<RunningSubscriber[]> {
  const o = ctx.options
  const started = await launch(count, o.connRate, async (i): Promise<RunningSubscriber | undefined> => {
    const index = o.startIndex + i
    const clientId = ctx.clientId('sub', index)
    const opened = await ctx.connect(clientId, i)
    if (opened === undefined) return undefined
    const subscriber = new Subscriber(opened.conn, ctx.stats, limit)
    let subscribed = false
    const finished = new Promise<void>((resolve) => {
      subscriber.onFinished = resolve
      // A lost subscriber never reaches its count: it is done (counted as lost by ctx.connect's handler).
      const lost = opened.conn.onLost
      opened.conn.onLost = (reason) => {
        lost?.(reason)
        if (subscribed) ctx.subscribers.lost++
        resolve()
      }
    })
    const topicFilter = expandTopic(o.subTopic, index, clientId)
    try {
      await subscriber.subscribe(topicFilter, o.qos, SUBSCRIBE_TIMEOUT_MS, ctx.signal)
    } catch (err) {
      // A subscription cut short by the end of the run is no failure of the broker.
      if (!(err instanceof BenchError && err.cancelled)) {
        ctx.stats.subscribeFailed++
        ctx.stats.error(err instanceof BenchError ? err.message : `subscribe: ${describeError(err)}`)
      }
      await ctx.closeOne(opened.conn)
      return undefined
    }
    ctx.stats.subscribed++
    ctx.subscribers.started++
    subscribed = true
    return { subscriber, topicFilter, finished }
  }, () => ctx.stopping, o.maxConnecting)
  return started.filter((s) => s !== undefined)
}

/** `bench sub`: receive until every subscriber has its count, the duration, or Ctrl-C. */
export async function runSub (ctx: RunContext): Promise<ReceiveResult> {
  const o = ctx.options
  const running = await startSubscribers(ctx, o.clients, o.limit)
  ctx.allStarted()
  // Without a count the run ends by the stop flag alone (duration, Ctrl-C, no connection left).
  const allDone = o.limit > 0 ? Promise.all(running.map(async (r) => { await r.finished })) : ctx.stopped()
  await Promise.race([allDone, ctx.stopped()])
  return finishReceiving(receiversOf(running))
}

/**
 * Stops the subscribers counting and takes their reports, so that the totals and the
 * per-publisher rows describe the same messages (some still arrive until the DISCONNECT).
 */
export function finishReceiving (receivers: readonly Receiver[], expected?: readonly Expected[]): ReceiveResult {
  for (const g of receivers) for (const m of g.members) m.subscriber.stopCounting()
  const reports = receivers.flatMap((g, i) => SequenceTracker.union(g.members.map((m) => m.subscriber.tracker)).report(expected?.[i]))
  // Without stamps there are no per-publisher tracks: each receiver that got something is one stream.
  const tracked = reports.filter((r) => r.received > 0).length
  const streams = tracked > 0 ? tracked : receivers.filter((g) => g.members.some((m) => m.subscriber.received > 0)).length
  return { reports: mergeReports(reports), sharedGroups: receivers.filter((g) => g.shared).length, streams }
}
