import type { Packet } from '@petrel/wire'
import type { BenchConnection, PacketSink } from './connection.js'
import type { RunContext } from './context.js'
import { launch } from './launcher.js'

/** A connection that only holds: PINGRESP is dropped, a DISCONNECT ends it. */
class IdleSink implements PacketSink {
  constructor (private readonly conn: BenchConnection) {}

  onPackets (packets: readonly Packet[]): void {
    for (const p of packets) if (p.type === 'disconnect') this.conn.disconnected(p.reasonCode)
  }
}

/** `bench conn`: open the connections at the connection rate and hold them until the duration or Ctrl-C. */
export async function runConn (ctx: RunContext): Promise<void> {
  const o = ctx.options
  await launch(o.clients, o.connRate, async (i) => {
    const opened = await ctx.connect(ctx.clientId('conn', o.startIndex + i), i)
    if (opened !== undefined) opened.conn.sink = new IdleSink(opened.conn)
  }, () => ctx.stopping, o.maxConnecting)
  ctx.allStarted()
  await ctx.stopped()
}
