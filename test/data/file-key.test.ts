// Host placement end to end (issue 18): a real spd, a policy with `placement: host`, enrolled hosts over the real
// channel. FileKey releases a file's key sealed to the asking host; the key opens blocks spd sealed for that header.
// Refusals: appliance placement, metadata grants, another host's grant, a grant bound to another file, tampered
// headers, unknown key versions, hosts never enrolled or removed. Every release is audited.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { openFileKey, releaseFileKey } from '../../lib/crypto/file-key'
import { generateIdentity, parsePublicKey } from '../../lib/crypto/identity'
import { sodium } from '../../lib/crypto/sodium'
import { createEngine, importKey } from '../../lib/native/crypto-engine'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { ClusterClient, type Decision } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import { AAD_BYTES, TRAILER_BYTES, decodeHeader, encodeHeader, makeHeader, readTrailer, writeAad } from '../../lib/wire/file-format'
import { Op } from '../../lib/wire/opcodes'
import type { Action, FileHeaderReply, FileKeyReply } from '../../lib/wire/packets'
import { cli, initSpd, loginSpctl, startSpd, stopAll, stopSpd, tempDir, writeFile, type Spd } from '../../scripts/procs'

const POLICY = `format: 1
keys: [finance]
guards:
  /srv/data:
    rules:
      - id: local-crypto
        resources: { dirs: [/host] }
        effect: apply_key(finance)
        placement: host
      - id: appliance-crypto
        resources: { dirs: [/appliance] }
        effect: apply_key(finance)
      - id: public
        resources: { dirs: [/public] }
        effect: permit
`

let spd: Spd
let spctl: (args: string[]) => Promise<{ code: number, stdout: string, stderr: string }>
const clients: ClusterClient[] = []
const work = tempDir('file-key-test')
let host1: ClusterClient
let host2: ClusterClient
let host1Dir: string

async function enrollHost (name: string): Promise<{ c: ClusterClient, dir: string }> {
  const token = JSON.parse((await spctl(['--json', 'host', 'add', name])).stdout).token as string
  const dir = path.join(work, name)
  const r = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token, '--config-dir', dir, '--name', name])
  if (r.code !== 0) throw new Error(r.stderr)
  const c = new ClusterClient(hostIdentity(dir), readCluster(dir).servers)
  clients.push(c)
  return { c, dir }
}

const decide = async (c: ClusterClient, p: string, action: Action = 'write'): Promise<Decision> =>
  await c.decide({ guard: '/srv/data', path: p, action, attrs: attrsOf(process.pid, 1000, 1000) })

/** A FileKey request straight to the decision's server, past the client's own checks (what a hostile host can send). */
/** The raw Ed25519 key of the member that made decision `d` (it seals the keys its grants release). */
const memberKeyOf = (d: Decision): Buffer => {
  const s = host1.servers.find(x => x.entry.id === d.server)
  if (s === undefined) throw new Error(`server ${d.server} is not in host1's table`)
  return parsePublicKey(s.entry.key)
}
const rawFileKey = async (c: ClusterClient, d: Decision, header: Buffer): Promise<FileKeyReply> =>
  await (c['dataRequest'](d, Op.FileKey, { grant: d.grant, header }) as Promise<FileKeyReply>)

/** key_release records in spd's audit log (written one tick after the call). */
async function releases (): Promise<Array<Record<string, unknown>>> {
  await new Promise(resolve => setTimeout(resolve, 50))
  return fs.readFileSync(path.join(spd.dir, 'audit.log'), 'utf8').split('\n').filter(l => l !== '')
    .map(l => JSON.parse(l) as Record<string, unknown>).filter(r => r.event === 'key_release')
}

test.before(async () => {
  spd = await initSpd('spd-file-key')
  await startSpd(spd)
  spctl = await loginSpctl(spd)
  const applied = await spctl(['policy', 'apply', writeFile(work, 'policy.yaml', POLICY)])
  if (applied.code !== 0) throw new Error(applied.stderr)
  const one = await enrollHost('host-1')
  host1 = one.c
  host1Dir = one.dir
  host2 = (await enrollHost('host-2')).c
})

test.after.always(async () => {
  for (const c of clients) c.close()
  if (spd !== undefined) await stopSpd(spd)
  stopAll()
})

