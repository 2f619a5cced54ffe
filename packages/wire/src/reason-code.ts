import { PacketType, type PacketTypeName } from './packet-type.js'

/** MQTT 5.0 reason codes, §2.4 Table 2-6. 0x00 has three names; all share the value. */
export const ReasonCode = {
  Success: 0x00,
  NormalDisconnection: 0x00,
  GrantedQoS0: 0x00,
  GrantedQoS1: 0x01,
  GrantedQoS2: 0x02,
  DisconnectWithWillMessage: 0x04,
  NoMatchingSubscribers: 0x10,
  NoSubscriptionExisted: 0x11,
  ContinueAuthentication: 0x18,
  ReAuthenticate: 0x19,
  UnspecifiedError: 0x80,
  MalformedPacket: 0x81,
  ProtocolError: 0x82,
  ImplementationSpecificError: 0x83,
  UnsupportedProtocolVersion: 0x84,
  ClientIdentifierNotValid: 0x85,
  BadUserNameOrPassword: 0x86,
  NotAuthorized: 0x87,
  ServerUnavailable: 0x88,
  ServerBusy: 0x89,
  Banned: 0x8a,
  ServerShuttingDown: 0x8b,
  BadAuthenticationMethod: 0x8c,
  KeepAliveTimeout: 0x8d,
  SessionTakenOver: 0x8e,
  TopicFilterInvalid: 0x8f,
  TopicNameInvalid: 0x90,
  PacketIdentifierInUse: 0x91,
  PacketIdentifierNotFound: 0x92,
  ReceiveMaximumExceeded: 0x93,
  TopicAliasInvalid: 0x94,
  PacketTooLarge: 0x95,
  MessageRateTooHigh: 0x96,
  QuotaExceeded: 0x97,
  AdministrativeAction: 0x98,
  PayloadFormatInvalid: 0x99,
  RetainNotSupported: 0x9a,
  QoSNotSupported: 0x9b,
  UseAnotherServer: 0x9c,
  ServerMoved: 0x9d,
  SharedSubscriptionsNotSupported: 0x9e,
  ConnectionRateExceeded: 0x9f,
  MaximumConnectTime: 0xa0,
  SubscriptionIdentifiersNotSupported: 0xa1,
  WildcardSubscriptionsNotSupported: 0xa2
} as const

/** MQTT 3.1.1 CONNACK return codes, §3.2.2.3. */
export const ConnackReturnCode = {
  Accepted: 0,
  UnacceptableProtocolVersion: 1,
  IdentifierRejected: 2,
  ServerUnavailable: 3,
  BadUserNameOrPassword: 4,
  NotAuthorized: 5
} as const

export interface ReasonCodeInfo {
  readonly code: number
  readonly name: string
  readonly packets: readonly PacketTypeName[]
}

