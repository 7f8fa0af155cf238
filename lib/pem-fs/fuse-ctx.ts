// Caller context of FUSE operations: builds and loads native/fuse-ctx/fuse_ctx.c (RTLD_GLOBAL, before fuse-native),
// which prefixes every operation's path with "\x01UID GID PID\x01"; callerOf() strips it again.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { PemError } from '../wire/errors'

const ROOT = path.resolve(__dirname, '../../..') // from dist/lib/pem-fs
const SOURCE = path.join(ROOT, 'native', 'fuse-ctx', 'fuse_ctx.c')
const BUILD = path.join(ROOT, 'native', 'fuse-ctx', 'build.sh')
export const SHIM = path.join(ROOT, 'build', 'fuse-ctx', 'fuse_ctx.node')

export interface Caller { uid: number, gid: number, pid: number }

/** The shim, compiled when it is missing or older than its source (npm ci builds it; this covers a changed source). */
export function buildShim (): string {
  const src = fs.statSync(SOURCE, { throwIfNoEntry: false })
  const out = fs.statSync(SHIM, { throwIfNoEntry: false })
  if (out !== undefined && (src === undefined || out.mtimeMs >= src.mtimeMs)) return SHIM
  if (src === undefined) throw new PemError('PEM_ERR_BAD_CONFIG', `${SOURCE} is missing: reinstall pemfs`)
  try {
    execFileSync('sh', [BUILD, SHIM], { stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (err) {
    throw new PemError('PEM_ERR_BAD_CONFIG', `cannot build the FUSE caller-context shim (${BUILD}): ${(err as Error).message}`)
  }
  return SHIM
}

let loaded = false
/** Loads the shim into the process's global symbol scope; call before the first mount. */
export function loadShim (): void {
  if (loaded) return
  const file = buildShim()
  const { RTLD_NOW, RTLD_GLOBAL } = os.constants.dlopen as Record<string, number>
  process.dlopen({ exports: {} } as NodeJS.Module, file, RTLD_NOW | RTLD_GLOBAL)
  loaded = true
}

const UNKNOWN: Caller = { uid: 0xffffffff, gid: 0xffffffff, pid: 0 }

/** Splits "\x01UID GID PID\x01/path" into the caller and the path; a path without the prefix has an unknown caller. */
export function callerOf (raw: string): { caller: Caller, path: string } {
  if (raw.charCodeAt(0) !== 1) return { caller: UNKNOWN, path: raw }
  const end = raw.indexOf('\x01', 1)
  if (end < 0) return { caller: UNKNOWN, path: raw }
  const [uid, gid, pid] = raw.slice(1, end).split(' ').map(Number)
  return { caller: { uid, gid, pid }, path: raw.slice(end + 1) }
}

export function knownCaller (c: Caller): boolean { return c !== UNKNOWN && c.pid > 0 }