test.serial('a host-placement decision releases the file key; it opens a block spd sealed for that header', async t => {
  const before = (await releases()).length
  const d = await decide(host1, '/host/a')
  t.is(d.placement, 'host')
  t.regex(d.grant ?? '', /^[0-9a-f]{32}$/)
  const { bytes, header } = await host1.newHeader(d)
  const plain = Buffer.from('host-side crypto: the same bytes on disk in either mode\n'.repeat(40))
  const sealed = await host1.sealBlocks(d, bytes, [0], [plain])
  const record = Buffer.from(sealed.parts[0])
  sealed.release()

  const { key, ttlMs } = await host1.fileKey(d, bytes)
  t.is(key.length, 32)
  t.true(ttlMs > 0 && ttlMs <= d.ttl, `ttlMs ${ttlMs}, decision ttl ${d.ttl}`)
  const trailer = readTrailer(record)
  t.is(trailer.plainLen, plain.length)
  const aad = Buffer.alloc(AAD_BYTES)
  writeAad(header, 0, header.keyVersion, trailer.plainLen, aad)
  const handle = importKey(key)
  sodium.sodium_memzero(key)
  const out = Buffer.alloc(trailer.plainLen)
  createEngine({ cipher: header.cipher }).openBatchSync(handle, record.subarray(0, record.length - TRAILER_BYTES), new Uint32Array([trailer.sealedLen]), aad, AAD_BYTES, out)
  handle.destroy()
  t.true(out.equals(plain), 'the released key opens what spd sealed')

  // Only this host's identity opens the box, only as sealed by the member that answered, and only for this file id
  // and key version.
  const again = await rawFileKey(host1, d, bytes)
  const member = memberKeyOf(d)
  t.throws(() => openFileKey(generateIdentity(), member, again.sealed, header.fileId, header.keyVersion), { code: 'PEM_ERR_KEY_NOT_GRANTED' })
  t.throws(() => openFileKey(hostIdentity(host1Dir), generateIdentity().publicKey, again.sealed, header.fileId, header.keyVersion), { code: 'PEM_ERR_KEY_NOT_GRANTED' }, 'another member did not seal it')
  t.throws(() => openFileKey(hostIdentity(host1Dir), member, again.sealed, Buffer.alloc(16), header.keyVersion), { code: 'PEM_ERR_KEY_NOT_GRANTED' })
  t.throws(() => openFileKey(hostIdentity(host1Dir), member, again.sealed, header.fileId, header.keyVersion + 1), { code: 'PEM_ERR_KEY_VERSION' })
  for (const at of [0, 30, again.sealed.length - 1]) { // nonce, ciphertext, tag
    const tampered = Buffer.from(again.sealed); tampered[at] ^= 1
    t.throws(() => openFileKey(hostIdentity(host1Dir), member, tampered, header.fileId, header.keyVersion), { code: 'PEM_ERR_KEY_NOT_GRANTED' }, `byte ${at} flipped`)
  }

  const records = (await releases()).slice(before)
  t.is(records.length, 2, 'one release record per FileKey call')
  t.like(records[0], { kind: 'security', event: 'key_release', host: hostIdentity(host1Dir).id, key: 'finance', version: 1, file: header.fileId.toString('hex'), action: 'write' })
})

test.serial('appliance placement, metadata actions and bypass decisions release no key', async t => {
  const before = (await releases()).length
  const appl = await decide(host1, '/appliance/a')
  t.is(appl.placement, 'appliance')
  const { bytes } = await host1.newHeader(appl)
  await t.throwsAsync(host1.fileKey(appl, bytes), { code: 'PEM_ERR_KEY_NOT_GRANTED' })
  await t.throwsAsync(rawFileKey(host1, { ...appl, placement: 'host' }, bytes), { code: 'PEM_ERR_KEY_NOT_GRANTED', message: /appliance/ })
  for (const action of ['getattr', 'list', 'delete', 'open'] as const) {
    const d = await decide(host1, '/host/meta', action)
    t.is(d.placement, 'host')
    await t.throwsAsync(host1.fileKey(d, bytes), { code: 'PEM_ERR_KEY_NOT_GRANTED', message: new RegExp(`'${action}' releases no file key`) })
  }
  for (const action of ['read', 'create', 'truncate'] as const) {
    const d = await decide(host1, `/host/${action}`, action)
    const fresh = await host1.newHeader(await decide(host1, `/host/${action}`))
    const { key } = await host1.fileKey(d, fresh.bytes)
    sodium.sodium_memzero(key)
  }
  await t.throwsAsync(host1.fileKey(await decide(host1, '/public/a'), bytes), { code: 'PEM_ERR_KEY_NOT_GRANTED' })
  t.is((await releases()).length - before, 3, 'only the read, create and truncate calls released a key')
})

