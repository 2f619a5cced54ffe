// A small SVG chart writer for the results page: grouped bars with min-max whiskers, and lines
// over a numeric x axis (e.g. latency per offered rate) with min-max whiskers. Written here
// rather than taken from npm: the charting libraries that render SVG without a browser DOM
// (vega, vega-lite) bring dozens of packages for two chart shapes; this output is plain,
// deterministic text that diffs well in git.
//
// A series is { name, points: [{ x, median, min, max }] }; for bars, x is the category label.

const W = 760
const PAD = { top: 48, right: 20, bottom: 86, left: 78 }
const PLOT_H = 260
const H = PAD.top + PLOT_H + PAD.bottom
// Colour-blind-safe (Okabe-Ito); Petrel always first, in the same colour on every chart.
const COLOURS = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000']

function esc (s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

/** 1234567 -> "1.23M" */
export function short (n) {
  const a = Math.abs(n)
  if (a >= 1e6) return `${+(n / 1e6).toFixed(2)}M`
  if (a >= 1e3) return `${+(n / 1e3).toFixed(1)}k`
  if (a >= 100 || a === 0) return `${+n.toFixed(0)}`
  if (a >= 10) return `${+n.toFixed(1)}`
  return `${+n.toPrecision(2)}`
}

/** Round tick values covering 0..max (about five of them). */
function ticks (max) {
  if (!(max > 0)) return [0, 1]
  const raw = max / 5
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)
  const out = []
  for (let t = 0; t <= max + step * 1e-9; t += step) out.push(t)
  if (out[out.length - 1] < max) out.push(out[out.length - 1] + step)
  return out
}

function frame (title, subtitle, yLabel, yTicks, y, body, legend) {
  const lines = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${PAD.left}" y="20" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="${PAD.left}" y="37" fill="#555555">${esc(subtitle)}</text>`
  ]
  for (const t of yTicks) {
    const yy = y(t).toFixed(1)
    lines.push(`<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${yy}" y2="${yy}" stroke="#e4e4e4"/>`,
      `<text x="${PAD.left - 6}" y="${yy}" dy="4" text-anchor="end" fill="#333333">${esc(short(t))}</text>`)
  }
  lines.push(`<text transform="translate(18 ${PAD.top + PLOT_H / 2}) rotate(-90)" text-anchor="middle" fill="#333333">${esc(yLabel)}</text>`,
    `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${PAD.top + PLOT_H}" y2="${PAD.top + PLOT_H}" stroke="#333333"/>`)
  lines.push(...body)
  let lx = PAD.left
  for (const [i, name] of legend.entries()) {
    const ly = H - 16
    lines.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLOURS[i % COLOURS.length]}"/>`,
      `<text x="${lx + 17}" y="${ly}">${esc(name)}</text>`)
    lx += 30 + name.length * 7
  }
  lines.push('</svg>', '')
  return lines.join('\n')
}

function whisker (x, yMin, yMax, colour) {
  if (!Number.isFinite(yMin) || !Number.isFinite(yMax) || Math.abs(yMax - yMin) < 0.5) return []
  return [`<line x1="${x}" x2="${x}" y1="${yMin.toFixed(1)}" y2="${yMax.toFixed(1)}" stroke="${colour}" stroke-width="1.5"/>`,
    `<line x1="${x - 4}" x2="${x + 4}" y1="${yMin.toFixed(1)}" y2="${yMin.toFixed(1)}" stroke="${colour}"/>`,
    `<line x1="${x - 4}" x2="${x + 4}" y1="${yMax.toFixed(1)}" y2="${yMax.toFixed(1)}" stroke="${colour}"/>`]
}

