// A hand-written broker for the client's tests: the only way to make a broker misbehave, or to
// show the exchanges mosquitto cannot (enhanced authentication, server references).
//
// It lives here, not in @petrel/test-utils: it needs @petrel/wire, whose own tests depend on
// test-utils, and project references may not form a cycle.
import { createServer, type Socket } from 'node:net'
import { Decoder, encode, type Packet } from '@petrel/wire'

/** One connection to a {@link scriptedBroker}. */
export interface ScriptedLink {
  /** 0 for the first connection, then 1, 2... */
  readonly index: number
  readonly socket: Socket
  /** What the client sent on it, in order. */
  readonly packets: Packet[]
  /** Writes a packet to the client; true, so that a script can `return link.send(...)`. */
  send (packet: Packet): true
}

/** Sees each packet the client sends; returns true when it has answered it (no default answer then). */
export type Script = (packet: Packet, link: ScriptedLink) => boolean

export interface ScriptedBroker {
  url: string
  /** Every connection, in the order they came. */
  links: ScriptedLink[]
  /** Closes the server and every connection. */
  close (): Promise<void>
}

/**
 * A broker on 127.0.0.1 (an ephemeral port) speaking `version`. `script` sees each packet first;
 * what it leaves alone gets a well-behaved answer: CONNACK (Session Present when the client
 * resumes a session it asked to keep), PUBACK / PUBREC / PUBCOMP, SUBACK granting the QoS asked
 * for, UNSUBACK with one code per filter, PINGRESP.
 */
export async function scriptedBroker (version: 4 | 5, script: Script): Promise<ScriptedBroker> {
  const links: ScriptedLink[] = []
  const server = createServer((socket) => {
    const link: ScriptedLink = {
      index: links.length,
      socket,
      packets: [],
      send: (p) => { socket.write(encode(p, version)); return true }
    }
    links.push(link)
    const dec = new Decoder({ protocolVersion: version })
    socket.on('data', (chunk) => {
      for (const p of dec.push(chunk)) {
        link.packets.push(p)
        if (!script(p, link)) answer(p, link, version)
      }
    })
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const port = (server.address() as { port: number }).port
  return {
    url: `mqtt://127.0.0.1:${port}`,
    links,
    close: async () => {
      for (const l of links) l.socket.destroy()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }
  }
}

function answer (p: Packet, link: ScriptedLink, version: 4 | 5): void {
  switch (p.type) {
    case 'connect': {
      // A session outlives its connection under 3.1.1 Clean Session 0, under 5.0 only with a
      // Session Expiry Interval (taken from this CONNECT: the client sends the same each time).
      const kept = version === 4 || (p.properties?.sessionExpiryInterval ?? 0) > 0
      link.send({ type: 'connack', sessionPresent: !p.cleanStart && kept && link.index > 0, reasonCode: 0 })
      break
    }
    case 'publish':
      if (p.qos === 1) link.send({ type: 'puback', packetId: p.packetId as number })
      if (p.qos === 2) link.send({ type: 'pubrec', packetId: p.packetId as number })
      break
    case 'pubrel': link.send({ type: 'pubcomp', packetId: p.packetId }); break
    case 'subscribe': link.send({ type: 'suback', packetId: p.packetId, reasonCodes: p.subscriptions.map((x) => x.qos) }); break
    case 'unsubscribe': link.send({ type: 'unsuback', packetId: p.packetId, reasonCodes: version === 5 ? p.topicFilters.map(() => 0) : undefined }); break
    case 'pingreq': link.send({ type: 'pingresp' }); break
    default: break
  }
}

/** The reason code of the DISCONNECT the client left a link with; null: it closed without one. */
export function disconnectReason (link: ScriptedLink | undefined): number | null {
  const d = link?.packets.find((p) => p.type === 'disconnect')
  return d?.type === 'disconnect' ? d.reasonCode ?? 0 : null
}
