/**
 * Topic filters -> values, matched against topic names level by level. One node per filter
 * level; `+` and `#` children are kept apart from literal levels so a lookup never scans them.
 *
 *   root ── "sensors" ── "+" ── "temp" : [v1]
 *                 └─── "#" : [v2]
 *
 * Names starting with `$` are not matched by a filter whose first level is `+` or `#`
 * [MQTT-4.7.2-1]. `a/#` also matches `a` [MQTT-4.7.1-2].
 */
interface Node<T> {
  children: Map<string, Node<T>> | undefined
  plus: Node<T> | undefined
  hash: T[] | undefined
  values: T[] | undefined
}

function node<T> (): Node<T> {
  return { children: undefined, plus: undefined, hash: undefined, values: undefined }
}

export class TopicTrie<T> {
  private readonly root: Node<T> = node()
  private count = 0

  /** Number of (filter, value) entries. */
  get size (): number {
    return this.count
  }

  /** Adds `value` under `topicFilter` (a valid, non-shared filter). */
  add (topicFilter: string, value: T): void {
    const levels = topicFilter.split('/')
    let n = this.root
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i] as string
      if (level === '#') {
        (n.hash ??= []).push(value)
        this.count++
        return
      }
      if (level === '+') n = n.plus ??= node()
      else {
        const children = n.children ??= new Map()
        let next = children.get(level)
        if (next === undefined) children.set(level, next = node())
        n = next
      }
    }
    (n.values ??= []).push(value)
    this.count++
  }

  /** Removes one entry equal to `value` (by `===`, or by `same` when given); returns whether one was found. */
  remove (topicFilter: string, value: T, same?: (a: T, b: T) => boolean): boolean {
    const levels = topicFilter.split('/')
    const path: Array<[Node<T>, string]> = []
    let n: Node<T> | undefined = this.root
    let list: T[] | undefined
    let last: Node<T> = this.root
    for (let i = 0; i < levels.length && n !== undefined; i++) {
      const level = levels[i] as string
      if (level === '#') { list = n.hash; last = n; break }
      path.push([n, level])
      n = level === '+' ? n.plus : n.children?.get(level)
      if (i === levels.length - 1 && n !== undefined) { list = n.values; last = n }
    }
    if (list === undefined) return false
    const idx = same === undefined ? list.indexOf(value) : list.findIndex((v) => same(v, value))
    if (idx === -1) return false
    list.splice(idx, 1)
    this.count--
    if (list.length === 0) {
      if (last.hash === list) last.hash = undefined
      else last.values = undefined
    }
    // prune empty nodes from the leaf up
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, level] = path[i] as [Node<T>, string]
      const child = level === '+' ? parent.plus : parent.children?.get(level)
      if (child === undefined || !isEmpty(child)) break
      if (level === '+') parent.plus = undefined
      else {
        parent.children?.delete(level)
        if (parent.children?.size === 0) parent.children = undefined
      }
    }
    return true
  }

  /** Calls `fn` for every value whose filter matches `topicName` (once per matching entry). */
  forEachMatch (topicName: string, fn: (value: T) => void): void {
    const levels = topicName.split('/')
    const dollar = topicName.charCodeAt(0) === 0x24
    this.walk(this.root, levels, 0, fn, dollar)
  }

  /** The values whose filters match `topicName`. */
  match (topicName: string): T[] {
    const out: T[] = []
    this.forEachMatch(topicName, (v) => { out.push(v) })
    return out
  }

  private walk (n: Node<T>, levels: string[], i: number, fn: (value: T) => void, noWildcard: boolean): void {
    if (n.hash !== undefined && !noWildcard) for (const v of n.hash) fn(v)
    if (i === levels.length) {
      if (n.values !== undefined) for (const v of n.values) fn(v)
      return
    }
    const child = n.children?.get(levels[i] as string)
    if (child !== undefined) this.walk(child, levels, i + 1, fn, false)
    if (n.plus !== undefined && !noWildcard) this.walk(n.plus, levels, i + 1, fn, false)
  }
}

function isEmpty<T> (n: Node<T>): boolean {
  return n.values === undefined && n.hash === undefined && n.plus === undefined && (n.children === undefined || n.children.size === 0)
}
