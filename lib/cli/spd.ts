// spd: the security processor daemon's command line — init, id, start (DESIGN §5).
import fs from 'node:fs'
import path from 'node:path'
import pino from 'pino'
import crypto from 'node:crypto'
import { createIdentity, encodePublicKey, keyId, loadIdentity, parsePublicKey } from '../crypto/identity'
import { newAdminKey } from '../crypto/admin-key'
import { hashPassword } from '../crypto/password'
import { checkConfig, checkHostPort, configPath, loadConfig } from '../server/config'
import { decodeKeySet } from '../server/key-set'
import { IDENTITY_FILE, Member } from '../server/member'
import { emptyState } from '../server/state'
import { ConfigStore, storeKeyFrom } from '../server/store'
import { manageHeap } from '../native/memory'
import { PemError } from '../wire/errors'
import { keepServingOnBrokenPipe, newProgram, parseProgram, printObject, readSecret, run } from './common'
import { lockDir } from './dir-lock'

const program = newProgram('spd', 'Security processor daemon: decides file operations, holds the keys, syncs with its peers')

/** Opens the data dir's store; a store that the identity's key does not open says which two files disagree. */
function openStore<T> (dataDir: string, open: () => T): T {
  try {
    return open()
  } catch (err) {
    if (PemError.from(err).code !== 'PEM_ERR_STORE' || !/failed authentication/.test((err as Error).message)) throw err
    const dir = path.resolve(dataDir)
    throw new PemError('PEM_ERR_STORE', `${path.join(dir, 'store.bin')} was not sealed with the key in ${path.join(dir, IDENTITY_FILE)}: the two files come from different members (one was copied or restored from elsewhere); put back the identity file this store was created with`)
  }
}

/** The bytes of --import-keys FILE ('-': standard input). */
function readKeySetInput (file: string): Buffer {
  try { return fs.readFileSync(file === '-' ? 0 : file) } catch (err) { throw new PemError('PEM_ERR_BAD_ARGUMENT', `--import-keys ${file}: ${(err as Error).message}`) }
}

