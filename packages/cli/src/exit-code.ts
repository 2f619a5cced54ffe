/**
 * Exit codes of every `petrel` command, one table for all: 1 is always a command line (or config
 * file) to fix, as mosquitto_pub, mosquitto_sub, mosquitto_passwd and emqtt-bench exit 1 on one.
 * The others say how far a client command got: `pub`, `sub` and `bench` share them.
 */
export const ExitCode = {
  ok: 0,
  /**
   * Bad flags or arguments (unknown flag, missing value, bad topic, QoS 3), or a config file, TLS
   * key, certificate or cipher list that cannot be used.
   */
  usage: 1,
  /**
   * Could not connect: refused, unreachable, timeout, TLS failure. `broker`: could not listen
   * (a listener or the metrics endpoint: address in use or not available, permission denied).
   */
  connection: 2,
  /** The broker refused the credentials or the client is not authorized. */
  notAuthorized: 3,
  /** Connected, but a publish or subscribe failed or timed out (bench: the run failed once connected). */
  operation: 4,
  /** `petrel sub -W`: the time ran out (mosquitto_sub's code for it). */
  timedOut: 27,
  /** Killed by a second Ctrl-C (128 + SIGINT), as a shell reports it; `passwd`: Ctrl-C at its prompt. */
  sigint: 130,
  /** Killed by a second SIGTERM (128 + SIGTERM). */
  sigterm: 143
} as const
