import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net'
import { createSecureContext, createServer as createTlsServer, type TLSSocket } from 'node:tls'
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type WebSocket } from 'ws'
import { adoptDirect } from './adopt-direct.js'
import { BrokerErrorCode, brokerError } from './errors.js'
import { MAX_TIMER_MS } from './max-timer.js'
import type { ConnectionInfo } from './server-connection.js'
import { tlsAllowance } from './socket-backlog.js'
import { webSocketStream } from './websocket-stream.js'

export type ListenerType = 'tcp' | 'tls' | 'ws' | 'wss'

export interface ListenerOptions {
  /** Default 'tcp'. */
  type?: ListenerType | undefined
  /** Default '127.0.0.1'. */
  host?: string | undefined
  /** Default 1883 (tcp), 8883 (tls), 8080 (ws), 8081 (wss); 0 picks a free port. */
  port?: number | undefined
  /** PEM certificate chain, key and CA (tls, wss). */
  cert?: string | Buffer | undefined
  key?: string | Buffer | undefined
  ca?: string | Buffer | undefined
  /** Ask for a client certificate and refuse connections without a valid one. Default false. */
  requireClientCertificate?: boolean | undefined
  /**
   * Ask for a client certificate without requiring one: a client may connect without, but one
   * that presents a certificate `ca` does not verify is closed after the TLS handshake. A
   * verified one's CN reaches hooks as `certificateIdentity`. Default false.
   */
  requestClientCertificate?: boolean | undefined
  /**
   * Ask for a client certificate and use a verified one's CN as the user name, in place of the
   * CONNECT's (whose password is then not checked). A client without a verified certificate is
   * refused (CONNACK 0x86, 3.1.1: 4), as by mosquitto. tls and wss only. Default false.
   */
  useIdentityAsUsername?: boolean | undefined
  /** WebSocket path; default any path. */
  path?: string | undefined
  /** Anonymous clients on this listener; default: broker setting, else only on loopback hosts. */
  allowAnonymous?: boolean | undefined
  /** Listen backlog. Default 4096, so a burst of 1,000 connects is not throttled by the kernel queue. */
  backlog?: number | undefined
}

export interface ListenerAddress {
  type: ListenerType
  host: string
  port: number
  /** e.g. mqtt://127.0.0.1:1883, wss://127.0.0.1:8081, ws://127.0.0.1:8080/mqtt (a WebSocket listener's `path`, if set) */
  url: string
}

export interface OpenListener {
  readonly address: ListenerAddress
  close (): Promise<void>
}

const defaultPorts: Record<ListenerType, number> = { tcp: 1883, tls: 8883, ws: 8080, wss: 8081 }
const schemes: Record<ListenerType, string> = { tcp: 'mqtt', tls: 'mqtts', ws: 'ws', wss: 'wss' }

export function isLoopback (host: string): boolean {
  return host === 'localhost' || host.startsWith('127.') || host === '::1'
}

/** Where a listener hands what it accepts. */
export interface ListenerSink {
  /**
   * A stream ready for MQTT; `acceptedAt`: when its socket was accepted, if before now (a TLS
   * handshake or WebSocket upgrade came first): connect_timeout_ms runs from then. `admitted`:
   * its socket was given its place (and counted) by `admit`, before its handshake.
   */
  handle (stream: Duplex, info: ConnectionInfo, acceptedAt: number | undefined, admitted: boolean): void
  /**
   * A socket accepted by a tls, ws or wss listener, before its handshake: a place under
   * max_connections, or undefined when there is none (the socket is closed).
   */
  admit (abort: () => void): AdmittedSocket | undefined
  /** The server could not accept a socket (EMFILE, ENFILE...); it goes on listening. */
  acceptFailed (err: NodeJS.ErrnoException): void
  /** A client certificate failed verification under requestClientCertificate: its socket was closed. */
  certificateRefused (remoteAddress: string | undefined, reason: string): void
}

/** A place under max_connections held by a socket still in its handshake. */
export interface AdmittedSocket {
  release (): void
  /** When the socket was accepted (the broker's clock). */
  readonly startedAt: number
}

