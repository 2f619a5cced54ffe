import { readFileSync } from 'node:fs'

/**
 * The file descriptors this process may open (its soft limit, which Node raises to the hard one
 * at start-up), from /proc/self/limits; undefined where there is none (not Linux) or no limit.
 */
export function openFileLimit (limits = '/proc/self/limits'): number | undefined {
  let text: string
  try {
    text = readFileSync(limits, 'utf8')
  } catch {
    return undefined
  }
  const soft = /^Max open files\s+(\d+|unlimited)\s/m.exec(text)?.[1]
  return soft === undefined || soft === 'unlimited' ? undefined : Number(soft)
}
