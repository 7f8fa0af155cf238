// Child process of benchmarks/fs/fs.bench.ts: a bare native-session passthrough (lib/native/fuse-session.ts with a
// permit-all, bypass `decide` and no io hook: no policy, no cluster) mounting MNT over BACKING with pemfs's mount
// options (fsname passthrough:MNT), so the fs bench can tell the cost of the FUSE session itself from pemfs's own.
// Usage: node passthrough.js MNT BACKING; prints "ready" once mounted; SIGTERM unmounts and exits.
import fs from 'node:fs'
import { FuseSession } from '../../lib/native/fuse-session'

const [mnt, backing] = process.argv.slice(2)
const backingFd = fs.openSync(backing, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)
let session: FuseSession
try {
  session = FuseSession.mount(mnt, backingFd, () => ({ ok: true, ttlMs: 60_000, bypass: true }), { fsname: `passthrough:${mnt}` })
} catch (err) {
  process.stderr.write(`passthrough mount: ${(err as Error).message}\n`)
  process.exit(1)
}
const keepAlive = setInterval(() => {}, 1 << 30) // the session's threads do not keep the event loop alive
process.stdout.write('ready\n')
process.on('SIGTERM', () => { clearInterval(keepAlive); session.unmount(); process.exit(0) })
