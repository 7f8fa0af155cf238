// Mounting a guard point: checks FUSE, the enrollment and the cluster, opens the directory underneath BEFORE the
// mount covers it (so DIR is guarded in place and pemfs still reaches the files through /proc/self/fd/N), and mounts
// with allow_other and default_permissions: the kernel checks mode bits, ownership and sticky directories for every
// caller as on a local file system, and the cluster's policy restricts further (docs/PEMFS.md "Permissions"). No
// subtype, so `df -T` shows plain `fuse`; the fsname names the guarded directory.
import fs from 'node:fs'
import path from 'node:path'
import { attrOps, type SizeOf } from './ops-attr'
import { ClusterClient } from './client'
import { CryptFiles } from './crypt-files'
import { dirOps } from './ops-dir'
import { FsState } from './fs-state'
import { loadShim } from './fuse-ctx'
import { Guard } from './guard'
import { hostIdentity, readCluster } from './host-config'
import { ioOps } from './ops-io'
import { xattrOps } from './ops-xattr'
import type { SelectionName } from './selection'
import { ServerListWatcher } from './server-list'
import { PemError } from '../wire/errors'

export interface MountOptions {
  dir: string // the guard point: where applications see the files
  backing?: string // the directory underneath (default: dir itself, guarded in place)
  configDir: string
  timeoutMs?: number // per server tried (DESIGN §8: default 2 s)
  selection?: SelectionName // how the host picks a server (docs/PEMFS.md "Choosing a server")
}

interface FuseInstance { mount: (cb: (err: Error | null) => void) => void, unmount: (cb: (err: Error | null) => void) => void }
type FuseClass = new (mnt: string, ops: Record<string, unknown>, opts: Record<string, unknown>) => FuseInstance

export interface Mounted { dir: string, backing: string, state: FsState, client: ClusterClient, unmount: () => Promise<void> }

// fuse-native has no option for big writes or for mounting over a non-empty directory (guarding in place needs
// it); libfuse splits the fsname value on commas, so they ride along with it.
// Without them the kernel hands writes over in 4 KiB requests (50 MB/s instead of ~360 MB/s here).
// attr_timeout=0: libfuse's high-level API gives every name of a hard-linked file its own kernel inode, so a cached
// size would let fstat on an fd opened under one name miss writes made under another (docs/PEMFS.md).
// default_permissions: the kernel's own permission checks, from the attributes getattr reports.
const EXTRA_OPTIONS = 'nonempty,big_writes,max_write=131072,attr_timeout=0,default_permissions'

function checkFuse (): void {
  if (!fs.existsSync('/dev/fuse')) throw new PemError('PEM_ERR_BAD_CONFIG', 'FUSE is not available: /dev/fuse is missing (load the fuse module, or run the container with --device /dev/fuse)')
  try { require.resolve('fuse-native') } catch { throw new PemError('PEM_ERR_BAD_CONFIG', 'fuse-native is not installed: run npm ci') }
}

async function reachCluster (client: ClusterClient): Promise<void> {
  const errors: string[] = []
  for (const s of client.servers) {
    try { await client.ping(s); return } catch (err) { errors.push(`${s.entry.name}@${s.entry.addr}: ${(err as Error).message}`) }
  }
  throw new PemError('PEM_ERR_UNREACHABLE', `no server of the cluster answered (${errors.join('; ')})`)
}

export async function mountGuard (o: MountOptions): Promise<Mounted> {
  const dir = path.resolve(o.dir)
  const backing = path.resolve(o.backing ?? o.dir)
  for (const d of [dir, backing]) {
    if (!(fs.statSync(d, { throwIfNoEntry: false })?.isDirectory() ?? false)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${d} is not a directory`)
  }
  checkFuse()
  if (fs.statSync(dir).dev !== fs.statSync(path.dirname(dir)).dev && dir !== '/') {
    throw new PemError('PEM_ERR_BAD_ARGUMENT', `${dir} is a mount point; pemfs guards a directory inside a volume (e.g. ${path.join(dir, 'data')}), never the volume's root`)
  }
  const cluster = readCluster(o.configDir)
  const client = new ClusterClient(hostIdentity(o.configDir), cluster.servers, { timeoutMs: o.timeoutMs, selection: o.selection })
  let backingFd: number | undefined
  let watcher: ServerListWatcher | undefined
  try {
    await reachCluster(client)
    const w = watcher = new ServerListWatcher(client, o.configDir, cluster)
    backingFd = fs.openSync(backing, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)
    // Backing calls use paths relative to the backing directory (FsState.real); one mount per process.
    process.chdir(`/proc/self/fd/${backingFd}`)
    const state = new FsState(new Guard(client, dir), backingFd)
    const files = new CryptFiles(client)
    const sizeOf: SizeOf = (real, st) => files.plainSizeOf(real, st)
    const ops = { ...attrOps(state, sizeOf), ...dirOps(state), ...ioOps(state, files), ...xattrOps(state) }
    loadShim() // before fuse-native binds fuse_new
    const Fuse = require('fuse-native') as FuseClass // eslint-disable-line @typescript-eslint/no-var-requires
    const fsname = `pemfs:${dir.replace(/,/g, '_')},${EXTRA_OPTIONS}`
    const fuse = new Fuse(dir, ops, { allowOther: true, fsname })
    await new Promise<void>((resolve, reject) => fuse.mount(err => err === null || err === undefined
      ? resolve()
      : reject(new PemError('PEM_ERR_BAD_CONFIG', `cannot mount ${dir}: ${err.message} (is it already mounted?)`))))
    const fd = backingFd
    let unmounting: Promise<void> | undefined
    const unmount = async (): Promise<void> => {
      unmounting ??= new Promise<void>(resolve => fuse.unmount(() => resolve())).then(() => {
        w.close()
        client.close()
        for (const h of state.handles.values()) fs.close(h.fd, () => {})
        state.handles.clear()
        files.closeAll()
        fs.closeSync(fd)
      })
      await unmounting
    }
    return { dir, backing, state, client, unmount }
  } catch (err) {
    watcher?.close()
    client.close()
    if (backingFd !== undefined) fs.closeSync(backingFd)
    throw err
  }
}
