// spctl's connection to the admin API: TLS 1.3 to the member's key, pinned (first use is recorded, like ssh's
// known_hosts, unless --server-id pins it up front), then JSON over HTTP on that already-verified socket.
import http from 'node:http'
import tls from 'node:tls'
import { keyId, rawPublicKey } from '../crypto/identity'
import { ERRORS, PemError, isErrorCode } from '../wire/errors'

export interface AdminTarget { host: string, port: number, pin: string | null }

/** Opens a TLS socket and resolves with it and the server's key id once the handshake is done and the pin holds. */
export async function pinnedSocket (t: AdminTarget, timeoutMs = 5000): Promise<{ socket: tls.TLSSocket, serverId: string }> {
  return await new Promise((resolve, reject) => {
    const socket = tls.connect({ host: t.host, port: t.port, minVersion: 'TLSv1.3', rejectUnauthorized: false, servername: undefined })
    const timer = setTimeout(() => { socket.destroy(); reject(new PemError('PEM_ERR_TIMEOUT', `no answer from ${t.host}:${t.port}`)) }, timeoutMs)
    socket.once('error', err => { clearTimeout(timer); reject(new PemError('PEM_ERR_UNREACHABLE', `cannot reach ${t.host}:${t.port}: ${err.message}`)) })
    socket.once('secureConnect', () => {
      clearTimeout(timer)
      try {
        const cert = socket.getPeerX509Certificate()
        if (cert === undefined) throw new PemError('PEM_ERR_PEER_KEY', 'server sent no certificate')
        const serverId = keyId(rawPublicKey(cert.publicKey))
        if (t.pin !== null && t.pin !== serverId) throw new PemError('PEM_ERR_PEER_KEY', `server key ${serverId} is not the pinned ${t.pin}`)
        resolve({ socket, serverId })
      } catch (err) {
        socket.destroy()
        reject(err)
      }
    })
  })
}

export async function adminCall (t: AdminTarget, method: string, path: string, body?: unknown, token?: string): Promise<{ value: unknown, serverId: string }> {
  const { socket, serverId } = await pinnedSocket(t)
  const payload = body === undefined ? undefined : JSON.stringify(body)
  const headers: Record<string, string> = { host: `${t.host}:${t.port}`, connection: 'close' }
  if (payload !== undefined) { headers['content-type'] = 'application/json'; headers['content-length'] = String(Buffer.byteLength(payload)) }
  if (token !== undefined) headers.authorization = `Bearer ${token}`
  return await new Promise((resolve, reject) => {
    const req = http.request({ method, path, headers, createConnection: () => socket }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        let value: unknown
        try { value = JSON.parse(Buffer.concat(chunks).toString('utf8')) } catch { return reject(new PemError('PEM_ERR_BAD_FRAME', `admin API answered ${res.statusCode ?? 0} with non-JSON`)) }
        if ((res.statusCode ?? 500) >= 400) {
          const e = (value as { error?: { code?: string, message?: string, details?: unknown } }).error ?? {}
          const err = new PemError(isErrorCode(e.code) ? e.code : 'PEM_ERR_UNKNOWN', e.message ?? ERRORS.PEM_ERR_UNKNOWN.message)
          Object.assign(err, { details: e.details })
          return reject(err)
        }
        resolve({ value, serverId })
      })
      res.on('error', reject)
    })
    req.on('error', err => reject(new PemError('PEM_ERR_CLOSED', err.message)))
    req.end(payload)
  })
}
