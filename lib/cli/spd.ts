// spd: the security processor daemon's command line — init, id, start (DESIGN §5).
import { Command } from 'commander'
import fs from 'node:fs'
import path from 'node:path'
import pino from 'pino'
import { createIdentity, encodePublicKey, loadIdentity } from '../crypto/identity'
import { hashPassword } from '../crypto/password'
import { checkConfig, configPath, loadConfig } from '../server/config'
import { IDENTITY_FILE, Member } from '../server/member'
import { emptyState } from '../server/state'
import { ConfigStore, storeKeyFrom } from '../server/store'
import { PemError } from '../wire/errors'
import { printObject, readSecret, run } from './common'

const program = new Command('spd').description('Security processor daemon: decides file operations, holds the keys, syncs with its peers').showHelpAfterError()

program.command('init')
  .description('create a member: key pair, local config, encrypted store with the first admin')
  .requiredOption('--data-dir <dir>', 'directory for this member (created, mode 0700)')
  .requiredOption('--name <name>', 'member name')
  .requiredOption('--listen <host:port>', 'address for hosts (pemfs)')
  .option('--cluster-listen <host:port>', 'address for cluster members')
  .option('--admin-listen <host:port>', 'address for spctl', '127.0.0.1:7702')
  .option('--admin-user <name>', 'first admin user', 'admin')
  .option('--admin-password-file <file>', 'read the admin password from FILE; prompts on a terminal otherwise')
  .option('--json', 'print JSON')
  .action((o: { dataDir: string, name: string, listen: string, clusterListen?: string, adminListen: string, adminUser: string, adminPasswordFile?: string, json?: boolean }) => run(async () => {
    const config = checkConfig({ name: o.name, listen: o.listen, clusterListen: o.clusterListen ?? null, adminListen: o.adminListen }, 'spd init')
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(o.adminUser)) throw new PemError('PEM_ERR_BAD_ARGUMENT', '--admin-user must be 1-64 characters of A-Z a-z 0-9 . _ -')
    const dir = path.resolve(o.dataDir)
    if (fs.existsSync(configPath(dir)) || ConfigStore.exists(dir)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${dir} already holds a member; refusing to overwrite it`)
    const password = await readSecret(o.adminPasswordFile, `password for admin ${o.adminUser}: `)
    if (password.length < 8) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'the admin password must have at least 8 characters')
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    fs.chmodSync(dir, 0o700)
    const identity = createIdentity(path.join(dir, IDENTITY_FILE))
    const state = emptyState()
    state.admins[o.adminUser] = { hash: await hashPassword(password) }
    ConfigStore.create(dir, storeKeyFrom(identity.signKey), state)
    const { load: _l, weight: _w, decisionTtlMs: _d, adminTokenTtlS: _a, logLevel: _g, crypto: _c, ...minimal } = config
    fs.writeFileSync(configPath(dir), JSON.stringify(minimal, null, 2) + '\n', { mode: 0o600 })
    printObject({ name: o.name, id: identity.id, key: encodePublicKey(identity.publicKey), dataDir: dir }, o.json === true)
  }))

program.command('id')
  .description("print this member's public key and id")
  .requiredOption('--data-dir <dir>', 'member directory')
  .option('--json', 'print JSON')
  .action((o: { dataDir: string, json?: boolean }) => run(async () => {
    const identity = loadIdentity(path.join(o.dataDir, IDENTITY_FILE))
    const name = loadConfig(o.dataDir).name
    printObject({ name, id: identity.id, key: encodePublicKey(identity.publicKey) }, o.json === true)
  }))

program.command('start')
  .description('serve in the foreground; JSON logs on stdout; SIGTERM or SIGINT stops gracefully')
  .requiredOption('--data-dir <dir>', 'member directory')
  .action((o: { dataDir: string }) => run(async () => {
    const config = loadConfig(o.dataDir)
    const log = pino({ level: config.logLevel, base: { member: config.name } })
    const member = Member.open(o.dataDir, log)
    await member.start()
    await new Promise<void>(resolve => {
      const stop = (sig: string): void => { log.info({ signal: sig }, 'stopping'); resolve() }
      process.once('SIGTERM', () => stop('SIGTERM'))
      process.once('SIGINT', () => stop('SIGINT'))
    })
    await member.stop()
  }))

program.parseAsync(process.argv).catch((err: Error) => { process.stderr.write(`error: ${err.message}\n`); process.exitCode = 2 })
