import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { X509Certificate } from 'node:crypto'
import { connect, createServer, type TLSSocket } from 'node:tls'
import { makeTestCertificates, requirePeer } from '../src/index.js'

test('makeTestCertificates writes a CA, a server and a client certificate, once per process', async (t) => {
  if (!requirePeer(t, 'openssl')) return
  const certs = await makeTestCertificates()
  for (const file of [certs.caFile, certs.certFile, certs.keyFile, certs.clientCertFile, certs.clientKeyFile]) {
    assert.ok(existsSync(file), file)
  }
  assert.equal(await makeTestCertificates(), certs)
  const server = new X509Certificate(certs.cert)
  const ca = new X509Certificate(certs.ca)
  assert.ok(server.checkIssued(ca) && server.verify(ca.publicKey))
  assert.ok(server.checkHost('localhost'))
  assert.ok(server.checkIP('127.0.0.1'))
  assert.equal(server.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  const validMs = Date.parse(server.validTo) - Date.parse(server.validFrom)
  assert.ok(validMs >= 1.9 * 86_400_000 && validMs <= 2.1 * 86_400_000, `validity ${validMs} ms`)
  const client = new X509Certificate(certs.clientCert)
  assert.match(client.subject, /CN=petrel-test-client/)
  assert.ok(client.checkIssued(ca))
})

test('node:tls accepts the certificates on both sides (mutual TLS)', async (t) => {
  if (!requirePeer(t, 'openssl')) return
  const certs = await makeTestCertificates()
  const server = createServer({ key: certs.key, cert: certs.cert, ca: certs.ca, requestCert: true, rejectUnauthorized: true }, (socket) => {
    socket.end(`hi ${socket.getPeerCertificate().subject.CN}`)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => new Promise((resolve) => server.close(resolve)))
  const address = server.address()
  assert.ok(address !== null && typeof address !== 'string')

  for (const servername of [undefined, 'localhost']) {
    const socket: TLSSocket = connect({
      host: '127.0.0.1', port: address.port, ca: certs.ca, cert: certs.clientCert, key: certs.clientKey,
      ...(servername === undefined ? {} : { servername })
    })
    try {
      const chunks: Buffer[] = []
      socket.on('data', (c: Buffer) => chunks.push(c))
      await once(socket, 'end')
      assert.equal(socket.authorized, true)
      assert.equal(Buffer.concat(chunks).toString(), 'hi petrel-test-client')
    } finally {
      socket.destroy()
    }
  }

  // Without the CA the server certificate is rejected.
  const untrusted = connect({ host: '127.0.0.1', port: address.port, cert: certs.clientCert, key: certs.clientKey })
  const [err] = await once(untrusted, 'error') as [NodeJS.ErrnoException]
  untrusted.destroy()
  assert.match(err.code ?? '', /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/)
})
