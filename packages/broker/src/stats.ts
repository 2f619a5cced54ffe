/**
 * Why a message was not delivered to one subscriber, or (not_authorized, hook_timeout,
 * hook_error, payload_format_invalid, topic_invalid, user_properties_exceeded) to anyone,
 * refused from its publisher. Every drop is
 * counted under one of these (nothing is dropped silently); see CONFIG.md for the policy behind each.
 */
export const DropReason = {
  /** The subscriber's session queue reached `max_queued_messages` or `max_queued_bytes`. */
  queueFull: 'queue_full',
  /** The per-filter memory budget (`max_segment_size` x `max_segment_count`) was used up. */
  filterLimit: 'filter_limit',
  /** Offline sessions' queues, over all sessions, held `max_offline_queued_bytes`. */
  offlineLimit: 'offline_limit',
  /** A QoS 0 message for a session that is offline (QoS 0 is not queued offline). */
  offline: 'offline',
  /** The message expired before it could be delivered [MQTT-3.3.2-5]. */
  expired: 'expired',
  /** Larger than the subscriber's Maximum Packet Size [MQTT-3.1.2-25]. */
  packetTooLarge: 'packet_too_large',
  /** The publish was refused by `authorizePublish` or the ACL. */
  notAuthorized: 'not_authorized',
  /**
   * `authorizePublish` did not answer within `hookTimeoutMs` (publish refused with 0x83, or a
   * will discarded): nobody decided against it, so it is not counted as not_authorized.
   */
  hookTimeout: 'hook_timeout',
  /** `authorizePublish` threw, rejected or gave no usable answer (publish refused with 0x83, or a will discarded). */
  hookError: 'hook_error',
  /** The payload was not UTF-8 although its Payload Format Indicator said so [MQTT-3.3.2-4]. */
  payloadFormatInvalid: 'payload_format_invalid',
  /** A topic deeper than `max_topic_levels` (publish or will refused with 0x90). */
  topicInvalid: 'topic_invalid',
  /** A 5.0 PUBLISH with more User Property pairs than `max_user_properties` (refused with 0x97). */
  userPropertiesExceeded: 'user_properties_exceeded',
  /**
   * QoS 1/2 still queued or unacknowledged for a session that ended (clean start, a clean
   * disconnect, expiry, takeover by another user), and not handed to another member of a shared group.
   */
  sessionEnded: 'session_ended'
} as const
export type DropReason = typeof DropReason[keyof typeof DropReason]

/**
 * Plain counters, bumped on the hot path with no allocation or label lookups. The Prometheus
 * exporter and `$SYS` topics read them when asked.
 */
export class BrokerStats {
  readonly startedAt = Date.now()
  /** PUBLISH received from clients, by QoS. */
  readonly messagesIn = [0, 0, 0]
  /** PUBLISH sent to clients, by QoS. */
  readonly messagesOut = [0, 0, 0]
  bytesIn = 0
  bytesOut = 0
  /**
   * Sockets given a place under `max_connections`: a tcp one at accept, a tls/ws/wss one at
   * accept too (before its handshake: it may be evicted meanwhile), a stream passed to handle().
   */
  connectionsTotal = 0
  connectRefused = 0
  /** Sockets closed at accept: `max_connections` reached, every one of them a CONNACK'd client. Not in connectionsTotal. */
  connectionsRejected = 0
  /**
   * Of connectionsTotal, sockets without CONNACK yet (or still in their handshake) closed to make
   * room for a new one at `max_connections`. A socket lingering after our DISCONNECT, cut short
   * for the same reason, is not counted: its connection had ended already.
   */
  connectionsEvicted = 0
  protocolErrors = 0
  keepaliveTimeouts = 0
  /** Async hook calls (or password checks) that did not settle within `hookTimeoutMs`: their request failed. */
  hookTimeouts = 0
  /** Hook calls (or password checks) that threw, rejected or gave no usable answer: their request failed. */
  hookErrors = 0
  /** Times a QoS 1/2 publisher was held back because a subscriber it reached was behind. */
  flowControlHolds = 0
  /** Retained publishes not stored: `max_retained_messages` or `max_retained_bytes` reached (still delivered). */
  retainedRefused = 0
  /** Filters refused in SUBACK (0x97 / 0x80) because the session held `max_subscriptions_per_session`. */
  subscriptionQuotaExceeded = 0
  /**
   * Control packets (CONNACK, SUBACK, PUBACK...) not sent because they were larger than the
   * client's Maximum Packet Size even without their optional properties [MQTT-3.1.2-25].
   */
  controlPacketsTooLarge = 0
  /** CONNECTs refused (0x97 / 0x03) because they would have created a persistent session past `max_sessions`. */
  sessionsRefused = 0
  /** Wills sent without their Will Delay Interval: `max_delayed_will_bytes` was reached. */
  willsSentEarly = 0
  /**
   * Times the process was found out of file descriptors (EMFILE/ENFILE; checked once a second
   * while listening, and on accept errors): meanwhile new clients are closed as they connect.
   */
  fdExhausted = 0
  readonly drops: Record<DropReason, number> = {
    queue_full: 0, filter_limit: 0, offline_limit: 0, offline: 0, expired: 0, packet_too_large: 0, not_authorized: 0, hook_timeout: 0, hook_error: 0, payload_format_invalid: 0, topic_invalid: 0, user_properties_exceeded: 0, session_ended: 0
  }

  drop (reason: DropReason): void {
    this.drops[reason]++
  }

  get dropsTotal (): number {
    let n = 0
    for (const k in this.drops) n += this.drops[k as DropReason]
    return n
  }
}
