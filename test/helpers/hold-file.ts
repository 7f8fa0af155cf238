// Child process that keeps one file of a mount open across a test's steps (never the test process itself: it must
// not touch a mount its own children serve): `node hold-file.js '{"file": F, "flags": "r"}'`, then one command a line
// on stdin — `read OFFSET LENGTH`, `write OFFSET TEXT`, `close` — each answered by one JSON line on stdout:
// {"ok": true, "bytes": N, "sha256": HEX} or {"ok": false, "code": "EACCES"}. Used with test/helpers/serve-child.ts.
import crypto from 'node:crypto'
import fs from 'node:fs'
import readline from 'node:readline'

const cfg = JSON.parse(process.argv[2]) as { file: string, flags?: string }
const say = (v: Record<string, unknown>): void => { process.stdout.write(JSON.stringify(v) + '\n') }
const failed = (err: unknown): Record<string, unknown> => ({ ok: false, code: (err as NodeJS.ErrnoException).code ?? String(err) })

let fd: number | null = null
try {
  fd = fs.openSync(cfg.file, cfg.flags ?? 'r')
  say({ ready: true })
} catch (err) {
  say(failed(err))
  process.exit(1)
}

readline.createInterface({ input: process.stdin }).on('line', line => {
  const [cmd, a, ...rest] = line.split(' ')
  try {
    if (fd === null) throw Object.assign(new Error('closed'), { code: 'EBADF' })
    if (cmd === 'read') {
      const buf = Buffer.alloc(Number(rest[0]))
      const n = fs.readSync(fd, buf, 0, buf.length, Number(a))
      say({ ok: true, bytes: n, sha256: crypto.createHash('sha256').update(buf.subarray(0, n)).digest('hex') })
    } else if (cmd === 'write') {
      say({ ok: true, bytes: fs.writeSync(fd, Buffer.from(rest.join(' ')), 0, undefined, Number(a)) })
    } else if (cmd === 'close') {
      fs.closeSync(fd)
      fd = null
      say({ ok: true })
    } else say({ ok: false, code: `unknown command ${cmd}` })
  } catch (err) { say(failed(err)) }
})
process.stdin.on('end', () => process.exit(0))
