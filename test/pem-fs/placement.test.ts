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
  fs.chmodSync(root, 0o755) // another user reaches the mount (the spares test)
  fs.mkdirSync(dir)
  fs.writeFileSync(bigFile, big)
})

test.after.always(async () => {
  if (isMounted(dir)) await cli('pemfs', ['unmount', dir, '--config-dir', cfg], {}, 30000)
  if (isMounted(dir)) await sh(`umount -l '${dir}'`)
})

async function mount (t: { is: (a: unknown, b: unknown, m?: string) => void }, extra: string[], env: Record<string, string> = {}): Promise<void> {
  // A test that failed before its unmount left the mount: the next one starts from none.
  if (isMounted(dir)) await cli('pemfs', ['unmount', dir, '--config-dir', cfg], {}, 30000)
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

test.serial('host placement: new files take spare keys without an io call; each its own file id; a new policy version drops the spares', async t => {
  await mount(t, [])
  const before = await status()
  const n = 40
  const w = await sh(`mkdir -p '${dir}/many' && for i in $(seq 1 ${n}); do echo "file $i" > '${dir}/many/f'$i; done`)
  t.is(w.code, 0, w.stderr)
  let s = await status()
  const takes = s.hostSpareTakes - before.hostSpareTakes
  t.true(takes >= n - 4 && takes < n, `creates served from a spare: ${takes} of ${n} (one io call per batch of 32)`)
  t.is(s.hostKeys - before.hostKeys, n, 'every new file got a key')
  t.true(s.hostSpareKeys > 0 && s.hostSpareKeys <= 31, `spares held: ${s.hostSpareKeys}`)
  const all = await sh(`for i in $(seq 1 ${n}); do cat '${dir}/many/f'$i; done`)
  t.is(all.stdout, Array.from({ length: n }, (_, i) => `file ${i + 1}\n`).join(''), 'every file reads back through the mount')

  // The same policy installed again is a new version: the mount drops its cached answers and its spares.
  const store = path.join(cfg, 'embedded', fs.readdirSync(path.join(cfg, 'embedded')).find(e => !e.startsWith('unset-')) as string)
  const info = JSON.parse(fs.readFileSync(path.join(store, 'embedded.json'), 'utf8')) as { id: string, admin: string }
  const env = { SPCTL_CONFIG: path.join(root, 'spctl.json'), SPCTL_ENDPOINT: `https://${info.admin}` }
  t.is((await cli('spctl', ['--server-id', info.id, 'login', '--password-file', path.join(store, 'admin-password')], env)).code, 0)
  const text = (await cli('spctl', ['policy', 'get'], env)).stdout
  fs.writeFileSync(path.join(root, 'again.yaml'), text.replace(/^format: 1$/m, 'format: 1\n# again'))
  const applied = await cli('spctl', ['policy', 'apply', path.join(root, 'again.yaml'), '--yes'], env)
  t.is(applied.code, 0, applied.stderr)
  // The mount hears of the version with its next decision that reaches spd: another user's, which no cache holds.
  const other = await sh(`setpriv --reuid=4242 --regid=4242 --clear-groups cat '${dir}/many/f3'`)
  t.is(other.stdout, 'file 3\n', other.stderr)
  s = await status()
  t.is(s.hostSpareKeys, 0, 'a new policy version drops the spares')
  t.is((await sh(`echo after > '${dir}/many/g' && cat '${dir}/many/g'`)).stdout, 'after\n')
  await unmount(t)
  const heads = new Set<string>()
  for (let i = 1; i <= n; i++) heads.add(fs.readFileSync(path.join(dir, 'many', `f${i}`)).subarray(8, 24).toString('hex'))
  t.is(heads.size, n, 'underneath, every file has its own header (file id)')
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
