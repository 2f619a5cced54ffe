import type { ProtocolVersion } from '@petrel/wire'
import type { ClientInfo } from './options.js'

/** What a ClientView reads: the connection, kept out of the hook's reach. */
export interface ClientViewSource {
  readonly clientId: string
  readonly username: string | undefined
  readonly protocolVersion: ProtocolVersion
  readonly remoteAddress: string | undefined
  readonly info: { readonly certificateIdentity?: string | undefined }
  readonly hookSignal: AbortSignal
}

/**
 * What a hook is handed as `client`: a read-only view of one connection, made once for it (the
 * same object on every call, so a hook may key a WeakMap by it). Hooks used to get the
 * connection itself, so one could change its state, its session, its client id, or call its
 * methods. Getters over a private field: they read the connection's current values (the user
 * name an authenticate hook set, say), nothing can be written, and nothing else is reachable.
 */
export class ClientView implements ClientInfo {
  readonly #c: ClientViewSource

  constructor (c: ClientViewSource) {
    this.#c = c
    Object.freeze(this)
  }

  get clientId (): string { return this.#c.clientId }
  get username (): string | undefined { return this.#c.username }
  get protocolVersion (): ProtocolVersion { return this.#c.protocolVersion }
  get remoteAddress (): string | undefined { return this.#c.remoteAddress }
  get certificateIdentity (): string | undefined { return this.#c.info.certificateIdentity }
  get signal (): AbortSignal { return this.#c.hookSignal }
}
