// Revocation of host-placement keys (issue 18 item 4; lib/wire/FORMAT.md §4.5 "Revocation"), on a real mount of a
// real spd: a key is a lease wiped at its decision's ttl; a key rotation, a policy that moves the file to appliance
// placement, `spctl host revoke` and `spctl host remove` are pushed (KeysDrop) and wipe the keys the host holds long
// before the ttl (30 s here). Each time a process that keeps the file open reads a block it never read before: with a
// fresh key where the host may still have one, EACCES where it may not; `pemfs status` shows 0 keys held in between.
// Once that handle is closed, a new open of a file the host may no longer hold keys for is served by spd. Also the
// core-file check of issue 18: gcore of the daemon while it holds a key has no key bytes; a crash dumps no core. A
// revocation whose push is lost (nftables drops what spd sends the host) is bounded by the key's ttl.
import test, { type ExecutionContext } from 'ava'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { cli } from '../../scripts/procs'
import { loadIdentity } from '../../lib/crypto/identity'
import { createEngine, importKey } from '../../lib/native/crypto-engine'
import { IDENTITY_FILE } from '../../lib/server/member'
import { ConfigStore, storeKeyFrom } from '../../lib/server/store'
import { AAD_BYTES, NONCE_BYTES, TAG_BYTES, decodeHeader, parseSlot, slotOffset, writeAad } from '../../lib/wire/file-format'
import { checkKeysDrop } from '../../lib/wire/packets'
import { applyPolicy, clusterWithHost, daemonLogs, isMounted, mountOrThrow, sh, tearDown, tempDir, type Cluster } from '../helpers/mounts'
import { ServeChild } from '../helpers/serve-child'

const HOLD = path.join(__dirname, '..', 'helpers', 'hold-file.js')
const TTL_MS = 30_000 // the policy's ttl: every pushed revocation must land far inside it
const PUSHED_WITHIN_MS = 5000
const MiB = 1 << 20
let c: Cluster
let root: string
let view: string
let back: string // the directory underneath: this process reads it, never the mount
const data = crypto.randomBytes(8 * MiB)
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex')

const policy = (placement: 'host' | 'appliance'): string => `format: 1
ttl: ${TTL_MS}ms
keys: [k1]
guards:
  ${view}:
    rules:
      - id: short
        resources: { dirs: [/short] }
        effect: apply_key(k1)
        placement: ${placement}
        ttl: 5s
      - id: mid
        resources: { dirs: [/mid] }
        effect: apply_key(k1)
        placement: ${placement}
        ttl: 12s
      - id: files
        effect: apply_key(k1)
        placement: ${placement}
`

async function status (): Promise<Record<string, number>> {
  const r = await cli('pemfs', ['status', view, '--config-dir', c.hostDir, '--json'])
  if (r.code !== 0) throw new Error(`pemfs status: ${r.stderr}`)
  return JSON.parse(r.stdout) as Record<string, number>
}

