// Child process of benchmarks/fs/fs.bench.ts: a bare fuse-native passthrough (no policy, no cluster, no caller shim)
// mounting MNT over BACKING with pemfs's mount options, so the fs bench can tell the cost of FUSE in Node from
// pemfs's own. Usage: node passthrough.js MNT BACKING; prints "ready" once mounted; SIGTERM unmounts and exits.
import fs from 'node:fs'
import { toFuseStat } from '../../lib/pem-fs/fs-state'

type Cb = (err: number, value?: unknown) => void
const [mnt, backing] = process.argv.slice(2)
const real = (p: string): string => backing + p
const errno = (e: NodeJS.ErrnoException | null): number => e === null ? 0 : -Math.abs(e.errno ?? 5)
const done = (cb: Cb) => (e: NodeJS.ErrnoException | null) => cb(errno(e))

const ops = {
  getattr: (p: string, cb: Cb) => fs.lstat(real(p), (e, st) => e === null ? cb(0, toFuseStat(st)) : cb(errno(e))),
  fgetattr: (_p: string, fd: number, cb: Cb) => fs.fstat(fd, (e, st) => e === null ? cb(0, toFuseStat(st)) : cb(errno(e))),
  readdir: (p: string, cb: Cb) => fs.readdir(real(p), (e, names) => e === null ? cb(0, ['.', '..', ...names]) : cb(errno(e))),
  open: (p: string, flags: number, cb: Cb) => fs.open(real(p), flags & ~(fs.constants.O_DIRECT | fs.constants.O_APPEND), (e, fd) => e === null ? cb(0, fd) : cb(errno(e))),
  create: (p: string, mode: number, cb: Cb) => fs.open(real(p), fs.constants.O_CREAT | fs.constants.O_RDWR, mode, (e, fd) => e === null ? cb(0, fd) : cb(errno(e))),
  read: (_p: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) => fs.read(fd, buf, 0, len, pos, (e, n) => cb(e === null ? n : errno(e))),
  write: (_p: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) => fs.write(fd, buf, 0, len, pos, (e, n) => cb(e === null ? n : errno(e))),
  release: (_p: string, fd: number, cb: Cb) => fs.close(fd, done(cb)),
  flush: (_p: string, _fd: number, cb: Cb) => cb(0),
  fsync: (_p: string, datasync: number, fd: number, cb: Cb) => datasync !== 0 ? fs.fdatasync(fd, done(cb)) : fs.fsync(fd, done(cb)),
  truncate: (p: string, size: number, cb: Cb) => fs.truncate(real(p), size, done(cb)),
  ftruncate: (_p: string, fd: number, size: number, cb: Cb) => fs.ftruncate(fd, size, done(cb)),
  unlink: (p: string, cb: Cb) => fs.unlink(real(p), done(cb)),
  mkdir: (p: string, mode: number, cb: Cb) => fs.mkdir(real(p), { mode }, done(cb)),
  rmdir: (p: string, cb: Cb) => fs.rmdir(real(p), done(cb)),
  rename: (a: string, b: string, cb: Cb) => fs.rename(real(a), real(b), done(cb)),
  chmod: (p: string, mode: number, cb: Cb) => fs.chmod(real(p), mode, done(cb)),
  chown: (p: string, uid: number, gid: number, cb: Cb) => fs.lchown(real(p), uid, gid, done(cb)),
  symlink: (target: string, p: string, cb: Cb) => fs.symlink(target, real(p), done(cb)),
  readlink: (p: string, cb: Cb) => fs.readlink(real(p), (e, t) => e === null ? cb(0, t) : cb(errno(e))),
  link: (a: string, b: string, cb: Cb) => fs.link(real(a), real(b), done(cb)),
  utimens: (p: string, atime: number, mtime: number, cb: Cb) => fs.utimes(real(p), atime / 1000, mtime / 1000, done(cb)),
  statfs: (_p: string, cb: Cb) => fs.statfs(backing, (e, v) => e === null
    ? cb(0, { bsize: v.bsize, frsize: v.bsize, blocks: v.blocks, bfree: v.bfree, bavail: v.bavail, files: v.files, ffree: v.ffree, favail: v.ffree, fsid: 0, flag: 0, namemax: 255 })
    : cb(errno(e)))
}

interface FuseInstance { mount: (cb: (err: Error | null) => void) => void, unmount: (cb: (err: Error | null) => void) => void }
const Fuse = require('fuse-native') as new (mnt: string, ops: Record<string, unknown>, opts: Record<string, unknown>) => FuseInstance // eslint-disable-line @typescript-eslint/no-var-requires
// The same kernel-side options as pemfs (lib/pem-fs/mount.ts): big writes, 128 KiB requests, no attribute cache,
// the kernel's permission checks.
const fuse = new Fuse(mnt, ops, { allowOther: true, fsname: 'passthrough,nonempty,big_writes,max_write=131072,attr_timeout=0,default_permissions' })
fuse.mount(err => {
  if (err !== null && err !== undefined) { process.stderr.write(`passthrough mount: ${err.message}\n`); process.exit(1) }
  process.stdout.write('ready\n')
})
process.on('SIGTERM', () => fuse.unmount(() => process.exit(0)))
