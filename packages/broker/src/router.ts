import { TopicTrie } from '@petrel/session'
import { parseSharedSubscription, topicMatches, type QoS, type Subscription } from '@petrel/wire'
import type { Message } from './message.js'
import { FilterBudget, type Session, type SessionSubscription } from './session.js'
import type { FilterMemory, FilterMemoryOverride } from './options.js'

/** The members of one `$share/{group}/{filter}`, served round robin [MQTT-4.8.2-4]. */
class SharedGroup {
  readonly members: SessionSubscription[] = []
  next = 0
  constructor (readonly key: string) {}
}

type Entry = SessionSubscription | SharedGroup

/**
 * Topic name -> the sessions to deliver to. A TopicTrie holds one entry per plain subscription
 * and one per shared group. A publish walks the trie once; overlapping subscriptions of one
 * session merge into one delivery with the highest QoS and every Subscription Identifier
 * [MQTT-3.3.4-2] [MQTT-3.3.4-3], using scratch fields on the session (no per-publish map).
 */
export class Router {
  private readonly trie = new TopicTrie<Entry>()
  private readonly groups = new Map<string, SharedGroup>()
  private epoch = 0
  private current: Message | undefined
  private readonly targets: Session[] = []
  private readonly collect = (e: Entry): void => { this.add(e) }
  subscriptionCount = 0

  constructor (private readonly memory: FilterMemory, private readonly overrides: readonly FilterMemoryOverride[]) {}

  /**
   * Adds or replaces [MQTT-3.8.4-3] `session`'s subscription; returns the stored entry and
   * whether it existed before (for Retain Handling 1).
   */
  subscribe (session: Session, sub: Subscription, subscriptionIdentifier: number | undefined,
    readable?: (topicName: string) => boolean): { entry: SessionSubscription, existed: boolean } {
    const subs = session.subscriptions ??= new Map()
    const existing = subs.get(sub.topicFilter)
    if (existing !== undefined) {
      existing.qos = sub.qos
      existing.noLocal = sub.noLocal === true
      existing.retainAsPublished = sub.retainAsPublished === true
      existing.retainHandling = sub.retainHandling ?? 0
      existing.subscriptionIdentifier = subscriptionIdentifier
      existing.readable = readable
      return { entry: existing, existed: true }
    }
    const shared = parseSharedSubscription(sub.topicFilter)
    const topicFilter = shared?.topicFilter ?? sub.topicFilter
    const entry: SessionSubscription = {
      key: sub.topicFilter,
      topicFilter,
      shareName: shared?.shareName,
      qos: sub.qos,
      noLocal: sub.noLocal === true,
      retainAsPublished: sub.retainAsPublished === true,
      retainHandling: sub.retainHandling ?? 0,
      subscriptionIdentifier,
      budget: this.budgetFor(topicFilter, shared === undefined ? undefined : sub.topicFilter),
      readable,
      session
    }
    subs.set(sub.topicFilter, entry)
    if (shared === undefined) this.trie.add(topicFilter, entry)
    else {
      let g = this.groups.get(sub.topicFilter)
      if (g === undefined) {
        g = new SharedGroup(sub.topicFilter)
        this.groups.set(sub.topicFilter, g)
        this.trie.add(topicFilter, g)
      }
      g.members.push(entry)
    }
    this.subscriptionCount++
    return { entry, existed: false }
  }

  /** Removes one subscription; false when the session had none for that filter. */
  unsubscribe (session: Session, key: string): boolean {
    const entry = session.subscriptions?.get(key)
    if (entry === undefined) return false
    session.subscriptions?.delete(key)
    if (entry.shareName === undefined) this.trie.remove(entry.topicFilter, entry)
    else {
      const g = this.groups.get(key)
      if (g !== undefined) {
        const i = g.members.indexOf(entry)
        if (i !== -1) g.members.splice(i, 1)
        if (g.members.length === 0) {
          this.groups.delete(key)
          this.trie.remove(entry.topicFilter, g)
        }
      }
    }
    this.subscriptionCount--
    return true
  }

  /** Removes every subscription of a session that ends. */
  unsubscribeAll (session: Session): void {
    const subs = session.subscriptions
    if (subs === undefined) return
    for (const key of [...subs.keys()]) this.unsubscribe(session, key)
    session.subscriptions = undefined
  }

  /** Delivers `message` to every matching session; returns how many got it. */
  route (message: Message): number {
    this.epoch++
    this.current = message
    this.trie.forEachMatch(message.topic, this.collect)
    this.current = undefined
    const targets = this.targets
    const n = targets.length
    for (let i = 0; i < n; i++) {
      const s = targets[i] as Session
      s.deliver(message, s.routeQos, s.routeRetain, s.routeSubIds, s.routeBudget)
      s.routeSubIds = undefined
      s.routeBudget = undefined
      if (s.routeAlt) {
        s.routeAlt = false
        s.deliver(message, s.routeAltQos, !s.routeRetain, s.routeAltSubIds, s.routeAltBudget)
        s.routeAltSubIds = undefined
        s.routeAltBudget = undefined
      }
    }
    targets.length = 0
    return n
  }