test.serial('a FileHeader batch with keys: every new file\'s key sealed to the asking host, audited; appliance and read grants get none', async t => {
  const before = (await releases()).length
  const d = await decide(host1, '/host/batch')
  const raw = async (dd: Decision, keys: boolean): Promise<FileHeaderReply> =>
    await (host1['dataRequest'](dd, Op.FileHeader, { grant: dd.grant, count: 4, keys }) as Promise<FileHeaderReply>)
  const r = await raw(d, true)
  const headers = [r.header, ...(r.more ?? [])]
  t.is(headers.length, 4)
  t.is(r.sealed?.length, 4, 'one sealed key per header')
  t.true((r.ttlMs ?? 0) > 0 && (r.ttlMs ?? 0) <= d.ttl)
  const ids = headers.map(h => decodeHeader(h).fileId)
  for (let i = 0; i < 4; i++) {
    const key = openFileKey(hostIdentity(host1Dir), memberKeyOf(d), (r.sealed as Buffer[])[i], ids[i], 1)
    const viaFileKey = await host1.fileKey(d, headers[i]) // the same key FileKey releases for that header
    t.true(key.equals(viaFileKey.key), `key ${i}`)
    releaseFileKey(key)
    releaseFileKey(viaFileKey.key)
  }
  t.throws(() => openFileKey(hostIdentity(host1Dir), memberKeyOf(d), (r.sealed as Buffer[])[0], ids[1], 1), { code: 'PEM_ERR_KEY_NOT_GRANTED' }, 'a key is bound to its own file')
  t.throws(() => openFileKey(hostIdentity(host1Dir), memberKeyOf(d), (r.sealed as Buffer[])[0], ids[0], 2), { code: 'PEM_ERR_KEY_VERSION' })
  const records = (await releases()).slice(before)
  t.deepEqual(records.slice(0, 4).map(x => x.file), ids.map(i => i.toString('hex')), 'one key_release record per new file')
  t.is(records.length, 8, 'and one per FileKey call')

  // Without keys: headers only. Appliance placement, a read grant, another host: no keys, nothing released.
  t.is((await raw(d, false)).sealed, undefined)
  const after = (await releases()).length
  await t.throwsAsync(raw(await decide(host1, '/appliance/batch'), true), { code: 'PEM_ERR_KEY_NOT_GRANTED' })
  await t.throwsAsync(raw(await decide(host1, '/host/batch', 'read'), true), { code: 'PEM_ERR_KEY_NOT_GRANTED' })
  await t.throwsAsync(host2['dataRequest'](d, Op.FileHeader, { grant: d.grant, count: 2, keys: true }) as Promise<unknown>, { code: 'PEM_ERR_KEY_NOT_GRANTED' })
  t.is((await releases()).length, after)

  // The client's own use: a new host file's key and header come from one batch, then from its spares.
  const a = await host1.newHostFile(d)
  const b = await host1.newHostFile(d)
  t.false(a.header.fileId.equals(b.header.fileId))
  t.true(a.ttlMs > 0 && a.ttlMs <= d.ttl)
  t.true(a.key.equals((await host1.fileKey(d, a.bytes)).key))
  releaseFileKey(a.key)
  releaseFileKey(b.key)
})

test.serial('another host\'s grant is refused', async t => {
  const d = await decide(host1, '/host/theirs')
  const { bytes } = await host1.newHeader(d)
  await t.throwsAsync(host2.fileKey(d, bytes), { code: 'PEM_ERR_KEY_NOT_GRANTED', message: /another host/ })
})

