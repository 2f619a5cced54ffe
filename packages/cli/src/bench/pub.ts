import type { ConnackPacket, QoS } from '@petrel/wire'
import type { RunContext } from './context.js'
import { PublishDriver } from './driver.js'
import { launch } from './launcher.js'
import { expandTopic } from './options.js'
import { PublishTemplate } from './publish-template.js'
import { Publisher } from './publisher.js'
import { RUN_ID } from './stamp.js'

/** A publisher and the promise of its end (all messages sent and acknowledged, or stopped and drained). */
export interface RunningPublisher {
  publisher: Publisher
  topicName: string
  finished: Promise<void>
  /**
   * Resolves once its count is sent (or it finished, or was lost): from then on the wait for
   * acknowledgements is the drain, bounded by --drain-timeout.
   */
  sent: Promise<void>
}

/** Resolves once every publisher has sent what it will send. */
export async function allSent (running: readonly RunningPublisher[]): Promise<void> {
  await Promise.all(running.map(async (r) => { await r.sent }))
}

/** Why the broker's CONNACK (5.0) rules out the publishes asked for, or undefined; said before any is sent, since each would get us disconnected. */
function limitProblem (connack: ConnackPacket, qos: QoS, payloadSize: number, topicName: string, packetBytes: number): string | undefined {
  // [MQTT-3.2.2-11] no PUBLISH above the broker's Maximum QoS.
  const maxQoS = connack.properties?.maximumQoS
  if (maxQoS !== undefined && qos > maxQoS) {
    return `the broker takes publishes of at most QoS ${maxQoS} (CONNACK Maximum QoS), and -q ${qos} was asked: use -q ${maxQoS}`
  }
  // [MQTT-3.2.2-15] no packet past the broker's Maximum Packet Size.
  const maxPacket = connack.properties?.maximumPacketSize
  if (maxPacket !== undefined && packetBytes > maxPacket) {
    return `the broker takes packets of at most ${maxPacket} bytes (CONNACK Maximum Packet Size), and a PUBLISH of ` +
      `-s ${payloadSize} on '${topicName}' is ${packetBytes} bytes: use -s ${Math.max(0, payloadSize - (packetBytes - maxPacket))} or less`
  }
  return undefined
}

/** Connects the publishers at the connection rate; each starts sending as soon as it is connected. */
export async function startPublishers (ctx: RunContext, driver: PublishDriver): Promise<RunningPublisher[]> {
  const o = ctx.options
  const started = await launch(o.clients, o.connRate, async (i): Promise<RunningPublisher | undefined> => {
    const index = o.startIndex + i
    const clientId = ctx.clientId('pub', index)
    const opened = await ctx.connect(clientId, i)
    if (opened === undefined) return undefined
    // 5.0: the broker's Receive Maximum caps the window [MQTT-3.3.4-7]
    const window = Math.min(o.inflight, opened.connack.properties?.receiveMaximum ?? 65535)
    const topicName = expandTopic(o.topic, index, clientId)
    const template = new PublishTemplate(topicName, o.payloadSize, o.qos, o.protocolVersion, { run: RUN_ID, publisher: index })
    const problem = limitProblem(opened.connack, o.qos, o.payloadSize, topicName, template.length)
    if (problem !== undefined) {
      if (!ctx.stopping) ctx.fail(problem)
      await ctx.closeOne(opened.conn)
      return undefined
    }
    const publisher = new Publisher(opened.conn, template, ctx.stats, { id: index, limit: o.limit, window })
    ctx.publishers.started++
    const finished = new Promise<void>((resolve) => {
      publisher.onFinished = resolve
      const lost = opened.conn.onLost
      opened.conn.onLost = (reason) => {
        lost?.(reason)
        ctx.publishers.lost++
        resolve()
      }
    })
    // Before the driver starts it: a small count goes out at once.
    const sent = Promise.race([finished, new Promise<void>((resolve) => { publisher.onAllSent = resolve })])
    if (ctx.stopping) publisher.stop()
    else driver.add(publisher)
    return { publisher, topicName, finished, sent }
  }, () => ctx.stopping, o.maxConnecting)
  return started.filter((p) => p !== undefined)
}

/** Stops the publishers and waits (at most `drainMs`, or until Ctrl-C) for their QoS 1/2 messages in flight. */
export async function stopPublishers (ctx: RunContext, driver: PublishDriver, running: RunningPublisher[], drainMs: number): Promise<void> {
  driver.stop()
  for (const r of running) r.publisher.stop()
  await Promise.race([Promise.all(running.map(async (r) => { await r.finished })), ctx.drainTime(drainMs)])
  let left = 0
  for (const r of running) if (r.publisher.conn.open) left += r.publisher.outstanding
  if (left > 0) {
    ctx.stats.error('publish: unacknowledged at the end of the run', left)
    // Cut short by the user, the drain proves nothing about the broker: counted, not failed.
    if (!ctx.interrupted) {
      ctx.fail(`${left.toLocaleString('en-US')} QoS ${ctx.options.qos} publishes were not acknowledged within --drain-timeout ${ctx.options.drainTimeout} s after the run`)
    }
  }
}

/** `bench pub`: publish until the count, the duration or Ctrl-C. */
export async function runPub (ctx: RunContext): Promise<void> {
  const driver = new PublishDriver(ctx.options.rate)
  const running = await startPublishers(ctx, driver)
  ctx.allStarted()
  await Promise.race([allSent(running), ctx.stopped()])
  await stopPublishers(ctx, driver, running, ctx.options.drainTimeout * 1000)
}