  /**
   * Hands a message that a member of shared group `key` held when its session ended to another
   * member (4.8.2: the Server SHOULD send it to another client subscribed to the same shared
   * subscription). False when no member is left (or the one chosen may not read it).
   */
  deliverShared (key: string, message: Message, qos: QoS): boolean {
    const g = this.groups.get(key)
    if (g === undefined) return false
    const sub = pick(g, qos)
    if (sub === undefined || (sub.readable !== undefined && !sub.readable(message.topic))) return false
    const q = (sub.qos < qos ? sub.qos : qos) as QoS
    const sid = sub.subscriptionIdentifier
    sub.session.deliver(message, q, sub.retainAsPublished && message.retain, sid === undefined ? undefined : [sid], sub.budget)
    return true
  }

  private add (e: Entry): void {
    const msg = this.current as Message
    let sub: SessionSubscription
    if (e instanceof SharedGroup) {
      const picked = pick(e, msg.qos)
      if (picked === undefined) return
      sub = picked
    } else {
      sub = e
      // [MQTT-3.8.3-3] no-local: not back to the connection that published it
      if (sub.noLocal && msg.from === sub.session) return
    }
    // the ACL reads each message: a filter wider than the read rules, or a deny rule inside it (Acl.readFilter)
    if (sub.readable !== undefined && !sub.readable(msg.topic)) return
    const s = sub.session
    const qos = (sub.qos < msg.qos ? sub.qos : msg.qos) as QoS
    // [MQTT-3.3.1-12] (3.1.1: RETAIN 0 on routed messages) / retain as published [MQTT-3.3.1-13]
    const retain = sub.retainAsPublished && msg.retain
    const sid = sub.subscriptionIdentifier
    if (s.routeEpoch !== this.epoch) {
      s.routeEpoch = this.epoch
      s.routeQos = qos
      s.routeRetain = retain
      s.routeSubIds = sid === undefined ? undefined : [sid]
      s.routeBudget = sub.budget
      this.targets.push(s)
    } else if (retain === s.routeRetain) {
      // One copy for overlapping subscriptions, at the highest QoS, with every identifier
      // [MQTT-3.3.4-2] [MQTT-3.3.4-4].
      if (qos > s.routeQos) {
        s.routeQos = qos
        s.routeBudget = sub.budget
      }
      if (sid !== undefined) (s.routeSubIds ??= []).push(sid)
    } else if (!s.routeAlt) {
      // RETAIN differs [MQTT-3.3.1-12] [MQTT-3.3.1-13]: a further copy for these [MQTT-3.3.4-5].
      s.routeAlt = true
      s.routeAltQos = qos
      s.routeAltSubIds = sid === undefined ? undefined : [sid]
      s.routeAltBudget = sub.budget
    } else {
      if (qos > s.routeAltQos) {
        s.routeAltQos = qos
        s.routeAltBudget = sub.budget
      }
      if (sid !== undefined) (s.routeAltSubIds ??= []).push(sid)
    }
  }

  /**
   * A new budget for one subscription to `filter`: the first override whose pattern matches it,
   * else the default. Each subscription gets its own, so a frozen subscriber uses up only its
   * own allowance and never the room its fellow subscribers need.
   */
  private budgetFor (filter: string, share: string | undefined): FilterBudget {
    let m = this.memory
    for (const o of this.overrides) {
      if (o.pattern === filter || topicMatches(o.pattern, filter)) { m = o; break }
    }
    return new FilterBudget(filter, m.maxSegmentSize * m.maxSegmentCount, share)
  }
}

/**
 * Next member of a shared group: round robin over the members that can send it now (online,
 * socket not backed up, nothing queued, room in their in-flight window). When none can, the
 * online member that acknowledged most recently, among those whose queue is under half full,
 * else the one with the shortest queue: a member that has stopped acknowledging keeps only
 * what fills its window and never holds the group (round robin alone gave it its share, to
 * queue until it dropped them). Offline members only when every member is.
 */
function pick (g: SharedGroup, qos: QoS): SessionSubscription | undefined {
  const n = g.members.length
  if (n === 0) return undefined
  let best: SessionSubscription | undefined
  let bestAt = 0
  let bestRoomy = false
  for (let k = 0; k < n; k++) {
    const i = (g.next + k) % n
    const m = g.members[i] as SessionSubscription
    const s = m.session
    if (s.ready((m.qos < qos ? m.qos : qos) as QoS)) {
      g.next = (i + 1) % n
      return m
    }
    if (s.outlet === undefined) continue
    const roomy = !s.overHalf(undefined)
    if (best === undefined || (roomy && !bestRoomy) ||
        (roomy === bestRoomy && (roomy ? s.lastProgress > best.session.lastProgress : s.queueLength < best.session.queueLength))) {
      best = m
      bestAt = i
      bestRoomy = roomy
    }
  }
  if (best !== undefined) {
    g.next = (bestAt + 1) % n
    return best
  }
  const m = g.members[g.next % n] as SessionSubscription
  g.next = (g.next + 1) % n
  return m
}
