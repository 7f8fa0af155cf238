// `pemfs mount DIR --embedded` on a real mount: one command brings up a private spd (init, default policy, enrollment),
// files are written as ciphertext underneath, unmount stops the child, and a second mount reads them back (the keys
// stay in the embedded data dir). Driven from separate processes; the time to a usable mount is logged.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { cli } from '../../scripts/procs'
import { FILE_MAGIC } from '../../lib/wire/file-format'
import { isMounted, sh, tempDir } from '../helpers/mounts'

const root = tempDir('embedded')
const dir = path.join(root, 'data')
const cfg = path.join(root, 'config')
const q = (p: string): string => `'${path.join(dir, p)}'`
const spdPids = (): number[] => fs.readdirSync('/proc').filter(p => /^\d+$/.test(p)).map(Number).filter(pid => {
  try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(cfg) } catch { return false }
})

test.before(() => {
  fs.mkdirSync(dir)
  fs.writeFileSync(path.join(dir, 'old.txt'), 'left from before\n')
})

test.after.always(async () => {
  if (isMounted(dir)) await cli('pemfs', ['unmount', dir, '--config-dir', cfg], {}, 30000)
  if (isMounted(dir)) await sh(`umount -l '${dir}'`)
  for (const pid of spdPids()) process.kill(pid, 'SIGKILL')
})

test.serial('one command mounts with its own spd; data is ciphertext underneath; unmount stops the spd; remount reads it', async t => {
  const t0 = Date.now()
  const m = await cli('pemfs', ['mount', dir, '--embedded', '--config-dir', cfg, '--json'], {}, 30000)
  t.is(m.code, 0, m.stderr)
  const w = await sh(`echo 'EMBEDDED-SECRET line' > ${q('new.txt')} && cat ${q('new.txt')} ${q('old.txt')}`)
  const usable = Date.now() - t0
  t.log(`first mount (spd init, policy, enrollment, mount) + write + read: ${usable} ms`)
  t.is(w.stdout, 'EMBEDDED-SECRET line\nleft from before\n', w.stderr)
  t.true(usable < 10000, `${usable} ms`)
  t.is(spdPids().length, 2, 'the pemfs daemon and its spd child')
  const base = fs.readdirSync(path.join(cfg, 'embedded'))
  t.is(base.length, 1)
  t.is(fs.statSync(path.join(cfg, 'embedded', base[0], 'admin-password')).mode & 0o777, 0o600)

  const u = await cli('pemfs', ['unmount', dir, '--config-dir', cfg, '--json'], {}, 30000)
  t.is(u.code, 0, u.stderr)
  t.false(isMounted(dir))
  t.deepEqual(spdPids(), [], 'no spd left running')
  const raw = fs.readFileSync(path.join(dir, 'new.txt'))
  t.true(raw.subarray(0, 4).equals(FILE_MAGIC))
  t.false(raw.includes('EMBEDDED-SECRET'))
  t.is(fs.readFileSync(path.join(dir, 'old.txt'), 'utf8'), 'left from before\n', 'the plaintext file was left as it was')

  const t1 = Date.now()
  t.is((await cli('pemfs', ['mount', dir, '--embedded', '--config-dir', cfg], {}, 30000)).code, 0)
  const r = await sh(`cat ${q('new.txt')}`)
  t.log(`second mount + read: ${Date.now() - t1} ms`)
  t.is(r.stdout, 'EMBEDDED-SECRET line\n', r.stderr)
  t.is((await cli('pemfs', ['unmount', dir, '--config-dir', cfg], {}, 30000)).code, 0)
  t.deepEqual(spdPids(), [])
})
