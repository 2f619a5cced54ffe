import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls'
import type { Duplex } from 'node:stream'
import { connectDirect, joinWebSocketWrites } from '@petrel/client'
import type { Target } from './target.js'

/** Certificate material, read once for every connection. */
export interface TlsMaterial {
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
  /**
   * --insecure: the broker certificate's names are not checked against the host dialled. Its
   * chain still is, against --cafile or the system's CAs, as mosquitto_pub's --insecure and
   * petrel pub's.
   */
  skipNameCheck: boolean
}

/** Reads the files of --cafile, --cert and --key; throws an error naming the flag and the file. */
export function loadTlsMaterial (o: { cafile: string | undefined, cert: string | undefined, key: string | undefined, insecure: boolean }): TlsMaterial {
  const m: TlsMaterial = { skipNameCheck: o.insecure }
  if (o.cafile !== undefined) m.ca = readFlagFile('--cafile', o.cafile)
  if (o.cert !== undefined) m.cert = readFlagFile('--cert', o.cert)
  if (o.key !== undefined) m.key = readFlagFile('--key', o.key)
  return m
}

function readFlagFile (flag: string, file: string): Buffer {
  try {
    return readFileSync(file)
  } catch (err) {
    const code = (err as { code?: unknown }).code
    throw new Error(`${flag}: cannot read '${file}' (${typeof code === 'string' ? code : (err as Error).message})`)
  }
}

function tlsOptions (target: Target, tls: TlsMaterial): ConnectionOptions {
  const o: ConnectionOptions = { rejectUnauthorized: true }
  if (tls.skipNameCheck) o.checkServerIdentity = () => undefined
  if (tls.ca !== undefined) o.ca = tls.ca
  if (tls.cert !== undefined) o.cert = tls.cert
  if (tls.key !== undefined) o.key = tls.key
  const name = serverName(target.host)
  if (name !== undefined) o.servername = name
  return o
}

/** The TLS server name (SNI) for `host`: none for IP addresses (RFC 6066 §3), IPv6 with hex letters included. */
export function serverName (host: string): string | undefined {
  return isIP(host) === 0 ? host : undefined
}

/** The error a dial ends with when its signal aborts (the run is ending). */
export function cancelled (): Error {
  return Object.assign(new Error('cancelled: the run ended first'), { code: 'ECANCELED' })
}

/**
 * Resolves once `event` fires; a timeout destroys the socket with code ETIMEDOUT, an abort of
 * `signal` with ECANCELED. Either way the socket is gone: nothing is left to hold the process.
 */
function opened (socket: Duplex, event: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy(Object.assign(new Error(`no connection within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }))
    }, timeoutMs)
    const onAbort = (): void => { socket.destroy(cancelled()) }
    const settle = (): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
    const onError = (err: Error): void => {
      settle()
      socket.off(event, onOpen)
      reject(err)
    }
    const onOpen = (): void => {
      settle()
      socket.off('error', onError)
      resolve(socket)
    }
    socket.once(event, onOpen)
    socket.once('error', onError)
    if (signal?.aborted === true) onAbort()
    else signal?.addEventListener('abort', onAbort, { once: true })
  })
}

type WsModule = typeof import('ws')
let wsModule: Promise<WsModule> | undefined

/**
 * Loads what dialing `target` needs before the first connection, so that the first connect
 * times do not include loading the WebSocket module (TCP runs never load it).
 */
export async function prepareTransport (target: Target): Promise<void> {
  if (target.protocol === 'ws' || target.protocol === 'wss') await loadWs()
}

function loadWs (): Promise<WsModule> {
  wsModule ??= import('ws')
  return wsModule
}

/**
 * Opens a byte stream to the broker: TCP (no delay), TLS, or a WebSocket (subprotocol `mqtt`,
 * binary frames). An abort of `signal` ends the attempt at once with ECANCELED.
 */
export async function dial (target: Target, tls: TlsMaterial, timeoutMs: number, localAddress?: string, signal?: AbortSignal): Promise<Duplex> {
  // A source address per connection (--ifaddr): one address has ~28k ephemeral ports towards one broker port.
  const local = localAddress === undefined ? {} : { localAddress }
  switch (target.protocol) {
    case 'mqtt':
      // Reads through one reused buffer (no Readable stream path): a subscriber among many gets a
      // packet or two per read, and the per-read cost is what would make the tool the bottleneck.
      // No read moderation: it would add to the latencies being measured.
      return await opened(connectDirect(target.host, target.port, false, localAddress), 'connect', timeoutMs, signal)
    case 'mqtts': {
      const socket = tlsConnect({ host: target.host, port: target.port, ...local, ...tlsOptions(target, tls) })
      socket.setNoDelay(true)
      return await opened(socket, 'secureConnect', timeoutMs, signal)
    }
    case 'ws': case 'wss': {
      const { WebSocket, createWebSocketStream } = await loadWs()
      const ws = new WebSocket(target.url, 'mqtt', {
        perMessageDeflate: false, handshakeTimeout: timeoutMs, ...local, ...(target.protocol === 'wss' ? tlsOptions(target, tls) : {})
      })
      await new Promise<void>((resolve, reject) => {
        // onError stays attached: terminate() during the handshake emits an 'error' of its own.
        const onAbort = (): void => { ws.off('open', onOpen); reject(cancelled()); ws.terminate() }
        const onError = (err: Error): void => { signal?.removeEventListener('abort', onAbort); ws.off('open', onOpen); reject(err) }
        const onOpen = (): void => { signal?.removeEventListener('abort', onAbort); ws.off('error', onError); resolve() }
        ws.once('open', onOpen)
        ws.once('error', onError)
        if (signal?.aborted === true) onAbort()
        else signal?.addEventListener('abort', onAbort, { once: true })
      })
      // A tick's queued acks and each publisher's batches leave in few frames, not one a write
      return joinWebSocketWrites(ws, createWebSocketStream(ws))
    }
  }
}