/** Grouped bars: one group per category, one bar per series, whiskers from min to max. */
export function barChart ({ title, subtitle, yLabel, categories, series }) {
  const max = Math.max(0, ...series.flatMap((s) => s.points.map((p) => Math.max(p.max ?? p.median, p.median))).filter(Number.isFinite))
  const yTicks = ticks(max)
  const top = yTicks[yTicks.length - 1]
  const y = (v) => PAD.top + PLOT_H - (v / top) * PLOT_H
  const groupW = (W - PAD.left - PAD.right) / categories.length
  const barW = Math.min(48, (groupW * 0.8) / series.length)
  const body = []
  categories.forEach((cat, ci) => {
    const gx = PAD.left + ci * groupW + (groupW - barW * series.length) / 2
    series.forEach((s, si) => {
      const p = s.points.find((q) => q.x === cat)
      if (p === undefined || !Number.isFinite(p.median)) return
      const colour = COLOURS[si % COLOURS.length]
      const x = gx + si * barW
      body.push(`<rect x="${x.toFixed(1)}" y="${y(p.median).toFixed(1)}" width="${(barW - 3).toFixed(1)}" height="${(PAD.top + PLOT_H - y(p.median)).toFixed(1)}" fill="${colour}"><title>${esc(`${s.name}: ${short(p.median)} (${short(p.min)}-${short(p.max)})`)}</title></rect>`)
      body.push(...whisker(x + (barW - 3) / 2, y(p.min), y(p.max), '#222222'))
      body.push(`<text x="${(x + (barW - 3) / 2).toFixed(1)}" y="${(y(p.max ?? p.median) - 4).toFixed(1)}" text-anchor="middle" font-size="10" fill="#333333">${esc(short(p.median))}</text>`)
    })
    body.push(...wrap(cat, 2 + Math.floor(groupW / 6.5)).map((line, li) =>
      `<text x="${(PAD.left + (ci + 0.5) * groupW).toFixed(1)}" y="${PAD.top + PLOT_H + 16 + li * 13}" text-anchor="middle" fill="#333333">${esc(line)}</text>`))
  })
  return frame(title, subtitle, yLabel, yTicks, y, body, series.map((s) => s.name))
}

/** Lines over a numeric x axis (log scale when the values span two decades or more), whiskers min-max. */
export function lineChart ({ title, subtitle, yLabel, xLabel, series }) {
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b)
  const log = xs.length > 1 && xs[0] > 0 && xs[xs.length - 1] / xs[0] >= 100
  const fx = (v) => (log ? Math.log10(v) : v)
  const x0 = fx(xs[0])
  const x1 = fx(xs[xs.length - 1])
  const span = x1 - x0 || 1
  const innerW = W - PAD.left - PAD.right - 40
  const x = (v) => PAD.left + 20 + ((fx(v) - x0) / span) * innerW
  const max = Math.max(0, ...series.flatMap((s) => s.points.map((p) => Math.max(p.max ?? p.median, p.median))).filter(Number.isFinite))
  const yTicks = ticks(max)
  const top = yTicks[yTicks.length - 1]
  const y = (v) => PAD.top + PLOT_H - (v / top) * PLOT_H
  const body = xs.map((v) => `<text x="${x(v).toFixed(1)}" y="${PAD.top + PLOT_H + 16}" text-anchor="middle" fill="#333333">${esc(short(v))}</text>`)
  body.push(`<text x="${PAD.left + innerW / 2}" y="${PAD.top + PLOT_H + 34}" text-anchor="middle" fill="#333333">${esc(xLabel + (log ? ' (log scale)' : ''))}</text>`)
  series.forEach((s, si) => {
    const colour = COLOURS[si % COLOURS.length]
    const pts = s.points.filter((p) => Number.isFinite(p.median)).sort((a, b) => a.x - b.x)
    if (pts.length > 1) body.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${pts.map((p) => `${x(p.x).toFixed(1)},${y(p.median).toFixed(1)}`).join(' ')}"/>`)
    for (const p of pts) {
      // Series are nudged apart a little so that their whiskers do not hide each other.
      const px = x(p.x) + (si - (series.length - 1) / 2) * 5
      body.push(...whisker(px, y(p.min), y(p.max), colour))
      body.push(`<circle cx="${px.toFixed(1)}" cy="${y(p.median).toFixed(1)}" r="3.5" fill="${colour}"><title>${esc(`${s.name} at ${short(p.x)}: ${short(p.median)} (${short(p.min)}-${short(p.max)})`)}</title></circle>`)
    }
  })
  return frame(title, subtitle, yLabel, yTicks, y, body, series.map((s) => s.name))
}

/** Splits a label into lines of at most `width` characters, at spaces, three lines at most. */
function wrap (text, width) {
  const out = []
  let line = ''
  for (const word of String(text).split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      out.push(line)
      line = word
    } else {
      line = line === '' ? word : `${line} ${word}`
    }
  }
  if (line !== '') out.push(line)
  return out.length > 3 ? [...out.slice(0, 2), `${out.slice(2).join(' ').slice(0, width - 1)}…`] : out
}
