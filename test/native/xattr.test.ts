// native/xattr.cc: list, get and set extended attributes of a path without following a final symlink; errors carry
// the errno name; bad arguments are a TypeError.
import test from 'ava'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { raw } from '../../lib/native/binding'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pem-xattr-'))
test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }))

test('set, list and get round-trip bytes, an empty value included', t => {
  const f = path.join(dir, 'f')
  fs.writeFileSync(f, 'x')
  t.deepEqual(raw.xattrList(f), [])
  raw.xattrSet(f, 'user.a', Buffer.from([0, 1, 2, 255]))
  raw.xattrSet(f, 'user.empty', Buffer.alloc(0))
  t.deepEqual(raw.xattrList(f).sort(), ['user.a', 'user.empty'])
  t.deepEqual(raw.xattrGet(f, 'user.a'), Buffer.from([0, 1, 2, 255]))
  t.is(raw.xattrGet(f, 'user.empty').length, 0)
})

test('a missing attribute or file is an error with its errno name; a symlink is not followed', t => {
  const f = path.join(dir, 'g')
  fs.writeFileSync(f, 'x')
  raw.xattrSet(f, 'user.target', Buffer.from('t'))
  t.like(t.throws(() => raw.xattrGet(f, 'user.none')), { code: 'ENODATA', syscall: 'lgetxattr' })
  t.like(t.throws(() => raw.xattrList(path.join(dir, 'absent'))), { code: 'ENOENT' })
  fs.symlinkSync(f, path.join(dir, 'link'))
  t.deepEqual(raw.xattrList(path.join(dir, 'link')), [], 'the link itself has none')
  t.like(t.throws(() => raw.xattrSet(path.join(dir, 'link'), 'user.x', Buffer.from('1'))), { code: 'EPERM' }) // user.* on a symlink
  t.throws(() => (raw.xattrSet as unknown as (...a: unknown[]) => void)(f, 'user.x', 'not a buffer'), { instanceOf: TypeError })
})
