// Which key versions this host's files are under (issue 19, docs/PEMFS.md "Key versions in use"): a scan of the
// backing directory that reads each regular file's first page and counts the encrypted ones by the key name and
// version their header names (a file with several names once; pemfs's own temporary copies not at all). A host
// scans when it mounts, after a key rotation reaches it (KeysDrop key-rotate: from then on new files get the new
// version, so the old version's count can only fall), after each conversion ends, and every RESCAN_MS; each scan's
// counts go to every member in its list (Op.KeyUsage), and again every RESEND_MS for a member that missed them.
// Between scans the counts are the last scan's: files created since are counted by the next one.
import fs from 'node:fs'
import path from 'node:path'
import { decodeHeader, FILE_MAGIC, HEADER_MAX_BYTES } from '../wire/file-format'
import type { KeyUsageCount } from '../wire/packets'
import type { ClusterClient } from './client'
import { TEMP_PREFIX } from './convert'
import { pemfsLog } from './log'

const RESCAN_MS = 6 * 3600_000
const RESEND_MS = 5 * 60_000
/** A scan asked for waits this long, so a burst of triggers (a rotation seen from every member) is one scan. */
const SETTLE_MS = 1000

export interface CensusResult { started: number, seconds: number, files: number, counts: KeyUsageCount[], unreadable: number }

/** Counts the encrypted files under `root` (a path that reaches the backing directory from this process). */
export async function countKeyVersions (root: string): Promise<CensusResult> {
  const started = Date.now()
  const counts = new Map<string, KeyUsageCount>()
  const seen = new Set<string>() // inodes with several names
  const page = Buffer.alloc(HEADER_MAX_BYTES)
  let files = 0
  let unreadable = 0
  const walk = async (dir: string): Promise<void> => {
    let d: fs.Dir
    try { d = await fs.promises.opendir(dir) } catch { unreadable++; return }
    for await (const e of d) {
      if (e.name.startsWith(TEMP_PREFIX)) continue
      const p = path.join(dir, e.name)
      if (e.isDirectory()) { await walk(p); continue }
      if (!e.isFile()) continue
      let fh: fs.promises.FileHandle
      try { fh = await fs.promises.open(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NOATIME) } catch { unreadable++; continue }
      try {
        const st = await fh.stat({ bigint: true })
        if (st.nlink > 1n) {
          const id = `${st.dev}:${st.ino}`
          if (seen.has(id)) continue
          seen.add(id)
        }
        const { bytesRead } = await fh.read(page, 0, page.length, 0)
        files++
        if (bytesRead < FILE_MAGIC.length || !page.subarray(0, FILE_MAGIC.length).equals(FILE_MAGIC)) continue
        let key: string
        let version: number
        try { ({ keyName: key, keyVersion: version } = decodeHeader(page.subarray(0, bytesRead))) } catch { unreadable++; continue }
        const k = `${key}\0${version}`
        const c = counts.get(k)
        if (c === undefined) counts.set(k, { key, version, files: 1 }); else c.files++
      } catch { unreadable++ } finally { await fh.close() }
    }
  }
  await walk(root)
  return { started, seconds: (Date.now() - started) / 1000, files, counts: [...counts.values()], unreadable }
}

/** The mount daemon's census: scans when told or due, keeps the last result, reports it to the cluster. */
export class KeyCensus {
  private last: CensusResult | null = null
  private scanning: Promise<void> | null = null
  private again = false
  private settle: NodeJS.Timeout | undefined
  private readonly timers: NodeJS.Timeout[] = []

  constructor (private readonly root: string, private readonly client: ClusterClient) {}

  start (): void {
    this.scanSoon()
    this.timers.push(setInterval(() => this.scanSoon(), RESCAN_MS), setInterval(() => { void this.send() }, RESEND_MS))
    for (const t of this.timers) t.unref()
  }

  /** A scan in SETTLE_MS (one, however often asked meanwhile; one more after a scan under way). */
  scanSoon (): void {
    if (this.settle !== undefined) return
    this.settle = setTimeout(() => {
      this.settle = undefined
      if (this.scanning !== null) { this.again = true; return }
      this.scanning = this.scan().finally(() => {
        this.scanning = null
        if (this.again) { this.again = false; this.scanSoon() }
      })
    }, SETTLE_MS)
    this.settle.unref()
  }

  /** The last scan for `pemfs status`: when, how long, and files by key and version. */
  status (): Record<string, unknown> {
    const r = this.last
    if (r === null) return { keyScan: null }
    const files: Record<string, Record<string, number>> = {}
    for (const c of r.counts) (files[c.key] ??= {})[`v${c.version}`] = c.files
    return { keyScan: { at: new Date(r.started).toISOString(), seconds: Math.round(r.seconds * 10) / 10, files: r.files, unreadable: r.unreadable, keys: files } }
  }

  private async scan (): Promise<void> {
    try {
      this.last = await countKeyVersions(this.root)
      pemfsLog().info({ files: this.last.files, keys: this.last.counts, seconds: this.last.seconds }, 'key versions counted')
      await this.send()
    } catch (err) {
      pemfsLog().warn({ err: (err as Error).message }, 'key version scan failed')
    }
  }

  private async send (): Promise<void> {
    const r = this.last
    if (r === null) return
    await this.client.reportKeyUsage({ ageMs: Math.max(0, Date.now() - r.started), counts: r.counts })
  }

  close (): void {
    clearTimeout(this.settle)
    for (const t of this.timers) clearInterval(t)
  }
}
