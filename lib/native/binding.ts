// The only place that loads the addon (node-gyp-build on the package root); RawBinding types what native/ exports.
import fs from 'node:fs'
import path from 'node:path'

/** native/load_regs.cc */
export interface RawRegs {
  readRegs (out: Float64Array): void
  setNicInterface (name: string): void
  cryptoBusyAdd (ns: number): void
  readonly REG_CPU_BUSY_JIFFIES: number
  readonly REG_CPU_TOTAL_JIFFIES: number
  readonly REG_NIC_RX_BYTES: number
  readonly REG_NIC_TX_BYTES: number
  readonly REG_NIC_SPEED_MBPS: number
  readonly REG_CRYPTO_BUSY_NS: number
  readonly REG_CRYPTO_THREADS: number
  readonly REG_MONO_NS: number
  readonly REG_COUNT: number
}

/** An opaque native key handle (native/crypto_keys.cc): 32 bytes in native memory, wiped on destroy or GC. */
export interface RawKey {
  readonly live: boolean
  destroy (): void
}

/** native/crypto_engine.cc: sync calls return bytes written; Async ones resolve with it. */
export interface RawEngine {
  info (): RawEngineInfo
  seal (key: RawKey, input: Uint8Array, lens: Uint32Array, aad: Uint8Array, aadLen: number, out: Uint8Array): number
  sealAsync (key: RawKey, input: Uint8Array, lens: Uint32Array, aad: Uint8Array, aadLen: number, out: Uint8Array): Promise<number>
  open (key: RawKey, input: Uint8Array, lens: Uint32Array, aad: Uint8Array, aadLen: number, out: Uint8Array): number
  openAsync (key: RawKey, input: Uint8Array, lens: Uint32Array, aad: Uint8Array, aadLen: number, out: Uint8Array): Promise<number>
}

export interface RawEngineInfo {
  provider: string
  requested: string
  cipher: string
  path: string
  threads: number
  cpu: {
    aes: boolean, pclmul: boolean, ssse3: boolean, avx: boolean, avx2: boolean, avx512f: boolean,
    vaes: boolean, vpclmulqdq: boolean, ia32cap: string
  }
}

export type RawCodec = 'zstd' | 'lz4' | 'zlib'

export interface RawCrypto {
  createEngine (provider: string, cipher: string, strict: boolean): RawEngine
  createKey (bytes: Uint8Array): RawKey
  generateKey (): RawKey
  deriveFileKey (key: RawKey, fileId: Uint8Array, version: number): RawKey
  copyKeyInto (key: RawKey, out: Uint8Array): void
  compress (codec: RawCodec, level: number, input: Uint8Array, lens: Uint32Array, out: Uint8Array, outLens: Uint32Array): number
  compressAsync (codec: RawCodec, level: number, input: Uint8Array, lens: Uint32Array, out: Uint8Array, outLens: Uint32Array): Promise<number>
  decompress (codec: RawCodec, input: Uint8Array, lens: Uint32Array, out: Uint8Array, outLens: Uint32Array): number
  decompressAsync (codec: RawCodec, input: Uint8Array, lens: Uint32Array, out: Uint8Array, outLens: Uint32Array): Promise<number>
  readonly NONCE_BYTES: number
  readonly TAG_BYTES: number
  readonly KEY_BYTES: number
  readonly OVERHEAD_BYTES: number
  readonly FILE_ID_BYTES: number
  readonly MAX_BLOCK_BYTES: number
  readonly CRYPTO_THREADS: number
  readonly HKDF_INFO_FILE_KEY: string
}

/** native/memory.cc */
export interface RawMemory {
  /** glibc malloc_trim(0): true when memory went back to the kernel. */
  trimHeap (): boolean
  /** mallopt(M_ARENA_MAX, arenas) and mallopt(M_MMAP_THRESHOLD, mmapBytes): true when glibc took both. */
  tuneHeap (arenas: number, mmapBytes: number): boolean
}

/** native/block_service.cc: spd's native block service (docs/CHANNEL.md §8); lib/server/block-service.ts wraps it. */
export interface RawBlockService {
  /** Listens on host:port (0: any free port) and returns the port; a second call returns the running one's. */
  blockServiceStart (host: string, port: number): number
  blockServiceStop (): void
  /** One connection may present `token` within lifeMs (at most 10 s), with these record keys (host->spd | spd->host). */
  blockServiceToken (token: Uint8Array, host: string, keys: Uint8Array, lifeMs: number): void
  blockServiceGrant (handle: Uint8Array, host: string, fileId: Uint8Array, keyVersion: number, cipher: number, key: RawKey, seal: boolean, ttlMs: number): void
  blockServiceDropHost (host: string): void
  blockServiceLoad (load: number, weight: number, pv: number): void
  blockServiceStats (): BlockServiceStats
}
/** native/block_bench.cc (benchmarks/data/block-path.bench.ts): round trips/s and latency of one run. */
export interface RawBenchRun { rate: number, p50us: number, p99us: number, errno: number }
export interface RawBlockBench {
  blockBench (remote: RawRemote, aad: Uint8Array, blockBytes: number, blocks: number, depth: number, ms: number): { seal: RawBenchRun, open: RawBenchRun, errno?: number }
  tcpEchoBench (bytes: number, depth: number, ms: number): RawBenchRun
}
export interface BlockServiceStats {
  running: boolean, port: number, connections: number, refusedToken: number, refusedRecord: number, requests: number,
  sealBlocks: number, openBlocks: number, sealBytes: number, openBytes: number, grantRefusals: number, aadRefusals: number,
  authFailures: number, badRequests: number, refusedBusy: number
}
/** native/xattr.cc: a final symlink is not followed; failures throw with `code` (ENODATA, ENOTSUP, EPERM, …). */
export interface RawXattr {
  xattrList (path: string): string[]
  xattrGet (path: string, name: string): Buffer
  xattrSet (path: string, name: string, value: Buffer): void
}

