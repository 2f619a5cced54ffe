// fast-check arbitraries for every valid packet of every type, per protocol version. A generated
// packet is in the form the decoder returns (5.0 acks carry their reason code, 3.1.1 packets carry
// no 5.0 fields, no empty property objects), so `decode(encode(p))` must equal `p` exactly.
import fc from 'fast-check'
import {
  reasonCodes, PacketType, type AckProperties, type ConnackProperties, type ConnectProperties, type Packet,
  type PacketTypeName, type ProtocolVersion, type PublishProperties, type QoS, type Subscription, type Will,
  type WillProperties
} from '../src/index.js'

/** Strings the spec allows: any code point but U+0000 [MQTT-1.5.4-2], no lone surrogates [MQTT-1.5.4-1]. */
export const mqttString = (maxLength = 12): fc.Arbitrary<string> =>
  fc.oneof(fc.string({ unit: 'binary-ascii', maxLength }), fc.string({ unit: 'binary', maxLength }))
    .map((s) => s.replaceAll('\u0000', ''))

const level = mqttString(6).map((s) => s.replace(/[/+#]/g, ''))

export const topicName: fc.Arbitrary<string> = fc.array(level, { minLength: 1, maxLength: 4 })
  .map((levels) => levels.join('/'))
  .map((t) => (t.length === 0 ? 'x' : t))

const plainFilter: fc.Arbitrary<string> = fc.tuple(
  fc.array(fc.oneof({ weight: 3, arbitrary: level }, { weight: 1, arbitrary: fc.constant('+') }), { minLength: 0, maxLength: 4 }),
  fc.boolean()
).map(([levels, hash]) => {
  const all = hash ? [...levels, '#'] : levels
  const f = all.join('/')
  return f.length === 0 ? 'x' : f
})

export const topicFilter: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: plainFilter },
  { weight: 1, arbitrary: fc.tuple(level.filter((g) => g.length > 0), plainFilter).map(([g, f]) => `$share/${g}/${f}`) }
)

const u16 = fc.integer({ min: 0, max: 0xffff })
const nonZeroU16 = fc.integer({ min: 1, max: 0xffff })
const u32 = fc.integer({ min: 0, max: 0xffffffff })
const packetId = nonZeroU16
const varint = fc.oneof(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 268_435_455 }))
const bytes = (maxLength = 16): fc.Arbitrary<Uint8Array> => fc.uint8Array({ maxLength })
const userProperties = fc.array(fc.tuple(mqttString(6), mqttString(6)), { minLength: 1, maxLength: 3 })
const qos = fc.constantFrom<QoS>(0, 1, 2)

/** `undefined` instead of an object without keys: the decoder returns no empty property objects. */
function orUndefined<T extends object> (o: T): T | undefined {
  return Object.keys(o).length === 0 ? undefined : o
}

function codesFor (type: PacketTypeName): number[] {
  return [...new Set(reasonCodes.filter((r) => r.packets.includes(type)).map((r) => r.code))]
}

const ackProperties: fc.Arbitrary<AckProperties | undefined> = fc.record({
  reasonString: mqttString(),
  userProperties
}, { requiredKeys: [] }).map(orUndefined)

const willProperties: fc.Arbitrary<WillProperties | undefined> = fc.record({
  willDelayInterval: u32,
  payloadFormatIndicator: fc.boolean(),
  messageExpiryInterval: u32,
  contentType: mqttString(),
  responseTopic: topicName,
  correlationData: bytes(),
  userProperties
}, { requiredKeys: [] }).map(orUndefined)

const connectProperties: fc.Arbitrary<ConnectProperties | undefined> = fc.record({
  sessionExpiryInterval: u32,
  receiveMaximum: nonZeroU16,
  maximumPacketSize: fc.integer({ min: 1, max: 0xffffffff }),
  topicAliasMaximum: u16,
  requestResponseInformation: fc.boolean(),
  requestProblemInformation: fc.boolean(),
  userProperties,
  authenticationMethod: mqttString(),
  authenticationData: bytes()
}, { requiredKeys: [] }).map((p) => {
  // Authentication Data without a Method is a Protocol Error [MQTT-3.1.2.11.10]
  if (p.authenticationData !== undefined && p.authenticationMethod === undefined) delete p.authenticationData
  return orUndefined(p)
})

