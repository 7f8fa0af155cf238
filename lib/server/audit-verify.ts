// Checks hash-chained audit logs (lib/wire/FORMAT.md §7) and names the first broken record: used by the member's
// GET /v1/audit/verify on its own log and by `spctl audit verify --file` offline, with no running member.
import fs from 'node:fs'
import { SIG_CTX_AUDIT } from '../crypto/contexts'
import { keyId } from '../crypto/identity'
import { verify } from '../crypto/sign'
import { AUDIT_FORMAT, checkpointMessage, GENESIS_HASH, lineHash } from '../wire/audit-record'

export interface VerifyOptions {
  /** The member's raw Ed25519 key: checkpoints are checked against it. Without it only the chain is checked. */
  publicKey?: Buffer | null
  /** Records before this seq are skipped; the chain is checked from the record with this seq on. */
  fromSeq?: number
  /** The last record the writer knows it wrote: the log must end with it (catches a cut or edited unsigned tail). */
  head?: { seq: number, hash: string }
}

export interface AuditBreak { file: string, line: number, seq: number | null, reason: string }

export interface VerifyResult {
  ok: boolean
  /** The first broken record, or null when the log is intact. */
  broken: AuditBreak | null
  records: number
  firstSeq: number | null
  lastSeq: number | null
  checkpoints: number
  /** False when no key was given: checkpoint signatures were not checked. */
  signaturesChecked: boolean
  /** Records after the last checkpoint: covered by the chain only, not yet by a signature. */
  unsigned: number
  /** Lines cut by a crash and reported by the `torn` record of the next start. */
  torn: Array<{ file: string, line: number, bytes: number }>
  /** The first record's prev when it continues a chain from an earlier file (not checked without that file). */
  continues: { seq: number, prev: string } | null
}

interface RawRecord { seq?: unknown, prev?: unknown, kind?: unknown, event?: unknown, format?: unknown, member?: unknown, sig?: unknown, offset?: unknown, bytes?: unknown, sha256?: unknown }

class BrokenAt extends Error {
  constructor (readonly at: AuditBreak) { super(at.reason) }
}

/** Verifies one chain spread over `files`, oldest first (audit.log.1 then audit.log after a rotation). */
export function verifyAuditFiles (files: string[], options: VerifyOptions = {}): VerifyResult {
  const v = new ChainVerifier(options)
  try {
    for (const file of files) {
      const text = fs.readFileSync(file)
      v.file(file, text)
    }
    v.end()
  } catch (err) {
    if (!(err instanceof BrokenAt)) throw err
    v.result.broken = err.at
    v.result.ok = false
  }
  return v.result
}

class ChainVerifier {
  readonly result: VerifyResult
  private seq: number | null = null
  private hash = ''
  private hashLine = 0 // line number and file of the record `hash` is of
  private hashFile = ''
  private lastCheckpointSeq: number | null = null
  private name = ''
  private cutLineSkipped = false // the line just before was the cut one a `torn` record names

  constructor (private readonly options: VerifyOptions) {
    this.result = { ok: true, broken: null, records: 0, firstSeq: null, lastSeq: null, checkpoints: 0, signaturesChecked: options.publicKey != null, unsigned: 0, torn: [], continues: null }
  }

  private broken (line: number, seq: number | null, reason: string): never {
    throw new BrokenAt({ file: this.name, line, seq, reason })
  }

  file (name: string, text: Buffer): void {
    this.name = name
    let start = 0
    let end = text.indexOf(10)
    let line = 0
    let current = end < 0 ? null : parse(text.subarray(0, end))
    while (end >= 0) { // one line of look-ahead: a `torn` record names the cut line before it
      line++
      const bytes = text.subarray(start, end)
      const nextStart = end + 1
      const nextEnd = text.indexOf(10, nextStart)
      const next = nextEnd < 0 ? null : parse(text.subarray(nextStart, nextEnd))
      if (next?.event === 'torn' && next.offset === start && next.bytes === bytes.length && next.sha256 === lineHash(bytes)) {
        this.result.torn.push({ file: name, line, bytes: bytes.length })
        this.cutLineSkipped = true
      } else {
        this.record(line, bytes, current)
        this.cutLineSkipped = false
      }
      start = nextStart
      end = nextEnd
      current = next
    }
    if (start < text.length) {
      this.broken(line + 1, null, `the last line is cut mid-way (${text.length - start} bytes, no newline): a truncation, or a crash the member has not restarted after yet`)
    }
  }

