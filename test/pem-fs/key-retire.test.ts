// Key versions in use and their retirement on a real `--embedded` mount (spd and pemfs as processes): files written
// through the mount are counted under key version 1 by the host's scan after `spctl key rotate`, `spctl key list`
// shows the count, `spctl key retire default 1` is refused with it (and the newest version always), `pemfs rekey`
// moves the files and its end rescans, the retire then goes through; a file under the retired version put back
// underneath (as from a backup) is refused by the mount (EACCES; PEM_ERR_KEY_RETIRED in the daemon's log).
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { cli } from '../../scripts/procs'
import { decodeHeader } from '../../lib/wire/file-format'
import { isMounted, sh, tempDir } from '../helpers/mounts'

const root = tempDir('key-retire')
const dir = path.join(root, 'data')
const cfg = path.join(root, 'config')
const FILES = 5

/** The backing directory as the mount daemon holds it (the guard point is mounted over it). */
function backing (): string {
  const pid = fs.readFileSync(path.join(cfg, 'run', fs.readdirSync(path.join(cfg, 'run')).find(f => f.endsWith('.pid')) as string), 'utf8').trim()
  const mountDev = fs.statSync(dir).dev
  for (const n of fs.readdirSync(`/proc/${pid}/fd`)) {
    const link = `/proc/${pid}/fd/${n}`
    try { if (fs.readlinkSync(link) === dir && fs.statSync(link).dev !== mountDev) return link } catch {}
  }
  throw new Error('no backing descriptor')
}

let spctl: (args: string[]) => Promise<{ code: number, stdout: string, stderr: string }>

test.before(async () => {
  fs.mkdirSync(dir)
  const policy = path.join(root, 'policy.yaml')
  fs.writeFileSync(policy, `format: 1
keys: [default]
guards:
  ${dir}:
    rules:
      - id: store-file
        resources: { files: [/.pemfs-embedded, /.pemfs-embedded.tmp] }
        effect: deny
      - id: convert-as-root
        actions: [convert]
        users: { uids: [0] }
        effect: permit
      - id: sealed
        effect: apply_key(default)
        placement: host
`)
  const m = await cli('pemfs', ['mount', dir, '--embedded', '--policy', policy, '--config-dir', cfg, '--json'], {}, 30000)
  if (m.code !== 0) throw new Error(`mount: ${m.stderr}`)
  const base = path.join(cfg, 'embedded', fs.readdirSync(path.join(cfg, 'embedded'))[0])
  const info = JSON.parse(fs.readFileSync(path.join(base, 'embedded.json'), 'utf8')) as { id: string, admin: string }
  const env = { SPCTL_CONFIG: path.join(root, 'spctl.json') }
  spctl = async args => await cli('spctl', ['--endpoint', `https://${info.admin}`, '--server-id', info.id, ...args], env)
  const login = await spctl(['login', '--password-file', path.join(base, 'admin-password')])
  if (login.code !== 0) throw new Error(`login: ${login.stderr}`)
})

test.after.always(async () => {
  if (isMounted(dir)) await cli('pemfs', ['unmount', dir, '--config-dir', cfg, '--lazy'], {}, 30000)
  if (isMounted(dir)) await sh(`umount -l '${dir}'`)
  const spd = path.join(cfg, 'embedded')
  for (const p of fs.readdirSync('/proc').filter(p => /^\d+$/.test(p))) {
    try { if (fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(spd)) process.kill(Number(p), 'SIGKILL') } catch {}
  }
})

interface KeyRow { name: string, version: number, files: Record<string, number>, reports: string, retired: number[] }

/** `spctl key list` until `ok` holds for key default (the host's scan and report take a moment), or its last row. */
async function keyRowWhen (ok: (r: KeyRow) => boolean, timeoutMs = 20000): Promise<KeyRow> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const r = await spctl(['--json', 'key', 'list'])
    if (r.code !== 0) throw new Error(r.stderr)
    const row = (JSON.parse(r.stdout) as KeyRow[]).find(k => k.name === 'default') as KeyRow
    if (ok(row) || Date.now() > until) return row
    await new Promise(resolve => setTimeout(resolve, 300))
  }
}

