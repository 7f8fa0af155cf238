// Durable protocol state of one member: boot epoch and lock in <data-dir>/cluster-state.json, per-sender replay marks
// in <data-dir>/cluster-marks.json, behind the HwmStore / LockStore seams of the engine (node.ts). Each file is written
// whole and atomically (tmp, fsync, rename, fsync dir). The epoch is raised on every open, to max(stored + 1, unix
// seconds), so it also moves forward when the data dir was wiped and the key kept. A raised mark is written at once,
// before the message that raised it has any effect (a SIGKILL reopens no replay window); a lock is written before it is
// advertised. (Marks of format-1 state files written before the split are still read.)
import fs from 'node:fs'
import path from 'node:path'
import { PemError } from '../../wire/errors'
import { replaceDurably } from '../durable-file'
import { failpoint } from '../failpoint'
import type { LockRecord, LockStore } from './node'
import type { HwmStore, Seq } from './sequence'

export const CLUSTER_STATE_FILE = 'cluster-state.json'
export const CLUSTER_MARKS_FILE = 'cluster-marks.json'
const FORMAT = 1

interface Saved { format: number, epoch: number, marks: Record<string, [number, number]>, lock: { version: number, digest: string, set?: string } | null }

function isSaved (v: unknown): v is Saved {
  const s = v as Saved
  return s !== null && typeof s === 'object' && s.format === FORMAT && Number.isInteger(s.epoch) && s.epoch >= 0 && s.epoch <= 0xffffffff &&
    typeof s.marks === 'object' && s.marks !== null && Object.values(s.marks).every(m => Array.isArray(m) && m.length === 2 && m.every(Number.isInteger)) &&
    (s.lock === null || (typeof s.lock === 'object' && Number.isSafeInteger(s.lock.version) && typeof s.lock.digest === 'string'))
}

function isMarks (v: unknown): v is Pick<Saved, 'marks'> {
  const s = v as Saved
  return s !== null && typeof s === 'object' && s.format === FORMAT && typeof s.marks === 'object' && s.marks !== null &&
    Object.values(s.marks).every(m => Array.isArray(m) && m.length === 2 && m.every(Number.isInteger))
}

export class ClusterStateFile implements HwmStore {
  readonly epoch: number
  private dirty = false

  private constructor (private readonly file: string, private readonly marksFile: string, private readonly saved: Saved) { this.epoch = saved.epoch }

  /** Open (or create) the state file and raise the boot epoch durably before anything is sent. */
  static open (dataDir: string, nowMs = Date.now()): ClusterStateFile {
    const file = path.join(dataDir, CLUSTER_STATE_FILE)
    let saved: Saved = { format: FORMAT, epoch: 0, marks: {}, lock: null }
    if (fs.existsSync(file)) {
      let parsed: unknown
      try { parsed = JSON.parse(fs.readFileSync(file, 'utf8')) } catch (err) { throw new PemError('PEM_ERR_STORE', `${file}: ${(err as Error).message}`) }
      if (!isSaved(parsed)) throw new PemError('PEM_ERR_STORE', `${file} is not a cluster state file of format ${FORMAT}`)
      saved = parsed
    }
    saved.epoch = Math.min(0xffffffff, Math.max(saved.epoch + 1, Math.floor(nowMs / 1000)))
    const marksFile = path.join(dataDir, CLUSTER_MARKS_FILE)
    if (fs.existsSync(marksFile)) {
      let marks: unknown
      try { marks = JSON.parse(fs.readFileSync(marksFile, 'utf8')) } catch (err) { throw new PemError('PEM_ERR_STORE', `${marksFile}: ${(err as Error).message}`) }
      if (!isMarks(marks)) throw new PemError('PEM_ERR_STORE', `${marksFile} is not a replay mark file of format ${FORMAT}`)
      for (const [sender, m] of Object.entries(marks.marks)) {
        const old = saved.marks[sender]
        if (old === undefined || m[0] > old[0] || (m[0] === old[0] && m[1] > old[1])) saved.marks[sender] = m
      }
    }
    const s = new ClusterStateFile(file, marksFile, saved)
    s.dirty = true
    s.flush()
    return s
  }

  load (sender: string): Seq | undefined {
    const m = this.saved.marks[sender]
    return m === undefined ? undefined : { epoch: m[0], counter: m[1] }
  }

  /** Durable before it returns: the caller acts on the message only afterwards (a throw refuses the message). */
  save (sender: string, seq: Seq): void {
    this.saved.marks[sender] = [seq.epoch, seq.counter]
    replaceDurably(this.marksFile, [Buffer.from(JSON.stringify({ format: FORMAT, marks: this.saved.marks }))], 'cluster-marks')
  }

  readonly locks: LockStore = {
    load: (): LockRecord | undefined => {
      const l = this.saved.lock
      return l === null ? undefined : { version: l.version, digest: l.digest, set: l.set === undefined ? undefined : Buffer.from(l.set, 'base64') }
    },
    save: lock => {
      this.saved.lock = { version: lock.version, digest: lock.digest, set: lock.set?.toString('base64') }
      this.dirty = true
      this.flush()
      failpoint('lock:after-save')
    }
  }

  /** Write the epoch and lock if anything changed since the last flush (the marks file is always current). */
  flush (): void {
    if (!this.dirty) return
    replaceDurably(this.file, [Buffer.from(JSON.stringify(this.saved))], 'cluster-state')
    this.dirty = false
  }
}
