import { encode, propertiesCost, type PublishPacket, type PublishProperties, type QoS, type Will } from '@petrel/wire'

/** Anything that can be the origin of a message, for no-local [MQTT-3.8.3-3]. */
export type Origin = object

/**
 * One application message as routed by the broker. Encoded once per wire variant
 * (protocol 4/5 x QoS x RETAIN) and those bytes shared by every subscriber that takes that
 * variant; QoS 1/2 copies patch the packet identifier in place instead of re-encoding.
 *
 *   template: | 0x3? | remaining length | topic len | topic | packet id | props | payload |
 *                                                           ^ idOffset (QoS > 0)
 */
export class Message {
  payload: Buffer
  properties: PublishProperties | undefined
  /** Owned copies: the payload no longer points into a socket chunk. */
  private owned = false
  private templates: Array<Buffer | undefined> | undefined
  private topicBytes = -1
  /** `propertiesCost(properties)`, computed on the first `size` (-1: not yet). */
  private propertiesBytes = -1

  constructor (
    readonly topic: string,
    payload: Uint8Array,
    readonly qos: QoS,
    readonly retain: boolean,
    /** Publish properties as forwarded (no Topic Alias, no Subscription Identifiers, no expiry). */
    properties: PublishProperties | undefined,
    /** Epoch ms after which the message is not delivered; 0 never [MQTT-3.3.2-5]. */
    readonly expiresAt: number,
    readonly from: Origin | undefined
  ) {
    this.payload = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
    this.properties = properties
  }

  /**
   * The message a will becomes when it is published, at `now`. Its Message Expiry Interval is
   * the lifetime from then, not from the disconnect (§3.1.3.2.4: it "is sent as the Publication
   * Expiry Interval when the Server publishes the Will Message"): counted from the disconnect, a
   * will delayed at least as long as its expiry was never delivered, and others lost the delay
   * from their lifetime.
   */
  static fromWill (will: Will, now: number, from: Origin | undefined): Message {
    let props: PublishProperties | undefined
    let expiresAt = 0
    if (will.properties !== undefined) {
      const { willDelayInterval: _d, messageExpiryInterval, ...rest } = will.properties
      props = rest
      if (messageExpiryInterval !== undefined) expiresAt = now + messageExpiryInterval * 1000
    }
    return new Message(will.topicName, will.payload, will.qos, will.retain, props, expiresAt, from).own()
  }

  /**
   * Bytes counted against queue budgets, filter budgets and the retained store: payload, topic
   * and, for a message with properties, what they hold in the heap once decoded. Counting only
   * payload and topic let a 1 MiB PUBLISH of ~210,000 empty user properties (15 MB of heap)
   * count as a few bytes. Messages without properties pay one compare.
   */
  get size (): number {
    const base = this.payload.length + this.topic.length
    if (this.properties === undefined) return base
    if (this.propertiesBytes < 0) this.propertiesBytes = propertiesCost(this.properties)
    return base + this.propertiesBytes
  }

  /**
   * Copies payload and binary properties out of the socket chunk they were decoded from, so a
   * message kept for long (retained, queued, in flight) does not pin the chunk.
   */
  own (): this {
    if (this.owned) return this
    this.owned = true
    this.payload = Buffer.from(this.payload)
    const cd = this.properties?.correlationData
    if (cd !== undefined && this.properties !== undefined) this.properties = { ...this.properties, correlationData: Buffer.from(cd) }
    return this
  }

  /** Whether the message can use the shared template (nothing per-subscriber in its properties). */
  get plain (): boolean {
    return this.expiresAt === 0
  }

  /**
   * The PUBLISH bytes for one subscriber. Without per-subscriber properties the shared template
   * is used (QoS 0: the very same buffer; QoS 1/2: a copy with the packet id patched).
   */
  encodeFor (v5: boolean, qos: QoS, retain: boolean, packetId: number, dup: boolean,
    subscriptionIdentifiers: number[] | undefined, now: number, topicAlias: number, aliasOnly: boolean): Buffer {
    if (this.expiresAt === 0 && (!v5 || (subscriptionIdentifiers === undefined && topicAlias === 0))) {
      const t = this.template(v5, qos, retain)
      if (qos === 0) return t
      const b = Buffer.allocUnsafe(t.length)
      t.copy(b)
      const off = this.idOffset(t)
      b[off] = packetId >>> 8
      b[off + 1] = packetId & 0xff
      if (dup) b[0] = (b[0] as number) | 0x08
      return b
    }
    let properties: PublishProperties | undefined
    if (v5) {
      properties = this.properties === undefined ? {} : { ...this.properties }
      if (this.expiresAt !== 0) {
        // [MQTT-3.3.2-6] forward the remaining lifetime, not the original interval
        properties.messageExpiryInterval = Math.max(0, Math.ceil((this.expiresAt - now) / 1000))
      }
      if (subscriptionIdentifiers !== undefined) properties.subscriptionIdentifiers = subscriptionIdentifiers
      if (topicAlias !== 0) properties.topicAlias = topicAlias
    }
    const packet: PublishPacket = {
      type: 'publish',
      topicName: aliasOnly ? '' : this.topic,
      payload: this.payload,
      qos,
      retain,
      dup,
      packetId: qos > 0 ? packetId : undefined,
      properties
    }
    return encode(packet, v5 ? 5 : 4)
  }

  private template (v5: boolean, qos: QoS, retain: boolean): Buffer {
    const key = (v5 ? 8 : 0) | (qos << 1) | (retain ? 1 : 0)
    const ts = this.templates ??= new Array<Buffer | undefined>(16)
    let t = ts[key]
    if (t === undefined) {
      t = encode({
        type: 'publish', topicName: this.topic, payload: this.payload, qos, retain, dup: false,
        packetId: qos > 0 ? 1 : undefined, properties: v5 ? this.properties : undefined
      }, v5 ? 5 : 4)
      ts[key] = t
    }
    return t
  }

  private idOffset (t: Buffer): number {
    if (this.topicBytes < 0) this.topicBytes = Buffer.byteLength(this.topic)
    let i = 1
    while (((t[i++] as number) & 0x80) !== 0);
    return i + 2 + this.topicBytes
  }
}
