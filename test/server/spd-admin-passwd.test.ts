// spctl admin passwd through the real spctl and a 2-member spd cluster (issue 15): the old password proves itself by
// challenge-response, the new record is signed with the old password's key and checked by every member, the old
// password stops working everywhere and the new one works, the admin's other sessions end while the changing one
// stays, member-list changes are signed with the new key, and a change without the old key's signature changes nothing.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { adminPasswdInput } from '../../lib/crypto/admin-key'
import { SIG_CTX_ADMIN_PASSWD } from '../../lib/crypto/contexts'
import { encodePublicKey, generateIdentity } from '../../lib/crypto/identity'
import { sign } from '../../lib/crypto/sign'
import { adminLogin, newAdminRecord } from '../../lib/cli/admin-auth'
import { adminCall } from '../../lib/cli/admin-client'
import { splitHostPort } from '../../lib/server/config'
import { AUDIT_FILE } from '../../lib/server/member'
import { allInstalled, clusterStatus, startCluster, type Member } from '../../scripts/cluster'
import { stopAll, tempDir, writeFile, type Spd } from '../../scripts/procs'

const FAST = { load: { threshold: 1 }, cluster: { intervalMs: 200, maxStalenessMs: 3000 } }
const OLD = 'correct horse battery' // scripts/procs.ts initSpd
const NEW = 'a longer, newer passphrase'

let ms: Member[]
const work = tempDir('spd-admin-passwd')
test.before(async () => { ms = await startCluster(2, 'pw', FAST) })
test.after.always(() => { stopAll() })

const target = (m: Spd): { host: string, port: number, pin: null } => ({ ...splitHostPort(m.admin), pin: null })
async function loginCode (m: Spd, password: string): Promise<string> {
  try { await adminLogin(target(m), 'admin', password); return 'ok' } catch (err) { return (err as { code: string }).code }
}
async function statusCode (m: Spd, token: string): Promise<string> {
  try { await adminCall(target(m), 'GET', '/v1/status', undefined, token); return 'ok' } catch (err) { return (err as { code: string }).code }
}

test.serial('a password change needs the old password\'s signature: a forged or missing one is refused and changes nothing', async t => {
  const [a] = ms
  const { token } = await adminLogin(target(a), 'admin', OLD)
  const before = (await clusterStatus(a)).installed.version
  const { record } = await newAdminRecord(NEW)
  const c = await clusterStatus(a)
  const forger = generateIdentity() // any key but the one the old password derives
  const forged = sign(SIG_CTX_ADMIN_PASSWD, adminPasswdInput(Buffer.from(c.clusterId, 'hex'), c.installed.version + 1, 'admin', record, a.id), forger.signKey).toString('base64url')
  for (const [what, body, code] of [
    ['signed by another key', { ...record, adminSig: { version: c.installed.version + 1, sig: forged } }, 'PEM_ERR_BAD_SIGNATURE'],
    ['no signature', record, 'PEM_ERR_BAD_ARGUMENT'],
    ['no new hash', { signKey: record.signKey, adminSig: { version: c.installed.version + 1, sig: forged } }, 'PEM_ERR_BAD_ARGUMENT']
  ] as const) {
    const err = await t.throwsAsync(adminCall(target(a), 'POST', '/v1/admin/passwd', body, token))
    t.is((err as { code?: string }).code, code, what)
  }
  t.is((await clusterStatus(a)).installed.version, before, 'no change was made')
  t.is(await loginCode(a, OLD), 'ok')
  t.is(await loginCode(a, NEW), 'PEM_ERR_AUTH')
})

test.serial('spctl admin passwd: old password refused and new one accepted on every member, other sessions ended, this one kept', async t => {
  const [a, b] = ms
  const other = await adminLogin(target(a), 'admin', OLD)
  const onB = await adminLogin(target(b), 'admin', OLD)
  const oldFile = writeFile(work, 'old', OLD + '\n')
  const newFile = writeFile(work, 'new', NEW + '\n')
  const wrong = await a.spctl(['--json', 'admin', 'passwd', '--password-file', newFile, '--new-password-file', oldFile])
  t.not(wrong.code, 0, 'the current password is proved first')
  t.regex(wrong.stderr, /PEM_ERR_AUTH/)
  t.is(await statusCode(a, other.token), 'ok', 'a failed attempt ends nothing')

  const r = await a.spctl(['--json', 'admin', 'passwd', '--password-file', oldFile, '--new-password-file', newFile])
  t.is(r.code, 0, r.stderr)
  const v = JSON.parse(r.stdout) as { user: string, pv: number }
  t.is(v.user, 'admin')
  fs.writeFileSync(a.passwordFile, NEW + '\n') // the helpers' own logins (scripts/cluster.ts admin()), ended too
  fs.writeFileSync(b.passwordFile, NEW + '\n')
  await allInstalled(ms, v.pv)

  for (const m of ms) {
    t.is(await loginCode(m, OLD), 'PEM_ERR_AUTH', `${m.name}: the old password`)
    t.is(await loginCode(m, NEW), 'ok', `${m.name}: the new password`)
  }
  t.is(await statusCode(a, other.token), 'PEM_ERR_AUTH', 'another session on the same member ended')
  t.is(await statusCode(b, onB.token), 'PEM_ERR_AUTH', 'a session on the other member ended')
  const kept = await a.spctl(['--json', 'status'])
  t.is(kept.code, 0, `the session that changed the password stays: ${kept.stderr}`)

  // The new key signs member-list changes: spctl's stored admin key is the new one, and both members check it.
  const joiner = generateIdentity()
  const added = await a.spctl(['--json', 'member', 'add', encodePublicKey(joiner.publicKey), '--addr', '127.0.0.1:1', '--name', 'pw-ghost', '--password-file', newFile])
  t.is(added.code, 0, added.stderr)
  await allInstalled(ms, v.pv + 1)
  const withOld = await a.spctl(['--json', 'member', 'remove', 'pw-ghost', '--password-file', oldFile])
  t.not(withOld.code, 0, 'the old password no longer signs')

  const audit = fs.readFileSync(path.join(a.dir, AUDIT_FILE), 'utf8')
  t.regex(audit, /"event":"admin_password_changed","user":"admin"/)
  t.regex(fs.readFileSync(path.join(b.dir, AUDIT_FILE), 'utf8'), /"event":"admin_session_ended","user":"admin","reason":"password changed"/)
})
