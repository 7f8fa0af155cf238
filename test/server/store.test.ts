// Configuration store: versioned commits, sealed at rest, atomic replacement, tamper and wrong-key refusal by code.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { generateIdentity } from '../../lib/crypto/identity'
import { ConfigStore, storeKeyFrom } from '../../lib/server/store'
import { tempDir } from '../../scripts/procs'

const key = storeKeyFrom(generateIdentity().signKey)

test('commits raise the version by one and survive a reopen', t => {
  const dir = tempDir('store')
  const s = ConfigStore.create(dir, key)
  t.is(s.state.version, 0)
  s.commit('alice', d => { d.policyText = 'format: 1\n' })
  s.commit('bob', d => { d.keys.k = [{ version: 1, material: Buffer.alloc(32, 7), created: 'now' }] })
  const again = ConfigStore.open(dir, key)
  t.is(again.state.version, 2)
  t.is(again.state.changedBy, 'bob')
  t.is(again.state.policyText, 'format: 1\n')
  t.deepEqual(Buffer.from(again.state.keys.k[0].material), Buffer.alloc(32, 7))
})

test('a mutator that throws changes nothing, in memory or on disk', t => {
  const dir = tempDir('store')
  const s = ConfigStore.create(dir, key)
  const before = fs.readFileSync(path.join(dir, 'store.bin'))
  t.throws(() => s.commit('x', d => { d.policyText = 'half'; throw new Error('no') }))
  t.is(s.state.version, 0); t.is(s.state.policyText, null)
  t.deepEqual(fs.readFileSync(path.join(dir, 'store.bin')), before)
})

test('a flipped bit, a truncation, a wrong key and a foreign file are each refused with PEM_ERR_STORE', t => {
  const dir = tempDir('store')
  ConfigStore.create(dir, key).commit('a', d => { d.policyText = 'x' })
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
  s.commit('a', d => { d.policyText = 'v1' })
  fs.writeFileSync(path.join(dir, 'store.bin.tmp'), Buffer.from('partial write'))
  const again = ConfigStore.open(dir, key)
  t.is(again.state.version, 1); t.is(again.state.policyText, 'v1')
  again.commit('b', d => { d.policyText = 'v2' })
  t.is(ConfigStore.open(dir, key).state.policyText, 'v2')
})
