// `spd init --import-keys FILE|-`: a member starts with the named keys of a key set (how an embedded store is rebuilt
// from its store file); a malformed set is refused naming the flag, creates nothing, and never prints key bytes.
import test from 'ava'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { cli, tempDir } from '../../scripts/procs'
import { encodeKeySet, readKeySet } from '../../lib/server/key-set'
import { pack } from '../../lib/wire/frame'

const work = tempDir('key-import')
const pw = path.join(work, 'pw')
fs.writeFileSync(pw, 'correct horse battery\n', { mode: 0o600 })
const init = async (dir: string, keysFile: string): ReturnType<typeof cli> =>
  await cli('spd', ['init', '--data-dir', dir, '--name', 'm', '--listen', '127.0.0.1:1', '--admin-password-file', pw, '--import-keys', keysFile])

test('the member holds exactly the imported keys, versions and creation times', async t => {
  const keys = {
    default: [{ version: 2, material: crypto.randomBytes(32), created: '2026-12-01T00:00:00.000Z' }, { version: 1, material: crypto.randomBytes(32), created: '2026-11-01T00:00:00.000Z' }],
    other: [{ version: 1, material: crypto.randomBytes(32), created: '2026-12-02T00:00:00.000Z' }]
  }
  const file = path.join(work, 'keys.bin')
  fs.writeFileSync(file, encodeKeySet(keys), { mode: 0o600 })
  const dir = path.join(work, 'a')
  const r = await init(dir, file)
  t.is(r.code, 0, r.stderr)
  t.deepEqual(readKeySet(dir), keys)
})

test('a malformed key set is refused, creates nothing and never echoes key bytes', async t => {
  const secret = crypto.randomBytes(31)
  const file = path.join(work, 'short.bin')
  fs.writeFileSync(file, pack({ format: 1, keys: { default: [{ version: 1, material: secret, created: '2026-12-01T00:00:00.000Z' }] } }))
  const dir = path.join(work, 'b')
  const r = await init(dir, file)
  t.is(r.code, 2, "a bad argument value")
  t.regex(r.stderr, /--import-keys .*short\.bin: key 'default' version 1: material must be 32 bytes \(PEM_ERR_BAD_ARGUMENT\)/)
  t.false(r.stderr.includes(secret.toString('hex')) || r.stderr.includes(secret.toString('base64')))
  t.false(fs.existsSync(dir), 'nothing was created')
  const junk = path.join(work, 'junk.bin')
  fs.writeFileSync(junk, 'not msgpack at all')
  const j = await init(path.join(work, 'c'), junk)
  t.is(j.code, 2)
  t.regex(j.stderr, /not a key set/)
  t.false(fs.existsSync(path.join(work, 'c')))
})
