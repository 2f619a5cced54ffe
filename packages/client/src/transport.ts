import { isIP, type Socket } from 'node:net'
import { connect as tlsConnect, createSecureContext, type ConnectionOptions as TlsConnectionOptions } from 'node:tls'
import type { Duplex } from 'node:stream'
import type WebSocket from 'ws'
import type { ClientOptions as WsClientOptions } from 'ws'
import { joinWebSocketWrites, MAX_PACKET_SIZE, PetrelError } from '@petrel/wire'
import { connectDirect } from './direct-read.js'
import type { ReadModerationOptions } from './read-moderation.js'
import { ClientErrorCode, clientError } from './errors.js'

/**
 * A transport is any byte stream to a broker: a Node Duplex. `mqtt://`/`tcp://` (TCP, noDelay),
 * `mqtts://`/`tls://`/`ssl://` (TLS), `ws://`/`wss://` (WebSocket, subprotocol `mqtt`), or one
 * the application supplies (a Duplex, or a factory called once per connection attempt).
 */
export type TransportFactory = (url: URL | undefined, signal: AbortSignal) => Duplex | Promise<Duplex>

/** TLS settings for `mqtts://` and `wss://`. */
export interface TlsOptions {
  /** Trusted CA certificate(s), PEM. Default: Node's root store. */
  ca?: string | Buffer | Array<string | Buffer> | undefined
  /** Client certificate chain, PEM (for brokers that require one). */
  cert?: string | Buffer | undefined
  /** Client private key, PEM. */
  key?: string | Buffer | undefined
  passphrase?: string | undefined
  /** Verify the broker's certificate. Default true. */
  rejectUnauthorized?: boolean | undefined
  /** SNI and certificate name check. Default: the URL's host name when it is not an IP address. */
  servername?: string | undefined
  /** Anything else `tls.connect` takes (ALPN protocols, ciphers...). */
  extra?: TlsConnectionOptions | undefined
}

export interface TransportOptions {
  tls?: TlsOptions | undefined
  /** Extra options for the `ws` WebSocket (headers, ...). */
  ws?: WsClientOptions | undefined
  /** Plain TCP: read moderation settings, or false for eager reads. Default on. */
  readModeration?: ReadModerationOptions | false | undefined
  /** The local address to connect from. */
  localAddress?: string | undefined
  /**
   * WebSocket: the largest message accepted (ws `maxPayload`, which `ws` otherwise sets to 100 MiB
   * whatever the MQTT limit). The client derives it from its `maximumPacketSize`; `ws.maxPayload`
   * overrides it.
   */
  maxMessageBytes?: number | undefined
}

/**
 * The WebSocket message bound for an inbound MQTT packet limit of `maxPacketSize`: a message may
 * hold several packets or parts of them [MQTT-6.0.0-2] (a broker may batch a tick's writes), so
 * twice the limit plus 64 KiB, as the broker bounds its clients. ws refuses a bigger message from
 * its frame header (close 1009), before buffering it.
 */
export function maxWebSocketMessage (maxPacketSize: number): number {
  return 2 * Math.min(maxPacketSize, MAX_PACKET_SIZE) + 64 * 1024
}

function ignore (): void {}

/** See `closeTimeout` in openWebSocket; as long as a closing Connection lets a socket linger. */
const WS_CLOSE_TIMEOUT_MS = 1000

const DEFAULT_PORTS: Record<string, number> = { 'mqtt:': 1883, 'tcp:': 1883, 'mqtts:': 8883, 'tls:': 8883, 'ssl:': 8883, 'ws:': 80, 'wss:': 443 }

/** What opening `url` involves, for a connect timeout that strikes before the stream is open. */
export function openingSteps (url: URL): string {
  switch (url.protocol) {
    case 'mqtts:': case 'tls:': case 'ssl:': return 'TCP connect and TLS handshake'
    case 'ws:': return 'TCP connect and WebSocket upgrade'
    case 'wss:': return 'TCP connect, TLS handshake and WebSocket upgrade'
    default: return 'TCP connect'
  }
}

