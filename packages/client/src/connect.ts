import { MqttClient, parseBrokerUrls } from './client.js'
import type { ClientOptions } from './options.js'

/**
 * Connects to a broker and resolves once the first CONNACK accepted the connection.
 * `url` is `mqtt://`, `mqtts://`, `ws://`, `wss://` (or `tcp://`, `tls://`), optionally with
 * `user:password@`; several URLs rotate on reconnect. Rejects with PETREL_ERR_CONNECTION_REFUSED,
 * PETREL_ERR_NOT_AUTHORIZED, PETREL_ERR_CONNECTION_FAILED, PETREL_ERR_CONNECT_TIMEOUT or
 * PETREL_ERR_CLIENT_PROTOCOL_ERROR (a broker breaking the protocol while connecting) when every
 * URL failed once (unless `retryInitialConnect`), or at once with PETREL_ERR_INVALID_ARGUMENT (a bad
 * URL, options no CONNECT can carry) or PETREL_ERR_TLS_CONFIG (a `tls` key or certificate that
 * cannot be used): retrying cannot help.
 */
export async function connect (url: string | string[] | undefined, options: ClientOptions = {}): Promise<MqttClient> {
  const client = new MqttClient(parseBrokerUrls(url, options.servers), options)
  await client.start(true)
  return client
}

/**
 * Creates a client that connects in the background and never gives up unless told to
 * (`reconnect`). Requests made before the first connection queue within the queue bounds.
 * Throws PETREL_ERR_INVALID_ARGUMENT (a bad URL; with no `beforeConnect`, options no CONNECT can
 * carry, a will payload over 65,535 bytes say) or PETREL_ERR_TLS_CONFIG (a `tls` key or
 * certificate that cannot be used), which no attempt could get past.
 */
export function createClient (url: string | string[] | undefined, options: ClientOptions = {}): MqttClient {
  const client = new MqttClient(parseBrokerUrls(url, options.servers), options)
  void client.start(false)
  return client
}