program.command('init')
  .description('create a member: key pair, local config, encrypted store with the first admin; a cluster of one until it sponsors others (or joins one with spd trust)')
  .requiredOption('--data-dir <dir>', 'directory for this member (created, mode 0700)')
  .requiredOption('--name <name>', 'member name')
  .requiredOption('--listen <host:port>', 'address for hosts (pemfs)')
  .option('--cluster-listen <host:port>', 'address for cluster members')
  .option('--admin-listen <host:port>', 'address for spctl', '127.0.0.1:7702')
  .option('--admin-user <name>', 'first admin user', 'admin')
  .option('--admin-password-file <file>', 'read the admin password from FILE; prompts on a terminal otherwise')
  .option('--import-keys <file>', 'start with the named data keys of a key set (msgpack, lib/server/key-set.ts) read from FILE, or from standard input for -; for rebuilding an embedded store')
  .option('--json', 'print JSON')
  .action((o: { dataDir: string, name: string, listen: string, clusterListen?: string, adminListen: string, adminUser: string, adminPasswordFile?: string, importKeys?: string, json?: boolean }) => run(async () => {
    for (const [flag, addr] of [['--listen', o.listen], ['--cluster-listen', o.clusterListen], ['--admin-listen', o.adminListen]] as const) {
      if (addr === undefined) continue
      try { checkHostPort(addr, flag) } catch { throw new PemError('PEM_ERR_BAD_ARGUMENT', `${flag} ${addr} is not HOST:PORT: give the address too, e.g. ${flag} 127.0.0.1:${/^\d+$/.test(addr) ? addr : '7700'}`) }
    }
    const config = checkConfig({ name: o.name, listen: o.listen, clusterListen: o.clusterListen ?? null, adminListen: o.adminListen }, 'spd init')
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(o.adminUser)) throw new PemError('PEM_ERR_BAD_ARGUMENT', '--admin-user must be 1-64 characters of A-Z a-z 0-9 . _ -')
    const dir = path.resolve(o.dataDir)
    if (fs.existsSync(configPath(dir)) || ConfigStore.exists(dir)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${dir} already holds a member; refusing to overwrite it`)
    const password = await readSecret(o.adminPasswordFile, `password for admin ${o.adminUser}: `)
    if (password.length < 8) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'the admin password must have at least 8 characters')
    const keys = o.importKeys === undefined ? {} : decodeKeySet(readKeySetInput(o.importKeys), `--import-keys ${o.importKeys}`)
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    fs.chmodSync(dir, 0o700)
    const identity = createIdentity(path.join(dir, IDENTITY_FILE))
    const state = emptyState()
    const [hash, signKey] = await Promise.all([hashPassword(password), newAdminKey(password)])
    state.admins[o.adminUser] = { hash, signKey: signKey.encoded }
    state.keys = keys
    // Version 1: a cluster of one, with a fresh cluster id. `spd trust` turns it into a joiner instead.
    state.version = 1
    state.clusterId = crypto.randomBytes(32).toString('hex')
    state.members[identity.id] = { id: identity.id, key: encodePublicKey(identity.publicKey), name: o.name, addr: o.listen, clusterAddr: o.clusterListen ?? null, state: 'active' }
    ConfigStore.create(dir, storeKeyFrom(identity.signKey), state)
    const { load: _l, weight: _w, decisionTtlMs: _d, adminTokenTtlS: _a, logLevel: _g, crypto: _c, cluster: _k, ...minimal } = config
    fs.writeFileSync(configPath(dir), JSON.stringify(minimal, null, 2) + '\n', { mode: 0o600 })
    printObject({ name: o.name, id: identity.id, key: encodePublicKey(identity.publicKey), dataDir: dir }, o.json === true)
  }))

program.command('id')
  .description("print this member's public key and id, its cluster id, installed version and number of members")
  .requiredOption('--data-dir <dir>', 'member directory')
  .option('--json', 'print JSON')
  .action((o: { dataDir: string, json?: boolean }) => run(async () => {
    const identity = loadIdentity(path.join(o.dataDir, IDENTITY_FILE))
    const name = loadConfig(o.dataDir).name
    const state = openStore(o.dataDir, () => ConfigStore.open(o.dataDir, storeKeyFrom(identity.signKey))).state
    const members = Object.values(state.members).filter(m => m.state === 'active').length
    printObject({ name, id: identity.id, key: encodePublicKey(identity.publicKey), cluster: state.clusterId ?? null, version: state.version, members }, o.json === true)
  }))

program.command('trust')
  .description('before first start: make this new member a joiner that trusts its sponsor (an existing member whose admin ran spctl member add)')
  .requiredOption('--data-dir <dir>', 'member directory (from spd init, never started in a cluster)')
  .requiredOption('--key <pubkey>', "the sponsor's public key (printed by spctl member add, or spd id on the sponsor)")
  .requiredOption('--addr <host:port>', "the sponsor's cluster address")
  .requiredOption('--cluster <id>', 'the cluster id (printed by spctl member add)')
  .option('--json', 'print JSON')
  .action((o: { dataDir: string, key: string, addr: string, cluster: string, json?: boolean }) => run(async () => {
    checkHostPort(o.addr, '--addr')
    if (!/^[0-9a-f]{64}$/.test(o.cluster)) throw new PemError('PEM_ERR_BAD_ARGUMENT', '--cluster must be the 64-hex-digit cluster id')
    const sponsorKey = parsePublicKey(o.key.trim())
    const sponsor = keyId(sponsorKey)
    const config = loadConfig(o.dataDir)
    if (config.clusterListen === null) throw new PemError('PEM_ERR_NO_CLUSTER', 'this member has no cluster listener: set clusterListen in spd.json first')
    const identity = loadIdentity(path.join(o.dataDir, IDENTITY_FILE))
    if (sponsor === identity.id) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'a member cannot sponsor itself')
    const store = openStore(o.dataDir, () => ConfigStore.open(o.dataDir, storeKeyFrom(identity.signKey)))
    const s = store.state
    const others = Object.keys(s.members).filter(id => id !== identity.id)
    if (s.version > 1 || others.length > 0 || s.policyText !== null || Object.keys(s.hosts).length > 0) {
      throw new PemError('PEM_ERR_BUSY', `this member already has a configuration (version ${s.version}); only a fresh member can join a cluster`)
    }
    // The trust state (version 0): itself and its sponsor. It accepts messages and sets from the sponsor only, and
    // installs the cluster's configuration (with the cluster's admins) as soon as the sponsor has added it.
    const trust = emptyState()
    trust.clusterId = o.cluster
    trust.admins = s.admins
    trust.members[identity.id] = { ...s.members[identity.id], clusterAddr: config.clusterListen }
    trust.members[sponsor] = { id: sponsor, key: encodePublicKey(sponsorKey), name: 'sponsor', addr: '', clusterAddr: o.addr, state: 'active' }
    trust.changedBy = 'trust'
    store.resetForJoin(trust)
    printObject({ member: identity.id, sponsor, sponsorAddr: o.addr, cluster: o.cluster, next: 'spd start: it joins once the sponsor has added it' }, o.json === true)
  }))

program.command('start')
  .description('serve in the foreground; JSON logs on stdout; SIGTERM or SIGINT stops gracefully')
  .requiredOption('--data-dir <dir>', 'member directory')
  .action((o: { dataDir: string }) => run(async () => {
    const stopHeap = manageHeap() // before the engine's and libuv's threads start (lib/native/memory.ts)
    const config = loadConfig(o.dataDir)
    await lockDir('spd', fs.realpathSync(o.dataDir), 'an spd serves this data dir')
    keepServingOnBrokenPipe()
    const log = pino({ level: config.logLevel, base: { member: config.name } })
    const member = openStore(o.dataDir, () => Member.open(o.dataDir, log))
    await member.start()
    await new Promise<void>(resolve => {
      const stop = (sig: string): void => { log.info({ signal: sig }, 'stopping'); resolve() }
      process.once('SIGTERM', () => stop('SIGTERM'))
      process.once('SIGINT', () => stop('SIGINT'))
    })
    stopHeap()
    await member.stop()
  }))

parseProgram(program)
