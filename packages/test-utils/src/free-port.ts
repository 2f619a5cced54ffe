import { createServer } from 'node:net'

/** An ephemeral TCP port that was free a moment ago: bind host:0, read the port, close. */
export async function freePort (host = '127.0.0.1'): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address()
      if (address === null || typeof address === 'string') {
        server.close()
        reject(new Error('freePort: listener has no TCP address'))
        return
      }
      const { port } = address
      server.close(() => { resolve(port) })
    })
  })
}
