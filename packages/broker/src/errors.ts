import { PetrelError } from '@petrel/wire'

/**
 * Every error code `@petrel/broker` raises, in one place. Callers match on `code`; ERRORS.md
 * documents each one, and test/errors.test.ts fails when the two disagree.
 */
export const BrokerErrorCode = {
  /** The configuration (TOML file or options object) has an unknown key or a bad value. */
  CONFIG_INVALID: 'PETREL_ERR_BROKER_CONFIG_INVALID',
  /** A listener could not be opened (port in use, bad certificate, unknown type). */
  LISTEN_FAILED: 'PETREL_ERR_BROKER_LISTEN_FAILED',
  /** The broker was closed: `listen` or `handle` after `close()`. */
  BROKER_CLOSED: 'PETREL_ERR_BROKER_CLOSED',
  /** A password file line that is not `user:$scrypt$...`, or a user name with a colon. */
  PASSWORD_FILE_INVALID: 'PETREL_ERR_BROKER_PASSWORD_FILE_INVALID'
} as const
export type BrokerErrorCode = typeof BrokerErrorCode[keyof typeof BrokerErrorCode]

export function brokerError (code: BrokerErrorCode, message: string, options?: { reasonCode?: number, cause?: unknown }): PetrelError {
  return new PetrelError(code, message, options)
}
