import type { Properties } from './property.js'

/** Protocol level: 3 = MQTT 3.1 (`MQIsdp`), 4 = MQTT 3.1.1, 5 = MQTT 5.0. */
export type ProtocolVersion = 3 | 4 | 5
export type QoS = 0 | 1 | 2

export type ConnectProperties = Pick<Properties, 'sessionExpiryInterval' | 'receiveMaximum' |
'maximumPacketSize' | 'topicAliasMaximum' | 'requestResponseInformation' | 'requestProblemInformation' |
'userProperties' | 'authenticationMethod' | 'authenticationData'>
export type WillProperties = Pick<Properties, 'willDelayInterval' | 'payloadFormatIndicator' |
'messageExpiryInterval' | 'contentType' | 'responseTopic' | 'correlationData' | 'userProperties'>
export type ConnackProperties = Pick<Properties, 'sessionExpiryInterval' | 'receiveMaximum' | 'maximumQoS' |
'retainAvailable' | 'maximumPacketSize' | 'assignedClientIdentifier' | 'topicAliasMaximum' | 'reasonString' |
'userProperties' | 'wildcardSubscriptionAvailable' | 'subscriptionIdentifierAvailable' |
'sharedSubscriptionAvailable' | 'serverKeepAlive' | 'responseInformation' | 'serverReference' |
'authenticationMethod' | 'authenticationData'>
export type PublishProperties = Pick<Properties, 'payloadFormatIndicator' | 'messageExpiryInterval' |
'topicAlias' | 'responseTopic' | 'correlationData' | 'userProperties' | 'subscriptionIdentifiers' | 'contentType'>
export type AckProperties = Pick<Properties, 'reasonString' | 'userProperties'>
export type SubscribeProperties = Pick<Properties, 'subscriptionIdentifier' | 'userProperties'>
export type UnsubscribeProperties = Pick<Properties, 'userProperties'>
export type DisconnectProperties = Pick<Properties, 'sessionExpiryInterval' | 'reasonString' |
'userProperties' | 'serverReference'>
export type AuthProperties = Pick<Properties, 'authenticationMethod' | 'authenticationData' |
'reasonString' | 'userProperties'>

export interface Will {
  topicName: string
  payload: Uint8Array
  qos: QoS
  retain: boolean
  properties?: WillProperties | undefined
}

export interface ConnectPacket {
  type: 'connect'
  protocolVersion: ProtocolVersion
  clientId: string
  /** Clean Start (5.0) / Clean Session (3.1.1). */
  cleanStart: boolean
  /** Seconds; 0 disables keepalive. */
  keepAlive: number
  username?: string | undefined
  password?: Uint8Array | undefined
  will?: Will | undefined
  properties?: ConnectProperties | undefined
}

export interface ConnackPacket {
  type: 'connack'
  sessionPresent: boolean
  /** 5.0 reason code, or the 3.1.1 return code (0-5). */
  reasonCode: number
  properties?: ConnackProperties | undefined
}

export interface PublishPacket {
  type: 'publish'
  topicName: string
  payload: Uint8Array
  qos: QoS
  retain: boolean
  dup: boolean
  /** Present iff qos > 0 [MQTT-2.2.1-2]. */
  packetId?: number | undefined
  properties?: PublishProperties | undefined
  /**
   * Set by a Decoder with `userPropertiesOverflow: 'mark'` only: the PUBLISH carried more User
   * Property pairs than its `maxUserProperties`, and `properties` holds none of them. Never encoded.
   */
  userPropertiesExceeded?: true | undefined
  /**
   * Set by a Decoder with `subscriptionIdentifiersOverflow: 'mark'` only: the PUBLISH carried more
   * Subscription Identifiers than its `maxSubscriptionIdentifiers`, and `properties` holds none of
   * them. Never encoded.
   */
  subscriptionIdentifiersExceeded?: true | undefined
}

interface AckBase {
  packetId: number
  /** 5.0 only; 0x00 when absent on the wire [MQTT-3.4.2.1]. */
  reasonCode?: number | undefined
  properties?: AckProperties | undefined
}
export interface PubackPacket extends AckBase { type: 'puback' }
export interface PubrecPacket extends AckBase { type: 'pubrec' }
export interface PubrelPacket extends AckBase { type: 'pubrel' }
export interface PubcompPacket extends AckBase { type: 'pubcomp' }

export interface Subscription {
  topicFilter: string
  qos: QoS
  /** 5.0 subscription options, §3.8.3.1. */
  noLocal?: boolean | undefined
  retainAsPublished?: boolean | undefined
  retainHandling?: 0 | 1 | 2 | undefined
}

export interface SubscribePacket {
  type: 'subscribe'
  packetId: number
  subscriptions: Subscription[]
  properties?: SubscribeProperties | undefined
}

export interface SubackPacket {
  type: 'suback'
  packetId: number
  /** One per requested filter: granted QoS or a failure code (>= 0x80). */
  reasonCodes: number[]
  properties?: AckProperties | undefined
}

export interface UnsubscribePacket {
  type: 'unsubscribe'
  packetId: number
  topicFilters: string[]
  properties?: UnsubscribeProperties | undefined
}

export interface UnsubackPacket {
  type: 'unsuback'
  packetId: number
  /** 5.0 only: one per filter. */
  reasonCodes?: number[] | undefined
  properties?: AckProperties | undefined
}

export interface PingreqPacket { type: 'pingreq' }
export interface PingrespPacket { type: 'pingresp' }

export interface DisconnectPacket {
  type: 'disconnect'
  reasonCode?: number | undefined
  properties?: DisconnectProperties | undefined
}

export interface AuthPacket {
  type: 'auth'
  reasonCode?: number | undefined
  properties?: AuthProperties | undefined
}

export type Packet = ConnectPacket | ConnackPacket | PublishPacket | PubackPacket | PubrecPacket |
PubrelPacket | PubcompPacket | SubscribePacket | SubackPacket | UnsubscribePacket | UnsubackPacket |
PingreqPacket | PingrespPacket | DisconnectPacket | AuthPacket

export type PacketOfType<T extends Packet['type']> = Extract<Packet, { type: T }>
