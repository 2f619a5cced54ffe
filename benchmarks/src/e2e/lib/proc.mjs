// Reading a process's CPU time and memory from /proc (Linux).
import { readFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'

let ticks = 0
function clockTicks () {
  if (ticks === 0) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      ticks = 100
    }
  }
  return ticks
}

/** User + system CPU seconds of a process so far (utime + stime, fields 14 and 15 of /proc/PID/stat). */
export function cpuSeconds (pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / clockTicks()
}

/** Resident set size and its peak, in KiB (VmRSS and VmHWM of /proc/PID/status). */
export function memoryKb (pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rss: field('VmRSS'), hwm: field('VmHWM') }
}

/** Samples VmRSS every `everyMs` until stopped; returns the largest value seen (KiB). */
export function sampleRss (pid, everyMs = 200) {
  let peak = 0
  const take = () => {
    try {
      peak = Math.max(peak, memoryKb(pid).rss)
    } catch {}
  }
  take()
  const timer = setInterval(take, everyMs)
  return () => {
    clearInterval(timer)
    take()
    return peak
  }
}