  private record (line: number, bytes: Buffer, r: RawRecord | null): void {
    const from = this.options.fromSeq
    if (this.seq === null && from !== undefined && !(typeof r?.seq === 'number' && r.seq >= from)) return // before --from: not checked
    if (r === null) this.broken(line, null, 'not a JSON record')
    const seq = r.seq
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) this.broken(line, null, 'no valid seq')
    if (typeof r.prev !== 'string') this.broken(line, seq, 'no prev hash')
    if (this.seq === null) {
      if (from !== undefined && seq > from) this.broken(line, seq, `no record with seq ${from}: the chain starts at seq ${seq}`)
      if (!(seq === 1 && r.prev === GENESIS_HASH)) this.result.continues = { seq: seq - 1, prev: r.prev }
      this.result.firstSeq = seq
    } else {
      if (seq !== this.seq + 1) this.broken(line, seq, `seq ${seq} follows seq ${this.seq} (line ${this.hashLine}): a record is missing or out of order`)
      if (r.prev !== this.hash) {
        if (this.hashFile !== this.name) this.broken(line, seq, `its prev is not the hash of the last line of ${this.hashFile}: the files are not consecutive, or that line was changed`)
        this.broken(this.hashLine, this.seq, `the record was changed: its hash is not the prev that the next record (line ${line}, seq ${seq}) carries`)
      }
    }
    if (r.kind === 'audit') this.chainRecord(line, seq, r)
    this.seq = seq
    this.hash = lineHash(bytes)
    this.hashLine = line
    this.hashFile = this.name
    this.result.records++
    this.result.lastSeq = seq
  }

  private chainRecord (line: number, seq: number, r: RawRecord): void {
    if (r.event === 'start' && r.format !== AUDIT_FORMAT) this.broken(line, seq, `record format ${String(r.format)} is not ${AUDIT_FORMAT}`)
    if (r.event === 'torn' && !this.cutLineSkipped) this.broken(line, seq, 'a torn record that does not follow the cut line it names')
    if (r.event !== 'checkpoint') return
    const key = this.options.publicKey
    if (key != null) {
      const member = keyId(key)
      if (r.member !== member) this.broken(line, seq, `checkpoint of member ${String(r.member)}, not of the key given (${member})`)
      const sig = typeof r.sig === 'string' ? Buffer.from(r.sig, 'base64url') : Buffer.alloc(0)
      if (!verify(SIG_CTX_AUDIT, checkpointMessage(member, seq, String(r.prev)), sig, key)) this.broken(line, seq, 'checkpoint signature does not verify')
    }
    this.result.checkpoints++
    this.lastCheckpointSeq = seq
  }

  end (): void {
    const head = this.options.head
    if (head !== undefined && this.seq !== null && (this.seq !== head.seq || this.hash !== head.hash)) {
      this.broken(this.hashLine, this.seq, this.seq < head.seq
        ? `the log ends at seq ${this.seq} but the member wrote up to seq ${head.seq}: records were cut from the end`
        : `the last record is not the one the member wrote as seq ${head.seq}`)
    }
    const last = this.result.lastSeq
    this.result.unsigned = last === null ? 0 : last - (this.lastCheckpointSeq ?? (this.result.firstSeq ?? 1) - 1)
  }
}

function parse (bytes: Buffer): RawRecord | null {
  try {
    const r = JSON.parse(bytes.toString('utf8')) as unknown
    return typeof r === 'object' && r !== null && !Array.isArray(r) ? r as RawRecord : null
  } catch { return null }
}