const ACK: PacketTypeName[] = ['puback', 'pubrec']
// Table 2-6, row by row. Order matters only for names of 0x00, which depend on the packet.
const table: ReasonCodeInfo[] = [
  { code: 0x00, name: 'Success', packets: ['connack', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'unsuback', 'auth'] },
  { code: 0x00, name: 'Normal disconnection', packets: ['disconnect'] },
  { code: 0x00, name: 'Granted QoS 0', packets: ['suback'] },
  { code: 0x01, name: 'Granted QoS 1', packets: ['suback'] },
  { code: 0x02, name: 'Granted QoS 2', packets: ['suback'] },
  { code: 0x04, name: 'Disconnect with Will Message', packets: ['disconnect'] },
  { code: 0x10, name: 'No matching subscribers', packets: ACK },
  { code: 0x11, name: 'No subscription existed', packets: ['unsuback'] },
  { code: 0x18, name: 'Continue authentication', packets: ['auth'] },
  { code: 0x19, name: 'Re-authenticate', packets: ['auth'] },
  { code: 0x80, name: 'Unspecified error', packets: ['connack', ...ACK, 'suback', 'unsuback', 'disconnect'] },
  { code: 0x81, name: 'Malformed Packet', packets: ['connack', 'disconnect'] },
  { code: 0x82, name: 'Protocol Error', packets: ['connack', 'disconnect'] },
  { code: 0x83, name: 'Implementation specific error', packets: ['connack', ...ACK, 'suback', 'unsuback', 'disconnect'] },
  { code: 0x84, name: 'Unsupported Protocol Version', packets: ['connack'] },
  { code: 0x85, name: 'Client Identifier not valid', packets: ['connack'] },
  { code: 0x86, name: 'Bad User Name or Password', packets: ['connack'] },
  { code: 0x87, name: 'Not authorized', packets: ['connack', ...ACK, 'suback', 'unsuback', 'disconnect'] },
  { code: 0x88, name: 'Server unavailable', packets: ['connack'] },
  { code: 0x89, name: 'Server busy', packets: ['connack', 'disconnect'] },
  { code: 0x8a, name: 'Banned', packets: ['connack'] },
  { code: 0x8b, name: 'Server shutting down', packets: ['disconnect'] },
  { code: 0x8c, name: 'Bad authentication method', packets: ['connack', 'disconnect'] },
  { code: 0x8d, name: 'Keep Alive timeout', packets: ['disconnect'] },
  { code: 0x8e, name: 'Session taken over', packets: ['disconnect'] },
  { code: 0x8f, name: 'Topic Filter invalid', packets: ['suback', 'unsuback', 'disconnect'] },
  { code: 0x90, name: 'Topic Name invalid', packets: ['connack', ...ACK, 'disconnect'] },
  { code: 0x91, name: 'Packet Identifier in use', packets: [...ACK, 'suback', 'unsuback'] },
  { code: 0x92, name: 'Packet Identifier not found', packets: ['pubrel', 'pubcomp'] },
  { code: 0x93, name: 'Receive Maximum exceeded', packets: ['disconnect'] },
  { code: 0x94, name: 'Topic Alias invalid', packets: ['disconnect'] },
  { code: 0x95, name: 'Packet too large', packets: ['connack', 'disconnect'] },
  { code: 0x96, name: 'Message rate too high', packets: ['disconnect'] },
  { code: 0x97, name: 'Quota exceeded', packets: ['connack', ...ACK, 'suback', 'disconnect'] },
  { code: 0x98, name: 'Administrative action', packets: ['disconnect'] },
  { code: 0x99, name: 'Payload format invalid', packets: ['connack', ...ACK, 'disconnect'] },
  { code: 0x9a, name: 'Retain not supported', packets: ['connack', 'disconnect'] },
  { code: 0x9b, name: 'QoS not supported', packets: ['connack', 'disconnect'] },
  { code: 0x9c, name: 'Use another server', packets: ['connack', 'disconnect'] },
  { code: 0x9d, name: 'Server moved', packets: ['connack', 'disconnect'] },
  { code: 0x9e, name: 'Shared Subscriptions not supported', packets: ['suback', 'disconnect'] },
  { code: 0x9f, name: 'Connection rate exceeded', packets: ['connack', 'disconnect'] },
  { code: 0xa0, name: 'Maximum connect time', packets: ['disconnect'] },
  { code: 0xa1, name: 'Subscription Identifiers not supported', packets: ['suback', 'disconnect'] },
  { code: 0xa2, name: 'Wildcard Subscriptions not supported', packets: ['suback', 'disconnect'] }
]
export const reasonCodes: readonly ReasonCodeInfo[] = table

// allowed[code] = bitmask of packet types (bit n = packet type n) that may carry it.
const allowed = new Uint16Array(256)
const names = new Map<number, string>()
for (const row of table) {
  for (const p of row.packets) {
    allowed[row.code] = (allowed[row.code] ?? 0) | (1 << PacketType[p])
    names.set(row.code * 16 + PacketType[p], row.name)
  }
}

/** Whether an MQTT 5.0 packet of `packetType` may carry `reasonCode` (Table 2-6). */
export function isReasonCodeAllowed (packetType: number, reasonCode: number): boolean {
  return ((allowed[reasonCode] ?? 0) & (1 << packetType)) !== 0
}

/** The spec's name for a reason code as carried by a packet type, e.g. 0x00 in SUBACK = 'Granted QoS 0'. */
export function reasonCodeName (reasonCode: number, packetType?: PacketTypeName): string {
  if (packetType !== undefined) {
    const name = names.get(reasonCode * 16 + PacketType[packetType])
    if (name !== undefined) return name
  }
  const row = table.find((r) => r.code === reasonCode)
  return row?.name ?? `Unknown reason code 0x${reasonCode.toString(16).padStart(2, '0')}`
}

const v3ConnackNames = ['Connection Accepted', 'Unacceptable protocol version', 'Identifier rejected',
  'Server unavailable', 'Bad user name or password', 'Not authorized']

/** The 3.1.1 name of a CONNACK return code (§3.2.2.3). */
export function connackReturnCodeName (returnCode: number): string {
  return v3ConnackNames[returnCode] ?? `Unknown return code ${returnCode}`
}
