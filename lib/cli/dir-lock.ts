// One process per directory (an spd data dir, a pemfs guard point): a lock the kernel drops when its holder dies, so
// a crash never leaves it behind. It is an abstract Unix socket (Linux; scoped to the network namespace) named after
// the directory's absolute path as the caller gives it (never resolved here: for a guard point that would look into
// the mount); the holder answers anyone who connects with its pid, so a refusal can name it.
import crypto from 'node:crypto'
import net from 'node:net'
import path from 'node:path'
import { PemError } from '../wire/errors'

export type LockKind = 'spd' | 'pemfs'

function lockName (kind: LockKind, dir: string): string {
  return `\0pemfs-spd/${kind}/${crypto.createHash('sha256').update(path.resolve(dir)).digest('hex').slice(0, 32)}`
}

/** The pid holding the lock of `dir`, or null when nobody holds it. */
export async function lockHolder (kind: LockKind, dir: string, timeoutMs = 2000): Promise<number | null> {
  return await new Promise(resolve => {
    const sock = net.connect(lockName(kind, dir))
    let text = ''
    const timer = setTimeout(() => { sock.destroy(); resolve(0) }, timeoutMs) // held, but the holder did not answer
    sock.on('data', c => { text += c.toString('utf8') })
    sock.on('end', () => { clearTimeout(timer); resolve(Number(text) || 0) })
    sock.on('error', () => { clearTimeout(timer); resolve(null) })
  })
}

/**
 * Takes the lock of `dir` for the life of this process, or throws PEM_ERR_BUSY naming the pid that holds it.
 * `what` says what the holder is doing, e.g. "spd is serving the data dir".
 */
export async function lockDir (kind: LockKind, dir: string, what: string): Promise<void> {
  const server = net.createServer(sock => { sock.end(String(process.pid)) })
  const taken = await new Promise<boolean>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EADDRINUSE') resolve(false); else reject(err) })
    server.listen(lockName(kind, dir), () => resolve(true))
  })
  if (taken) { server.unref(); return }
  const pid = await lockHolder(kind, dir)
  throw new PemError('PEM_ERR_BUSY', `${dir}: ${what} already, in pid ${pid === null || pid === 0 ? '(unknown)' : pid}; stop that one first`)
}