test.serial('the first existing file binds the grant: FileKey and BlocksOpen refuse another; files spd made for this host bind nothing', async t => {
  // Files made for host2 (spd's headers for another host) are existing files to host1.
  const theirs = await decide(host2, '/host/made-by-2')
  const a = await host2.newHeader(theirs)
  const b = await host2.newHeader(theirs)
  const sealedB = await host2.sealBlocks(theirs, b.bytes, [0], [Buffer.from('file b')])
  const recordB = Buffer.from(sealedB.parts[0])
  sealedB.release()
  const d = await decide(host1, '/host/bound')
  sodium.sodium_memzero((await host1.fileKey(d, a.bytes)).key)
  sodium.sodium_memzero((await host1.fileKey(d, a.bytes)).key) // the same file again: still served
  await t.throwsAsync(host1.fileKey(d, b.bytes), { code: 'PEM_ERR_KEY_NOT_GRANTED', message: /another file/ })
  await t.throwsAsync(host1.openBlocks(d, b.bytes, [0], [recordB]), { code: 'PEM_ERR_KEY_NOT_GRANTED', message: /another file/ })

  // New files spd made for host1, under one create decision: every one is served, and the grant stays unbound.
  const made = await decide(host1, '/host/new-files', 'create')
  for (let i = 0; i < 3; i++) sodium.sodium_memzero((await host1.fileKey(made, (await host1.newHeader(made)).bytes)).key)
  sodium.sodium_memzero((await host1.fileKey(made, a.bytes)).key) // then one existing file binds it
  await t.throwsAsync(host1.fileKey(made, b.bytes), { code: 'PEM_ERR_KEY_NOT_GRANTED', message: /another file/ })

  // Bound by BlocksOpen first (an appliance grant too): BlocksOpen with another header is refused.
  const appl = await decide(host1, '/appliance/bound', 'read')
  const w = await decide(host2, '/appliance/bound-w')
  const c = await host2.newHeader(w)
  const sealedC = await host2.sealBlocks(w, c.bytes, [0], [Buffer.from('file c')])
  const recordC = Buffer.from(sealedC.parts[0])
  sealedC.release()
  const opened = await host1.openBlocks(appl, c.bytes, [0], [recordC])
  t.is(opened.parts[0].toString(), 'file c')
  opened.release()
  await t.throwsAsync(host1.openBlocks(appl, b.bytes, [0], [recordB]), { code: 'PEM_ERR_KEY_NOT_GRANTED', message: /another file/ })
})

test.serial('a tampered header is PEM_ERR_BAD_HEADER, an unknown key version PEM_ERR_KEY_VERSION; neither binds the grant', async t => {
  const d = await decide(host1, '/host/tamper')
  const { bytes, header } = await host1.newHeader(d)
  const bad = Buffer.from(bytes); bad[10] ^= 0x40
  await t.throwsAsync(rawFileKey(host1, d, bad), { code: 'PEM_ERR_BAD_HEADER' })
  await t.throwsAsync(host1.fileKey(d, bad), { code: 'PEM_ERR_BAD_HEADER' })
  const d2 = await decide(host1, '/host/version')
  const future = encodeHeader(makeHeader({ fileId: Buffer.alloc(16, 7), keyName: 'finance', keyVersion: 9, cipher: header.cipher, compression: 'none' }))
  await t.throwsAsync(host1.fileKey(d2, future), { code: 'PEM_ERR_KEY_VERSION' })
  const { key } = await host1.fileKey(d, bytes)
  t.is(key.length, 32)
  sodium.sodium_memzero(key)
  t.is(decodeHeader(bytes).keyVersion, 1)
})

test.serial('a host that was never enrolled, or was removed, gets no key', async t => {
  const before = (await releases()).length
  const d = await decide(host1, '/host/gone')
  const { bytes } = await host1.newHeader(d)
  const stranger = new ClusterClient(generateIdentity(), readCluster(host1Dir).servers, { timeoutMs: 1000 })
  clients.push(stranger)
  await t.throwsAsync(stranger.fileKey(d, bytes), { message: /not enrolled/ })

  const three = await enrollHost('host-3')
  const d3 = await decide(three.c, '/host/three')
  const h3 = await three.c.newHeader(d3)
  t.is((await spctl(['host', 'remove', 'host-3'])).code, 0)
  await t.throwsAsync(three.c.fileKey(d3, h3.bytes), { message: /not enrolled/ })
  t.is((await releases()).length, before, 'no release was audited')
})

test.serial('spctl: policy get shows the placement, diff shows a change of it, apply refuses a bad one naming the rule', async t => {
  t.regex((await spctl(['policy', 'get'])).stdout, /placement: host/)
  const moved = writeFile(work, 'moved.yaml', POLICY.replace('        placement: host\n', '        placement: appliance\n'))
  const diff = await spctl(['policy', 'diff', moved])
  t.is(diff.code, 1, diff.stderr)
  t.is(diff.stdout, '~ rule local-crypto (guard /srv/data): placement: host -> appliance\n')
  const bad = await spctl(['policy', 'apply', writeFile(work, 'bad.yaml', POLICY.replace('placement: host', 'placement: hosts'))])
  t.not(bad.code, 0)
  t.regex(bad.stderr, /bad\.yaml:9: .*rules\[0\]\.placement: rule 'local-crypto': unknown placement 'hosts': appliance or host/)
  t.regex((await spctl(['policy', 'get'])).stdout, /placement: host\n/, 'the installed policy is unchanged')
})
