/** Bad flags or arguments: the command prints the message and exits with its usage code. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
}
