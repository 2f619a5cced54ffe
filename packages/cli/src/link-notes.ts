import type { MqttClient } from '@petrel/client'

/**
 * Says on stderr when a long-running command (sub, pub -l) loses its link and when it is back.
 * The client reconnects on its own, with backoff, until Ctrl-C; without a word, a broker that
 * went away looked like a quiet topic (mosquitto_sub prints the error and exits instead).
 * Transitions only: the attempts in between are not printed.
 */
export function sayLinkChanges (client: MqttClient, command: string, where: string, say: (line: string) => void): void {
  client.on('disconnect', ({ error }) => {
    // No error: the command ended the link itself (end() on Ctrl-C, -C reached, input done).
    if (error !== undefined) say(`petrel ${command}: lost the connection to ${where} (${error.message}); reconnecting until Ctrl-C`)
  })
  client.on('connect', ({ reconnected }) => {
    if (reconnected) say(`petrel ${command}: reconnected to ${where}`)
  })
}
