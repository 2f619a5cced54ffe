/**
 * The longest delay a Node timer takes (setTimeout, setInterval, socket.setTimeout and the
 * options that set one, such as TLS `handshakeTimeout`). Past it Node prints a
 * TimeoutOverflowWarning and, depending on the version, fires after 1 ms or truncates: a
 * configured bound this long is capped to it, which in practice means "no bound".
 */
export const MAX_TIMER_MS = 2 ** 31 - 1
