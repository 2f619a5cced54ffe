/** A snapshot of the client's counters (`client.stats()`); all since the client was created. */
export interface ClientStats {
  /** Connections accepted by the broker (CONNACK success). */
  connects: number
  /** Attempts that failed (dial error, refusal, timeout). */
  connectFailures: number
  /** Accepted connections that ended. */
  disconnects: number
  /** Links declared dead for want of a PINGRESP. */
  pingTimeouts: number
  /**
   * Connections the client closed because the broker broke the protocol: a malformed packet (the
   * codec's error) or a PETREL_ERR_CLIENT_PROTOCOL_ERROR (v5: DISCONNECT 0x82, 0x93, 0x94...).
   */
  protocolErrors: number
  /** Publishes written for the first time: each publish() counts once at most, however often it is resent. */
  publishesSent: number
  /**
   * QoS 1/2 publishes completed by the broker (PUBACK, PUBCOMP, or a failure code; a QoS 2 one
   * past its PUBREC when the broker lost the session, which then resolves, too).
   */
  publishesAcked: number
  /** QoS 1/2 publishes holding a packet id right now. */
  inflight: number
  /**
   * Resends after a reconnect: with the session present, unacknowledged PUBLISHes (DUP set) and
   * PUBRELs; with the session lost (`sessionLostPolicy: 'republish'`), publishes written again
   * under a new packet id. Each resend counts, so a message resent twice counts twice.
   */
  publishesReplayed: number
  /** Publishes in the bounded request queue, waiting for the wire, right now. */
  queued: number
  /** Publishes waiting for room in that queue (`queuePolicy: 'block'`) right now. */
  blocked: number
  /** Inbound PUBLISH packets (duplicates of QoS 2 not counted). */
  messagesReceived: number
  /** Inbound messages dropped by subscription queues: full (`overflow`), or still queued when a `for await` loop left early (acked, never read). */
  messagesDropped: number
  /** Inbound messages no subscription matched and no `unrouted` listener took (acked, then dropped). */
  messagesUnrouted: number
  /** Inbound messages refused and never delivered (v5 PUBACK / PUBREC 0x97): more User Properties than `maxUserProperties`, or more than 65,535 Subscription Identifiers. */
  messagesRefused: number
  bytesIn: number
  bytesOut: number
}

const HELP: Record<keyof ClientStats, [string, 'counter' | 'gauge']> = {
  connects: ['Connections accepted by the broker', 'counter'],
  connectFailures: ['Connection attempts that failed', 'counter'],
  disconnects: ['Accepted connections that ended', 'counter'],
  pingTimeouts: ['Links declared dead after a ping timeout', 'counter'],
  protocolErrors: ['Connections closed because the broker broke the protocol', 'counter'],
  publishesSent: ['Publishes sent for the first time', 'counter'],
  publishesAcked: ['QoS 1/2 publishes completed by the broker', 'counter'],
  inflight: ['QoS 1/2 publishes in flight', 'gauge'],
  publishesReplayed: ['Publishes (and PUBRELs) resent after a reconnect, session present or lost', 'counter'],
  queued: ['Publishes in the request queue, waiting for the wire', 'gauge'],
  blocked: ['Publishes waiting for room in the request queue', 'gauge'],
  messagesReceived: ['PUBLISH packets received', 'counter'],
  messagesDropped: ['Messages dropped by subscription queues (full, or left unread by a loop that ended)', 'counter'],
  messagesUnrouted: ['Messages no subscription matched, dropped', 'counter'],
  messagesRefused: ['Messages refused with a failure ack (past maxUserProperties or 65,535 Subscription Identifiers), never delivered', 'counter'],
  bytesIn: ['Bytes read from the broker', 'counter'],
  bytesOut: ['Bytes written to the broker', 'counter']
}

function snake (name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
}

/** Prometheus text exposition format (version 0.0.4) of a stats snapshot. */
export function renderMetrics (stats: ClientStats, labels: Record<string, string> = {}): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
  const label = pairs.length === 0 ? '' : `{${pairs.join(',')}}`
  let out = ''
  for (const key of Object.keys(HELP) as Array<keyof ClientStats>) {
    const [help, type] = HELP[key]
    const name = `petrel_client_${snake(key)}${type === 'counter' ? '_total' : ''}`
    out += `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name}${label} ${stats[key]}\n`
  }
  return out
}
