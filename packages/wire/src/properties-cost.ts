import type { PublishProperties } from './packet.js'

// Heap cost of decoded properties, measured with the Decoder on Node 20 x64: a user property
// pair is a 2-element array (JSArray + elements store) plus its slot in the list, 72 bytes (a
// 1 MiB PUBLISH of 209,702 empty pairs decoded to 15.5 MB: 74 per pair); a string adds a
// 16-byte header to its characters (the empty string is shared; a string with characters beyond
// Latin-1 takes 2 bytes each, counted as 1); the properties object and a Buffer's wrapper cost
// about PROPS_BYTES each; a Subscription Identifier is a number in an array, 8 bytes.
const PROPS_BYTES = 64
const PAIR_BYTES = 72
const STRING_BYTES = 16

function stringCost (s: string | undefined): number {
  return s === undefined || s.length === 0 ? 0 : STRING_BYTES + s.length
}

/**
 * What decoded PUBLISH (or will) properties hold in the heap, near enough to bound memory by
 * it: what the broker's queues and retained store and the client's subscription queues charge
 * a message beyond its payload and topic. Counting only the bytes a property takes on the wire
 * let a 1 MiB PUBLISH of ~210,000 empty user properties (15 MB of heap) count as a few bytes.
 */
export function propertiesCost (p: PublishProperties): number {
  let n = PROPS_BYTES + stringCost(p.contentType) + stringCost(p.responseTopic)
  if (p.correlationData !== undefined) n += PROPS_BYTES + p.correlationData.byteLength
  const ups = p.userProperties
  if (ups !== undefined) {
    for (let i = 0; i < ups.length; i++) {
      const pair = ups[i] as [string, string]
      n += PAIR_BYTES + stringCost(pair[0]) + stringCost(pair[1])
    }
  }
  if (p.subscriptionIdentifiers !== undefined) n += 8 * p.subscriptionIdentifiers.length
  return n
}