test.serial('retire is refused while the host reports files under the version, and goes through once rekey moved them; a file under a retired version is refused', async t => {
  const w = await sh(`cd '${dir}' && mkdir -p sub && for i in $(seq 1 ${FILES}); do echo "file $i" > sub/f$i; done && sha256sum sub/f*`, { timeoutMs: 20000 })
  t.is(w.code, 0, w.stderr)
  const sumsBefore = w.stdout
  const versionOf = (rel: string): number => decodeHeader(fs.readFileSync(path.join(backing(), rel)).subarray(0, 4096)).keyVersion
  t.is(versionOf('sub/f1'), 1)

  const rot = await spctl(['key', 'rotate', 'default'])
  t.is(rot.code, 0, rot.stderr)
  const counted = await keyRowWhen(r => r.files.v1 === FILES)
  t.like(counted, { version: 2, reports: '1/1', files: { v1: FILES, v2: 0 }, retired: [] }, 'the rotation made the host count its files')
  t.regex((await spctl(['key', 'list'])).stdout, new RegExp(`^default +2 +2 +\\S+ +v2 0, v1 ${FILES} +1/1 +-$`, 'm'), 'the table: newest version first')

  const refused = await spctl(['key', 'retire', 'default', '1'])
  t.not(refused.code, 0)
  t.regex(refused.stderr, new RegExp(`${FILES} file\\(s\\) on 1 host\\(s\\) are still under key default version 1.*PEM_ERR_BUSY`, 's'))
  const newest = await spctl(['key', 'retire', 'default', '2'])
  t.not(newest.code, 0)
  t.regex(newest.stderr, /version 2 is the newest of key default/)
  const bad = await spctl(['key', 'retire', 'default', 'one'])
  t.regex(bad.stderr, /PEM_ERR_BAD_ARGUMENT/)
  const oldCopy = fs.readFileSync(path.join(backing(), 'sub/f1')) // as a backup would hold it
  t.is((await keyRowWhen(() => true)).version, 2, 'refusals changed nothing')

  const rekey = await cli('pemfs', ['rekey', dir, '--config-dir', cfg, '--json'], {}, 30000)
  t.is(rekey.code, 0, rekey.stderr)
  t.is(versionOf('sub/f1'), 2)
  const moved = await keyRowWhen(r => r.files.v1 === 0)
  t.like(moved, { files: { v1: 0, v2: FILES } }, "the conversion's end made the host count again")

  const retired = await spctl(['--json', 'key', 'retire', 'default', '1'])
  t.is(retired.code, 0, retired.stderr)
  t.like(JSON.parse(retired.stdout), { name: 'default', retired: 1 })
  const after = await keyRowWhen(() => true)
  t.deepEqual(after.retired, [1])
  t.deepEqual(after.files, { v2: FILES })
  const again = await spctl(['key', 'retire', 'default', '1'])
  t.regex(again.stderr, /no version 1 \(it is retired already\).*PEM_ERR_NOT_FOUND/s)

  const r = await sh(`cd '${dir}' && sha256sum sub/f*`, { timeoutMs: 20000 })
  t.is(r.stdout, sumsBefore, 'the rekeyed files read as before')
  fs.writeFileSync(path.join(backing(), 'sub/restored'), oldCopy) // under version 1, put back underneath
  const denied = await sh(`cat '${path.join(dir, 'sub/restored')}'`, { timeoutMs: 20000 })
  t.not(denied.code, 0)
  t.regex(denied.stderr, /Permission denied/)
  const log = fs.readFileSync(path.join(cfg, 'run', fs.readdirSync(path.join(cfg, 'run')).find(f => f.endsWith('.log')) as string), 'utf8')
  t.regex(log, /"code":"PEM_ERR_KEY_RETIRED".*version 1 was retired/)
})
