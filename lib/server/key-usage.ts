// Which key versions the hosts' files are under, as the hosts report it (Op.KeyUsage, issue 19): the latest report of
// each host, dated by this member's clock (received minus the scan's age), kept in DATA_DIR/key-usage.json so a
// restart still knows them; summed per key version for `spctl key list` and checked by `spctl key retire`
// (docs/PEMFS.md "Key versions in use"). Reports are per member: a host sends its report to every member it lists.
import fs from 'node:fs'
import path from 'node:path'
import type { KeyUsageBody } from '../wire/packets'
import { replaceDurably } from './durable-file'

export const KEY_USAGE_FILE = 'key-usage.json'

/** One host's latest report: when its scan started (this member's clock, ISO) and its files by key and version. */
export interface HostUsage { scanned: string, received: string, files: Record<string, Record<string, number>> }

export class KeyUsage {
  private readonly file: string
  private readonly hosts: Record<string, HostUsage>

  constructor (dataDir: string) {
    this.file = path.join(dataDir, KEY_USAGE_FILE)
    let loaded: Record<string, HostUsage> = {}
    try { loaded = JSON.parse(fs.readFileSync(this.file, 'utf8')) as Record<string, HostUsage> } catch { /* none yet, or unreadable: hosts report again */ }
    this.hosts = loaded !== null && typeof loaded === 'object' ? loaded : {}
  }

  /** Host `hostId`'s new report replaces its last; kept durably when it says something new. */
  note (hostId: string, r: KeyUsageBody, now = Date.now()): void {
    const files: Record<string, Record<string, number>> = {}
    for (const c of r.counts) {
      const byVersion = files[c.key] ??= {}
      byVersion[String(c.version)] = (byVersion[String(c.version)] ?? 0) + c.files
    }
    const scanned = new Date(now - r.ageMs).toISOString()
    const before = this.hosts[hostId]
    this.hosts[hostId] = { scanned, received: new Date(now).toISOString(), files }
    if (before !== undefined && before.scanned === scanned && JSON.stringify(before.files) === JSON.stringify(files)) return
    replaceDurably(this.file, [Buffer.from(JSON.stringify(this.hosts))], 'key-usage')
  }

  /** Files under each version of `key`, summed over the reports of `hostIds` (the enrolled hosts). */
  filesOf (key: string, hostIds: readonly string[]): Record<string, number> {
    const out: Record<string, number> = {}
    for (const id of hostIds) {
      for (const [v, n] of Object.entries(this.hosts[id]?.files[key] ?? {})) out[v] = (out[v] ?? 0) + n
    }
    return out
  }

  report (hostId: string): HostUsage | undefined { return this.hosts[hostId] }
}
