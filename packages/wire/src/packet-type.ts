/** Control packet types, MQTT 5.0 §2.1.2 (the same numbers in 3.1.1). */
export const PacketType = {
  connect: 1,
  connack: 2,
  publish: 3,
  puback: 4,
  pubrec: 5,
  pubrel: 6,
  pubcomp: 7,
  subscribe: 8,
  suback: 9,
  unsubscribe: 10,
  unsuback: 11,
  pingreq: 12,
  pingresp: 13,
  disconnect: 14,
  auth: 15
} as const
export type PacketTypeName = keyof typeof PacketType

/** Index = packet type number; index 0 is reserved [MQTT-2.1.2]. */
export const packetTypeNames: ReadonlyArray<PacketTypeName | undefined> = [
  undefined, 'connect', 'connack', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp',
  'subscribe', 'suback', 'unsubscribe', 'unsuback', 'pingreq', 'pingresp', 'disconnect', 'auth'
]