/** An opaque native FUSE session (native/fuse/js.cc). */
export interface RawFuseSession { readonly __fuseSession: unique symbol }

/** What native/fuse hands the control plane (lib/native/fuse-session.ts types them further). */
export interface RawDecideCall { id: number, uid: number, gid: number, gids: number[], pid: number, umask: number, path: string, action: string, nodeid: number }
export interface RawIoCall { id: number, kind: string, fh: number, nodeid: number, fd: number, offset: number, size: number, flags: number, uid: number, gid: number, pid: number, path: string, pool: number, data?: Buffer }
export interface RawHostKey { key?: Uint8Array, remote?: RawRemote, header: Uint8Array, ttlMs: number }
export interface RawFuseOptions { entryTimeoutMs: number, attrTimeoutMs: number, decideTimeoutMs: number, autoUnmount: boolean, debug: boolean, fsname?: string }

/** native/fuse/js.cc */
export interface RawFuse {
  fuseMount (dir: string, backingFd: number, options: RawFuseOptions, decide: (c: RawDecideCall) => void, io: (c: RawIoCall) => void): RawFuseSession
  /** false: the call is gone (answered after its deadline, or the session stopped). */
  fuseAnswer (s: RawFuseSession, id: number, answer: { ok?: boolean, errno?: number, ttlMs?: number, bypass?: boolean, scope?: string, pool?: number, value?: number, data?: Uint8Array, hostKey?: RawHostKey, spares?: RawHostKey[] }): boolean
  fuseUnmount (s: RawFuseSession): void
  fuseInvalidate (s: RawFuseSession): void
  fuseNotify (s: RawFuseSession, nodeid: number, name?: string): void
  fuseRevoke (s: RawFuseSession, fh: number): number
  fuseDropKeys (s: RawFuseSession, expiredOnly: boolean): number
  fuseReservedPids (s: RawFuseSession, pids: number[]): void
  fuseHandles (s: RawFuseSession): Array<{ fh: number, nodeid: number, path: string, encrypted: boolean, read: boolean, write: boolean, revoked: boolean, uid: number, pid: number }>
  fuseStats (s: RawFuseSession): { ops: number, jsCalls: number, cacheHits: number, timeouts: number, nodes: number, handles: number, cacheEntries: number, hostNodes: number, hostKeys: number, hostKeysHeld: number, hostKeysDropped: number, hostKeyCalls: number, hostReads: number, hostWrites: number, hostSpareKeys: number, hostSpareTakes: number, dumpable: boolean, hostBytesRead: number, hostBytesWritten: number, blockGrants: number, blockRequests: number, blockBlocks: number, blockConnects: number, blockLinksLost: number, blockBehindWrites: number, blockAheadBytes: number, blockServers: BlockServerSeen[], opLatency: OpLatency }
  readonly FUSE_MAX_WRITE: number
  readonly FUSE_NAME_MAX: number
  readonly FUSE_PATH_MAX: number
}

/** What the native block path saw of a server: its last reply's load (total), weight and version, requests sent. */
export interface BlockServerSeen { server: string, load: number, weight: number, pv: number, alive: boolean, requests: number }

export const OP_CLASSES = ['lookup', 'getattr', 'read', 'write', 'create', 'other'] as const
/**
 * Latency histograms of the FUSE requests served: the buckets' upper bounds in seconds (ascending, +Inf not listed)
 * and per op class the requests that fell in each bucket (not cumulative; one more entry for above the last bound)
 * and their total seconds.
 */
export type OpLatency = { bounds: number[] } & Record<typeof OP_CLASSES[number], { counts: number[], sum: number }>

/** Where an appliance-placement file's blocks go natively: spd `server` at host:port, block channel token and keys, grant. */
export interface RawRemote { server: string, host: string, port: number, token: Uint8Array, keys: Uint8Array, grant: Uint8Array }

export type RawBinding = RawRegs & RawCrypto & RawMemory & RawFuse & RawBlockService & RawBlockBench & RawXattr

/** The package root: the nearest ancestor of this file that holds binding.gyp (works from lib/ and dist/lib/). */
function packageRoot (): string {
  let dir = __dirname
  for (;;) {
    if (fs.existsSync(path.join(dir, 'binding.gyp'))) return dir
    const up = path.dirname(dir)
    if (up === dir) throw new Error(`binding.gyp not found above ${__dirname}`)
    dir = up
  }
}

// eslint-disable-next-line @typescript-eslint/no-var-requires
export const raw: RawBinding = require('node-gyp-build')(packageRoot())
