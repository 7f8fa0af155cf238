// Configuration store: installs of agreed versions (exact bytes kept), sealed at rest, atomic replacement, tamper and wrong-key refusal by code.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { generateIdentity } from '../../lib/crypto/identity'
import { emptyState, type ConfigState } from '../../lib/server/state'
import { ConfigStore, storeKeyFrom } from '../../lib/server/store'
import { pack } from '../../lib/wire/frame'
import { tempDir } from '../../scripts/procs'

const key = storeKeyFrom(generateIdentity().signKey)

/** The next version of a store's state with one edit, and its bytes, as the cluster would hand them over. */
function next (s: ConfigStore, by: string, edit: (d: ConfigState) => void): [ConfigState, Buffer] {
  const d = { ...emptyState(), ...s.state, version: s.state.version + 1, changedBy: by }
  edit(d)
  return [d, pack(d)]
}

test('installs keep the exact bytes and survive a reopen', t => {
  const dir = tempDir('store')
  const s = ConfigStore.create(dir, key)
  t.is(s.state.version, 0)
  s.install(...next(s, 'alice', d => { d.policyText = 'format: 1\n' }))
  const [state, bytes] = next(s, 'bob', d => { d.keys = { k: [{ version: 1, material: Buffer.alloc(32, 7), created: 'now' }] } })
  s.install(state, bytes)
  const again = ConfigStore.open(dir, key)
  t.is(again.state.version, 2)
  t.is(again.state.changedBy, 'bob')
  t.is(again.state.policyText, 'format: 1\n')
  t.deepEqual(Buffer.from(again.state.keys.k[0].material), Buffer.alloc(32, 7))
  t.true(again.plaintext.equals(bytes), 'the agreed bytes, not a re-encoding')
})

test('an install at or below the installed version is refused with PEM_ERR_ROLLBACK and changes nothing', t => {
  const dir = tempDir('store')
  const s = ConfigStore.create(dir, key)
  s.install(...next(s, 'a', d => { d.policyText = 'v1' }))
  const before = fs.readFileSync(path.join(dir, 'store.bin'))
  const [old, oldBytes] = next(s, 'x', d => { d.policyText = 'old'; d.version = 1 })
  t.throws(() => s.install(old, oldBytes), { code: 'PEM_ERR_ROLLBACK' })
  t.is(s.state.policyText, 'v1')
  t.deepEqual(fs.readFileSync(path.join(dir, 'store.bin')), before)
})

test('a flipped bit, a truncation, a wrong key and a foreign file are each refused with PEM_ERR_STORE', t => {
  const dir = tempDir('store')
  const s0 = ConfigStore.create(dir, key)
  s0.install(...next(s0, 'a', d => { d.policyText = 'x' }))
  const file = path.join(dir, 'store.bin')
  const good = fs.readFileSync(file)
  const cases: Array<[string, Buffer, Buffer]> = [
    ['bit flip in the body', Buffer.from(good.map((b, i) => i === good.length - 20 ? b ^ 1 : b)), key],
    ['version in the header edited', Buffer.from(good.map((b, i) => i === 17 ? b ^ 1 : b)), key],
    ['truncated', good.subarray(0, good.length - 5), key],
    ['wrong key', good, storeKeyFrom(generateIdentity().signKey)],
    ['not a store', Buffer.from('hello world, not a store at all'), key]
  ]
  for (const [what, bytes, k] of cases) {
    fs.writeFileSync(file, bytes)
    t.throws(() => ConfigStore.open(dir, k), { code: 'PEM_ERR_STORE' }, what)
  }
})

test('a leftover temp file from a crash mid-commit is ignored: the last complete version is read', t => {
  const dir = tempDir('store')
  const s = ConfigStore.create(dir, key)
  s.install(...next(s, 'a', d => { d.policyText = 'v1' }))
  fs.writeFileSync(path.join(dir, 'store.bin.tmp'), Buffer.from('partial write'))
  const again = ConfigStore.open(dir, key)
  t.is(again.state.version, 1); t.is(again.state.policyText, 'v1')
  again.install(...next(again, 'b', d => { d.policyText = 'v2' }))
  t.is(ConfigStore.open(dir, key).state.policyText, 'v2')
})