const connackProperties: fc.Arbitrary<ConnackProperties | undefined> = fc.record({
  sessionExpiryInterval: u32,
  receiveMaximum: nonZeroU16,
  maximumQoS: fc.constantFrom<0 | 1>(0, 1),
  retainAvailable: fc.boolean(),
  maximumPacketSize: fc.integer({ min: 1, max: 0xffffffff }),
  assignedClientIdentifier: mqttString(),
  topicAliasMaximum: u16,
  reasonString: mqttString(),
  userProperties,
  wildcardSubscriptionAvailable: fc.boolean(),
  subscriptionIdentifierAvailable: fc.boolean(),
  sharedSubscriptionAvailable: fc.boolean(),
  serverKeepAlive: u16,
  responseInformation: mqttString(),
  serverReference: mqttString(),
  authenticationMethod: mqttString(),
  authenticationData: bytes()
}, { requiredKeys: [] }).map(orUndefined)

const publishProperties: fc.Arbitrary<PublishProperties | undefined> = fc.record({
  payloadFormatIndicator: fc.boolean(),
  messageExpiryInterval: u32,
  topicAlias: nonZeroU16,
  responseTopic: topicName,
  correlationData: bytes(),
  userProperties,
  subscriptionIdentifiers: fc.array(varint, { minLength: 1, maxLength: 3 }),
  contentType: mqttString()
}, { requiredKeys: [] }).map(orUndefined)

const payload: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 8, arbitrary: bytes(64) },
  { weight: 1, arbitrary: bytes(400) }
)

function publish (v: ProtocolVersion): fc.Arbitrary<Packet> {
  return fc.record({
    topicName,
    payload,
    text: mqttString(20),
    qos,
    retain: fc.boolean(),
    dup: fc.boolean(),
    packetId,
    properties: v === 5 ? publishProperties : fc.constant(undefined),
    aliasOnly: fc.boolean()
  }).map((r): Packet => {
    const properties = r.properties
    const p: Packet = {
      type: 'publish',
      // 5.0: a topic alias may stand in for the topic name [MQTT-3.3.2-8]
      topicName: properties?.topicAlias !== undefined && r.aliasOnly ? '' : r.topicName,
      // A payload declared UTF-8 must be UTF-8 [MQTT-3.3.2-4]
      payload: properties?.payloadFormatIndicator === true ? Buffer.from(r.text, 'utf8') : r.payload,
      qos: r.qos,
      retain: r.retain,
      dup: r.qos > 0 && r.dup, // [MQTT-3.3.1-2]
      packetId: r.qos > 0 ? r.packetId : undefined
    }
    if (properties !== undefined) p.properties = properties
    return p
  })
}

function connect (v: ProtocolVersion): fc.Arbitrary<Packet> {
  const will: fc.Arbitrary<Will | undefined> = fc.option(fc.record({
    topicName,
    payload: bytes(32),
    qos,
    retain: fc.boolean(),
    properties: v === 5 ? willProperties : fc.constant(undefined)
  }), { nil: undefined })
  return fc.record({
    clientId: mqttString(23),
    cleanStart: fc.boolean(),
    keepAlive: u16,
    username: fc.option(mqttString(), { nil: undefined }),
    password: fc.option(bytes(), { nil: undefined }),
    will,
    properties: v === 5 ? connectProperties : fc.constant(undefined)
  }).map((r): Packet => ({
    type: 'connect',
    protocolVersion: v,
    ...r,
    // Before 5.0 a password needs a user name [MQTT-3.1.2-22]
    password: v === 5 || r.username !== undefined ? r.password : undefined
  }))
}

function connack (v: ProtocolVersion): fc.Arbitrary<Packet> {
  const code = v === 5 ? fc.constantFrom(...codesFor('connack')) : fc.integer({ min: 0, max: 5 })
  return fc.record({
    sessionPresent: fc.boolean(),
    reasonCode: code,
    properties: v === 5 ? connackProperties : fc.constant(undefined)
  }).map((r): Packet => ({
    type: 'connack',
    // Session Present must be 0 when the connection is refused [MQTT-3.2.2-6]
    sessionPresent: r.reasonCode === 0 && r.sessionPresent,
    reasonCode: r.reasonCode,
    properties: r.properties
  }))
}

function ack (type: 'puback' | 'pubrec' | 'pubrel' | 'pubcomp', v: ProtocolVersion): fc.Arbitrary<Packet> {
  if (v !== 5) return packetId.map((id): Packet => ({ type, packetId: id }))
  return fc.record({ packetId, reasonCode: fc.constantFrom(...codesFor(type)), properties: ackProperties })
    .map((r): Packet => ({ type, ...r }))
}

