import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Counter, Gauge, Registry } from 'prom-client'
import type { Broker } from './broker.js'
import { DropReason } from './stats.js'

/**
 * Prometheus metrics over the broker's plain counters: nothing is incremented through
 * prom-client on the hot path; every value is read in `collect()` when scraped.
 */
export function createMetricsRegistry (broker: Broker): Registry {
  const registry = new Registry()
  const s = broker.stats
  const gauge = (name: string, help: string, read: () => number): void => {
    registry.registerMetric(new Gauge({ name, help, registers: [], collect () { this.set(read()) } }))
  }
  const counter = (name: string, help: string, labelNames: string[], read: (set: (labels: Record<string, string>, v: number) => void) => void): void => {
    registry.registerMetric(new Counter({
      name, help, labelNames, registers: [],
      collect () {
        this.reset()
        read((labels, v) => { this.inc(labels, v) })
      }
    }))
  }
  gauge('petrel_clients_connected', 'Clients connected now', () => broker.online.size)
  gauge('petrel_connections_open', 'Network connections open now (CONNECT or not)', () => broker.connections.size)
  gauge('petrel_sessions', 'Sessions held, online or offline', () => broker.sessions.size)
  gauge('petrel_subscriptions', 'Subscriptions', () => broker.router.subscriptionCount)
  gauge('petrel_retained_messages', 'Retained messages', () => broker.retained.size)
  gauge('petrel_retained_bytes', 'Bytes of retained messages (payload + topic)', () => broker.retained.bytes)
  gauge('petrel_queued_messages', 'Messages queued across sessions', () => sum(broker, 'queueLength'))
  gauge('petrel_queued_bytes', 'Bytes queued across sessions', () => sum(broker, 'queueBytes'))
  gauge('petrel_inflight_messages', 'QoS 1/2 messages in flight to clients', () => sum(broker, 'inflightCount'))
  gauge('petrel_inflight_bytes', 'Bytes of QoS 1/2 messages in flight to clients', () => sum(broker, 'inflightByteCount'))
  registry.registerMetric(new Gauge({
    name: 'petrel_publishers_paused',
    help: 'Clients held back now, by reason: flow_control (a QoS 1/2 publisher whose acks are held and PUBLISHes wait unrouted: a subscriber it reached is past half its queue), not_reading (input not read: the client does not read what it is sent)',
    labelNames: ['reason'],
    registers: [],
    collect () {
      let flowControl = 0
      let notReading = 0
      for (const c of broker.connections) {
        if (c.flowControlled) flowControl++
        if (c.transport.backlogged) notReading++
      }
      this.set({ reason: 'flow_control' }, flowControl)
      this.set({ reason: 'not_reading' }, notReading)
    }
  }))
  counter('petrel_messages_received_total', 'PUBLISH received from clients', ['qos'], (set) => { s.messagesIn.forEach((v, q) => { set({ qos: String(q) }, v) }) })
  counter('petrel_messages_sent_total', 'PUBLISH sent to clients', ['qos'], (set) => { s.messagesOut.forEach((v, q) => { set({ qos: String(q) }, v) }) })
  counter('petrel_bytes_received_total', 'Bytes received', [], (set) => { set({}, s.bytesIn) })
  counter('petrel_bytes_sent_total', 'PUBLISH bytes sent', [], (set) => { set({}, s.bytesOut) })
  counter('petrel_connections_total', 'Sockets accepted and given a place under max_connections (tls/ws/wss: before their handshake)', [], (set) => { set({}, s.connectionsTotal) })
  counter('petrel_connections_rejected_total', 'Sockets closed at accept, not in connections_total: max_connections reached by CONNACKed clients', [], (set) => { set({}, s.connectionsRejected) })
  counter('petrel_connections_evicted_total', 'Of connections_total, sockets without CONNACK (or in their handshake) closed to make room for a new one at max_connections', [], (set) => { set({}, s.connectionsEvicted) })
  counter('petrel_connect_refused_total', 'CONNECTs refused', [], (set) => { set({}, s.connectRefused) })
  counter('petrel_protocol_errors_total', 'Connections closed for bad input', [], (set) => { set({}, s.protocolErrors) })
  counter('petrel_flow_control_holds_total', 'QoS 1/2 publishers held back because a subscriber was behind', [], (set) => { set({}, s.flowControlHolds) })
  counter('petrel_retained_refused_total', 'Retained publishes not stored (retained store full), still delivered', [], (set) => { set({}, s.retainedRefused) })
  counter('petrel_subscription_quota_exceeded_total', 'Topic filters refused (SUBACK 0x97 / 0x80): the session held max_subscriptions_per_session', [], (set) => { set({}, s.subscriptionQuotaExceeded) })
  counter('petrel_control_packets_too_large_total', 'CONNACK, SUBACK, PUBACK... not sent: larger than the client\'s Maximum Packet Size', [], (set) => { set({}, s.controlPacketsTooLarge) })
  counter('petrel_sessions_refused_total', 'CONNECTs refused (0x97 / 0x03): a new persistent session past max_sessions', [], (set) => { set({}, s.sessionsRefused) })
  counter('petrel_file_descriptors_exhausted_total', 'Times the broker found the process out of file descriptors (EMFILE/ENFILE; checked each second): meanwhile new clients are closed as they connect', [], (set) => { set({}, s.fdExhausted) })
  counter('petrel_wills_sent_early_total', 'Wills sent without their delay: max_delayed_will_bytes reached', [], (set) => { set({}, s.willsSentEarly) })
  gauge('petrel_offline_queued_bytes', 'Bytes queued for sessions while they were offline (max_offline_queued_bytes)', () => broker.offlineQueuedBytes)
  gauge('petrel_delayed_will_bytes', 'Bytes of wills waiting out their Will Delay Interval', () => broker.delayedWillBytes)
  counter('petrel_keepalive_timeouts_total', 'Clients dropped for keepalive', [], (set) => { set({}, s.keepaliveTimeouts) })
  counter('petrel_hook_errors_total', 'Hook calls that threw, rejected or gave no usable answer (their request failed)', [], (set) => { set({}, s.hookErrors) })
  counter('petrel_hook_timeouts_total', 'Hook calls that did not settle within hook_timeout_ms (their request failed)', [], (set) => { set({}, s.hookTimeouts) })
  counter('petrel_messages_dropped_total', 'Messages not delivered to one subscriber, or refused from their publisher (not_authorized, hook_timeout, hook_error, payload_format_invalid, topic_invalid, user_properties_exceeded), by reason', ['reason'], (set) => {
    for (const r of Object.values(DropReason)) set({ reason: r }, s.drops[r])
  })
  return registry
}

function sum (broker: Broker, field: 'queueLength' | 'queueBytes' | 'inflightCount' | 'inflightByteCount'): number {
  let n = 0
  for (const session of broker.sessions.values()) n += session[field]
  return n
}

export interface MetricsServer {
  readonly port: number
  close (): Promise<void>
}

/** Serves `GET /metrics` (Prometheus text format). */
export async function startMetricsServer (broker: Broker, host: string, port: number): Promise<MetricsServer> {
  const registry = createMetricsRegistry(broker)
  const server: Server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end()
      return
    }
    registry.metrics().then((text) => {
      res.writeHead(200, { 'content-type': registry.contentType }).end(text)
    }, () => { res.writeHead(500).end() })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { resolve() })
  })
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => { await new Promise<void>((resolve) => { server.close(() => { resolve() }) }) }
  }
}
