// Write-behind and readahead on the native block path (appliance placement, docs/PEMFS.md "Write-behind and
// readahead"), through the real CLI (`pemfs mount --embedded --placement appliance`): sequential writes return before
// spd sealed them and read back bit for bit (cold, from windows opened ahead), a read right after a write sees it, an
// overwrite in the middle lands; and a background write that fails (ENOSPC underneath, a 6 MiB tmpfs) is reported to
// the fsync of the handle that wrote it, not to another process's handle on the same file.
import test from 'ava'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { cli } from '../../scripts/procs'
import { isMounted, sh, tempDir } from '../helpers/mounts'

const root = tempDir('block-path')
const dir = path.join(root, 'data')
const vol = path.join(root, 'vol') // the tmpfs; the guarded directory inside it (a guard is never a volume's root)
const full = path.join(vol, 'data')
const cfg = path.join(root, 'config')
const src = path.join(root, 'src.bin')
const data = crypto.randomBytes(24 * 1048576 + 5)
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex')

test.before(() => {
  fs.mkdirSync(dir)
  fs.writeFileSync(src, data)
})

test.after.always(async () => {
  for (const d of [dir, full]) {
    if (isMounted(d)) await cli('pemfs', ['unmount', d, '--config-dir', cfg], {}, 30000)
    if (isMounted(d)) await sh(`umount -l '${d}'`)
  }
  if (isMounted(vol)) await sh(`umount -l '${vol}'`)
})

type T = { is: (a: unknown, b: unknown, m?: string) => void }
async function mount (t: T, d = dir): Promise<void> {
  const m = await cli('pemfs', ['mount', d, '--embedded', '--config-dir', cfg, '--placement', 'appliance'], {}, 30000)
  t.is(m.code, 0, m.stderr)
}
async function unmount (t: T, d = dir): Promise<void> {
  t.is((await cli('pemfs', ['unmount', d, '--config-dir', cfg], {}, 30000)).code, 0)
}
async function status (d = dir): Promise<Record<string, number>> {
  return JSON.parse((await cli('pemfs', ['status', d, '--config-dir', cfg, '--json'])).stdout) as Record<string, number>
}

test.serial('sequential writes go behind and reads come from windows opened ahead; bit for bit, cold; a read after a write sees it; an overwrite lands', async t => {
  await mount(t)
  try {
    const f = path.join(dir, 'a.bin')
    const w = await sh(`dd if='${src}' of='${f}' bs=128k conv=fsync status=none`, { timeoutMs: 120000 })
    t.is(w.code, 0, w.stderr)
    let s = await status()
    t.true(s.blockBehindWrites > 100, `writes that returned before spd sealed them: ${s.blockBehindWrites}`)
    t.is(s.reads + s.writes, 0, 'the io hook served no data call')
    // 5 bytes in the middle of a block, through another open (not sequential: waits for nothing, patches a block)
    const o = await sh(`printf HELLO | dd of='${f}' bs=1 seek=5000001 conv=notrunc,fsync status=none`)
    t.is(o.code, 0, o.stderr)
    const expect = Buffer.from(data)
    expect.write('HELLO', 5000001, 'latin1')
    const r = await sh(`sync && echo 3 > /proc/sys/vm/drop_caches && sha256sum '${f}'`, { timeoutMs: 60000 })
    t.is(r.stdout.split(' ')[0], sha(expect), 'the file reads back bit for bit')
    s = await status()
    t.true(s.blockAheadBytes > 16 * 1048576, `bytes read from windows opened ahead: ${s.blockAheadBytes}`)
    // Each 64 KiB chunk read back through another descriptor right after it was written (while it may be behind).
    const rw = await sh(`node -e "
      const fs = require('fs'), c = require('crypto'), f = '${path.join(dir, 'b.bin')}'
      const w = fs.openSync(f, 'w'), r = fs.openSync(f, 'r'), back = Buffer.alloc(65536)
      for (let i = 0; i < 64; i++) {
        const chunk = c.randomBytes(65536)
        fs.writeSync(w, chunk)
        if (fs.readSync(r, back, 0, 65536, i * 65536) !== 65536 || !back.equals(chunk)) { console.log('differs at', i); process.exit(1) }
      }
      fs.closeSync(w); fs.closeSync(r)"`, { timeoutMs: 60000 })
    t.is(rw.code, 0, rw.stdout + rw.stderr)
  } finally {
    await unmount(t)
  }
  const raw = fs.readFileSync(path.join(dir, 'a.bin'))
  t.is(raw.indexOf(data.subarray(1048576, 1048576 + 64)), -1, 'no plaintext underneath')
})

test.serial('a write behind that fails (ENOSPC underneath) is reported to the fsync of the handle that wrote it, not to another process\'s', async t => {
  fs.mkdirSync(vol)
  t.is((await sh(`mount -t tmpfs -o size=6m pemfs-test-full '${vol}' && mkdir '${full}'`)).code, 0)
  await mount(t, full)
  try {
    const f = path.join(full, 'full.bin')
    const marks = path.join(root, 'marks')
    fs.mkdirSync(marks)
    const wait = (name: string): string => `while (!fs.existsSync('${marks}/${name}')) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);`
    const mark = (name: string): string => `fs.writeFileSync('${marks}/${name}', '');`
    const fsync = (fd: string): string => `(() => { try { fs.fsyncSync(${fd}); return 'ok' } catch (e) { return e.code } })()`
    // B: holds its own handle on the file, fsyncs once A's writes returned (settling them), before A does.
    const b = sh(`node -e "const fs = require('fs'); ${wait('created')} const fd = fs.openSync('${f}', 'r+'); ${mark('b-open')}
      ${wait('a-wrote')} const r = ${fsync('fd')}; ${mark('b-synced')} fs.closeSync(fd); console.log(r)"`, { timeoutMs: 60000 })
    // A: 12 MiB in 256 KiB writes into 6 MiB; the writes behind fail in the background.
    const a = sh(`node -e "const fs = require('fs'); const fd = fs.openSync('${f}', 'w'); ${mark('created')} ${wait('b-open')}
      let failed = 0; const buf = Buffer.alloc(262144, 7)
      for (let i = 0; i < 48; i++) { try { fs.writeSync(fd, buf) } catch (e) { failed++ } }
      ${mark('a-wrote')} ${wait('b-synced')} const r = ${fsync('fd')}; try { fs.closeSync(fd) } catch (e) {} console.log(r, failed)"`, { timeoutMs: 60000 })
    const [ra, rb] = await Promise.all([a, b])
    t.is(rb.code, 0, rb.stderr)
    t.is(rb.stdout.trim(), 'ok', 'the other process\'s handle is told nothing')
    t.is(ra.code, 0, ra.stderr)
    const [result, failed] = ra.stdout.trim().split(' ')
    t.is(result, 'ENOSPC', 'the writer\'s fsync reports its failed writes behind')
    t.true(Number(failed) < 48, `most writes returned before being sealed (${failed} failed at once)`)
    t.true((await status(full)).blockBehindWrites > 0)
  } finally {
    await unmount(t, full)
    await sh(`umount '${vol}'`)
  }
})
