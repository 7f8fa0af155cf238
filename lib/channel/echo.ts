// Benchmark helpers: a Ping handler with a fixed reply (measures the bare Channel), and the baseline it is compared
// with: a length-prefixed msgpack echo over the same TLS 1.3 setup, with no ids, checks or coalescing.
import type { AddressInfo } from 'node:net'
import tls from 'node:tls'
import { pack, unpack } from '../wire/frame'
import { Op } from '../wire/opcodes'
import type { PingReply } from '../wire/packets'
import type { Identity } from '../crypto/identity'
import type { Channel, RequestHandler } from './channel'

export const ECHO_PING_REPLY: PingReply = { load: { total: 0.25, cpu: 0.25, nic: 0.01, crypto: 0 }, weight: 25, pv: 1 }

/** ch.onRequest = echoHandler: Ping answers ECHO_PING_REPLY synchronously; anything else echoes its body. */
export const echoHandler: RequestHandler = (op, body) => op === Op.Ping ? ECHO_PING_REPLY : body

/** Install echoHandler on a channel (listen({ onChannel: useEcho })). */
export function useEcho (ch: Channel): void { ch.onRequest = echoHandler }

const TLS_OPTS = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', sigalgs: 'ed25519', rejectUnauthorized: false } as const

export interface BareEchoServer { address: () => AddressInfo, close: () => Promise<void> }

/** Baseline server: every [u32 length][msgpack] message is decoded, re-encoded and written back at once. */
export async function listenBareEcho (identity: Identity, host = '127.0.0.1', port = 0): Promise<BareEchoServer> {
  const sockets = new Set<tls.TLSSocket>()
  const server = tls.createServer({ ...TLS_OPTS, key: identity.keyPem, cert: identity.certPem, requestCert: true }, (s) => {
    sockets.add(s)
    s.setNoDelay(true)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => s.destroy())
    readMessages(s, (msg) => s.write(lengthPrefixed(pack(unpack(msg)))))
  })
  await new Promise<void>(resolve => server.listen(port, host, resolve))
  return {
    address: () => server.address() as AddressInfo,
    close: async () => { for (const s of sockets) s.destroy(); await new Promise<void>(resolve => server.close(() => resolve())) }
  }
}

export interface BareEchoClient { roundTrip: (body: unknown) => Promise<unknown>, close: () => void }

/** Baseline client: replies come back in order, so a FIFO of resolvers matches them (pipelining allowed). */
export async function connectBareEcho (identity: Identity, port: number, host = '127.0.0.1'): Promise<BareEchoClient> {
  const sock = tls.connect({ ...TLS_OPTS, host, port, key: identity.keyPem, cert: identity.certPem })
  await new Promise<void>((resolve, reject) => { sock.once('secureConnect', resolve); sock.once('error', reject) })
  sock.setNoDelay(true)
  const waiting: Array<(v: unknown) => void> = []
  let head = 0
  readMessages(sock, (msg) => {
    const resolve = waiting[head++]
    if (head > 1024) { waiting.splice(0, head); head = 0 }
    resolve(unpack(msg))
  })
  return {
    roundTrip: async (body) => await new Promise((resolve) => { waiting.push(resolve); sock.write(lengthPrefixed(pack(body))) }),
    close: () => { sock.destroy() }
  }
}

function lengthPrefixed (payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(4 + payload.length)
  out.writeUInt32BE(payload.length, 0)
  payload.copy(out, 4)
  return out
}

function readMessages (s: tls.TLSSocket, onMessage: (m: Buffer) => void): void {
  let buf: Buffer = Buffer.alloc(0)
  s.on('data', (d: Buffer) => {
    buf = buf.length === 0 ? d : Buffer.concat([buf, d])
    let off = 0
    while (buf.length - off >= 4) {
      const n = buf.readUInt32BE(off)
      if (buf.length - off - 4 < n) break
      onMessage(buf.subarray(off + 4, off + 4 + n))
      off += 4 + n
    }
    buf = buf.subarray(off)
  })
}