/** The CN of a client certificate the listener asked for and verified: for hooks, and the user name under useIdentityAsUsername. */
function identity (socket: TLSSocket): string | undefined {
  if (!socket.authorized) return undefined
  const cn = socket.getPeerCertificate().subject?.CN
  return typeof cn === 'string' ? cn : Array.isArray(cn) ? cn[0] : undefined
}

/** What a listener bounds before the MQTT layer sees a byte. */
export interface ListenerBounds {
  maxPacketSize: number
  /** 0 (or less): no bound. */
  connectTimeoutMs: number
  writeHighWaterMark: number
}

/** Opens one listener that hands every accepted stream to `sink` (the broker core never sees a server). */
export async function openListener (opts: ListenerOptions, defaultAnonymous: boolean | undefined, bounds: ListenerBounds, sink: ListenerSink): Promise<OpenListener> {
  const type = opts.type ?? 'tcp'
  if (!(type in defaultPorts)) throw brokerError(BrokerErrorCode.LISTEN_FAILED, `unknown listener type ${JSON.stringify(type)}`)
  const host = opts.host ?? '127.0.0.1'
  const port = opts.port ?? defaultPorts[type]
  const allowAnonymous = opts.allowAnonymous ?? defaultAnonymous ?? isLoopback(host)
  const useId = opts.useIdentityAsUsername === true
  // A request's path always starts with '/': `path = "mqtt"` would match nothing.
  const wsPath = opts.path === undefined || opts.path.startsWith('/') ? opts.path : `/${opts.path}`
  const secure = type === 'tls' || type === 'wss'
  if (secure && (opts.cert === undefined || opts.key === undefined)) {
    throw brokerError(BrokerErrorCode.LISTEN_FAILED, `a ${type} listener needs cert and key`)
  }
  // 0: no bound, for Node's timeouts too (0 disables those, and gave a 0 ms check interval)
  const connectTimeoutMs = Math.max(0, bounds.connectTimeoutMs)
  const tlsOptions = {
    // A client that opens TLS and never finishes the handshake holds a socket for Node's 120 s
    // default: it gets no longer than a client that never sends CONNECT. A timer: past its range
    // (2^31 ms) Node printed a TimeoutOverflowWarning on every TLS connection; the broker's sweep
    // still enforces the whole connect_timeout_ms.
    handshakeTimeout: Math.min(connectTimeoutMs, MAX_TIMER_MS),
    cert: opts.cert,
    key: opts.key,
    ca: opts.ca,
    requestCert: opts.requireClientCertificate === true || opts.requestClientCertificate === true || useId,
    rejectUnauthorized: opts.requireClientCertificate === true
  }
  // Optional, but verified when presented: Node's rejectUnauthorized would also refuse a client
  // without one, so the check is ours, once the handshake is done.
  const verifyPresented = opts.requestClientCertificate === true && opts.requireClientCertificate !== true
  /** Whether `s` may go on: false (and closed) when it presented a certificate that did not verify. */
  const certificateAccepted = (s: TLSSocket): boolean => {
    if (!verifyPresented || s.authorized || s.getPeerX509Certificate() === undefined) return true
    sink.certificateRefused(s.remoteAddress, String(s.authorizationError))
    s.destroy()
    return false
  }
  if (secure) {
    // Load the PEM material now, so a bad one is this listener's LISTEN_FAILED, not a bare OpenSSL error.
    try {
      createSecureContext(tlsOptions)
    } catch (err) {
      throw brokerError(BrokerErrorCode.LISTEN_FAILED, `the ${type} listener on ${host}:${port} cannot use its cert/key/ca ` +
        `(PEM: the server certificate chain, its unencrypted private key, the client CAs): ${(err as Error).message}`, { cause: err })
    }
  }
  let server: NetServer | HttpServer
  let wss: WebSocketServer | undefined
  const handshakes = new Handshakes(sink)
  // Sockets adopted by adoptDirect: the server no longer counts them, so closing waits for them here.
  let adopted = 0
  let allGone: (() => void) | undefined
  const onAdoptedClose = (): void => { if (--adopted === 0) allGone?.() }
  if (type === 'tcp') {
    server = createNetServer({ noDelay: true, pauseOnConnect: true }, (accepted: Socket) => {
      const s = adoptDirect(accepted)
      if (s !== accepted) {
        adopted++
        s.on('close', onAdoptedClose)
      }
      sink.handle(s, { allowAnonymous }, undefined, false)
    })
  } else if (type === 'tls') {
    server = createTlsServer(tlsOptions, (s: TLSSocket) => {
      if (!certificateAccepted(s)) return // its raw socket's close frees its place
      s.setNoDelay(true)
      sink.handle(s, { allowAnonymous, certificateIdentity: identity(s), useIdentityAsUsername: useId }, handshakes.done(s), true)
    })
  } else {
    // The upgrade request gets the CONNECT's time too (Node's default headers timeout is 60 s).
    // (Node checks those timeouts every connectionsCheckingInterval, 30 s by default.)
    const httpOptions = {
      headersTimeout: connectTimeoutMs,
      requestTimeout: connectTimeoutMs,
      connectionsCheckingInterval: connectTimeoutMs > 0 ? Math.min(1000, connectTimeoutMs) : 30_000
    }
    const http: HttpServer = type === 'ws' ? createHttpServer(httpOptions) : createHttpsServer({ ...tlsOptions, ...httpOptions })
    // before the HTTP server reads the upgrade request
    if (type === 'wss' && verifyPresented) http.prependListener('secureConnection', (s: TLSSocket) => { certificateAccepted(s) })
    // A request without Upgrade got no answer at all (nothing listened for 'request'): 426, closed.
    http.on('request', (_req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(426, { Connection: 'close', Upgrade: 'websocket', 'Content-Type': 'text/plain' })
      res.end('This is an MQTT over WebSocket endpoint (subprotocol mqtt): upgrade to WebSocket.\n')
    })
    server = http
    wss = new WebSocketServer({
      server: http,
      path: wsPath,
      perMessageDeflate: false,
      // ws buffers a whole message before the MQTT decoder sees it (its default bound: 100 MiB
      // per connection). One message may carry several packets or part of one: twice the
      // largest packet admits any sane client; a bigger one closes the socket (1009).
      maxPayload: 2 * bounds.maxPacketSize + 65536,
      verifyClient: ({ req }, done) => {
        const problem = subprotocolProblem(req.headers['sec-websocket-protocol'])
        if (problem === undefined) done(true)
        else done(false, 400, problem)
      },
      // [MQTT-6.0.0-4] subprotocol "mqtt" (and the 3.1 name some clients still send)
      handleProtocols: (protocols) => protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false
    })
    wss.on('connection', (ws: WebSocket, req: IncomingMessage) => {
      const sock = req.socket as Socket & { remoteAddress?: string }
      // as Connection's (write_high_water_mark, never below the stream's own)
      const stream = webSocketStream(ws, sock, tlsAllowance(Math.max(bounds.writeHighWaterMark, sock.writableHighWaterMark)))
      binaryFramesOnly(ws, stream)
      sock.setNoDelay(true)
      Object.defineProperty(stream, 'remoteAddress', { value: sock.remoteAddress })
      const acceptedAt = handshakes.done(sock)
      // a plain ws listener has no certificate to take a user name from: the key is ignored there, as on tcp
      sink.handle(stream, type === 'wss' ? { allowAnonymous, certificateIdentity: identity(sock as TLSSocket), useIdentityAsUsername: useId } : { allowAnonymous }, acceptedAt, true)
    })
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => { reject(brokerError(BrokerErrorCode.LISTEN_FAILED, `cannot listen on ${type} ${host}:${port}: ${err.message}`, { cause: err })) })
    server.listen({ host, port, backlog: opts.backlog ?? 4096 }, () => { resolve() })
  })
  // Accept errors must not kill the listener. (Node reports EMFILE here only when libuv's spare
  // descriptor is gone too; the broker's own check covers the usual case.)
  server.on('error', (err: NodeJS.ErrnoException) => { sink.acceptFailed(err) })
  // Raw TCP sockets, before TLS or the upgrade request: counted from here, as tcp ones are.
  if (type !== 'tcp') server.on('connection', (raw: Socket) => { handshakes.accepted(raw) })
  // Node reports a handshake that timed out (handshakeTimeout) or failed here and, with a
  // listener or not, leaves a timed-out socket open: close it.
  if (secure) server.on('tlsClientError', (_err: Error, socket: { destroy (): void }) => { socket.destroy() })
  const bound = (server.address() as AddressInfo).port
  const urlHost = host.includes(':') ? `[${host}]` : host
  // A WebSocket listener bound to one path says it: a client dialling the bare host:port gets HTTP 400.
  const address: ListenerAddress = { type, host, port: bound, url: `${schemes[type]}://${urlHost}:${bound}${wss !== undefined ? wsPath ?? '' : ''}` }
  return {
    address,
    close: async () => {
      wss?.close()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
      if (adopted > 0) await new Promise<void>((resolve) => { allGone = resolve })
    }
  }
}

