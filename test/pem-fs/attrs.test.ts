// Access attributes from /proc (lib/pem-fs/attrs.ts) against what the kernel says by other means: groups, session,
// executable and its SHA-256, and the hash cache missing a binary replaced in place with its mtime restored.
import test from 'ava'
import { spawn, spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { attrsOf, exeHash } from '../../lib/pem-fs/attrs'

const sha256 = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')

test('this process: groups, session (field 6 of /proc/self/stat), executable and its hash', t => {
  const a = attrsOf(process.pid, 1234, 4321)
  t.is(a.uid, 1234, 'uid is the one the kernel reported for the request')
  t.is(a.gids[0], 4321, 'the request\'s gid comes first')
  const egid = process.getegid?.()
  for (const g of process.getgroups?.() ?? []) if (g !== 4321 && g !== egid) t.true(a.gids.includes(g), `supplementary group ${g}`)
  const stat = fs.readFileSync('/proc/self/stat', 'utf8')
  t.is(a.sid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]))
  t.is(a.exe, fs.realpathSync(process.execPath))
  t.is(a.exeHash, sha256(process.execPath))
})

test('another process in its own session, running another binary', async t => {
  const child = spawn('sleep', ['5'], { detached: true, stdio: 'ignore' })
  try {
    const pid = child.pid as number
    await new Promise(resolve => setTimeout(resolve, 200)) // exec done
    const a = attrsOf(pid, 0, 0)
    t.is(a.sid, pid, 'detached: the child leads a new session')
    t.is(a.exe, fs.realpathSync(spawnSync('sh', ['-c', 'command -v sleep']).stdout.toString().trim()))
    t.is(a.exeHash, sha256(a.exe))
  } finally { child.kill('SIGKILL') }
})

test('a process that is gone: no groups beyond the reported gid, no session, no executable', t => {
  const r = spawnSync('true')
  const a = attrsOf(r.pid as number, 7, 8)
  t.deepEqual([a.gids, a.sid, a.exe, a.exeHash], [[8], 0, '', ''])
})

test('a binary replaced in place with its mtime put back gets a new hash (CHECKLIST I.35)', t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pem-attrs-'))
  try {
    const file = path.join(dir, 'tool')
    fs.writeFileSync(file, 'first version\n')
    fs.utimesSync(file, 1_700_000_000, 1_700_000_000) // whole seconds: put back exactly below
    const before = fs.statSync(file)
    t.is(exeHash(file), sha256(file))
    t.is(exeHash(file), sha256(file), 'served from the cache')
    const fd = fs.openSync(file, 'r+')
    fs.writeSync(fd, 'other version\n', 0) // same size, same inode
    fs.closeSync(fd)
    fs.utimesSync(file, 1_700_000_000, 1_700_000_000)
    t.is(fs.statSync(file).mtimeMs, before.mtimeMs, 'the mtime looks unchanged')
    t.is(exeHash(file), sha256(file), 'the ctime moved, so the cache missed')
    t.is(exeHash(path.join(dir, 'missing')), '')
  } finally { fs.rmSync(dir, { recursive: true, force: true }) }
})
