import type { PacketTrace } from '@petrel/client'
import type { Packet } from '@petrel/wire'

/**
 * `-d`: one line per packet, in mosquitto_pub/mosquitto_sub's words ("Client ID sending
 * PUBLISH (d0, q1, r0, m1, 'topic', ... (5 bytes))"), given to `print`.
 */
export function debugTrace (print: (line: string) => void): PacketTrace {
  let clientId = ''
  return (direction, packet) => {
    if (packet.type === 'connect') clientId = packet.clientId
    print(`Client ${clientId} ${direction === 'in' ? 'received' : 'sending'} ${packet.type.toUpperCase()}${detail(packet)}`)
  }
}

function detail (p: Packet): string {
  switch (p.type) {
    case 'connack': return ` (${p.reasonCode})`
    case 'publish':
      return ` (d${p.dup ? 1 : 0}, q${p.qos}, r${p.retain ? 1 : 0}, m${p.packetId ?? 0}, '${p.topicName}', ... (${p.payload.length} bytes))`
    case 'puback': case 'pubrec': case 'pubrel': case 'pubcomp':
      return ` (m${p.packetId}, rc${p.reasonCode ?? 0})`
    case 'subscribe':
      return p.subscriptions.map((s) => ` (Mid: ${p.packetId}, Topic: ${s.topicFilter}, QoS: ${s.qos})`).join('')
    case 'unsubscribe':
      return p.topicFilters.map((f) => ` (Mid: ${p.packetId}, Topic: ${f})`).join('')
    case 'suback': case 'unsuback':
      return ` (Mid: ${p.packetId}${p.reasonCodes === undefined ? '' : `, ${p.reasonCodes.map((c) => `rc${c}`).join(', ')}`})`
    case 'disconnect':
      return p.reasonCode === undefined || p.reasonCode === 0 ? '' : ` (rc${p.reasonCode})`
    default: return ''
  }
}
