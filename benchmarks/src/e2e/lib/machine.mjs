// The machine a result was measured on.
import { cpus, loadavg, release, totalmem, type } from 'node:os'
import { readFileSync } from 'node:fs'

export function machineInfo () {
  let os = `${type()} ${release()}`
  try {
    const pretty = /^PRETTY_NAME="?([^"\n]+)"?/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1]
    if (pretty !== undefined) os = `${pretty}, kernel ${release()}`
  } catch {}
  const c = cpus()
  return {
    cpu: c[0]?.model.trim() ?? 'unknown CPU',
    cores: c.length,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    os,
    load: loadavg().map((x) => x.toFixed(2)).join(' ')
  }
}
