// Issue 15, admin logins through the real spctl and spd: the password never reaches the member (challenge-response
// with the password-derived key), a recorded login logs nobody in again, a relayed challenge is refused, member-list
// changes are signed by spctl, a store made before admins had keys upgrades at the first login, and expired sessions
// are swept out under a flood of logins.
import test from 'ava'
import fs from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { deriveAdminKeyPair, loginInput, parseAdminKey } from '../../lib/crypto/admin-key'
import { SIG_CTX_ADMIN_LOGIN } from '../../lib/crypto/contexts'
import { generateIdentity, loadIdentity, type Identity } from '../../lib/crypto/identity'
import { sign } from '../../lib/crypto/sign'
import { AUDIT_FILE, IDENTITY_FILE } from '../../lib/server/member'
import type { ConfigState } from '../../lib/server/state'
import { ConfigStore, storeKeyFrom } from '../../lib/server/store'
import { unpack } from '../../lib/wire/frame'
import { allInstalled, clusterStatus, installedVersion, join, startCluster, until, type Member } from '../../scripts/cluster'
import { cli, initSpd, startSpd, stopAll, stopSpd, tempDir, writeFile, type Spd } from '../../scripts/procs'

const FAST = { load: { threshold: 1 }, cluster: { intervalMs: 200, maxStalenessMs: 3000 } }
const PASSWORD = 'correct horse battery' // scripts/procs.ts initSpd
const POLICY = 'format: 1\nguards:\n  /srv/data:\n    rules:\n      - id: public\n        resources: { dirs: [/public] }\n        effect: permit\n'

let ms: Member[]
const work = tempDir('spd-admin-login')
test.before(async () => { ms = await startCluster(2, 'al', FAST) })
test.after.always(() => { stopAll() })

const identityOf = (s: Spd): Identity => loadIdentity(path.join(s.dir, IDENTITY_FILE))
function storedState (s: Spd): ConfigState {
  return unpack(ConfigStore.open(s.dir, storeKeyFrom(identityOf(s).signKey)).plaintext) as ConfigState
}

interface Reply { status: number, body: Record<string, any> }
/** One admin API request to `addr` (host:port), without pinning: what any client (or a member acting as one) can send. */
async function request (addr: string, method: string, p: string, body?: unknown, token?: string): Promise<Reply> {
  const [host, port] = addr.split(':')
  const payload = body === undefined ? '' : JSON.stringify(body)
  return await new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }
    if (token !== undefined) headers.authorization = `Bearer ${token}`
    const req = https.request({ host, port: Number(port), method, path: p, headers, rejectUnauthorized: false, agent: false }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) }))
    })
    req.on('error', reject)
    req.end(payload)
  })
}

interface Exchange { method: string, path: string, request: string, status: number, response: string }
/**
 * An admin endpoint under `tlsKey` that forwards every request to `to` and records both directions in plaintext:
 * with the member's own key it sees exactly what that member sees; with another key it is a member relaying.
 */
async function recordingProxy (to: Spd, tlsKey: Identity): Promise<{ addr: string, exchanges: Exchange[], close: () => void }> {
  const exchanges: Exchange[] = []
  const [host, port] = to.admin.split(':')
  const server = https.createServer({ key: tlsKey.keyPem, cert: tlsKey.certPem, minVersion: 'TLSv1.3' }, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(body.length) }
      if (req.headers.authorization !== undefined) headers.authorization = req.headers.authorization
      const up = https.request({ host, port: Number(port), method: req.method, path: req.url, headers, rejectUnauthorized: false, agent: false }, upRes => {
        const out: Buffer[] = []
        upRes.on('data', (c: Buffer) => out.push(c))
        upRes.on('end', () => {
          const response = Buffer.concat(out)
          exchanges.push({ method: req.method ?? '', path: req.url ?? '', request: body.toString('utf8'), status: upRes.statusCode ?? 0, response: response.toString('utf8') })
          res.writeHead(upRes.statusCode ?? 502, { 'content-type': 'application/json', 'content-length': response.length })
          res.end(response)
        })
      })
      up.on('error', () => { res.writeHead(502); res.end() })
      up.end(body)
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', () => resolve()))
  return { addr: `127.0.0.1:${(server.address() as AddressInfo).port}`, exchanges, close: () => { server.closeAllConnections(); server.close() } }
}

/** Every form the password could travel in. */
function passwordForms (): string[] {
  const b = Buffer.from(PASSWORD, 'utf8')
  return [PASSWORD, b.toString('base64'), b.toString('base64url'), b.toString('hex'), JSON.stringify(PASSWORD).slice(1, -1)]
}

