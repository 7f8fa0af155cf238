// A host's enrollment state in its config dir: its key (host.key, 0600) and the cluster it enrolled with
// (cluster.json: host id and the pinned servers). Default dir: /etc/pemfs as root, ~/.config/pemfs otherwise.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createIdentity, loadIdentity, type Identity } from '../crypto/identity'
import { PemError } from '../wire/errors'
import type { ServerEntry } from '../wire/packets'

export const HOST_KEY_FILE = 'host.key'
export const CLUSTER_FILE = 'cluster.json'

/** `pv`: the configuration version the server list was fetched at (absent: at enrollment). */
export interface ClusterFile { host: string, name: string, servers: ServerEntry[], enrolled: string, pv?: number }

export function defaultConfigDir (): string {
  if (process.env.PEMFS_CONFIG_DIR !== undefined) return process.env.PEMFS_CONFIG_DIR
  return process.getuid?.() === 0 ? '/etc/pemfs' : path.join(os.homedir(), '.config', 'pemfs')
}

/** The host's identity, created on first use. */
export function hostIdentity (dir: string): Identity {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  const file = path.join(dir, HOST_KEY_FILE)
  return fs.existsSync(file) ? loadIdentity(file) : createIdentity(file)
}

export function readCluster (dir: string): ClusterFile {
  const file = path.join(dir, CLUSTER_FILE)
  let v: ClusterFile
  try { v = JSON.parse(fs.readFileSync(file, 'utf8')) as ClusterFile } catch {
    throw new PemError('PEM_ERR_NOT_ENROLLED', `this host is not enrolled (${file} is missing): run pemfs enroll --cluster HOST:PORT --token TOKEN`)
  }
  if (!Array.isArray(v.servers) || v.servers.length === 0 || typeof v.host !== 'string') throw new PemError('PEM_ERR_BAD_CONFIG', `${file} is damaged: enroll again`)
  return v
}

export function writeCluster (dir: string, c: ClusterFile): void {
  const file = path.join(dir, CLUSTER_FILE)
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(c, null, 2) + '\n', { mode: 0o600 })
  fs.renameSync(`${file}.tmp`, file)
}