function subscription (v: ProtocolVersion): fc.Arbitrary<Subscription> {
  if (v !== 5) return fc.record({ topicFilter, qos })
  return fc.record({
    topicFilter,
    qos,
    noLocal: fc.boolean(),
    retainAsPublished: fc.boolean(),
    retainHandling: fc.constantFrom<0 | 1 | 2>(0, 1, 2)
  }).map((s) => ({ ...s, noLocal: s.noLocal && !s.topicFilter.startsWith('$share/') })) // [MQTT-3.8.3-4]
}

function subscribe (v: ProtocolVersion): fc.Arbitrary<Packet> {
  return fc.record({
    packetId,
    subscriptions: fc.array(subscription(v), { minLength: 1, maxLength: 4 }),
    properties: v === 5
      ? fc.record({ subscriptionIdentifier: varint, userProperties }, { requiredKeys: [] }).map(orUndefined)
      : fc.constant(undefined)
  }).map((r): Packet => ({ type: 'subscribe', ...r }))
}

function suback (v: ProtocolVersion): fc.Arbitrary<Packet> {
  const code = v === 5 ? fc.constantFrom(...codesFor('suback')) : fc.constantFrom(0, 1, 2, 0x80)
  return fc.record({
    packetId,
    reasonCodes: fc.array(code, { minLength: 1, maxLength: 6 }),
    properties: v === 5 ? ackProperties : fc.constant(undefined)
  }).map((r): Packet => ({ type: 'suback', ...r }))
}

function unsubscribe (v: ProtocolVersion): fc.Arbitrary<Packet> {
  return fc.record({
    packetId,
    topicFilters: fc.array(topicFilter, { minLength: 1, maxLength: 4 }),
    properties: v === 5 ? fc.record({ userProperties }, { requiredKeys: [] }).map(orUndefined) : fc.constant(undefined)
  }).map((r): Packet => ({ type: 'unsubscribe', ...r }))
}

function unsuback (v: ProtocolVersion): fc.Arbitrary<Packet> {
  if (v !== 5) return packetId.map((id): Packet => ({ type: 'unsuback', packetId: id }))
  return fc.record({
    packetId,
    reasonCodes: fc.array(fc.constantFrom(...codesFor('unsuback')), { minLength: 1, maxLength: 6 }),
    properties: ackProperties
  }).map((r): Packet => ({ type: 'unsuback', ...r }))
}

function disconnect (v: ProtocolVersion): fc.Arbitrary<Packet> {
  if (v !== 5) return fc.constant<Packet>({ type: 'disconnect' })
  return fc.record({
    reasonCode: fc.constantFrom(...codesFor('disconnect')),
    properties: fc.record({ sessionExpiryInterval: u32, reasonString: mqttString(), userProperties, serverReference: mqttString() }, { requiredKeys: [] }).map(orUndefined)
  }).map((r): Packet => ({ type: 'disconnect', ...r }))
}

const auth: fc.Arbitrary<Packet> = fc.record({
  reasonCode: fc.constantFrom(...codesFor('auth')),
  properties: fc.record({ authenticationMethod: mqttString(), authenticationData: bytes(), reasonString: mqttString(), userProperties }, { requiredKeys: [] }).map(orUndefined)
}).map((r): Packet => ({ type: 'auth', ...r }))

/** The arbitrary for one packet type at one version, or undefined when the type does not exist there. */
export function packetArbitrary (type: PacketTypeName, v: ProtocolVersion): fc.Arbitrary<Packet> | undefined {
  switch (type) {
    case 'connect': return connect(v)
    case 'connack': return connack(v)
    case 'publish': return publish(v)
    case 'puback': case 'pubrec': case 'pubrel': case 'pubcomp': return ack(type, v)
    case 'subscribe': return subscribe(v)
    case 'suback': return suback(v)
    case 'unsubscribe': return unsubscribe(v)
    case 'unsuback': return unsuback(v)
    case 'pingreq': return fc.constant<Packet>({ type: 'pingreq' })
    case 'pingresp': return fc.constant<Packet>({ type: 'pingresp' })
    case 'disconnect': return disconnect(v)
    case 'auth': return v === 5 ? auth : undefined
  }
}

export const packetTypes = Object.keys(PacketType) as PacketTypeName[]

/** Any packet but CONNECT (which changes the decoder's version), at version `v`. */
export function anyPacket (v: ProtocolVersion): fc.Arbitrary<Packet> {
  const arbs = packetTypes.filter((t) => t !== 'connect')
    .map((t) => packetArbitrary(t, v))
    .filter((a): a is fc.Arbitrary<Packet> => a !== undefined)
  return fc.oneof(...arbs)
}
