#!/usr/bin/env node
// Aedes on plain TCP for the broker benchmarks: `node aedes-server.mjs <port>`.
// In-memory persistence (the default), TCP_NODELAY on its sockets like the other brokers here.
import { createServer } from 'node:net'
import { Aedes } from 'aedes'

const port = Number(process.argv[2] ?? 1883)
const aedes = await Aedes.createBroker()
const server = createServer({ noDelay: true }, aedes.handle)
server.listen(port, '127.0.0.1', () => { console.log(`aedes listening on 127.0.0.1:${port}`) })
const stop = () => {
  server.close()
  aedes.close(() => process.exit(0))
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