test.serial('spctl login sends no password: a recorded transcript holds none, replaying it logs nobody in, here or on another member', async t => {
  const [a, b] = ms
  const proxy = await recordingProxy(a, identityOf(a))
  t.teardown(proxy.close)
  const env = { SPCTL_CONFIG: path.join(work, 'recorded.json') }
  const r = await cli('spctl', ['--endpoint', `https://${proxy.addr}`, '--json', 'login', '--password-file', a.passwordFile], env)
  t.is(r.code, 0, r.stderr)
  t.deepEqual(proxy.exchanges.map(e => [e.method, e.path, e.status]), [['POST', '/v1/login/challenge', 200], ['POST', '/v1/login', 200]])
  const transcript = proxy.exchanges.map(e => e.request + e.response).join('\n')
  for (const form of passwordForms()) t.false(transcript.includes(form), `the password (as ${form}) is not in what the member saw`)
  // The session works through the real member (the proxy saw the member's key, so spctl pinned it).
  const apply = await cli('spctl', ['--endpoint', `https://${proxy.addr}`, '--json', 'policy', 'apply', '--yes', writeFile(work, 'p.yaml', POLICY)], env)
  t.is(apply.code, 0, apply.stderr)

  // The recorded answer, sent again: the challenge was spent.
  const answer = JSON.parse(proxy.exchanges[1].request) as Record<string, unknown>
  const again = await request(a.admin, 'POST', '/v1/login', answer)
  t.is(again.status, 401); t.is(again.body.error.code, 'PEM_ERR_AUTH')
  // On the other member: its challenges are its own, and the signature names member A.
  const elsewhere = await request(b.admin, 'POST', '/v1/login', answer)
  t.is(elsewhere.status, 401); t.is(elsewhere.body.error.code, 'PEM_ERR_AUTH')
  const fresh = await request(b.admin, 'POST', '/v1/login/challenge', { user: 'admin' })
  const spliced = await request(b.admin, 'POST', '/v1/login', { ...answer, challenge: fresh.body.challenge })
  t.is(spliced.status, 401, 'the recorded signature does not answer a fresh challenge')
  // What the transcript does give away: the salt and parameters, which the member hands to anyone who asks.
  t.deepEqual(Object.keys(JSON.parse(proxy.exchanges[0].response) as object).sort(), ['challenge', 'kdf'])
})

test.serial('a member relaying another member\'s login challenge gets an answer that member refuses', async t => {
  const [a] = ms
  const relay = await recordingProxy(a, generateIdentity()) // a compromised member: its own key, the admin logs in to it
  t.teardown(relay.close)
  const failedBefore = fs.readFileSync(path.join(a.dir, AUDIT_FILE), 'utf8').split('\n').filter(l => l.includes('"admin_login_failed"')).length
  const r = await cli('spctl', ['--endpoint', `https://${relay.addr}`, 'login', '--password-file', a.passwordFile], { SPCTL_CONFIG: path.join(work, 'relayed.json') })
  t.is(r.code, 1)
  t.regex(r.stderr, /PEM_ERR_AUTH/)
  t.is(relay.exchanges[1]?.status, 401, 'A refused the answer, signed for the relay\'s key')
  t.true(await until(async () => fs.readFileSync(path.join(a.dir, AUDIT_FILE), 'utf8').split('\n').filter(l => l.includes('"admin_login_failed"')).length > failedBefore, 3000))
})

test.serial('a wrong password: login fails, and member add is refused by spctl before anything is signed or sent', async t => {
  const [a] = ms
  const wrong = writeFile(work, 'wrong', 'not the password\n')
  const login = await a.spctl(['login', '--password-file', wrong])
  t.is(login.code, 1); t.regex(login.stderr, /wrong user or password.*PEM_ERR_AUTH/)
  const unknown = await a.spctl(['login', '--user', 'mallory', '--password-file', a.passwordFile])
  t.is(unknown.code, 1); t.regex(unknown.stderr, /PEM_ERR_AUTH/)
  // An unknown user gets a salt too, the same each time, so the challenge does not tell which users exist.
  const [c1, c2] = await Promise.all([request(a.admin, 'POST', '/v1/login/challenge', { user: 'mallory' }), request(a.admin, 'POST', '/v1/login/challenge', { user: 'mallory' })])
  t.is(c1.body.kdf.salt, c2.body.kdf.salt)
  t.notDeepEqual(c1.body.challenge, c2.body.challenge)

  t.is((await a.spctl(['login', '--password-file', a.passwordFile])).code, 0) // the session is good; only the password is wrong
  const v = await installedVersion(a)
  const newcomer = generateIdentity()
  const key = `ed25519:${newcomer.publicKey.toString('base64url')}`
  const add = await a.spctl(['member', 'add', key, '--addr', '127.0.0.1:1', '--name', 'newcomer', '--password-file', wrong])
  t.is(add.code, 1); t.regex(add.stderr, /wrong password for admin admin.*PEM_ERR_AUTH/)
  t.is(await installedVersion(a), v, 'nothing was proposed')
})

