// Durable atomic replacement of a file (the configuration store, the cluster protocol state): write FILE.tmp, fsync
// it, rename it over FILE, fsync the directory, so a crash leaves the old or the new file, never a mix. `name` labels
// the crash failpoints between the steps (lib/server/failpoint.ts): NAME:mid-write, NAME:before-rename, NAME:after-rename.
import fs from 'node:fs'
import path from 'node:path'
import { failpoint } from './failpoint'

export function replaceDurably (file: string, parts: Uint8Array[], name: string): void {
  const tmp = `${file}.tmp`
  const fd = fs.openSync(tmp, 'w', 0o600)
  try {
    parts.forEach((part, i) => {
      if (i > 0) failpoint(`${name}:mid-write`)
      fs.writeSync(fd, part)
    })
    fs.fsyncSync(fd)
  } finally { fs.closeSync(fd) }
  failpoint(`${name}:before-rename`)
  fs.renameSync(tmp, file)
  failpoint(`${name}:after-rename`)
  const dir = fs.openSync(path.dirname(file), 'r')
  try { fs.fsyncSync(dir) } catch { /* some file systems refuse fsync on a directory */ } finally { fs.closeSync(dir) }
}
