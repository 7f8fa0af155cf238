// A guard point that is itself a mount point (a volume's root) is refused with a clear reason, and `pemfs unmount`
// (idempotent) on it never detaches the volume: only a pemfs FUSE mount counts as "mounted" for pemfs.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { cli } from '../../scripts/procs'
import { sh, tempDir } from '../helpers/mounts'

const root = tempDir('mountpoint')
const dir = path.join(root, 'volume')
const cfg = path.join(root, 'config')
const mountedAt = (d: string): string[] => fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').filter(l => l.split(' ')[1] === d).map(l => l.split(' ')[2])

test.before(async () => {
  fs.mkdirSync(dir)
  const r = await sh(`mount -t tmpfs -o size=16m pemtest '${dir}' && echo 'on the volume' > '${dir}/before.txt' && mkdir '${dir}/data'`)
  if (r.code !== 0) throw new Error(`cannot mount a tmpfs: ${r.stderr}`)
})

test.after.always(async () => {
  await cli('pemfs', ['unmount', path.join(dir, 'data'), '--config-dir', cfg], {}, 30000)
  for (let i = 0; i < 3 && mountedAt(dir).length > 0; i++) await sh(`umount -l '${dir}'`)
})

test.serial('the root of a volume is refused as a guard point; unmount there leaves the volume mounted', async t => {
  const m = await cli('pemfs', ['mount', dir, '--embedded', '--config-dir', cfg, '--json'], {}, 30000)
  t.not(m.code, 0)
  t.regex(m.stderr, /is a mount point.*inside a volume/)
  const u = await cli('pemfs', ['unmount', dir, '--config-dir', cfg, '--json'], {}, 30000)
  t.is(u.code, 1, 'nothing of pemfs was there: nothing to unmount')
  t.regex(u.stderr, /is not a pemfs mount/)
  t.deepEqual(mountedAt(dir), ['tmpfs'], 'the volume is still mounted')
  t.is(fs.readFileSync(path.join(dir, 'before.txt'), 'utf8'), 'on the volume\n')
})

test.serial('a directory inside the volume is guarded; its unmount takes away pemfs only', async t => {
  const data = path.join(dir, 'data')
  const m = await cli('pemfs', ['mount', data, '--embedded', '--config-dir', cfg, '--json'], {}, 30000)
  t.is(m.code, 0, m.stderr)
  const w = await sh(`echo 'through pemfs' > '${data}/new.txt' && cat '${data}/new.txt'`)
  t.is(w.stdout, 'through pemfs\n', w.stderr)
  const u = await cli('pemfs', ['unmount', data, '--config-dir', cfg, '--json'], {}, 30000)
  t.is(u.code, 0, u.stderr)
  t.deepEqual(mountedAt(data), [])
  t.deepEqual(mountedAt(dir), ['tmpfs'], 'the volume is still mounted')
  t.false(fs.readFileSync(path.join(data, 'new.txt')).includes('through pemfs'), 'ciphertext on the volume')
})
