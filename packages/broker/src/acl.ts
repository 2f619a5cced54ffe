import { parseSharedSubscription, topicMatches } from '@petrel/wire'
import type { ClientInfo } from './options.js'

/** What the rules look at of a client. */
type AclClient = Pick<ClientInfo, 'clientId' | 'username' | 'protocolVersion' | 'remoteAddress'>

/**
 * One access rule. `topic` is a topic filter in which `%u` is replaced by the user name and
 * `%c` by the client id. A rule with neither `user` nor `clientId` applies to everyone.
 */
export interface AclRule {
  user?: string | undefined
  clientId?: string | undefined
  topic: string
  /** 'read' (subscribe), 'write' (publish), 'readwrite', or 'deny' (overrides any allow). */
  access: 'read' | 'write' | 'readwrite' | 'deny'
}

/**
 * Whether a rule's pattern covers a topic name, or a subscription filter: a filter is checked
 * level by level as if it were a name, so `+` in the pattern covers `+` in the filter and `#`
 * covers everything below; a filter wider than the pattern is not covered.
 */
function covers (pattern: string, topic: string): boolean {
  return pattern === topic || topicMatches(pattern, topic)
}

/**
 * Whether a user name or client id may stand for `%u` / `%c`: it must fill exactly one topic
 * level. A client id is the client's choice (so is the user name when no password file is set):
 * `+` or `#` would turn `clients/%c/#` into a wildcard over every client's topics (mosquitto's
 * CVE-2017-7650), and `/` would reach into levels below another client's (`alice/x` ->
 * `clients/alice/x/#`).
 */
function isOneLevel (value: string): boolean {
  return !/[+#/]/.test(value)
}

function substitute (topic: string, client: AclClient): string | undefined {
  if (!topic.includes('%')) return topic
  const u = topic.includes('%u')
  // a rule naming %u never matches an anonymous client
  if (u && (client.username === undefined || !isOneLevel(client.username))) return undefined
  if (topic.includes('%c') && !isOneLevel(client.clientId)) return undefined
  return topic.replaceAll('%u', client.username ?? '').replaceAll('%c', client.clientId)
}

/**
 * Whether some topic name matches both filters: level by level, `+` meets anything, `#` meets
 * everything from there on (the parent level included: `a/#` matches `a` [MQTT-4.7.1-2]).
 */
function overlaps (a: string, b: string): boolean {
  const la = a.split('/')
  const lb = b.split('/')
  for (let i = 0; ; i++) {
    if (i === la.length && i === lb.length) return true
    const x = la[i]
    const y = lb[i]
    if (x === '#' || y === '#') return true
    if (x === undefined || y === undefined) return false
    if (x !== '+' && y !== '+' && x !== y) return false
  }
}

/** The rule's pattern for this client, or undefined when the rule is not the client's. */
function applicable (r: AclRule, client: AclClient): string | undefined {
  if (r.user !== undefined && r.user !== client.username) return undefined
  if (r.clientId !== undefined && r.clientId !== client.clientId) return undefined
  return substitute(r.topic, client)
}

/** A shared subscription is checked on its filter: $share/group/f -> f (validated by the decoder already). */
function unshared (topicFilter: string): string {
  return parseSharedSubscription(topicFilter)?.topicFilter ?? topicFilter
}

/** ACL rules compiled into the two checks the broker asks. Default deny once any rule exists. */
export class Acl {
  constructor (private readonly rules: readonly AclRule[]) {}

  canPublish (client: AclClient, topicName: string): boolean {
    return this.check(client, topicName, 'write')
  }

  /**
   * A subscription is granted when some rule lets the client read part of what it matches and no
   * deny rule covers it all: `#` with only `home/alice/#` readable is granted, and each message
   * then passes `readFilter`'s check, as mosquitto applies its read ACL on delivery (MQTT
   * Explorer and the like subscribe to `#`). One that no read rule reaches is refused (mosquitto
   * grants it and never delivers anything: the refusal tells the client why).
   */
  canSubscribe (client: AclClient, topicFilter: string): boolean {
    const f = unshared(topicFilter)
    let reach = false
    for (const r of this.rules) {
      const pattern = applicable(r, client)
      if (pattern === undefined) continue
      if (r.access === 'deny') {
        if (covers(pattern, f)) return false
      } else if (r.access !== 'write' && !reach) reach = overlaps(pattern, f)
    }
    return reach
  }

  /**
   * For a subscription `canSubscribe` granted: undefined when every message it can match may be
   * read (one read rule covers its whole filter and no deny rule reaches into it), else the check
   * each message must pass before it is sent, live or retained: a filter wider than the read
   * rules, or a deny rule narrower than the filter (`home/alice/secret` under `home/#`).
   */
  readFilter (client: AclClient, topicFilter: string): ((topicName: string) => boolean) | undefined {
    const f = unshared(topicFilter)
    let covered = false
    let denyInside = false
    for (const r of this.rules) {
      const pattern = applicable(r, client)
      if (pattern === undefined) continue
      if (r.access === 'deny') denyInside ||= overlaps(pattern, f)
      else if (r.access !== 'write') covered ||= covers(pattern, f)
    }
    if (covered && !denyInside) return undefined
    // a copy of what the rules look at: the session, and this check, outlive the connection
    const who: AclClient = { clientId: client.clientId, username: client.username, protocolVersion: client.protocolVersion, remoteAddress: undefined }
    return (topicName) => this.check(who, topicName, 'read')
  }

  private check (client: AclClient, topic: string, want: 'read' | 'write'): boolean {
    let allowed = false
    for (const r of this.rules) {
      const pattern = applicable(r, client)
      if (pattern === undefined || !covers(pattern, topic)) continue
      if (r.access === 'deny') return false
      if (r.access === 'readwrite' || r.access === want) allowed = true
    }
    return allowed
  }
}
