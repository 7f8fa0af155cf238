// Host and appliance placement on one guard point, through the real CLI (`pemfs mount --embedded`, which seals on
// the host by default and in its private spd with --placement appliance): the native session serves host-placement
// files with the key spd released (the io hook sees no reads or writes), a file written in one mode reads bit for bit
// in the other and back, the bytes underneath are ciphertext either way, and a flipped bit is EIO in host mode too.
import test from 'ava'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { cli } from '../../scripts/procs'
import { FILE_MAGIC } from '../../lib/wire/file-format'
import { isMounted, sh, tempDir } from '../helpers/mounts'

const root = tempDir('placement')
const dir = path.join(root, 'data')
const cfg = path.join(root, 'config')
const big = crypto.randomBytes(3 * 1048576 + 5)
const bigFile = path.join(root, 'big.bin')

test.before(() => {
  fs.mkdirSync(dir)
  fs.writeFileSync(bigFile, big)
})

test.after.always(async () => {
  if (isMounted(dir)) await cli('pemfs', ['unmount', dir, '--config-dir', cfg], {}, 30000)
  if (isMounted(dir)) await sh(`umount -l '${dir}'`)
})

async function mount (t: { is: (a: unknown, b: unknown, m?: string) => void }, extra: string[], env: Record<string, string> = {}): Promise<void> {
  const m = await cli('pemfs', ['mount', dir, '--embedded', '--config-dir', cfg, ...extra], env, 30000)
  t.is(m.code, 0, m.stderr)
}
async function unmount (t: { is: (a: unknown, b: unknown, m?: string) => void }): Promise<void> {
  t.is((await cli('pemfs', ['unmount', dir, '--config-dir', cfg], {}, 30000)).code, 0)
}
async function status (): Promise<Record<string, number>> {
  return JSON.parse((await cli('pemfs', ['status', dir, '--config-dir', cfg, '--json'])).stdout) as Record<string, number>
}

test.serial('host placement by default: served natively with the released key; appliance placement (native block path, then the JS fallback) reads it and writes; host reads that back', async t => {
  await mount(t, [])
  const w = await sh(`cp '${bigFile}' '${dir}/big.bin' && echo one > '${dir}/log.txt' && cmp '${bigFile}' '${dir}/big.bin' && cat '${dir}/log.txt'`)
  t.is(w.code, 0, w.stderr)
  t.is(w.stdout, 'one\n')
  let s = await status()
  t.true(s.hostKeys >= 2, `keys handed to the native side: ${s.hostKeys}`)
  t.true(s.hostWrites > 0 && s.hostReads > 0, `native data calls: ${s.hostWrites} writes, ${s.hostReads} reads`)
  t.is(s.reads + s.writes, 0, 'the io hook served no data call')
  const env = fs.readFileSync(`/proc/${s.pid}/environ`, 'utf8')
  t.false(/recovery|PEMK/i.test(env), 'nothing of the keys in the daemon\'s environment')
  await unmount(t)
  const raw = fs.readFileSync(path.join(dir, 'big.bin'))
  t.true(raw.subarray(0, 4).equals(FILE_MAGIC))
  t.is(raw.indexOf(big.subarray(4096, 4096 + 64)), -1, 'no plaintext underneath')

  await mount(t, ['--placement', 'appliance'])
  const a = await sh(`cmp '${bigFile}' '${dir}/big.bin' && echo two >> '${dir}/log.txt' && cat '${dir}/log.txt'`)
  t.is(a.code, 0, a.stderr)
  t.is(a.stdout, 'one\ntwo\n', 'a file written on the host reads (and appends) through spd')
  s = await status()
  t.is(s.hostKeys, 0, 'no key left spd')
  t.true(s.blockGrants >= 2 && s.blockRequests > 0 && s.blockBlocks > 0, `native block path: ${s.blockGrants} grants, ${s.blockRequests} requests`)
  t.is(s.reads + s.writes, 0, 'the io hook served no data call: blocks went to spd\'s native block service')
  await unmount(t)

  await mount(t, ['--placement', 'appliance'], { PEMFS_BLOCK_PATH: 'js' }) // the fallback: CryptFile and BlocksSeal/Open
  const j = await sh(`cmp '${bigFile}' '${dir}/big.bin' && echo three >> '${dir}/log.txt' && cat '${dir}/log.txt'`)
  t.is(j.code, 0, j.stderr)
  t.is(j.stdout, 'one\ntwo\nthree\n')
  s = await status()
  t.true(s.reads > 0 && s.writes > 0, 'PEMFS_BLOCK_PATH=js: the io hook served the data calls')
  t.is(s.blockRequests, 0)
  await unmount(t)

  await mount(t, [])
  const h = await sh(`cat '${dir}/log.txt' && cmp '${bigFile}' '${dir}/big.bin'`)
  t.is(h.stdout, 'one\ntwo\nthree\n', `a file written through spd reads on the host: ${h.stderr}`)
  t.is(h.code, 0, h.stderr)
  await unmount(t)
})

test.serial('host placement: a flipped bit underneath is EIO for that block, the rest still reads', async t => {
  const p = path.join(dir, 'big.bin')
  const b = fs.readFileSync(p)
  b[b.length - 5000] ^= 0x20 // inside the last full block's record
  fs.writeFileSync(p, b)
  await mount(t, [])
  const bad = await sh(`cat '${p}' > /dev/null`)
  t.regex(bad.stderr, /Input\/output error/)
  const good = await sh(`head -c 1048576 '${p}' | cmp -n 1048576 - '${bigFile}'`)
  t.is(good.code, 0, good.stderr)
  await unmount(t)
})
