import { readFileSync } from 'node:fs'
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls'
import type { Duplex } from 'node:stream'
import { connectDirect } from '@petrel/client'
import type { Target } from './target.js'

/** Certificate material, read once for every connection. */
export interface TlsMaterial {
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
  rejectUnauthorized: boolean
}

export function loadTlsMaterial (o: { cafile: string | undefined, cert: string | undefined, key: string | undefined, insecure: boolean }): TlsMaterial {
  const m: TlsMaterial = { rejectUnauthorized: !o.insecure }
  if (o.cafile !== undefined) m.ca = readFileSync(o.cafile)
  if (o.cert !== undefined) m.cert = readFileSync(o.cert)
  if (o.key !== undefined) m.key = readFileSync(o.key)
  return m
}

function tlsOptions (target: Target, tls: TlsMaterial): ConnectionOptions {
  const o: ConnectionOptions = { rejectUnauthorized: tls.rejectUnauthorized }
  if (tls.ca !== undefined) o.ca = tls.ca
  if (tls.cert !== undefined) o.cert = tls.cert
  if (tls.key !== undefined) o.key = tls.key
  // SNI only for names, never for IP addresses (RFC 6066 §3)
  if (!/^[\d.:]+$/.test(target.host)) o.servername = target.host
  return o
}

/** Resolves once `event` fires; a timeout destroys the socket with code ETIMEDOUT. */
function opened (socket: Duplex, event: string, timeoutMs: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy(Object.assign(new Error(`no connection within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }))
    }, timeoutMs)
    const onError = (err: Error): void => {
      clearTimeout(timer)
      socket.off(event, onOpen)
      reject(err)
    }
    const onOpen = (): void => {
      clearTimeout(timer)
      socket.off('error', onError)
      resolve(socket)
    }
    socket.once(event, onOpen)
    socket.once('error', onError)
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

/** Opens a byte stream to the broker: TCP (no delay), TLS, or a WebSocket (subprotocol `mqtt`, binary frames). */
export async function dial (target: Target, tls: TlsMaterial, timeoutMs: number, localAddress?: string): Promise<Duplex> {
  // A source address per connection (--ifaddr): one address has ~28k ephemeral ports towards one broker port.
  const local = localAddress === undefined ? {} : { localAddress }
  switch (target.protocol) {
    case 'mqtt':
      // Reads through one reused buffer (no Readable stream path): a subscriber among many gets a
      // packet or two per read, and the per-read cost is what would make the tool the bottleneck.
      // No read moderation: it would add to the latencies being measured.
      return await opened(connectDirect(target.host, target.port, false, localAddress), 'connect', timeoutMs)
    case 'mqtts': {
      const socket = tlsConnect({ host: target.host, port: target.port, ...local, ...tlsOptions(target, tls) })
      socket.setNoDelay(true)
      return await opened(socket, 'secureConnect', timeoutMs)
    }
    case 'ws': case 'wss': {
      const { WebSocket, createWebSocketStream } = await loadWs()
      const ws = new WebSocket(target.url, 'mqtt', {
        perMessageDeflate: false, handshakeTimeout: timeoutMs, ...local, ...(target.protocol === 'wss' ? tlsOptions(target, tls) : {})
      })
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error): void => { ws.off('open', onOpen); reject(err) }
        const onOpen = (): void => { ws.off('error', onError); resolve() }
        ws.once('open', onOpen)
        ws.once('error', onError)
      })
      return createWebSocketStream(ws)
    }
  }
}
