// Running the load generators as child processes and reading their JSON.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { PETREL_BIN } from './brokers.mjs'

const RAW_GEN = fileURLToPath(new URL('../raw-gen.mjs', import.meta.url))

/** Runs a node script to its end; resolves with its parsed JSON stdout (rejects on a bad exit). */
export function runJson (argv, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (d) => { out += d })
    child.stderr.setEncoding('utf8').on('data', (d) => { if (err.length < 16384) err += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      try {
        if (code !== 0) throw new Error(`exit ${code ?? signal}`)
        resolve(JSON.parse(out))
      } catch (e) {
        reject(new Error(`${argv.slice(1, 4).join(' ')}...: ${e.message}\n${err.trim().split('\n').slice(-5).join('\n')}`))
      }
    })
  })
}

/**
 * `petrel bench <mode>` against 127.0.0.1:port; returns its --json summary.
 * `extra` are more flags, e.g. ['-c', '4', '--subs', '1']. Loss, duplicates and failed
 * connections are numbers the suites report, not failures of the run (--tolerate all).
 */
export async function petrelBench (mode, port, extra, timeoutMs = 120_000) {
  return await runJson([PETREL_BIN, 'bench', mode, '-p', String(port), '--json', '--quiet', '--tolerate', 'all', ...extra], timeoutMs)
}

/** The raw pre-encoded generator (raw-gen.mjs); returns { sent, received, seconds, perSecond }. */
export async function rawGen (port, extra, timeoutMs = 120_000) {
  return await runJson([RAW_GEN, '--port', String(port), ...extra], timeoutMs)
}

/**
 * One pubsub scenario through either generator, normalized:
 * { sent, received, perSecond, expected, missing, latencyMs, warmupLatencyMs, cpuPercent }
 * (cpuPercent: the generator process's share of one core over its run; with `s.warmup`, the
 * petrel generator runs that many seconds more and reports their latency as warmupLatencyMs).
 */
export async function pubsub (generator, port, s, seconds) {
  if (generator === 'raw') {
    const r = await rawGen(port, ['--pubs', String(s.pubs), '--subs', String(s.subs), '--qos', String(s.qos), '--size', String(s.size),
      '--duration', String(seconds), '--inflight', String(s.inflight ?? 100), ...(s.rate ? ['--rate', String(s.rate / s.pubs)] : [])])
    return { sent: r.sent, received: r.received, perSecond: r.perSecond, expected: r.sent * s.subs, missing: r.sent * s.subs - r.received, latencyMs: null, cpuPercent: r.cpu?.percentOfCore }
  }
  const r = await petrelBench('pubsub', port, ['-c', String(s.pubs), '--subs', String(s.subs), '-q', String(s.qos), '-s', String(s.size),
    '--duration', String(seconds), '--inflight', String(s.inflight ?? 100), ...(s.rate ? ['--rate', String(s.rate / s.pubs)] : []),
    ...(s.warmup ? ['--warmup', String(s.warmup)] : [])])
  return {
    sent: r.publish.sent,
    received: r.receive.received,
    perSecond: r.receive.perSecond,
    expected: r.publish.sent * s.subs,
    missing: r.receive.missing,
    latencyMs: r.receive.latencyMs,
    warmupLatencyMs: r.receive.warmupLatencyMs,
    errors: r.errors,
    cpuPercent: r.cpu?.percentOfCore
  }
}
