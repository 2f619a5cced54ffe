import { PetrelError, WireErrorCode } from './errors.js'

const SLASH = 0x2f
const PLUS = 0x2b
const HASH = 0x23

/**
 * Why `topicName` cannot be published to, or undefined when it can: non-empty [MQTT-4.7.3-1],
 * no wildcards [MQTT-4.7.1-1], no U+0000 [MQTT-4.7.3-2], at most 65,535 UTF-8 bytes [MQTT-4.7.3-3].
 */
export function topicNameProblem (topicName: string): string | undefined {
  if (topicName.length === 0) return 'a topic name must be at least one character long [MQTT-4.7.3-1]'
  for (let i = 0; i < topicName.length; i++) {
    const c = topicName.charCodeAt(i)
    if (c === PLUS || c === HASH) return 'a topic name must not contain the wildcards + or # [MQTT-4.7.1-1]'
    if (c === 0) return 'a topic name must not contain U+0000 [MQTT-4.7.3-2]'
  }
  if (topicName.length > 16383 && Buffer.byteLength(topicName) > 65535) return 'a topic name is at most 65,535 bytes [MQTT-4.7.3-3]'
  return undefined
}

/**
 * Why `topicFilter` cannot be subscribed to, or undefined when it can. `+` and `#` must fill a
 * whole level and `#` must be last [MQTT-4.7.1-2, MQTT-4.7.1-3]; `$share/{group}/{filter}` needs a
 * group without wildcards or `/` and a non-empty filter [MQTT-4.8.2-1, MQTT-4.8.2-2].
 */
export function topicFilterProblem (topicFilter: string): string | undefined {
  if (topicFilter.length === 0) return 'a topic filter must be at least one character long [MQTT-4.7.3-1]'
  if (topicFilter.startsWith('$share/')) {
    const shared = splitShared(topicFilter)
    if (typeof shared === 'string') return shared
    return plainFilterProblem(shared.topicFilter)
  }
  return plainFilterProblem(topicFilter)
}

function plainFilterProblem (f: string): string | undefined {
  const n = f.length
  for (let i = 0; i < n; i++) {
    const c = f.charCodeAt(i)
    if (c === PLUS) {
      if ((i > 0 && f.charCodeAt(i - 1) !== SLASH) || (i + 1 < n && f.charCodeAt(i + 1) !== SLASH)) {
        return 'the single-level wildcard + must occupy an entire level [MQTT-4.7.1-3]'
      }
    } else if (c === HASH) {
      if ((i > 0 && f.charCodeAt(i - 1) !== SLASH) || i !== n - 1) {
        return 'the multi-level wildcard # must be the last character and occupy a whole level [MQTT-4.7.1-2]'
      }
    } else if (c === 0) {
      return 'a topic filter must not contain U+0000 [MQTT-4.7.3-2]'
    }
  }
  if (n > 16383 && Buffer.byteLength(f) > 65535) return 'a topic filter is at most 65,535 bytes [MQTT-4.7.3-3]'
  return undefined
}

export interface SharedSubscription {
  /** The ShareName between `$share/` and the next `/`. */
  shareName: string
  /** The filter that the group subscribes to. */
  topicFilter: string
}

function splitShared (f: string): SharedSubscription | string {
  const slash = f.indexOf('/', 7)
  if (slash === -1) return 'a shared subscription is $share/{ShareName}/{filter} [MQTT-4.8.2-2]'
  const shareName = f.slice(7, slash)
  if (shareName.length === 0) return 'the ShareName of a shared subscription must be at least one character long [MQTT-4.8.2-1]'
  if (shareName.includes('+') || shareName.includes('#')) return 'the ShareName must not contain + or # [MQTT-4.8.2-2]'
  const topicFilter = f.slice(slash + 1)
  if (topicFilter.length === 0) return 'a shared subscription needs a topic filter after the ShareName [MQTT-4.8.2-2]'
  return { shareName, topicFilter }
}

/**
 * `$share/{group}/{filter}` split into its parts, or undefined for a filter that is not shared.
 * Throws PETREL_ERR_INVALID_TOPIC_FILTER for a malformed shared filter.
 */
export function parseSharedSubscription (topicFilter: string): SharedSubscription | undefined {
  if (!topicFilter.startsWith('$share/')) return undefined
  const shared = splitShared(topicFilter)
  if (typeof shared === 'string') throw new PetrelError(WireErrorCode.INVALID_TOPIC_FILTER, shared, { reasonCode: 0x8f })
  return shared
}

export function isValidTopicName (topicName: string): boolean {
  return topicNameProblem(topicName) === undefined
}

export function isValidTopicFilter (topicFilter: string): boolean {
  return topicFilterProblem(topicFilter) === undefined
}

/** Throws PETREL_ERR_INVALID_TOPIC_NAME (reason code 0x90) when the name cannot be published to. */
export function assertTopicName (topicName: string): void {
  const problem = topicNameProblem(topicName)
  if (problem !== undefined) throw new PetrelError(WireErrorCode.INVALID_TOPIC_NAME, `Invalid topic name ${JSON.stringify(topicName)}: ${problem}`, { reasonCode: 0x90 })
}

/** Throws PETREL_ERR_INVALID_TOPIC_FILTER (reason code 0x8F) when the filter cannot be subscribed to. */
export function assertTopicFilter (topicFilter: string): void {
  const problem = topicFilterProblem(topicFilter)
  if (problem !== undefined) throw new PetrelError(WireErrorCode.INVALID_TOPIC_FILTER, `Invalid topic filter ${JSON.stringify(topicFilter)}: ${problem}`, { reasonCode: 0x8f })
}

/**
 * Whether `topicName` matches `topicFilter` (a plain filter, not `$share/`). Names starting with
 * `$` are not matched by a filter starting with a wildcard [MQTT-4.7.2-1].
 */
export function topicMatches (topicFilter: string, topicName: string): boolean {
  const fn = topicFilter.length
  const tn = topicName.length
  if (tn > 0 && topicName.charCodeAt(0) === 0x24 && fn > 0) {
    const c0 = topicFilter.charCodeAt(0)
    if (c0 === PLUS || c0 === HASH) return false
  }
  let fi = 0
  let ti = 0
  while (fi < fn) {
    const c = topicFilter.charCodeAt(fi)
    if (c === HASH) return true // also matches the parent level: 'a/#' matches 'a' [MQTT-4.7.1-2]
    if (c === PLUS) {
      while (ti < tn && topicName.charCodeAt(ti) !== SLASH) ti++
      fi++
    } else {
      if (ti >= tn || topicName.charCodeAt(ti) !== c) {
        // 'a/#' matches 'a': filter at '/#' with the name exhausted
        return ti === tn && c === SLASH && fi + 2 === fn && topicFilter.charCodeAt(fi + 1) === HASH
      }
      fi++
      ti++
    }
  }
  return ti === tn
}