/** Polls `pemfs status` until no key is held; the milliseconds it took (or throws after `withinMs`). */
async function keysGone (withinMs: number): Promise<number> {
  const t0 = Date.now()
  for (;;) {
    if ((await status()).hostKeysHeld === 0) return Date.now() - t0
    if (Date.now() - t0 > withinMs) throw new Error(`keys still held after ${withinMs} ms\n${daemonLogs(c)}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/** A child holding `name` open for reading, with the first block read (its key released to the host). */
async function holdOpen (t: ExecutionContext, name: string): Promise<ServeChild & { held: Record<string, number> }> {
  const h = await ServeChild.start(HOLD, { file: path.join(view, name) })
  t.teardown(() => { h.child.kill('SIGKILL') })
  t.deepEqual(await h.command('read 0 4096'), { ok: true, bytes: 4096, sha256: sha(data.subarray(0, 4096)) }, 'the first block reads')
  const held = await status()
  t.is(held.hostKeysHeld, 1, 'the host holds the file\'s key')
  return Object.assign(h, { held })
}

/** Reads the block at `at` (never read by this handle before, far past any readahead of the first). */
const readAt = async (h: ServeChild, at: number): Promise<Record<string, unknown>> => await h.command(`read ${at} 4096`)
const block = (at: number): Record<string, unknown> => ({ ok: true, bytes: 4096, sha256: sha(data.subarray(at, at + 4096)) })

test.before(async () => {
  root = tempDir('revoke')
  view = path.join(root, 'view')
  back = path.join(root, 'back')
  fs.mkdirSync(view); fs.mkdirSync(back)
  c = await clusterWithHost('pemfs-revoke', () => policy('host'))
  await mountOrThrow(c, view, ['--backing', back])
  const src = path.join(root, 'data.bin')
  fs.writeFileSync(src, data)
  const w = await sh(`mkdir '${view}/short' '${view}/mid' && for f in a b c d e short/s mid/m; do cp '${src}' '${view}/'$f; done`, { timeoutMs: 60000 })
  if (w.code !== 0) throw new Error(`writing the files: ${w.stderr}\n${daemonLogs(c)}`)
})

test.after.always(async () => { await tearDown(c) })

test('KeysDrop bodies: a known reason and a version, nothing else', t => {
  t.deepEqual(checkKeysDrop({ pv: 7, reason: 'host-revoke' }), { pv: 7, reason: 'host-revoke' })
  for (const bad of [null, {}, { pv: 7, reason: 'because' }, { pv: -1, reason: 'policy' }, { pv: 'x', reason: 'policy' }]) {
    t.throws(() => checkKeysDrop(bad), { code: 'PEM_ERR_BAD_BODY' }, JSON.stringify(bad))
  }
})

test.serial('a key is a lease: wiped when its ttl runs out, released again (a fresh decision) for the next block', async t => {
  const h = await holdOpen(t, 'short/s')
  const waited = await keysGone(8000) // ttl 5 s, swept every 250 ms
  t.true(waited <= 5500, `wiped ${waited} ms after the key was seen held`)
  const after = await status()
  t.is(after.hostKeysDropped, h.held.hostKeysDropped + 1, 'wiped by the ttl sweep')
  t.deepEqual(await readAt(h, 6 * MiB), block(6 * MiB), 'the next block reads with a key released again')
  t.is((await status()).hostKeyCalls, after.hostKeyCalls + 1, 'one key question')
})

test.serial('key rotate: pushed, the key is wiped at once; the next block reads with a key released again', async t => {
  const h = await holdOpen(t, 'a')
  const before = await status()
  const r = await c.spctl(['key', 'rotate', 'k1'])
  t.is(r.code, 0, r.stderr)
  t.true(await keysGone(PUSHED_WITHIN_MS) < PUSHED_WITHIN_MS)
  t.deepEqual(await readAt(h, 6 * MiB), block(6 * MiB), 'the file keeps its key version: the host may read it')
  t.is((await status()).hostKeyCalls, before.hostKeyCalls + 1, 'asked for the key again')
})

test.serial('policy moves the file to appliance placement: pushed, the key is wiped; the open handle gets EACCES, a new open reads through spd', async t => {
  const h = await holdOpen(t, 'b')
  await applyPolicy(c, policy('appliance'))
  try {
    t.true(await keysGone(PUSHED_WITHIN_MS) < PUSHED_WITHIN_MS)
    t.deepEqual(await readAt(h, 6 * MiB), { ok: false, code: 'EACCES' }, 'no key for the next block')
    t.deepEqual(await readAt(h, 7 * MiB), { ok: false, code: 'EACCES' }, 'the handle stays revoked')
    t.deepEqual(await h.command('close'), { ok: true }) // one engine per inode: spd serves it once the native handle is gone
    const before = await status()
    const r = await sh(`sha256sum < '${view}/b'`)
    t.is(r.stdout.split(' ')[0], sha(data), r.stderr)
    const after = await status()
    t.is(after.hostKeys, before.hostKeys, 'no key released')
    t.true(after.reads + after.blockBlocks > before.reads + before.blockBlocks, 'spd opened the blocks (io hook or native block path)')
  } finally { await applyPolicy(c, policy('host')) }
})

test.serial('spctl host revoke: pushed, the key is wiped; EACCES on the open handle; spd serves the host until --undo', async t => {
  const h = await holdOpen(t, 'c')
  const r = await c.spctl(['host', 'revoke', 'host-1'])
  t.teardown(async () => { await c.spctl(['host', 'revoke', 'host-1', '--undo']) })
  t.is(r.code, 0, r.stderr)
  t.true(await keysGone(PUSHED_WITHIN_MS) < PUSHED_WITHIN_MS)
  t.deepEqual(await readAt(h, 6 * MiB), { ok: false, code: 'EACCES' })
  const list = JSON.parse((await c.spctl(['--json', 'host', 'list'])).stdout) as Array<{ name: string, keysRevoked?: boolean }>
  t.true(list.find(x => x.name === 'host-1')?.keysRevoked, 'host list shows it')
  t.deepEqual(await h.command('close'), { ok: true })
  let before = await status()
  const a = await sh(`sha256sum < '${view}/c'`)
  t.is(a.stdout.split(' ')[0], sha(data), a.stderr)
  let after = await status()
  t.is(after.hostKeys, before.hostKeys, 'no key released to a revoked host')
  t.true(after.reads + after.blockBlocks > before.reads + before.blockBlocks, 'spd opened the blocks (io hook or native block path)')
  t.is((await c.spctl(['host', 'revoke', 'nosuchhost'])).code, 1, 'an unknown host is refused')
  const u = await c.spctl(['host', 'revoke', 'host-1', '--undo'])
  t.is(u.code, 0, u.stderr)
  before = after
  const b = await sh(`sha256sum < '${view}/e'`) // a file not decided yet (c's appliance decision stays cached for its ttl)
  t.is(b.stdout.split(' ')[0], sha(data), b.stderr)
  after = await status()
  t.true(after.hostKeys > before.hostKeys, 'keys are released again after --undo')
})

test.serial('a push that never arrives: the revoked host holds its key only until the ttl; then no block without spd, and spd refuses', async t => {
  const h = await holdOpen(t, 'mid/m') // ttl 12 s
  // Everything spd sends on its host listener is dropped (the KeysDrop push with it); the admin API still works.
  const port = Number(c.spd.listen.split(':').pop())
  const table = `inet pemrevoke${process.pid}`
  const nft = async (...args: string[]): Promise<void> => { const r = await sh(`/usr/sbin/nft ${args.join(' ')}`); if (r.code !== 0) throw new Error(`nft: ${r.stderr}`) }
  await nft('add table', table)
  t.teardown(async () => { await sh(`/usr/sbin/nft delete table ${table}`) })
  await nft('add chain', table, "out '{ type filter hook output priority 0; }'")
  await nft('add rule', table, 'out tcp sport', String(port), 'counter drop')
  const r = await c.spctl(['host', 'revoke', 'host-1'])
  t.teardown(async () => { await c.spctl(['host', 'revoke', 'host-1', '--undo']) })
  t.is(r.code, 0, r.stderr)
  await new Promise(resolve => setTimeout(resolve, 1500))
  t.is((await status()).hostKeysHeld, 1, `the push did not arrive: the key is still held\n${daemonLogs(c)}`)
  const waited = await keysGone(15000)
  t.true(waited <= 12500, `wiped by its ttl, ${waited} ms after the revoke's push was lost`)
  const cut = await readAt(h, 6 * MiB)
  t.false(cut.ok, `no block without a fresh decision from spd: ${JSON.stringify(cut)}`)
  t.is((await status()).hostKeysHeld, 0)
  await sh(`/usr/sbin/nft delete table ${table}`)
  let healed: Record<string, unknown> = {}
  for (let i = 0; i < 40 && healed.code !== 'EACCES'; i++) {
    healed = await readAt(h, 7 * MiB)
    if (healed.code !== 'EACCES') await new Promise(resolve => setTimeout(resolve, 500))
  }
  t.deepEqual(healed, { ok: false, code: 'EACCES' }, 'once spd is reachable again it refuses the revoked host')
})

/**
 * The 32 bytes of the file key of `name` (HKDF of k1's material, docs/ENGINE.md "Keys"), from the member's own store,
 * checked by opening the file's first block with it.
 */
function fileKeyOf (name: string): { key: Buffer, fileId: Buffer } {
  const bytes = fs.readFileSync(path.join(back, name))
  const h = decodeHeader(bytes)
  const store = ConfigStore.open(c.spd.dir, storeKeyFrom(loadIdentity(path.join(c.spd.dir, IDENTITY_FILE)).signKey))
  const material = store.state.keys.k1.find(v => v.version === h.keyVersion)?.material as Buffer
  const info = Buffer.alloc(35)
  info.write('pem/v1 file key')
  h.fileId.copy(info, 15)
  info.writeUInt32BE(h.keyVersion, 31)
  const key = Buffer.from(crypto.hkdfSync('sha256', material, Buffer.alloc(32), info, 32))
  const slot = parseSlot(h, 0, bytes.subarray(slotOffset(h, 0), slotOffset(h, 1)))
  if (slot.kind === 'hole') throw new Error('block 0 is a hole')
  const aad = Buffer.alloc(AAD_BYTES)
  writeAad(h, 0, slot.trailer.keyVersion, slot.trailer.plainLen, aad)
  const plain = Buffer.alloc(slot.trailer.sealedLen - NONCE_BYTES - TAG_BYTES)
  createEngine({ cipher: h.cipher }).openBatchSync(importKey(key), slot.record.subarray(0, slot.trailer.sealedLen), new Uint32Array([slot.trailer.sealedLen]), aad, AAD_BYTES, plain)
  if (!plain.equals(data.subarray(0, plain.length))) throw new Error('the derived key does not open block 0')
  return { key, fileId: h.fileId }
}

/**
 * The memory segments (PT_LOAD) of an x86-64 ELF core file. Its notes are left out: they hold each thread's registers
 * as they were when gcore stopped it (a root debugger's view, the same as reading the key page itself).
 */
function memoryOf (core: Buffer): Buffer[] {
  const phoff = Number(core.readBigUInt64LE(32))
  const out: Buffer[] = []
  for (let i = 0; i < core.readUInt16LE(56); i++) {
    const at = phoff + i * core.readUInt16LE(54)
    const offset = Number(core.readBigUInt64LE(at + 8))
    if (core.readUInt32LE(at) === 1) out.push(core.subarray(offset, offset + Number(core.readBigUInt64LE(at + 32))))
  }
  return out
}

test.serial('no key in a core of pemfs: gcore while it holds one finds its file id but not the key; a crash dumps no core', async t => {
  const h = await holdOpen(t, 'e')
  const { key, fileId } = fileKeyOf('e')
  const pid = (await status()).pid
  const prefix = path.join(root, 'core')
  const g = await sh(`gcore -o '${prefix}' ${pid}`, { timeoutMs: 120_000 })
  t.is(g.code, 0, g.stderr)
  const memory = memoryOf(fs.readFileSync(`${prefix}.${pid}`))
  fs.rmSync(`${prefix}.${pid}`)
  t.true(memory.some(m => m.indexOf(fileId) >= 0), 'the core holds the daemon\'s memory (the file id of the header it serves)')
  t.deepEqual(memory.flatMap((m, i) => m.indexOf(key) >= 0 ? [i] : []), [], 'no copy of the key in its memory (the key page is MADV_DONTDUMP; answers and stacks hold none)')
  t.deepEqual(await readAt(h, 6 * MiB), block(6 * MiB), 'the daemon serves on after gcore')
  // A crash: dumpable 0 (PR_SET_DUMPABLE) leaves no core even with an unlimited core size.
  const pattern = fs.readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim()
  t.is((await sh(`prlimit --pid ${pid} --core=unlimited:unlimited`)).code, 0)
  h.child.kill('SIGKILL')
  process.kill(pid, 'SIGSEGV')
  for (let i = 0; i < 100 && fs.existsSync(`/proc/${pid}`); i++) await new Promise(resolve => setTimeout(resolve, 100))
  t.false(fs.existsSync(`/proc/${pid}`), 'the daemon died')
  if (pattern.startsWith('|')) t.log(`core_pattern pipes to ${pattern}: only the gcore check applies`)
  else {
    const name = path.basename(pattern.replace(/%[a-zA-Z]/g, ''))
    const at = pattern.startsWith('/') ? path.dirname(pattern) : '/' // the daemon runs in /
    t.deepEqual(fs.readdirSync(at).filter(f => f.startsWith(name) && fs.statSync(path.join(at, f)).mtimeMs > Date.now() - 60_000), [], `no new core in ${at}`)
  }
  for (let i = 0; i < 50 && isMounted(view); i++) await new Promise(resolve => setTimeout(resolve, 100))
  await mountOrThrow(c, view, ['--backing', back]) // for the next test
})

test.serial('spctl host remove: pushed before its channels close, the key is wiped; the next block is EACCES', async t => {
  const h = await holdOpen(t, 'd')
  const r = await c.spctl(['host', 'remove', 'host-1'])
  t.is(r.code, 0, r.stderr)
  t.true(await keysGone(PUSHED_WITHIN_MS) < PUSHED_WITHIN_MS)
  t.deepEqual(await readAt(h, 6 * MiB), { ok: false, code: 'EACCES' }, `no key for a removed host\n${daemonLogs(c)}`)
  t.is((await status()).hostKeysHeld, 0)
})
