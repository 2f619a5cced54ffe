import type { PublishProperties, QoS } from '@petrel/wire'

/** Book-keeping of one inbound QoS 1/2 PUBLISH until its PUBACK/PUBREC may be sent. */
export interface InboundAck {
  readonly packetId: number
  readonly qos: 1 | 2
  /** Subscriptions that still have to ack before the PUBACK/PUBREC goes out. */
  pending: number
  done: boolean
  /** The connection it arrived on; acks of an earlier connection are never sent on a later one. */
  readonly epoch: number
  /** v5: a failure reason code to ack with (the message was refused); undefined: Success. */
  readonly reasonCode?: number | undefined
}

/** The part of the session a message calls back into when acked. */
export interface InboundAckSink {
  ackInbound (record: InboundAck): void
}

/**
 * A message delivered to a subscription. `payload` is a view into the bytes read from the
 * socket: copy it (`Buffer.from(msg.payload)`) to keep it for long without pinning that chunk.
 */
export class Message {
  readonly topic: string
  readonly payload: Buffer
  readonly qos: QoS
  readonly retain: boolean
  /** The broker says it may have sent this message before [MQTT-3.3.1-1]. */
  readonly dup: boolean
  /** The PUBLISH packet's identifier (QoS 1/2); 0 for QoS 0. */
  readonly packetId: number
  /** MQTT 5 properties as received (subscriptionIdentifiers, responseTopic, userProperties...). */
  readonly properties: PublishProperties | undefined
  private record: InboundAck | undefined
  private readonly sink: InboundAckSink | undefined

  /** @internal Created by the client session. */
  constructor (topic: string, payload: Buffer, qos: QoS, retain: boolean, dup: boolean, packetId: number,
    properties: PublishProperties | undefined, record: InboundAck | undefined, sink: InboundAckSink | undefined) {
    this.topic = topic
    this.payload = payload
    this.qos = qos
    this.retain = retain
    this.dup = dup
    this.packetId = packetId
    this.properties = properties
    this.record = record
    this.sink = sink
  }

  /** Whether `ack()` still has something to do (a manual-ack QoS 1/2 message not yet acked). */
  get needsAck (): boolean {
    return this.record !== undefined
  }

  /**
   * Acknowledges the message (PUBACK for QoS 1, PUBREC for QoS 2) on manual-ack subscriptions.
   * Idempotent; a no-op for QoS 0 and auto-ack subscriptions. Acks go out in the order the
   * messages arrived [MQTT-4.6.0-2], so an early unacked message holds back later acks.
   */
  ack (): void {
    const record = this.record
    if (record === undefined) return
    this.record = undefined
    this.sink?.ackInbound(record)
  }
}
