// Cuts a fault proxy's connections at random points of a transfer, for loss tests.
import type { FaultProxy } from './fault-proxy.js'

export interface ProgressCutter {
  /** Call with the transfer's progress (e.g. messages received): cuts once per mark passed. */
  check: (progress: number) => void
  /** Cuts made so far. */
  made: () => number
}

/**
 * `cuts` cut points at random distinct progress marks in 1..n-1. Cutting on progress (not on a
 * timer) puts every cut inside the transfer however fast the machine is.
 */
export function progressCutter (proxy: FaultProxy, n: number, cuts: number): ProgressCutter {
  const marks = new Set<number>()
  while (marks.size < cuts) marks.add(1 + Math.floor(Math.random() * (n - 1)))
  const sorted = [...marks].sort((a, b) => a - b)
  let next = 0
  return {
    check: (progress) => {
      let due = false
      while (next < sorted.length && progress >= (sorted[next] as number)) { next++; due = true }
      // One cut per call even if several marks were passed: the connections are gone after the first.
      if (due) setImmediate(() => { proxy.cut() })
    },
    made: () => next
  }
}
