import type { ConnectProperties, PublishProperties, WillProperties } from '@petrel/wire'
import { UsageError } from './usage-error.js'

/**
 * MQTT 5 properties from mosquitto's `-D command identifier value` flags (`-D publish
 * user-property name value` takes two values). Collected per command.
 */
export interface PropertyFlags {
  connect: ConnectProperties
  publish: PublishProperties
  will: WillProperties
  subscribeUserProperties: Array<[string, string]>
  unsubscribeUserProperties: Array<[string, string]>
  /** Whether any -D was given (they need -V mqttv5). */
  any: boolean
}

type Setter<T> = (target: T, value: string) => void

const u32 = (name: string, max = 0xffffffff) => (value: string): number => {
  const n = Number(value)
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > max) throw new UsageError(`-D ${name}: expected an integer from 0 to ${max}, got '${value}'`)
  return n
}
const flag = (name: string) => (value: string): boolean => {
  if (value !== '0' && value !== '1') throw new UsageError(`-D ${name}: expected 0 or 1, got '${value}'`)
  return value === '1'
}

// The message properties PUBLISH and the will share.
function messageSetters<T extends PublishProperties | WillProperties> (): Record<string, Setter<T>> {
  return {
    'content-type': (t, v) => { t.contentType = v },
    'correlation-data': (t, v) => { t.correlationData = Buffer.from(v) },
    'message-expiry-interval': (t, v) => { t.messageExpiryInterval = u32('message-expiry-interval')(v) },
    'payload-format-indicator': (t, v) => { t.payloadFormatIndicator = flag('payload-format-indicator')(v) },
    'response-topic': (t, v) => { t.responseTopic = v }
  }
}

const SETTERS = {
  connect: {
    'maximum-packet-size': (t, v) => { t.maximumPacketSize = u32('maximum-packet-size')(v) },
    'receive-maximum': (t, v) => { t.receiveMaximum = u32('receive-maximum', 65535)(v) },
    'request-problem-information': (t, v) => { t.requestProblemInformation = flag('request-problem-information')(v) },
    'request-response-information': (t, v) => { t.requestResponseInformation = flag('request-response-information')(v) },
    'session-expiry-interval': (t, v) => { t.sessionExpiryInterval = u32('session-expiry-interval')(v) },
    'topic-alias-maximum': (t, v) => { t.topicAliasMaximum = u32('topic-alias-maximum', 65535)(v) }
  } satisfies Record<string, Setter<ConnectProperties>>,
  publish: messageSetters<PublishProperties>(),
  will: {
    ...messageSetters<WillProperties>(),
    'will-delay-interval': (t, v) => { t.willDelayInterval = u32('will-delay-interval')(v) }
  } satisfies Record<string, Setter<WillProperties>>
}

const COMMANDS = ['connect', 'publish', 'subscribe', 'unsubscribe', 'will'] as const
type Command = typeof COMMANDS[number]

/**
 * Takes every `-D`/`--property` group out of `argv` (node's parseArgs cannot read an option
 * with several values). Returns the other arguments and the properties. Throws UsageError.
 */
export function extractPropertyFlags (argv: string[]): { rest: string[], properties: PropertyFlags } {
  const properties: PropertyFlags = { connect: {}, publish: {}, will: {}, subscribeUserProperties: [], unsubscribeUserProperties: [], any: false }
  const rest: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    if (a !== '-D' && a !== '--property') {
      rest.push(a)
      if (a === '--') { rest.push(...argv.slice(i + 1)); break }
      continue
    }
    properties.any = true
    const command = argv[i + 1]
    const identifier = argv[i + 2]
    if (command === undefined || identifier === undefined || argv[i + 3] === undefined) throw new UsageError('-D needs a command, a property and a value: -D publish content-type text/plain')
    if (!(COMMANDS as readonly string[]).includes(command)) throw new UsageError(`-D: unknown or unsupported command '${command}' (${COMMANDS.join(', ')})`)
    if (identifier === 'user-property') {
      const name = argv[i + 3] as string
      const value = argv[i + 4]
      if (value === undefined) throw new UsageError('-D user-property needs a name and a value: -D publish user-property name value')
      userProperties(properties, command as Command).push([name, value])
      i += 4
      continue
    }
    const setters = (SETTERS as Record<string, Record<string, Setter<object>> | undefined>)[command]
    const set = setters?.[identifier]
    if (set === undefined) {
      const known = ['user-property', ...Object.keys(setters ?? {})]
      const managed = identifier === 'topic-alias' || identifier === 'subscription-identifier' ? ' (Petrel assigns it itself)' : ''
      throw new UsageError(`-D ${command}: unknown or unsupported property '${identifier}'${managed}; use one of ${known.join(', ')}`)
    }
    set(properties[command as 'connect' | 'publish' | 'will'], argv[i + 3] as string)
    i += 3
  }
  return { rest, properties }
}

function userProperties (p: PropertyFlags, command: Command): Array<[string, string]> {
  switch (command) {
    case 'subscribe': return p.subscribeUserProperties
    case 'unsubscribe': return p.unsubscribeUserProperties
    default: {
      const target = p[command]
      target.userProperties ??= []
      return target.userProperties
    }
  }
}
