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

const bypassPolicy = (guard: string): string => `format: 1
guards:
  ${guard}:
    rules:
      - id: plain
        effect: permit
`

test.serial('--policy FILE: a bypass policy stores plaintext; the next mount without --policy is back to the default (encrypted)', async t => {
  const file = path.join(root, 'bypass.yaml')
  fs.writeFileSync(file, bypassPolicy(dir))
  const m = await cli('pemfs', ['mount', dir, '--embedded', '--policy', file, '--config-dir', cfg], {}, 30000)
  t.is(m.code, 0, m.stderr)
  const w = await sh(`echo 'PLAIN-BYPASS line' > ${q('plain.txt')} && cat ${q('plain.txt')}`)
  t.is(w.stdout, 'PLAIN-BYPASS line\n', w.stderr)
  t.is((await cli('pemfs', ['unmount', dir, '--config-dir', cfg], {}, 30000)).code, 0)
  t.is(fs.readFileSync(path.join(dir, 'plain.txt'), 'utf8'), 'PLAIN-BYPASS line\n', 'plaintext on disk')

  t.is((await cli('pemfs', ['mount', dir, '--embedded', '--config-dir', cfg], {}, 30000)).code, 0)
  t.is((await sh(`echo 'DEFAULT-AGAIN' > ${q('sealed.txt')}`)).code, 0)
  t.is((await cli('pemfs', ['unmount', dir, '--config-dir', cfg], {}, 30000)).code, 0)
  const raw = fs.readFileSync(path.join(dir, 'sealed.txt'))
  t.true(raw.subarray(0, 4).equals(FILE_MAGIC), 'the default policy encrypts again')
  t.false(raw.includes('DEFAULT-AGAIN'))
  t.deepEqual(spdPids(), [])
})

test.serial('--policy FILE: an invalid file, one without DIR as a guard point, and --policy without --embedded are refused with exit 2, naming the file', async t => {
  const bad = path.join(root, 'bad.yaml')
  fs.writeFileSync(bad, bypassPolicy(dir).replace('effect: permit', 'effect: permitt'))
  const r = await cli('pemfs', ['mount', dir, '--embedded', '--policy', bad, '--config-dir', cfg], {}, 30000)
  t.is(r.code, 2, r.stderr)
  t.regex(r.stderr, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:6`), 'the file and the line of the error')
  const other = path.join(root, 'other.yaml')
  fs.writeFileSync(other, bypassPolicy('/srv/elsewhere'))
  const o = await cli('pemfs', ['mount', dir, '--embedded', '--policy', other, '--config-dir', cfg], {}, 30000)
  t.is(o.code, 2, o.stderr)
  t.true(o.stderr.includes(other) && o.stderr.includes(`no guard point ${dir}`), o.stderr)
  const n = await cli('pemfs', ['mount', dir, '--policy', other, '--config-dir', cfg], {}, 30000)
  t.is(n.code, 2, n.stderr)
  t.regex(n.stderr, /--policy needs --embedded/)
  t.false(isMounted(dir))
  t.deepEqual(spdPids(), [], 'nothing was started')
})