/**
 * Why an upgrade request's subprotocols rule MQTT out, or undefined. A client that offers some,
 * none of them "mqtt" [MQTT-6.0.0-3] or "mqttv3.1", speaks something else; it was upgraded with
 * no subprotocol (which a browser accepts) and served MQTT. Now it gets 400: libwebsockets
 * (mosquitto's WebSocket listener) refuses it too. A request that offers none is still served,
 * as there.
 */
function subprotocolProblem (header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  const offered = header.split(',').map((p) => p.trim())
  if (offered.includes('mqtt') || offered.includes('mqttv3.1')) return undefined
  return 'This is an MQTT over WebSocket endpoint: offer the subprotocol "mqtt"'
}

/**
 * [MQTT-6.0.0-1] MQTT Control Packets travel in binary frames; a recipient of any other data
 * frame closes the connection. ws hands a text message to the stream as bytes like any other,
 * so a text frame holding a CONNECT was answered. This listener runs before the stream's own
 * (prepended): the stream is destroyed first, so the text never reaches the decoder.
 */
function binaryFramesOnly (ws: WebSocket, stream: Duplex): void {
  ws.prependListener('message', (_data: unknown, isBinary: boolean) => {
    if (isBinary) return
    ws.close(1003, 'MQTT needs binary frames')
    stream.destroy()
  })
}

