// Medians and spreads over repeated runs.

export function median (xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

export function spread (xs) {
  const s = xs.filter((x) => Number.isFinite(x))
  return { median: median(s), min: Math.min(...s), max: Math.max(...s), n: s.length }
}

/** "185.2k (170.1k-190.3k)" */
export function formatSpread (xs, fmt) {
  const s = spread(xs)
  if (s.n === 0) return '-'
  if (s.n === 1) return fmt(s.median)
  return `${fmt(s.median)} (${fmt(s.min)}-${fmt(s.max)})`
}

export function ratio (a, b) {
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : '-'
}

export function si (n) {
  if (!Number.isFinite(n)) return '-'
  const a = Math.abs(n)
  if (a >= 1e6) return `${(n / 1e6).toFixed(2)}M`
  if (a >= 1e3) return `${(n / 1e3).toFixed(1)}k`
  return n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2)
}

export function fixed (digits) {
  return (n) => (Number.isFinite(n) ? n.toFixed(digits) : '-')
}
