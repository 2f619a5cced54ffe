// @petrel/wire public API. Everything exported is listed here by name.
export { encode, publishQoS0Size, varintSize, writePublishQoS0 } from './encode.js'
export { Decoder, MAX_PACKET_SIZE, type DecoderOptions } from './decoder.js'
export { PetrelError, WireErrorCode } from './errors.js'
export { PacketType, packetTypeNames, type PacketTypeName } from './packet-type.js'
export {
  ReasonCode, ConnackReturnCode, reasonCodes, reasonCodeName, connackReturnCodeName,
  isReasonCodeAllowed, type ReasonCodeInfo
} from './reason-code.js'
export {
  properties, propertyById, type Properties, type PropertyName, type PropertyInfo, type PropertyWireType
} from './property.js'
export {
  topicNameProblem, topicFilterProblem, isValidTopicName, isValidTopicFilter, assertTopicName,
  assertTopicFilter, parseSharedSubscription, topicMatches, type SharedSubscription
} from './topic.js'
export { utf8StringProblem, isWellFormedUtf8 } from './utf8.js'
export { propertiesCost } from './properties-cost.js'
export { joinWrites, JOINED_FRAME_BYTES } from './join-writes.js'
export { joinWebSocketWrites, type WebSocketSink } from './websocket-writes.js'
export type {
  Packet, PacketOfType, ProtocolVersion, QoS, Will, Subscription,
  ConnectPacket, ConnackPacket, PublishPacket, PubackPacket, PubrecPacket, PubrelPacket, PubcompPacket,
  SubscribePacket, SubackPacket, UnsubscribePacket, UnsubackPacket, PingreqPacket, PingrespPacket,
  DisconnectPacket, AuthPacket,
  ConnectProperties, WillProperties, ConnackProperties, PublishProperties, AckProperties,
  SubscribeProperties, UnsubscribeProperties, DisconnectProperties, AuthProperties
} from './packet.js'