interface Pending {
  raw: Socket
  place: AdmittedSocket
  onClose: () => void
}

/**
 * The sockets of one listener still in their TLS handshake or WebSocket upgrade, each holding a
 * place from `sink.admit`. A raw socket's place is freed when its TLS or WebSocket stream
 * reaches the broker (found by the remote address and port, the one public thing the wrapping
 * TLS socket and the raw socket share) or when the raw socket closes, whichever comes first.
 */
class Handshakes {
  private readonly pending = new Map<string, Pending>()

  constructor (private readonly sink: ListenerSink) {}

  accepted (raw: Socket): void {
    const place = this.sink.admit(() => { raw.destroy() })
    if (place === undefined) {
      raw.destroy()
      return
    }
    const key = endpoint(raw)
    const onClose = (): void => {
      place.release()
      if (key !== undefined && this.pending.get(key)?.raw === raw) this.pending.delete(key)
    }
    raw.once('close', onClose)
    // A socket reset before this runs has no address: its 'close' frees the place.
    if (key !== undefined) this.pending.set(key, { raw, place, onClose })
  }

  /**
   * The handshake of the socket with this remote end is done: its place passes to the
   * connection. Returns when the socket was accepted, so that the handshake and the CONNECT
   * share one connect_timeout_ms (undefined if unknown: the connection's time starts now).
   */
  done (s: Socket): number | undefined {
    const key = endpoint(s)
    if (key === undefined) return undefined
    const p = this.pending.get(key)
    if (p === undefined) return undefined
    this.pending.delete(key)
    p.raw.off('close', p.onClose)
    p.place.release()
    return p.place.startedAt
  }
}

function endpoint (s: Socket): string | undefined {
  const address = s.remoteAddress
  return address === undefined ? undefined : `${address}|${String(s.remotePort)}`
}
