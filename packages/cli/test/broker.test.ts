// `petrel broker` and `petrel passwd` as a user runs them: child processes, real peers.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { connect as netConnect, type Socket } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { PasswordFile } from '@petrel/broker'
import { findProgram, requirePeer, waitFor } from '@petrel/test-utils'

const run = promisify(execFile)
const bin = fileURLToPath(new URL('../src/bin/petrel.js', import.meta.url))

interface Started { child: ChildProcess, port: number, stdout: () => string, exited: Promise<number | null> }

async function startBroker (args: string[]): Promise<Started> {
  const child = spawn(process.execPath, [bin, 'broker', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
  await waitFor(() => /listening on/.test(out) || child.exitCode !== null, { timeoutMs: 10_000, message: 'broker start-up line' })
  const m = /listening on mqtt:\/\/[^\s,]+:(\d+)/.exec(out)
  assert.ok(m !== null, `start-up output: ${out}`)
  return { child, port: Number(m[1]), stdout: () => out, exited }
}

test('petrel broker: one line saying where it listens; mosquitto_pub/sub in both versions; SIGTERM closes gracefully', async (t) => {
  if (!requirePeer(t, 'mosquitto_pub') || !requirePeer(t, 'mosquitto_sub')) return
  const b = await startBroker(['--port', '0'])
  try {
    assert.equal(b.stdout().trim().split('\n').length, 1)
    assert.match(b.stdout(), /^petrel broker listening on mqtt:\/\/127\.0\.0\.1:\d+; Ctrl-C to stop\n$/)
    for (const V of ['mqttv311', 'mqttv5']) {
      const sub = spawn(findProgram('mosquitto_sub') as string, ['-V', V, '-p', String(b.port), '-t', 'cli/#', '-C', '1', '-W', '10', '-q', '1'])
      let got = ''
      sub.stdout.on('data', (d: Buffer) => { got += d.toString() })
      const done = new Promise<number | null>((resolve) => sub.on('close', resolve))
      // publish until the subscriber (which may still be connecting) has its message
      while (got === '' && sub.exitCode === null) {
        await run(findProgram('mosquitto_pub') as string, ['-V', V, '-p', String(b.port), '-t', 'cli/x', '-m', `hi-${V}`, '-q', '1'])
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      assert.equal(await done, 0)
      assert.equal(got.trim(), `hi-${V}`)
    }
  } finally {
    b.child.kill('SIGTERM')
  }
  assert.equal(await b.exited, 0)
})

test('petrel broker on a port in use (a second npm start), or its metrics port in use: exit 2 (1 is a config to fix), saying so and what to do', async () => {
  const b = await startBroker(['--port', '0'])
  try {
    await assert.rejects(run(process.execPath, [bin, 'broker', '--port', String(b.port)]), (err: { code?: number, stderr?: string }) => {
      assert.equal(err.code, 2)
      assert.match(err.stderr ?? '', new RegExp(`^petrel broker: cannot listen on tcp 127\\.0\\.0\\.1:${b.port}: listen EADDRINUSE`))
      assert.match(err.stderr ?? '', /another process \(a broker already running\?\) holds that port: stop it, or pick another port with -p PORT \(npm start -- -p PORT/)
      return true
    })
    // the metrics endpoint on a port in use: the same code and a message, not a stack trace
    const dir = mkdtempSync(join(tmpdir(), 'petrel-cli-'))
    writeFileSync(join(dir, 'petrel.toml'), `[metrics]\nport = ${b.port}\n`)
    await assert.rejects(run(process.execPath, [bin, 'broker', '--port', '0', '--config', join(dir, 'petrel.toml')]), (err: { code?: number, stderr?: string }) => {
      assert.equal(err.code, 2)
      assert.equal(err.stderr, `petrel broker: cannot serve metrics on 127.0.0.1:${b.port}: listen EADDRINUSE: address already in use 127.0.0.1:${b.port}\n` +
        '  another process holds that port: stop it, or pick another [metrics] port in the config file\n')
      return true
    })
    // a listener address that does not exist here (yet): 2 as well
    await assert.rejects(run(process.execPath, [bin, 'broker', '--host', '192.0.2.1', '--port', '0']), (err: { code?: number, stderr?: string }) => {
      assert.equal(err.code, 2)
      assert.match(err.stderr ?? '', /^petrel broker: cannot listen on tcp 192\.0\.2\.1:0: listen EADDRNOTAVAIL/)
      return true
    })
  } finally {
    b.child.kill('SIGTERM')
  }
  assert.equal(await b.exited, 0)
})

test('petrel broker: SIGHUP (a mosquitto user\'s reload) does not kill it: it says to restart and keeps serving', async (t) => {
  if (!requirePeer(t, 'mosquitto_pub')) return
  const b = await startBroker(['--port', '0'])
  try {
    b.child.kill('SIGHUP')
    await waitFor(() => /SIGHUP/.test(b.stdout()), { timeoutMs: 5000, message: 'the SIGHUP message' })
    assert.match(b.stdout(), /SIGHUP: the configuration is not reloaded.*stop it \(SIGTERM or Ctrl-C\) and start it again/)
    assert.equal(b.child.exitCode, null)
    await run(findProgram('mosquitto_pub') as string, ['-p', String(b.port), '-t', 'after/hup', '-m', 'still here', '-q', '1'])
  } finally {
    b.child.kill('SIGTERM')
  }
  assert.equal(await b.exited, 0)
})

test('petrel broker under an open-file limit below max_connections warns at start-up (after the listening line); within it, nothing', async (t) => {
  const sh = findProgram('sh')
  if (sh === undefined) { t.skip('no sh to set ulimit -n with'); return }
  const started = async (config: string | undefined): Promise<string> => {
    const args = config === undefined ? [] : ['--config', config]
    const child = spawn(sh, ['-c', 'ulimit -n 300 && exec "$0" "$@"', process.execPath, bin, 'broker', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { out += d.toString() })
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
    try {
      await waitFor(() => /listening on/.test(out) || child.exitCode !== null, { timeoutMs: 10_000, message: 'broker start-up line' })
      // The warning, when there is one, follows the start-up line at once.
      await new Promise((resolve) => setTimeout(resolve, 300))
    } finally {
      child.kill('SIGTERM')
    }
    assert.equal(await exited, 0, out)
    return out
  }
  const low = await started(undefined)
  assert.match(low, /^petrel broker listening on .*\npetrel broker: warning: this process may open 300 files .* max_connections is 10,000: clients past about 236 will be closed/)
  const dir = mkdtempSync(join(tmpdir(), 'petrel-cli-'))
  writeFileSync(join(dir, 'petrel.toml'), '[limits]\nmax_connections = 200\n')
  assert.doesNotMatch(await started(join(dir, 'petrel.toml')), /warning/)
})

test('petrel broker out of file descriptors after start-up: one warning with the advice while clients are closed as they connect, counted in metrics; once descriptors are free it says so and mosquitto_pub gets in', { timeout: 60_000 }, async (t) => {
  const sh = findProgram('sh')
  if (sh === undefined) { t.skip('no sh to set ulimit -n with'); return }
  if (!requirePeer(t, 'mosquitto_pub')) return
  const dir = mkdtempSync(join(tmpdir(), 'petrel-cli-'))
  writeFileSync(join(dir, 'petrel.toml'), '[metrics]\nport = 0\n')
  const child = spawn(sh, ['-c', 'ulimit -n 100 && exec "$0" "$@"', process.execPath, bin, 'broker', '--port', '0', '--config', join(dir, 'petrel.toml')], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
  const sockets: Socket[] = []
  try {
    await waitFor(() => /listening on/.test(out) || child.exitCode !== null, { timeoutMs: 10_000, message: 'broker start-up line' })
    const port = Number(/listening on mqtt:\/\/[^\s,]+:(\d+)/.exec(out)?.[1])
    const metricsPort = Number(/metrics on http:\/\/[^\s]+:(\d+)\/metrics/.exec(out)?.[1])
    // More sockets than the broker has descriptors for: the last ones are closed as they connect.
    let closedAtOnce = 0
    for (let i = 0; i < 120; i++) {
      const s = netConnect({ host: '127.0.0.1', port })
      s.on('error', () => {})
      s.on('close', () => { closedAtOnce++ })
      sockets.push(s)
      await new Promise<void>((resolve) => { s.once('connect', () => { resolve() }); s.once('close', () => { resolve() }) })
    }
    await waitFor(() => closedAtOnce > 0, { timeoutMs: 5000, message: 'sockets closed by the broker out of descriptors' })
    await waitFor(() => /out of file descriptors/.test(out), { timeoutMs: 5000, message: `the warning; output: ${out}` })
    // still out: checked again, not warned again
    await new Promise((resolve) => setTimeout(resolve, 2500))
    const warnings = out.split('\n').filter((l) => l.includes('out of file descriptors'))
    assert.equal(warnings.length, 1, out)
    assert.match(warnings[0] ?? '', /out of file descriptors \(EMFILE\): new clients are closed as they connect; raise the process's open-file limit \(ulimit -n/)
    for (const s of sockets.splice(0)) s.destroy()
    await waitFor(() => /file descriptors available again/.test(out), { timeoutMs: 5000, message: 'the recovery line' })
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
    const count = Number(/^petrel_file_descriptors_exhausted_total (\d+)$/m.exec(metrics)?.[1])
    assert.ok(count >= 2, `petrel_file_descriptors_exhausted_total ${count}`)
    // the listener accepts again
    await run(findProgram('mosquitto_pub') as string, ['-p', String(port), '-t', 'after/emfile', '-m', 'in', '-q', '1'])
  } finally {
    for (const s of sockets) s.destroy()
    child.kill('SIGTERM')
  }
  assert.equal(await exited, 0, out)
})

test('petrel broker --config with an unknown key exits 1 naming the key and line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-cli-'))
  const cfg = join(dir, 'petrel.toml')
  writeFileSync(cfg, '[limits]\nmax_connections = 10\nmax_conections = 5\n')
  await assert.rejects(run(process.execPath, [bin, 'broker', '--config', cfg]), (err: { code?: number, stderr?: string }) => {
    assert.equal(err.code, 1)
    assert.match(err.stderr ?? '', /petrel\.toml:3: limits\.max_conections: unknown key/)
    return true
  })
})

test('petrel broker --host 0.0.0.0 without [auth]: a warning at start-up says nobody can connect, and how to let them', async () => {
  const b = await startBroker(['--host', '0.0.0.0', '--port', '0'])
  try {
    assert.match(b.stdout(), /^petrel broker: warning: nobody can connect to mqtt:\/\/0\.0\.0\.0:\d+: .*allow_anonymous = true.*password_file/m)
  } finally {
    b.child.kill('SIGTERM')
  }
  assert.equal(await b.exited, 0)
  // With a password file (or on loopback, as the other tests run it) there is nothing to warn about.
  const dir = mkdtempSync(join(tmpdir(), 'petrel-cli-'))
  await run(process.execPath, [bin, 'passwd', '-c', join(dir, 'passwd'), 'alice', '--password', 'x'])
  writeFileSync(join(dir, 'petrel.toml'), 'sys_interval = 0\n[[listener]]\nhost = "0.0.0.0"\nport = 0\n[auth]\npassword_file = "passwd"\n')
  const quiet = await startBroker(['--config', join(dir, 'petrel.toml')])
  try {
    assert.doesNotMatch(quiet.stdout(), /warning/)
  } finally {
    quiet.child.kill('SIGTERM')
  }
  assert.equal(await quiet.exited, 0)
})

test('petrel broker --help', async () => {
  const { stdout } = await run(process.execPath, [bin, 'broker', '--help'])
  assert.match(stdout, /--config/)
  assert.match(stdout, /--port/)
})

test('petrel passwd -c adds a user; the broker then requires it', async (t) => {
  if (!requirePeer(t, 'mosquitto_pub')) return
  const dir = mkdtempSync(join(tmpdir(), 'petrel-cli-'))
  const pw = join(dir, 'passwd')
  await run(process.execPath, [bin, 'passwd', '-c', pw, 'alice', '--password', 's3cret'])
  const text = readFileSync(pw, 'utf8')
  assert.match(text, /^alice:\$scrypt\$/)
  assert.ok(!text.includes('s3cret'))
  await assert.rejects(run(process.execPath, [bin, 'passwd', join(dir, 'nope'), 'bob', '--password', 'x']))
  const cfg = join(dir, 'petrel.toml')
  writeFileSync(cfg, `sys_interval = 0\n[[listener]]\nport = 0\n[auth]\nallow_anonymous = false\npassword_file = "passwd"\n`)
  const b = await startBroker(['--config', cfg])
  try {
    const pub = findProgram('mosquitto_pub') as string
    await run(pub, ['-p', String(b.port), '-t', 'x', '-m', 'y', '-u', 'alice', '-P', 's3cret'])
    await assert.rejects(run(pub, ['-p', String(b.port), '-t', 'x', '-m', 'y', '-u', 'alice', '-P', 'wrong']))
    await assert.rejects(run(pub, ['-p', String(b.port), '-t', 'x', '-m', 'y']))
  } finally {
    b.child.kill('SIGINT')
  }
  assert.equal(await b.exited, 0)
})

test('petrel passwd takes mosquitto_passwd\'s -b (password as an argument) and -D (delete); a missing user name is named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-cli-'))
  const pw = join(dir, 'passwd')
  await run(process.execPath, [bin, 'passwd', '-c', '-b', pw, 'alice', 'secret'])
  await run(process.execPath, [bin, 'passwd', '-b', pw, 'bob', 'builder'])
  let file = new PasswordFile(readFileSync(pw, 'utf8'))
  assert.equal(await file.verify('alice', Buffer.from('secret')), true)
  assert.equal(await file.verify('bob', Buffer.from('builder')), true)
  await run(process.execPath, [bin, 'passwd', '-D', pw, 'alice'])
  file = new PasswordFile(readFileSync(pw, 'utf8'))
  assert.equal(file.size, 1)
  assert.equal(await file.verify('bob', Buffer.from('builder')), true)
  const fails = async (args: string[], message: RegExp): Promise<void> => {
    await assert.rejects(run(process.execPath, [bin, 'passwd', ...args]), (err: { code?: number, stderr?: string }) => {
      assert.equal(err.code, 1, args.join(' '))
      assert.match(err.stderr ?? '', message)
      return true
    })
  }
  await fails(['-D', pw, 'alice'], /user alice is not in /)
  await fails(['-c', pw], /expected <file> <user>: the user name is missing/)
  await fails([pw, 'carol', 'pw'], /got 3 arguments \(to give the password as an argument, add -b/)
  await fails(['-b', pw, 'carol'], /expected <file> <user> <password>/)
  await fails(['-b', join(dir, 'nope'), 'carol', 'pw'], /does not exist \(use -c to create it\)/)
})

test('petrel passwd without --password reads a pipe without a prompt (no LF needed); a closed stdin is an error, not a hang', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-cli-'))
  const pw = join(dir, 'passwd')
  const passwd = async (input: string): Promise<{ code: number | null, stderr: string }> => {
    const child = spawn(process.execPath, [bin, 'passwd', '-c', pw, 'carol'], { stdio: ['pipe', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.stdin.end(input)
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
    return { code, stderr }
  }
  const piped = await passwd('fromPipe')
  assert.equal(piped.code, 0)
  // No prompt for a pipe: nothing on stderr but errors.
  assert.equal(piped.stderr, '')
  assert.match(readFileSync(pw, 'utf8'), /^carol:\$scrypt\$/)
  // mosquitto_passwd's piped form (the password twice) works too.
  assert.equal((await passwd('again\nagain\n')).code, 0)
  const ended = await passwd('')
  assert.equal(ended.code, 1)
  assert.match(ended.stderr, /no password given \(stdin ended\)/)
})

test('petrel broker --config with [metrics]: mosquitto_sub -t \'$SYS/#\' -v sees the broker topics; /metrics serves Prometheus text', async (t) => {
  if (!requirePeer(t, 'mosquitto_sub')) return
  const dir = mkdtempSync(join(tmpdir(), 'petrel-cli-'))
  const cfg = join(dir, 'petrel.toml')
  writeFileSync(cfg, 'sys_interval = 1\n[[listener]]\nport = 0\n[metrics]\nport = 0\n')
  const b = await startBroker(['--config', cfg])
  try {
    const m = /metrics on (http:\/\/[^ ]+\/metrics)/.exec(b.stdout())
    assert.ok(m !== null, b.stdout())
    const { stdout } = await run(findProgram('mosquitto_sub') as string, ['-p', String(b.port), '-t', '$SYS/#', '-v', '-C', '12', '-W', '10'])
    assert.match(stdout, /^\$SYS\/broker\/version petrel/m)
    assert.match(stdout, /^\$SYS\/broker\/clients\/connected \d+$/m)
    const res = await fetch(m[1] as string)
    assert.equal(res.status, 200)
    const text = await res.text()
    assert.match(text, /^petrel_clients_connected \d+$/m)
    assert.match(text, /^petrel_messages_dropped_total\{reason="queue_full"\} 0$/m)
  } finally {
    b.child.kill('SIGTERM')
  }
  assert.equal(await b.exited, 0)
})

test('petrel broker --verbose logs connects and disconnects as pino JSON lines (quiet without it)', async (t) => {
  if (!requirePeer(t, 'mosquitto_pub')) return
  for (const verbose of [true, false]) {
    const b = await startBroker(['--port', '0', ...(verbose ? ['--verbose'] : [])])
    try {
      await run(findProgram('mosquitto_pub') as string, ['-V', 'mqttv5', '-p', String(b.port), '-i', 'verbose-test', '-t', 'v', '-m', 'x'])
      if (verbose) {
        await waitFor(() => /"msg":"client disconnected"/.test(b.stdout()), { timeoutMs: 5000, message: 'disconnect log line' })
        const connected = b.stdout().split('\n').filter((l) => l.includes('"msg":"client connected"')).map((l) => JSON.parse(l) as { clientId: string, protocolVersion: number })
        assert.equal(connected.length, 1)
        assert.equal(connected[0]?.clientId, 'verbose-test')
        assert.equal(connected[0]?.protocolVersion, 5)
      } else {
        await new Promise((resolve) => setTimeout(resolve, 200))
        assert.equal(b.stdout().trim().split('\n').length, 1, `only the listening line: ${b.stdout()}`)
      }
    } finally {
      b.child.kill('SIGTERM')
    }
    assert.equal(await b.exited, 0)
  }
})
