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
  /** Resolves `finished` now: the run gives up waiting for its count (sub -L, nothing more arriving). */
  giveUp: () => void
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
    let giveUp = (): void => {}
    const finished = new Promise<void>((resolve) => {
      giveUp = resolve
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
    return { subscriber, topicFilter, finished, giveUp }
  }, () => ctx.stopping, o.maxConnecting)
  return started.filter((s) => s !== undefined)
}

/**
 * `bench sub`: receive until every subscriber has its count, the duration, or Ctrl-C. With a
 * count (-L), a receiver that has had messages and then none for --drain-timeout gives up: its
 * publishers are done, and what it is short of its count will not come (the run says so and
 * fails unless --tolerate loss). One that has had nothing yet waits on, as mosquitto_sub -C does.
 */
export async function runSub (ctx: RunContext): Promise<ReceiveResult> {
  const o = ctx.options
  const running = await startSubscribers(ctx, o.clients, o.limit)
  ctx.allStarted()
  const receivers = receiversOf(running)
  if (o.limit > 0) {
    const idle = o.drainTimeout > 0 ? new IdleWatch(receivers, o.limit, o.drainTimeout * 1000) : undefined
    await Promise.race([Promise.all(running.map(async (r) => { await r.finished })), ctx.stopped()])
    idle?.stop()
    const result = finishReceiving(receivers)
    const short = idle?.shortfall()
    return short === undefined ? result : { ...result, shortOfLimit: { ...short, limit: o.limit, idleSeconds: o.drainTimeout } }
  }
  // Without a count the run ends by the stop flag alone (duration, Ctrl-C, no connection left).
  await ctx.stopped()
  return finishReceiving(receivers)
}

/**
 * Gives up on receivers that stopped receiving short of their count: checked a few times per
 * `idleMs`. A share group is one receiver: its members split the messages unevenly, so the group
 * is short only when all of them together are short of the count of each times their number.
 */
class IdleWatch {
  private readonly idle = new Set<Receiver>()
  private readonly timer: NodeJS.Timeout

  constructor (private readonly receivers: readonly Receiver[], private readonly limit: number, private readonly idleMs: number) {
    this.timer = setInterval(() => { this.check() }, Math.min(250, Math.max(10, idleMs / 4)))
    // The connections hold the process while the run waits, not this timer.
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
  }

  /** The receivers given up on that are short of their count, and by how many messages; undefined when none is. */
  shortfall (): { receivers: number, received: number, due: number } | undefined {
    let receivers = 0
    let received = 0
    let due = 0
    for (const g of this.idle) {
      // A member whose connection was lost is counted with the connections, not here.
      const alive = g.members.filter((m) => m.subscriber.conn.open)
      const got = alive.reduce((n, m) => n + m.subscriber.received, 0)
      if (got >= this.limit * alive.length) continue
      receivers++
      received += got
      due += this.limit * alive.length
    }
    return receivers === 0 ? undefined : { receivers, received, due }
  }

  private check (): void {
    const now = performance.now()
    for (const g of this.receivers) {
      if (this.idle.has(g)) continue
      const waiting = g.members.filter((m) => m.subscriber.conn.open && m.subscriber.received < this.limit)
      if (waiting.length === 0) continue
      const last = g.members.reduce((t, m) => Math.max(t, m.subscriber.lastReceivedAt), 0)
      if (last === 0 || now - last < this.idleMs) continue
      this.idle.add(g)
      for (const m of waiting) m.giveUp()
    }
  }
}

/**
 * Stops the subscribers counting and takes their reports, so that the totals and the
 * per-publisher rows describe the same messages (some still arrive until the DISCONNECT).
 */
export function finishReceiving (receivers: readonly Receiver[], expected?: readonly Expected[]): ReceiveResult {
  for (const g of receivers) for (const m of g.members) m.subscriber.stopCounting()
  const perReceiver = receivers.map((g, i) => SequenceTracker.union(g.members.map((m) => m.subscriber.tracker)).report(expected?.[i]))
  const reports = perReceiver.flat()
  // Without stamps there are no per-publisher tracks: each receiver that got something is one stream.
  const tracked = reports.filter((r) => r.received > 0).length
  const streams = tracked > 0 ? tracked : receivers.filter((g) => g.members.some((m) => m.subscriber.received > 0)).length
  const outOfOrderShared = perReceiver.reduce((n, rows, i) => receivers[i]?.shared === true ? rows.reduce((k, r) => k + r.outOfOrder, n) : n, 0)
  return { reports: mergeReports(reports), sharedGroups: receivers.filter((g) => g.shared).length, streams, outOfOrderShared }
}