/** Whether dialling `url` opens TLS (`mqtts://`, `tls://`, `ssl://`, `wss://`). */
export function usesTls (url: URL): boolean {
  return url.protocol === 'mqtts:' || url.protocol === 'tls:' || url.protocol === 'ssl:' || url.protocol === 'wss:'
}

/** What the OpenSSL errors a bad key or certificate gives mean, for the message. */
const TLS_CONFIG_PROBLEMS: Record<string, string> = {
  ERR_OSSL_X509_KEY_VALUES_MISMATCH: 'the key does not belong to the certificate',
  ERR_OSSL_PEM_NO_START_LINE: 'a certificate or key is not PEM',
  ERR_OSSL_UNSUPPORTED: 'the key is not a PEM private key',
  ERR_OSSL_BAD_DECRYPT: 'the passphrase does not decrypt the key',
  ERR_SSL_NO_CIPHER_MATCH: 'no cipher matches the cipher list'
}

/**
 * Throws PETREL_ERR_TLS_CONFIG when `tls` cannot make a TLS context. `tls.connect` makes one
 * per dial and throws the same error every time, so a key that does not match its certificate
 * was retried for ever under `retryInitialConnect` (and on every reconnect): a configuration
 * error no retry can mend, reported once, before anything is dialled.
 */
export function checkTlsOptions (tls: TlsOptions | undefined): void {
  if (tls === undefined) return
  try {
    createSecureContext({ ...tls.extra, ca: tls.ca, cert: tls.cert, key: tls.key, passphrase: tls.passphrase })
  } catch (err) {
    const e = err as Error & { code?: string }
    const problem = TLS_CONFIG_PROBLEMS[e.code ?? '']
    throw clientError(ClientErrorCode.TLS_CONFIG, `unusable tls options: ${problem === undefined ? '' : `${problem} `}(${e.message})`, { cause: err })
  }
}

/** Whether `protocol` (with the colon) is one `openTransport` can dial. */
export function isSupportedProtocol (protocol: string): boolean {
  return DEFAULT_PORTS[protocol] !== undefined
}

/**
 * Opens the transport for `url`; rejects with PETREL_ERR_CONNECTION_FAILED (the cause is the
 * socket error), or with the abort reason itself when that is a PetrelError (the connect timeout).
 */
export async function openTransport (url: URL, options: TransportOptions, signal: AbortSignal): Promise<Duplex> {
  const port = url.port === '' ? DEFAULT_PORTS[url.protocol] : Number(url.port)
  if (port === undefined) throw clientError(ClientErrorCode.INVALID_ARGUMENT, `unsupported URL protocol ${url.protocol} (use mqtt, mqtts, ws, wss, tcp or tls)`)
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  switch (url.protocol) {
    case 'mqtt:': case 'tcp:': {
      const socket = connectDirect(host, port, options.readModeration ?? {}, options.localAddress)
      await opened(socket, 'connect', signal, url)
      return socket
    }
    case 'mqtts:': case 'tls:': case 'ssl:': {
      const t = options.tls ?? {}
      const socket = tlsConnect({
        ...t.extra,
        host,
        port,
        ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
        noDelay: true,
        ca: t.ca,
        cert: t.cert,
        key: t.key,
        passphrase: t.passphrase,
        rejectUnauthorized: t.rejectUnauthorized ?? true,
        servername: t.servername ?? (isIP(host) === 0 ? host : undefined)
      } as TlsConnectionOptions)
      await opened(socket, 'secureConnect', signal, url)
      return socket
    }
    default: return await openWebSocket(url, options, signal)
  }
}

