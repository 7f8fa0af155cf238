// The embedded store travels with the data (issue 21, finding 1), through the real CLI: the store file names the
// store by id, so a moved directory finds it; a second machine (another config dir) rebuilds it with the recovery key,
// is refused without it or with a wrong one (nothing made); the mount's policy refuses the store file to everyone.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { cli } from '../../scripts/procs'
import { isMounted, sh, tempDir } from '../helpers/mounts'

const root = tempDir('embedded-keys')
const first = path.join(root, 'vault')
const moved = path.join(root, 'vault2')
const cfgA = path.join(root, 'config-a')
const cfgB = path.join(root, 'config-b')
const STORE = '.pemfs-embedded'
const spdPids = (): number[] => fs.readdirSync('/proc').filter(p => /^\d+$/.test(p)).map(Number).filter(pid => {
  try { const c = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'); return c.includes(cfgA) || c.includes(cfgB) } catch { return false }
})
const mount = async (dir: string, cfg: string, extra: string[] = [], env: Record<string, string> = {}): ReturnType<typeof cli> =>
  await cli('pemfs', ['mount', dir, '--embedded', '--config-dir', cfg, ...extra], env, 40000)
const unmount = async (dir: string, cfg: string): ReturnType<typeof cli> => await cli('pemfs', ['unmount', dir, '--config-dir', cfg], {}, 30000)

test.before(() => { fs.mkdirSync(first) })

test.after.always(async () => {
  for (const d of [first, moved]) for (const c of [cfgA, cfgB]) if (isMounted(d)) await unmount(d, c)
  for (const d of [first, moved]) if (isMounted(d)) await sh(`umount -l '${d}'`)
  for (const pid of spdPids()) process.kill(pid, 'SIGKILL')
})

test.serial('first mount prints the recovery key; mv + remount reads; another machine recovers with the key only', async t => {
  const m = await mount(first, cfgA)
  t.is(m.code, 0, m.stderr)
  const key = /\b([0-9a-f]{8}(?:-[0-9a-f]{8}){7})\b/.exec(m.stderr)?.[1]
  t.truthy(key, m.stderr)
  t.true(m.stderr.includes(path.join(first, STORE)) && m.stderr.includes('--recover'), m.stderr)
  t.is((await sh(`echo 'TRAVELS with the data' > '${first}/a.txt'`)).code, 0)
  t.false((await sh(`ls -a '${first}'`)).stdout.includes(STORE), 'the store file is not listed through the mount')
  t.not((await sh(`cat '${first}/${STORE}'`)).code, 0, 'reading the store file through the mount is refused')
  t.not((await sh(`rm '${first}/${STORE}'`)).code, 0, 'deleting it through the mount is refused (it is not even found: hidden, native/fuse/reserved.h)')
  t.is((await unmount(first, cfgA)).code, 0)
  t.true(fs.existsSync(path.join(first, STORE)))
  t.false(fs.readFileSync(path.join(first, STORE), 'utf8').includes(key as string))

  const again = await mount(first, cfgA)
  t.is(again.code, 0, again.stderr)
  t.false(/[0-9a-f]{8}(-[0-9a-f]{8}){7}/.test(again.stderr), 'the key is printed once, at first use')
  t.is((await unmount(first, cfgA)).code, 0)

  const e = await cli('pemfs', ['embedded', 'export-key', first, '--config-dir', cfgA, '--json'])
  t.is(e.code, 0, e.stderr)
  t.is((JSON.parse(e.stdout) as { recoveryKey: string }).recoveryKey, key as string)

  fs.renameSync(first, moved)
  t.is((await mount(moved, cfgA)).code, 0)
  const r = await sh(`cat '${moved}/a.txt'`)
  t.is(r.stdout, 'TRAVELS with the data\n', r.stderr)
  t.is((await unmount(moved, cfgA)).code, 0)

  const before = fs.readFileSync(path.join(moved, STORE))
  const none = await mount(moved, cfgB)
  t.not(none.code, 0)
  t.true(none.stderr.includes(path.join(moved, STORE)) && none.stderr.includes('--recover'), none.stderr)
  const wrong = await mount(moved, cfgB, ['--recover'], { PEMFS_RECOVERY_KEY: '00000000-'.repeat(7) + '00000000' })
  t.not(wrong.code, 0)
  t.regex(wrong.stderr, /recovery key does not open/)
  t.false(fs.existsSync(path.join(cfgB, 'embedded')) && fs.readdirSync(path.join(cfgB, 'embedded')).length > 0, 'nothing made on machine B')
  t.false(isMounted(moved))
  t.deepEqual(fs.readFileSync(path.join(moved, STORE)), before, 'the store file was not changed')

  const keyFile = path.join(root, 'key.txt')
  fs.writeFileSync(keyFile, `${key as string}\n`, { mode: 0o600 })
  const rec = await mount(moved, cfgB, ['--recover', '--recovery-key-file', keyFile])
  t.is(rec.code, 0, rec.stderr)
  const rb = await sh(`cat '${moved}/a.txt'`)
  t.is(rb.stdout, 'TRAVELS with the data\n', rb.stderr)
  t.is((await unmount(moved, cfgB)).code, 0)
  t.deepEqual(spdPids(), [])
})

test.serial('a directory with encrypted files and no store file is refused, nothing made', async t => {
  const bare = path.join(root, 'bare')
  fs.mkdirSync(bare)
  fs.copyFileSync(path.join(moved, 'a.txt'), path.join(bare, 'a.txt'))
  const cfgC = path.join(root, 'config-c')
  const r = await cli('pemfs', ['mount', bare, '--embedded', '--config-dir', cfgC], {}, 30000)
  t.not(r.code, 0)
  t.true(r.stderr.includes(path.join(bare, 'a.txt')) && r.stderr.includes(STORE), r.stderr)
  t.false(isMounted(bare))
  t.false(fs.existsSync(path.join(bare, STORE)))
})
