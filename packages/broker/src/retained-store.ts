import type { Message } from './message.js'

/** One topic level of the store: the message retained at this exact topic, and deeper levels. */
interface Level {
  children: Map<string, Level> | undefined
  message: Message | undefined
}

/** Marks a stack entry below a `#`: the level and everything under it matches. */
const ALL = -1

/**
 * Retained messages by topic [MQTT-3.3.1-5]. Payloads are owned copies. A filter without
 * wildcards is a single lookup; a wildcard filter walks a tree of topic levels, visiting only
 * the branches it can match, and stops as soon as the caller has had enough. (A scan of every
 * retained message per wildcard filter let one SUBSCRIBE of 100,000 filters stall the event
 * loop for minutes against 20,000 retained topics.)
 */
export class RetainedStore {
  private readonly byTopic = new Map<string, Message>()
  private readonly root: Level = { children: undefined, message: undefined }
  /** Sum of `Message.size` over what is stored (expired messages count until they are dropped). */
  bytes = 0

  constructor (private readonly max: number, private readonly maxBytes: number) {}

  get size (): number {
    return this.byTopic.size
  }

  /**
   * Stores, replaces, or (empty payload) clears [MQTT-3.3.1-6] [MQTT-3.3.1-7]; false when the
   * message does not fit: a new topic past `max` messages, or anything past `maxBytes` bytes
   * (a replacement counts what it adds over the message it replaces). A replacement that does
   * not fit still removes the old message: kept, it would be handed to new subscribers as the
   * topic's last value when it no longer is.
   */
  set (message: Message): boolean {
    const old = this.byTopic.get(message.topic)
    if (message.payload.length === 0) {
      if (old !== undefined) this.remove(old)
      return true
    }
    if (old === undefined && this.byTopic.size >= this.max) return false
    const oldSize = old === undefined ? 0 : old.size
    if (this.bytes - oldSize + message.size > this.maxBytes) {
      if (old !== undefined) this.remove(old)
      return false
    }
    this.bytes -= oldSize
    this.byTopic.set(message.topic, message.own())
    this.bytes += message.size
    let n = this.root
    for (const level of message.topic.split('/')) {
      const children = n.children ??= new Map()
      let next = children.get(level)
      if (next === undefined) children.set(level, next = { children: undefined, message: undefined })
      n = next
    }
    n.message = message
    return true
  }

  /**
   * Calls `fn` for each unexpired retained message matching a plain filter, until `fn` returns
   * false. Names starting with `$` are not matched by a first-level wildcard [MQTT-4.7.2-1];
   * `a/#` also matches `a` [MQTT-4.7.1-2].
   */
  forEachMatch (filter: string, now: number, fn: (m: Message) => boolean | undefined): void {
    if (!filter.includes('+') && !filter.includes('#')) {
      const m = this.byTopic.get(filter)
      if (m !== undefined && this.alive(m, now)) fn(m)
      return
    }
    const levels = filter.split('/')
    const expired: Message[] = []
    // Iterative: an application may retain topics deeper than any stack.
    const stack: Array<[Level, number]> = [[this.root, 0]]
    let more = true
    const visit = (m: Message | undefined): void => {
      if (m === undefined) return
      if (m.expiresAt !== 0 && m.expiresAt <= now) expired.push(m)
      else if (fn(m) === false) more = false
    }
    while (more && stack.length > 0) {
      const [n, i] = stack.pop() as [Level, number]
      if (i === ALL) {
        visit(n.message)
        if (n.children !== undefined) for (const c of n.children.values()) stack.push([c, ALL])
        continue
      }
      if (i === levels.length) {
        visit(n.message)
        continue
      }
      const level = levels[i] as string
      if (level === '#' || level === '+') {
        if (level === '#' && i > 0) visit(n.message)
        if (n.children === undefined) continue
        const next = level === '#' ? ALL : i + 1
        for (const [name, c] of n.children) {
          if (i === 0 && name.charCodeAt(0) === 0x24) continue
          stack.push([c, next])
        }
      } else {
        const c = n.children?.get(level)
        if (c !== undefined) stack.push([c, i + 1])
      }
    }
    for (const m of expired) this.remove(m) // [MQTT-3.3.2-5] an expired retained message is not sent
  }

  private alive (m: Message, now: number): boolean {
    if (m.expiresAt === 0 || m.expiresAt > now) return true
    this.remove(m) // [MQTT-3.3.2-5] an expired retained message is not sent
    return false
  }

  /** Drops `m` (if it is still the one retained at its topic) and prunes levels left empty. */
  private remove (m: Message): void {
    if (this.byTopic.get(m.topic) !== m) return
    this.byTopic.delete(m.topic)
    this.bytes -= m.size
    const path: Array<[Level, string]> = []
    let n: Level | undefined = this.root
    for (const level of m.topic.split('/')) {
      path.push([n, level])
      n = n.children?.get(level)
      if (n === undefined) return
    }
    n.message = undefined
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, level] = path[i] as [Level, string]
      const child = parent.children?.get(level) as Level
      if (child.message !== undefined || (child.children !== undefined && child.children.size > 0)) break
      parent.children?.delete(level)
      if (parent.children?.size === 0) parent.children = undefined
    }
  }
}
