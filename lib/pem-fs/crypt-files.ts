// The encrypted files pemfs has open, one CryptFile per backing inode (dev:ino, from fstat of the fd the native
// session hands over: no path is resolved) however many handles and names reach it, so every reader and writer of a file shares its size and its lock; and the plaintext size getattr
// reports, from the backing size and the header (format plainSize) — never a round trip to spd. A file a crash left
// in the middle of a truncation (a redo record at its end, FORMAT.md §4.8) is finished when first loaded or stat'ed.
import fs from 'node:fs'
import type { ClusterClient } from './client'
import { CryptFile, finishTruncation, readRedo, type Kind, type Redo } from './crypt-file'
import { FILE_MAGIC, HEADER_MAX_BYTES, decodeHeader, plainSize, type FileHeader } from '../wire/file-format'

const { O_RDWR, O_RDONLY } = fs.constants

/**
 * What the backing file open on `fd` (of `size` bytes) is, from its first bytes, and the redo record of a truncation
 * a crash interrupted, if its last bytes are one. A damaged header (magic present) throws PEM_ERR_BAD_HEADER.
 */
function classify (fd: number, size: number): { kind: Kind, header: FileHeader | null, bytes: Buffer | null, redo: Redo | null } {
  if (size === 0) return { kind: 'empty', header: null, bytes: null, redo: null }
  const head = Buffer.alloc(Math.min(HEADER_MAX_BYTES, size))
  fs.readSync(fd, head, 0, head.length, 0)
  if (head.length < FILE_MAGIC.length || !head.subarray(0, FILE_MAGIC.length).equals(FILE_MAGIC)) return { kind: 'plaintext', header: null, bytes: null, redo: null }
  const header = decodeHeader(head)
  return { kind: 'encrypted', header, bytes: Buffer.from(head.subarray(0, header.headerBytes)), redo: readRedo(fd, header, size) }
}

/** Headers of closed files getattr has read, by dev:ino:ctime (any change to a file moves its ctime). */
const HEADERS_KEPT = 10_000

export class CryptFiles {
  private readonly files = new Map<string, CryptFile>()
  private readonly headers = new Map<string, FileHeader | null>() // null: plaintext or damaged (size as it is)

  constructor (private readonly client: ClusterClient) {}

  /**
   * The shared state of the file open on `handleFd` (the session's backing fd of a handle; `label` names it in log
   * lines); release() it when done. Synchronous, so two opens of one inode cannot both load it. The CryptFile keeps a
   * read-write fd of its own (a re-open of the handle's through /proc/self/fd), which outlives any one handle.
   */
  acquire (handleFd: number, label: string): CryptFile {
    const st = fs.fstatSync(handleFd)
    const id = `${st.dev}:${st.ino}`
    const f = this.files.get(id) ?? this.load(id, handleFd, label)
    f.refs++
    return f
  }

  private load (id: string, handleFd: number, real: string): CryptFile {
    const proc = `/proc/self/fd/${handleFd}`
    let fd: number
    try { fd = fs.openSync(proc, O_RDWR) } catch { fd = fs.openSync(proc, O_RDONLY) }
    try {
      let size = fs.fstatSync(fd).size
      const c = classify(fd, size)
      if (c.redo !== null) { finishTruncation(fd, c.redo, real); size = c.redo.target }
      const f = new CryptFile(id, fd, this.client, c.kind, c.header, c.bytes, size)
      this.files.set(id, f)
      return f
    } catch (err) {
      fs.closeSync(fd)
      throw err
    }
  }

  /** Whether a CryptFile (a handle served through JS) holds the inode open on `fd`. */
  holds (fd: number): boolean {
    const st = fs.fstatSync(fd)
    return this.files.has(`${st.dev}:${st.ino}`)
  }

  /**
   * What the file open on `handleFd` is and its header bytes, read through a read-only re-open (the handle may be
   * write-only). A damaged header throws PEM_ERR_BAD_HEADER. For host placement, whose native side finishes a redo
   * record itself.
   */
  peek (handleFd: number): { kind: Kind, bytes: Buffer | null } {
    const fd = fs.openSync(`/proc/self/fd/${handleFd}`, O_RDONLY)
    try {
      const c = classify(fd, fs.fstatSync(fd).size)
      return { kind: c.kind, bytes: c.bytes }
    } finally { fs.closeSync(fd) }
  }

  release (f: CryptFile): void {
    if (--f.refs > 0) return
    this.files.delete(f.id)
    fs.close(f.fd, () => {})
  }

  closeAll (): void {
    for (const f of this.files.values()) fs.close(f.fd, () => {})
    this.files.clear()
  }

  /**
   * Size applications see for the regular file open on `fd` (of `backingSize` bytes) under an encrypted guard point: an open file's own bookkeeping, else
   * the header's plainSize of st_size. Plaintext files and files whose header is damaged show their backing size
   * (the damaged ones fail with EIO at open; getattr stays possible so they can still be removed).
   */
  sizeOf (fd: number, backingSize: number): number {
    const st = fs.fstatSync(fd)
    const open = this.files.get(`${st.dev}:${st.ino}`)
    if (open !== undefined) return open.plainSize()
    if (backingSize === 0) return 0
    const key = `${st.dev}:${st.ino}:${st.ctimeMs}`
    let h = this.headers.get(key)
    if (h === undefined) {
      const c = this.readHeader(fd, backingSize)
      if (c.redo) { // loading finishes it; a file it cannot be finished in stats as it is (like a damaged one)
        try { const f = this.acquire(fd, `inode ${st.ino}`); try { return f.plainSize() } finally { this.release(f) } } catch {}
      }
      h = c.header
      if (this.headers.size >= HEADERS_KEPT) this.headers.delete(this.headers.keys().next().value as string)
      this.headers.set(key, h)
    }
    return h === null ? backingSize : plainSize(h, backingSize)
  }

  private readHeader (fd: number, size: number): { header: FileHeader | null, redo: boolean } {
    try {
      const c = classify(fd, size)
      return { header: c.header, redo: c.redo !== null }
    } catch {
      return { header: null, redo: false }
    }
  }
}