test.serial('the member-list routes take only the admin\'s own signature for that change', async t => {
  const [a] = ms
  const challenge = await request(a.admin, 'POST', '/v1/login/challenge', { user: 'admin' })
  const kdf = challenge.body.kdf as { N: number, r: number, p: number, salt: string }
  const pair = await deriveAdminKeyPair(PASSWORD, kdf, Buffer.from(kdf.salt, 'base64url'))
  const signature = sign(SIG_CTX_ADMIN_LOGIN, loginInput(a.id, 'admin', Buffer.from(challenge.body.challenge, 'base64url')), pair.signKey).toString('base64url')
  const token = (await request(a.admin, 'POST', '/v1/login', { user: 'admin', challenge: challenge.body.challenge, signature })).body.token as string
  const newcomer = generateIdentity()
  const body = { key: `ed25519:${newcomer.publicKey.toString('base64url')}`, addr: '127.0.0.1:1', name: 'unsigned' }
  const unsigned = await request(a.admin, 'POST', '/v1/members', body, token)
  t.is(unsigned.body.error?.code, 'PEM_ERR_BAD_ARGUMENT', 'a session alone cannot add a member')
  // Signed by another key (the member's own, as a compromised member would), or for another version: refused.
  const v = (await clusterStatus(a)).installed.version
  const { memberChangeSig } = await import('../../lib/cli/admin-auth')
  const clusterId = storedState(a).clusterId ?? ''
  const byMember = await request(a.admin, 'POST', '/v1/members', { ...body, adminSig: memberChangeSig(identityOf(a).signKey, clusterId, v + 1, 'add', newcomer.id, a.id) }, token)
  t.is(byMember.body.error?.code, 'PEM_ERR_BAD_SIGNATURE')
  const otherMember = await request(a.admin, 'POST', '/v1/members', { ...body, adminSig: memberChangeSig(pair.signKey, clusterId, v + 1, 'add', generateIdentity().id, a.id) }, token)
  t.is(otherMember.body.error?.code, 'PEM_ERR_BAD_SIGNATURE', 'a signature for adding another key')
  const stale = await request(a.admin, 'POST', '/v1/members', { ...body, adminSig: memberChangeSig(pair.signKey, clusterId, v, 'add', newcomer.id, a.id) }, token)
  t.is(stale.body.error?.code, 'PEM_ERR_CHANGE_REBASED', 'a signature for a version already taken: spctl signs again')
  t.is((await clusterStatus(a)).members.find(m => m.id === newcomer.id), undefined)
})

