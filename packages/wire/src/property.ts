import { PacketType, type PacketTypeName } from './packet-type.js'

/** Wire types of MQTT 5.0 properties, §2.2.2.2. */
export type PropertyWireType = 'byte' | 'twoByteInteger' | 'fourByteInteger' | 'variableByteInteger' |
'utf8String' | 'utf8StringPair' | 'binaryData'

/**
 * Every MQTT 5.0 property. Flags that the spec encodes as a byte 0/1 are booleans here.
 * `subscriptionIdentifier` is the single id of a SUBSCRIBE; a PUBLISH carries
 * `subscriptionIdentifiers` (repeatable, one per matching subscription, §3.3.2.3.8).
 * `userProperties` keeps order and repeats [MQTT-3.1.3-10].
 */
export interface Properties {
  payloadFormatIndicator?: boolean | undefined
  messageExpiryInterval?: number | undefined
  contentType?: string | undefined
  responseTopic?: string | undefined
  correlationData?: Uint8Array | undefined
  subscriptionIdentifier?: number | undefined
  subscriptionIdentifiers?: number[] | undefined
  sessionExpiryInterval?: number | undefined
  assignedClientIdentifier?: string | undefined
  serverKeepAlive?: number | undefined
  authenticationMethod?: string | undefined
  authenticationData?: Uint8Array | undefined
  requestProblemInformation?: boolean | undefined
  willDelayInterval?: number | undefined
  requestResponseInformation?: boolean | undefined
  responseInformation?: string | undefined
  serverReference?: string | undefined
  reasonString?: string | undefined
  receiveMaximum?: number | undefined
  topicAliasMaximum?: number | undefined
  topicAlias?: number | undefined
  maximumQoS?: 0 | 1 | undefined
  retainAvailable?: boolean | undefined
  userProperties?: Array<[string, string]> | undefined
  maximumPacketSize?: number | undefined
  wildcardSubscriptionAvailable?: boolean | undefined
  subscriptionIdentifierAvailable?: boolean | undefined
  sharedSubscriptionAvailable?: boolean | undefined
}
export type PropertyName = keyof Properties

/** Pseudo packet type for the Will Properties of a CONNECT payload (type 0 is otherwise reserved). */
export const WILL = 0

export interface PropertyInfo {
  readonly id: number
  readonly name: PropertyName
  readonly wireType: PropertyWireType
  readonly packets: ReadonlyArray<PacketTypeName | 'will'>
  /** Bit n set: packet type n may carry it (bit 0: Will Properties). */
  readonly mask: number
  /** May appear more than once in one packet. */
  readonly repeatable: boolean
}

function row (id: number, name: PropertyName, wireType: PropertyWireType,
  packets: ReadonlyArray<PacketTypeName | 'will'>, repeatable = false): PropertyInfo {
  let mask = 0
  for (const p of packets) mask |= 1 << (p === 'will' ? WILL : PacketType[p])
  return { id, name, wireType, packets, mask, repeatable }
}

const ACKS: PacketTypeName[] = ['puback', 'pubrec', 'pubrel', 'pubcomp']
const ALL: Array<PacketTypeName | 'will'> = ['connect', 'connack', 'publish', 'will', ...ACKS,
  'subscribe', 'suback', 'unsubscribe', 'unsuback', 'disconnect', 'auth']

/** §2.2.2.2 Table 2-4, in identifier order. */
export const properties: readonly PropertyInfo[] = [
  row(0x01, 'payloadFormatIndicator', 'byte', ['publish', 'will']),
  row(0x02, 'messageExpiryInterval', 'fourByteInteger', ['publish', 'will']),
  row(0x03, 'contentType', 'utf8String', ['publish', 'will']),
  row(0x08, 'responseTopic', 'utf8String', ['publish', 'will']),
  row(0x09, 'correlationData', 'binaryData', ['publish', 'will']),
  // Repeatable in PUBLISH only; the decoder enforces single use in SUBSCRIBE.
  row(0x0b, 'subscriptionIdentifier', 'variableByteInteger', ['publish', 'subscribe'], true),
  row(0x11, 'sessionExpiryInterval', 'fourByteInteger', ['connect', 'connack', 'disconnect']),
  row(0x12, 'assignedClientIdentifier', 'utf8String', ['connack']),
  row(0x13, 'serverKeepAlive', 'twoByteInteger', ['connack']),
  row(0x15, 'authenticationMethod', 'utf8String', ['connect', 'connack', 'auth']),
  row(0x16, 'authenticationData', 'binaryData', ['connect', 'connack', 'auth']),
  row(0x17, 'requestProblemInformation', 'byte', ['connect']),
  row(0x18, 'willDelayInterval', 'fourByteInteger', ['will']),
  row(0x19, 'requestResponseInformation', 'byte', ['connect']),
  row(0x1a, 'responseInformation', 'utf8String', ['connack']),
  row(0x1c, 'serverReference', 'utf8String', ['connack', 'disconnect']),
  row(0x1f, 'reasonString', 'utf8String', ['connack', ...ACKS, 'suback', 'unsuback', 'disconnect', 'auth']),
  row(0x21, 'receiveMaximum', 'twoByteInteger', ['connect', 'connack']),
  row(0x22, 'topicAliasMaximum', 'twoByteInteger', ['connect', 'connack']),
  row(0x23, 'topicAlias', 'twoByteInteger', ['publish']),
  row(0x24, 'maximumQoS', 'byte', ['connack']),
  row(0x25, 'retainAvailable', 'byte', ['connack']),
  row(0x26, 'userProperties', 'utf8StringPair', ALL, true),
  row(0x27, 'maximumPacketSize', 'fourByteInteger', ['connect', 'connack']),
  row(0x28, 'wildcardSubscriptionAvailable', 'byte', ['connack']),
  row(0x29, 'subscriptionIdentifierAvailable', 'byte', ['connack']),
  row(0x2a, 'sharedSubscriptionAvailable', 'byte', ['connack'])
]

/** Indexed by property identifier. */
export const propertyById: ReadonlyArray<PropertyInfo | undefined> = (() => {
  const a: Array<PropertyInfo | undefined> = new Array<PropertyInfo | undefined>(0x2b).fill(undefined)
  for (const p of properties) a[p.id] = p
  return a
})()