async function opened (socket: Socket, event: string, signal: AbortSignal, url: URL): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      socket.off(event, onOpen)
      socket.off('error', done)
      signal.removeEventListener('abort', onAbort)
      if (err === undefined) resolve()
      else {
        socket.destroy()
        reject(err instanceof PetrelError ? err : clientError(ClientErrorCode.CONNECTION_FAILED, `cannot connect to ${url.host}: ${err.message}`, { cause: err }))
      }
    }
    const onOpen = (): void => { done() }
    // The connect timeout's own error (a PetrelError) passes as it is.
    const onAbort = (): void => { done(signal.reason instanceof Error ? signal.reason : new Error('aborted')) }
    socket.once(event, onOpen)
    socket.once('error', done)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

async function openWebSocket (url: URL, options: TransportOptions, signal: AbortSignal): Promise<Duplex> {
  // Loaded on first use: importing ws takes about as long as starting node, which every
  // short-lived process (petrel pub) paid even over plain TCP.
  const { default: WebSocket, createWebSocketStream } = await import('ws')
  const t = options.tls ?? {}
  // wss:// takes the same TLS settings as mqtts:// (ws hands them to tls.connect).
  const ws = new WebSocket(url, ['mqtt'], {
    ...t.extra,
    ...(options.maxMessageBytes === undefined ? {} : { maxPayload: options.maxMessageBytes }),
    // After a close frame (ours, or ws's own on a refused message), how long the broker has to
    // close before the socket is cut: the link is reported lost only then (ws waits 30 s).
    closeTimeout: WS_CLOSE_TIMEOUT_MS,
    ...options.ws,
    ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
    ca: t.ca,
    cert: t.cert,
    key: t.key,
    passphrase: t.passphrase,
    ...(t.servername === undefined ? {} : { servername: t.servername }),
    rejectUnauthorized: t.rejectUnauthorized ?? true,
    perMessageDeflate: false
  } as WsClientOptions)
  await new Promise<void>((resolve, reject) => {
    const fail = (err: Error): void => {
      cleanup()
      // terminate() before 'open' emits an 'error' of its own, a tick later: with no listener
      // left, a connect timeout or end() during the upgrade threw it out of the process.
      ws.on('error', ignore)
      ws.terminate()
      reject(err instanceof PetrelError ? err : clientError(ClientErrorCode.CONNECTION_FAILED, `cannot open WebSocket ${url.href}: ${err.message}`, { cause: err }))
    }
    const onOpen = (): void => { cleanup(); resolve() }
    const onAbort = (): void => { fail(signal.reason instanceof Error ? signal.reason : new Error('aborted')) }
    const cleanup = (): void => {
      ws.off('open', onOpen)
      ws.off('error', fail)
      signal.removeEventListener('abort', onAbort)
    }
    ws.once('open', onOpen)
    ws.once('error', fail)
    signal.addEventListener('abort', onAbort, { once: true })
    // Aborted while ws was loading: its event has gone.
    if (signal.aborted) onAbort()
  })
  // What a turn writes leaves in few binary frames; MQTT packets may span frames either way.
  const stream = joinWebSocketWrites(ws, createWebSocketStream(ws))
  binaryFramesOnly(ws, stream)
  return stream
}

/**
 * [MQTT-6.0.0-1] MQTT Control Packets travel in binary frames; a recipient of any other data
 * frame closes the connection. ws hands a text message to the stream as bytes like any other,
 * so a broker's text frame was decoded as MQTT. This listener runs before the stream's own
 * (prepended): the stream is destroyed first, so the text never reaches the decoder.
 */
function binaryFramesOnly (ws: WebSocket, stream: Duplex): void {
  ws.prependListener('message', (_data: unknown, isBinary: boolean) => {
    if (isBinary) return
    ws.close(1003, 'MQTT needs binary frames')
    stream.destroy(clientError(ClientErrorCode.PROTOCOL_ERROR, 'the broker sent a WebSocket text frame: MQTT travels in binary frames only [MQTT-6.0.0-1]', { reasonCode: 0x82 }))
  })
}