test.serial('a cluster made before admins had keys: the first login gives the admin one, every member takes it, and member changes work', async t => {
  t.timeout(120000) // two clusters' worth of processes: a new one made the old way, then a third member joins
  const old = await startCluster(2, 'lg', FAST)
  // The store as spd init wrote it before admins had keys: the admin record holds only the password hash.
  await Promise.all(old.map(async m => await stopSpd(m)))
  for (const m of old) {
    const store = ConfigStore.open(m.dir, storeKeyFrom(identityOf(m).signKey))
    const state = unpack(store.plaintext) as ConfigState
    delete state.admins.admin.signKey
    ConfigStore.create(m.dir, storeKeyFrom(identityOf(m).signKey), state)
    t.deepEqual(Object.keys(storedState(m).admins.admin), ['hash'])
  }
  for (const m of old) await startSpd(m)
  const [a, b] = old
  const v = storedState(a).version // read from the store: the harness's own admin calls would log in, and so upgrade
  // Without a key the member list cannot change, and the challenge says so (the password hash's salt instead).
  const asked = await request(a.admin, 'POST', '/v1/login/challenge', { user: 'admin' })
  t.deepEqual(Object.keys(asked.body).sort(), ['challenge', 'upgrade'])
  const proxy = await recordingProxy(a, identityOf(a))
  t.teardown(proxy.close)
  const env = { SPCTL_CONFIG: path.join(work, 'upgrade.json') }
  const login = await cli('spctl', ['--endpoint', `https://${proxy.addr}`, '--json', 'login', '--password-file', a.passwordFile], env)
  t.is(login.code, 0, login.stderr)
  t.true((JSON.parse(login.stdout) as { upgraded?: boolean }).upgraded)
  t.regex(login.stderr, /had no signing key: it has one now/)
  const transcript = proxy.exchanges.map(e => e.request + e.response).join('\n')
  for (const form of passwordForms()) t.false(transcript.includes(form), 'the upgrade sends no password either')
  await allInstalled(old, v + 1)
  const onB = storedState(b)
  const key = parseAdminKey(onB.admins.admin.signKey)
  t.not(key, null, 'B installed the key')
  t.is(onB.clusterLog?.at(-1)?.adminUpgrade, 'admin')
  t.is(storedState(a).admins.admin.hash, onB.admins.admin.hash, 'the password hash is kept')
  // The key is the password's: a new login is a plain one, and the recorded upgrade answer upgrades nothing again.
  const replay = await request(a.admin, 'POST', '/v1/login', JSON.parse(proxy.exchanges[1].request))
  t.is(replay.status, 401)
  const second = await b.spctl(['--json', 'admin', 'upgrade', '--password-file', b.passwordFile])
  t.is(second.code, 0, second.stderr)
  t.like(JSON.parse(second.stdout), { upgraded: false, note: 'the record already had a signing key: nothing to do' })
  // Member changes work again, signed with the new key, on both members.
  const c = await join(b, 'lg3', FAST)
  await allInstalled([a, b, c], (await installedVersion(b)) ?? 0)
  t.is((await clusterStatus(a)).members.length, 3)
})

test.serial('expired admin sessions are swept out on a timer: a flood of logins leaves no sessions behind', async t => {
  const spd = await initSpd('sweep', { load: { threshold: 1 }, adminTokenTtlS: 1 })
  await startSpd(spd)
  const id = identityOf(spd).id
  const metric = async (name: string): Promise<number> => {
    const [host, port] = spd.admin.split(':')
    const text = await new Promise<string>((resolve, reject) => {
      https.get({ host, port: Number(port), path: '/metrics', rejectUnauthorized: false, agent: false }, res => {
        let s = ''
        res.on('data', (x: Buffer) => { s += x.toString('utf8') })
        res.on('end', () => resolve(s))
      }).on('error', reject)
    })
    return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN)
  }
  // The key is derived once; each login is a challenge and a signature, as spctl sends them.
  const first = await request(spd.admin, 'POST', '/v1/login/challenge', { user: 'admin' })
  const kdf = first.body.kdf as { N: number, r: number, p: number, salt: string }
  const pair = await deriveAdminKeyPair(PASSWORD, kdf, Buffer.from(kdf.salt, 'base64url'))
  const LOGINS = 300
  const at = Date.now()
  let made = 0
  for (let i = 0; i < LOGINS; i++) {
    const c = i === 0 ? first : await request(spd.admin, 'POST', '/v1/login/challenge', { user: 'admin' })
    const signature = sign(SIG_CTX_ADMIN_LOGIN, loginInput(id, 'admin', Buffer.from(c.body.challenge, 'base64url')), pair.signKey).toString('base64url')
    if ((await request(spd.admin, 'POST', '/v1/login', { user: 'admin', challenge: c.body.challenge, signature })).status === 200) made++
  }
  const peak = await metric('spd_admin_sessions')
  t.log(`${made} logins in ${Date.now() - at} ms; ${peak} sessions live right after`)
  t.is(made, LOGINS)
  t.true(peak > 0)
  // Nobody uses the sessions again: only the sweep can remove them (1 s ttl, swept every ttl).
  t.true(await until(async () => await metric('spd_admin_sessions') === 0, 5000), 'every expired session was swept')
  t.is(await metric('spd_admin_login_challenges'), 0, 'every challenge was spent')
  // Outstanding challenges are bounded per source: the ninth unanswered one is refused.
  const held = await Promise.all(Array.from({ length: 9 }, async () => await request(spd.admin, 'POST', '/v1/login/challenge', { user: 'admin' })))
  t.is(held.filter(r => r.status === 200).length, 8)
  t.is(held.find(r => r.status !== 200)?.body.error.code, 'PEM_ERR_RATE_LIMITED')
})
