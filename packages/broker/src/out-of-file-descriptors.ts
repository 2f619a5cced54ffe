import { closeSync, openSync } from 'node:fs'

export type FileDescriptorError = 'EMFILE' | 'ENFILE'

/**
 * Whether the process is out of file descriptors now: 'EMFILE' (its own open-file limit) or
 * 'ENFILE' (the system's file table), else undefined (also where there is no /dev/null). A
 * listener cannot tell: past the limit libuv frees a descriptor it keeps in reserve, accepts
 * the waiting sockets with it and closes them, then takes it back, and Node reports nothing. So
 * the broker asks the kernel for one descriptor and gives it back.
 */
export function outOfFileDescriptors (): FileDescriptorError | undefined {
  let fd: number
  try {
    fd = openSync('/dev/null', 'r')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return code === 'EMFILE' || code === 'ENFILE' ? code : undefined
  }
  closeSync(fd)
  return undefined
}

/** What an operator can do about it, for the log line. */
export function fileDescriptorAdvice (code: FileDescriptorError): string {
  return code === 'EMFILE'
    ? 'raise the process\'s open-file limit (ulimit -n before starting it, LimitNOFILE= under systemd; Node raises its soft limit to the hard one, ulimit -Hn) or lower [limits] max_connections'
    : 'the system-wide file table is full (sysctl fs.file-max, /proc/sys/fs/file-nr): raise it or find the process holding the files'
}
