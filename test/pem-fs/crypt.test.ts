// pemfs on a real mount under apply_key: ciphertext underneath (header magic, no plaintext), round trips of many
// sizes, random overwrites/appends/truncations checked against a model, holes, two processes writing one file,
// tampering underneath gives EIO (never garbage), and a plaintext file left from before is served read-only.
// The mount serves VIEW over BACKING (--backing), so this process can read and damage the bytes underneath.
// Appliance placement runs on the native block path (docs/CHANNEL.md §8); the write-behind's failure reporting is the
// JS path's (PEMFS_BLOCK_PATH=js), checked on a second mount, JS_VIEW over JS_BACK.
import test, { type ExecutionContext } from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { ROOT, type RunResult } from '../../scripts/procs'
import { cipherSize, decodeHeader, FILE_MAGIC, HEADER_MAX_BYTES, plainSize, slotOffset } from '../../lib/wire/file-format'
import { clusterWithHost, daemonLogs, mountOrThrow, sh, tearDown, tempDir, type Cluster } from '../helpers/mounts'

const DRIVER = path.join(ROOT, 'dist', 'test', 'helpers', 'crypt-driver.js')
let c: Cluster
let view: string
let back: string
let jsView: string
const q = (p: string): string => `'${path.join(view, p)}'`
const drive = async (args: string, timeoutMs = 60000): Promise<Record<string, unknown>> => {
  const r = await sh(`node '${DRIVER}' ${args}`, { timeoutMs })
  try { return JSON.parse(r.stdout) } catch { return { ok: false, error: `exit ${r.code}: ${r.stdout} ${r.stderr}` } }
}
const header = (p: string): ReturnType<typeof decodeHeader> => {
  const fd = fs.openSync(path.join(back, p), 'r')
  const b = Buffer.alloc(HEADER_MAX_BYTES)
  const n = fs.readSync(fd, b, 0, b.length, 0)
  fs.closeSync(fd)
  return decodeHeader(b.subarray(0, n))
}

const policy = (guard: string): string => `format: 1
ttl: 2s
keys: [k1]
guards:
  ${guard}:
    rules:
      - id: zipped
        resources: { dirs: [/z] }
        effect: apply_key(k1)
        compression: zstd
      - id: encrypt
        effect: apply_key(k1)
`

test.before(async () => {
  const root = tempDir('crypt')
  view = path.join(root, 'view')
  back = path.join(root, 'back')
  fs.mkdirSync(view); fs.mkdirSync(back); fs.mkdirSync(path.join(back, 'z'))
  fs.writeFileSync(path.join(back, 'legacy.txt'), 'plaintext from before the guard\n')
  jsView = path.join(root, 'js-view')
  fs.mkdirSync(jsView); fs.mkdirSync(path.join(root, 'js-back'))
  c = await clusterWithHost('pemfs-crypt', () => policy(view).replace('guards:\n', `guards:\n  ${jsView}:\n    rules:\n      - id: encrypt-js\n        effect: apply_key(k1)\n`))
  await mountOrThrow(c, view, ['--backing', back])
  process.env.PEMFS_BLOCK_PATH = 'js' // the daemon of this mount takes it from the CLI's environment
  try { await mountOrThrow(c, jsView, ['--backing', path.join(root, 'js-back')]) } finally { delete process.env.PEMFS_BLOCK_PATH }
})

test.after.always(async () => { await tearDown(c) })

test.serial('ciphertext underneath: header magic, the key, no plaintext, size from the format', async t => {
  const r = await drive(`fill ${q('secret.txt')} 'TOPSECRET-MARKER ' 5000`)
  t.true(r.ok, String(r.error))
  const raw = fs.readFileSync(path.join(back, 'secret.txt'))
  t.true(raw.subarray(0, 4).equals(FILE_MAGIC))
  t.false(raw.includes('TOPSECRET'), 'no plaintext in the backing file')
  const h = header('secret.txt')
  t.is(h.keyName, 'k1')
  t.is(raw.length, cipherSize(h, 17 * 5000))
  t.is(plainSize(h, raw.length), 17 * 5000)
  t.is((await sh(`stat -c %s ${q('secret.txt')}; head -c 34 ${q('secret.txt')}`)).stdout, '85000\nTOPSECRET-MARKER TOPSECRET-MARKER ')
  t.is((await sh(`cat ${q('secret.txt')} | sha256sum`)).stdout, (await sh(`printf 'TOPSECRET-MARKER %.0s' $(seq 5000) | sha256sum`)).stdout)
  // getattr of a closed file reads the header once (kept by dev:ino:ctime): a change afterwards still shows.
  t.is((await sh(`stat -c %s ${q('secret.txt')}; printf 12345 >> ${q('secret.txt')}; stat -c %s ${q('secret.txt')}; truncate -s 10 ${q('secret.txt')}; stat -c %s ${q('secret.txt')}`)).stdout, '85000\n85005\n10\n')
})

test.serial('round trips of many sizes around block boundaries, whole and in odd chunks (4 KiB and zstd 64 KiB blocks)', async t => {
  const sizes = [0, 1, 4095, 4096, 4097, 8191, 8192, 12289, 65535, 65536, 65537, 131072, 131073, 300001].join(',')
  t.true((await drive(`roundtrip ${q('')} ${sizes}`)).ok)
  fs.mkdirSync(path.join(back, 'z', 'rt'))
  const z = await drive(`roundtrip ${q('z/rt')} ${sizes}`)
  t.true(z.ok, String(z.error))
  t.is(header('z/rt/rt-65537').compression, 'zstd')
  t.is(header('z/rt/rt-65537').blockBytes, 65536)
})

for (const dir of ['', 'z']) {
  test.serial(`fsx-style model (fast-check): pwrite via new and old fds, appends, truncate/ftruncate, rename, link, reads; stat/lstat/fstat sizes (${dir === '' ? '4 KiB' : 'zstd 64 KiB'} blocks)`, async t => {
    const seed = Date.now() % 0x7fffffff
    t.log(`seed ${seed}`)
    const r = await drive(`model ${q(dir)} ${seed} 25`, 120000)
    t.true(r.ok, `seed ${seed}: ${String(r.error)}`)
  })
}

test.serial('holes stay holes: a sparse file reads zeros and takes little space underneath; offsets past 4 GiB', async t => {
  const r = await sh(`printf head > ${q('sparse')} && dd if=/dev/zero of=${q('sparse')} bs=1 count=1 seek=20971519 conv=notrunc status=none && truncate -s 41943040 ${q('sparse')} && stat -c %s ${q('sparse')} && od -An -c -N 4 ${q('sparse')} | tr -d ' ' && dd if=${q('sparse')} bs=1M skip=30 count=1 status=none | tr -d '\\0' | wc -c`)
  t.is(r.stdout, '41943040\nhead\n0\n', r.stderr)
  const st = fs.statSync(path.join(back, 'sparse'))
  t.is(st.size, cipherSize(header('sparse'), 41943040))
  t.true(st.blocks * 512 < 1 << 20, `${st.blocks * 512} bytes allocated for 40 MiB`)
  const big = await sh(`printf beyond-4GiB | dd of=${q('big')} bs=1 seek=5368709123 status=none && stat -c %s ${q('big')} && dd if=${q('big')} bs=4096 skip=1310720 count=1 status=none | tr -d '\\0'`)
  t.is(big.stdout, '5368709134\nbeyond-4GiB', big.stderr)
  t.is(fs.statSync(path.join(back, 'big')).size, cipherSize(header('big'), 5368709134))
})

test.serial('mmap writes reach the file; stat and fstat agree with the plaintext size', async t => {
  const py = `import mmap, os, sys
p = sys.argv[1]
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 10000)
m = mmap.mmap(fd, 10000)
m[4090:4106] = b'across-a-border!'
m.flush(); m.close()
print(os.fstat(fd).st_size, os.stat(p).st_size)
os.close(fd)`
  const r = await sh(`python3 -c "${py}" ${q('mapped')} && od -An -c -j 4090 -N 16 ${q('mapped')} | tr -d ' \n'`)
  t.is(r.stdout, '10000 10000\nacross-a-border!', r.stderr)
})

test.serial('two processes write interleaved unaligned ranges of one file at once; the result is both', async t => {
  const parts = 2; const chunk = 3000; const rounds = 200
  t.is((await sh(`: > ${q('shared')}`)).code, 0)
  const [a, b] = await Promise.all([0, 1].map(async i => await drive(`writer ${q('shared')} ${i} ${parts} ${chunk} ${rounds}`)))
  t.true(a.ok && b.ok, `${String(a.error)} ${String(b.error)}`)
  const expect = Buffer.concat(Array.from({ length: rounds * parts }, (_, k) => Buffer.alloc(chunk, 65 + (k % parts))))
  const got = await sh(`sha256sum < ${q('shared')}; stat -c %s ${q('shared')}`)
  const { createHash } = await import('node:crypto')
  t.is(got.stdout, `${createHash('sha256').update(expect).digest('hex')}  -\n${expect.length}\n`)
})

test.serial('readers of one file at once share readahead chunks whose buffers are recycled: every reader gets the right bytes', async t => {
  // 24 MiB of distinct 4 KiB blocks; four sequential readers with different request sizes, one reading backwards in
  // 1 MiB steps, and a writer of another file churning the data pool, three times over.
  const want = (await sh(`head -c 25165824 /dev/urandom | tee ${q('big.dat')} | sha256sum`, { timeoutMs: 60000 })).stdout
  const d = q('sums')
  const script = `f=${q('big.dat')}; mkdir -p ${d}; cd ${d}
    for bs in 4k 128k 1M 3000; do dd if="$f" bs=$bs status=none | sha256sum > sum-$bs & done
    (for i in $(seq 23 -1 0); do dd if="$f" bs=1M skip=$i count=1 status=none; done | sha256sum > sum-back) &
    head -c 16777216 /dev/urandom > ${q('churn.dat')} &
    wait; cat sum-4k sum-128k sum-1M sum-3000`
  const back = (await sh(`for i in $(seq 23 -1 0); do dd if=${q('big.dat')} bs=1M skip=$i count=1 status=none; done | sha256sum`, { timeoutMs: 60000 })).stdout
  for (let round = 0; round < 3; round++) {
    const r = await sh(script, { timeoutMs: 120000 })
    t.is(r.stdout, want.repeat(4), `round ${round}: ${r.stderr}`)
    t.is((await sh(`cat ${q('sums/sum-back')}`)).stdout, back, `round ${round}: the backward reader`)
  }
})

test.serial('O_APPEND from two shells at once: every line arrives whole', async t => {
  const r = await sh(`f=${q('log')}; (for i in $(seq 200); do echo "a-$i-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" >> "$f"; done) & (for i in $(seq 200); do echo "b-$i-bbbbbbbbbbbbbbbbbbbbbbbbbbbbb" >> "$f"; done) & wait; wc -l < "$f"; grep -c '^a-[0-9]*-a*$' "$f"; grep -c '^b-[0-9]*-b*$' "$f"`, { timeoutMs: 60000 })
  if (r.stdout !== '400\n200\n200\n') {
    // Where it went wrong: lines that are not one whole line of either writer (with their byte offset), lines missing.
    const text = (await sh(`cat ${q('log')}`)).stdout
    const lines = text.split('\n')
    let at = 0
    const odd = lines.flatMap(l => { const o = at; at += l.length + 1; return /^a-\d+-a{31}$|^b-\d+-b{29}$|^$/.test(l) ? [] : [`@${o}: ${JSON.stringify(l)}`] })
    const missing = ['a', 'b'].flatMap(w => Array.from({ length: 200 }, (_, i) => `${w}-${i + 1}-`).filter(k => !lines.some(l => l.startsWith(k))))
    t.log(`size ${text.length}; odd lines: ${odd.slice(0, 10).join(' | ') || 'none'}; missing: ${missing.join(' ') || 'none'}\n${daemonLogs(c)}`)
  }
  t.is(r.stdout, '400\n200\n200\n', r.stderr)
})

test.serial('a handle outlives its grant (ttl 2 s + 2 s): it decides again and keeps reading and writing', async t => {
  const r = await drive(`slow ${q('slow')} 10 550`)
  t.true(r.ok, String(r.error))
})

test.serial('tampering underneath: a flipped bit, swapped blocks, a block from another file, a cut inside a block: EIO, never garbage', async t => {
  const make = async (name: string): Promise<string> => {
    t.is((await sh(`head -c 20000 /dev/urandom > ${q(name)}`)).code, 0)
    return path.join(back, name)
  }
  const flip = await make('flip')
  const h = header('flip')
  const fd = fs.openSync(flip, 'r+')
  const one = Buffer.alloc(1)
  fs.readSync(fd, one, 0, 1, slotOffset(h, 2) + 100); one[0] ^= 0x04; fs.writeSync(fd, one, 0, 1, slotOffset(h, 2) + 100)
  fs.closeSync(fd)
  const swap = await make('swap')
  const sb = fs.readFileSync(swap)
  const s0 = Buffer.from(sb.subarray(slotOffset(h, 0), slotOffset(h, 1)))
  sb.copy(sb, slotOffset(h, 0), slotOffset(h, 1), slotOffset(h, 2)); s0.copy(sb, slotOffset(h, 1))
  fs.writeFileSync(swap, sb)
  const cut = await make('cut')
  fs.truncateSync(cut, fs.statSync(cut).size - 7)
  const foreign = await make('foreign')
  const fb = fs.readFileSync(foreign)
  fs.readFileSync(swap).copy(fb, slotOffset(h, 3), slotOffset(h, 0), slotOffset(h, 1)) // same block size, other file id
  fs.writeFileSync(foreign, fb)
  for (const name of ['flip', 'swap', 'cut', 'foreign']) {
    const r = await sh(`cat ${q(name)} | wc -c; cat ${q(name)} > /dev/null`)
    t.regex(r.stderr, /Input\/output error/, name)
    t.not(r.code, 0, name)
  }
  const part = await sh(`dd if=${q('flip')} bs=4096 count=1 iflag=direct status=none | wc -c`)
  t.is(part.stdout.trim(), '4096', 'blocks before the damage still read')
})

test.serial('a plaintext file left from before: read as it is, writes refused (EROFS) and the file untouched; O_TRUNC encrypts', async t => {
  t.is((await sh(`cat ${q('legacy.txt')}`)).stdout, 'plaintext from before the guard\n')
  const w = await sh(`echo more | tee -a ${q('legacy.txt')}; truncate -s 5 ${q('legacy.txt')}`)
  t.not(w.code, 0)
  t.regex(w.stderr, /tee: .*legacy.txt: Read-only file system/)
  t.regex(w.stderr, /truncate: .*legacy.txt.*: Read-only file system/)
  t.is(fs.readFileSync(path.join(back, 'legacy.txt'), 'utf8'), 'plaintext from before the guard\n')
  const r = await sh(`echo rewritten > ${q('legacy.txt')} && cat ${q('legacy.txt')}`)
  t.is(r.stdout, 'rewritten\n', r.stderr)
  t.true(fs.readFileSync(path.join(back, 'legacy.txt')).subarray(0, 4).equals(FILE_MAGIC))
})

/**
 * Runs `rest` (Python) after a 1-byte file `name` is written and fsynced, `before` has run and spd is SIGSTOPped
 * (variables: fd, p, spd); returns what it printed. spd is always continued afterwards.
 */
async function withSpdStopped (t: ExecutionContext, name: string, rest: string, before = '', dir = view): Promise<RunResult> {
  const spd = c.spd.proc?.pid
  t.truthy(spd)
  const py = `import os, sys, signal, errno, threading, time
p, spd = sys.argv[1], int(sys.argv[2])
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b'a'); os.fsync(fd)
${before}
os.kill(spd, signal.SIGSTOP)
${rest}`
  try {
    return await sh(`python3 -c "${py}" '${path.join(dir, name)}' ${String(spd)}`, { timeoutMs: 60000 })
  } finally { if (spd !== undefined) process.kill(spd, 'SIGCONT') }
}

for (const js of [false, true]) {
  test.serial(`a write survives spd stopping for 6 s: fsync succeeds and the bytes read back (${js ? 'JS path, sealed in the background' : 'native block path, the write waits'})`, async t => {
    const r = await withSpdStopped(t, 'paused-write', `threading.Timer(6, os.kill, (spd, signal.SIGCONT)).start()
t0 = time.time()
os.pwrite(fd, b'b' * 131072, 0)
os.fsync(fd)
print('fsync ok', 'after the pause' if time.time() - t0 >= 6 else 'before the pause ended')
os.close(fd)
print(open(p, 'rb').read() == b'b' * 131072)`, '', js ? jsView : view)
    t.is(r.stdout, 'fsync ok after the pause\nTrue\n', r.stderr)
  })
}

test.serial('JS path: a write sealed in the background that fails (spd stopped past WRITE_BEHIND_PERSIST_MS) is reported by fsync; sizes come back from the disk and the file stays usable', async t => {
  const r = await withSpdStopped(t, 'lost-write', `try:
    os.pwrite(fd, b'b' * 131072, 0)
    print('write accepted')
    try:
        os.fsync(fd); print('fsync ok')
    except OSError as e:
        print('fsync', errno.errorcode[e.errno])
finally:
    os.kill(spd, signal.SIGCONT)
for i in range(100):  # the host marked the server down for a while (retry after 5 s)
    try:
        st = os.fstat(fd); break
    except OSError:
        time.sleep(0.2)
print('size', st.st_size)
os.pwrite(fd, b'c' * 5000, 0); os.fsync(fd)
print('size', os.fstat(fd).st_size)
os.close(fd)
print(open(p, 'rb').read() == b'c' * 5000)`, '', jsView)
  t.is(r.stdout, 'write accepted\nfsync EHOSTUNREACH\nsize 1\nsize 5000\nTrue\n', r.stderr)
})

test.serial('JS path: a background write failure is told once to every handle that wrote (fsync or close), never to a reader, whose close returns 0 at once; later writes land', async t => {
  // fd (from withSpdStopped) wrote and fsynced before spd stopped; w and w3 write while it is stopped; rd only reads.
  const r = await withSpdStopped(t, 'told-writers', `def report(name, call):
    try:
        call(); print(name, 'ok')
    except OSError as e:
        print(name, errno.errorcode[e.errno])
try:
    os.pwrite(w, b'b' * 131072, 0)
    os.pwrite(w3, b'x' * 10, 200000)
    t0 = time.time()
    report('reader close', lambda: os.close(rd))
    print('reader close', 'at once' if time.time() - t0 < 5 else 'waited %.1f s' % (time.time() - t0))
    report('writer fsync', lambda: os.fsync(w))
    report('writer fsync again', lambda: os.fsync(w))
    report('other writer close', lambda: os.close(w3))
    report('first writer fsync', lambda: os.fsync(fd))
finally:
    os.kill(spd, signal.SIGCONT)
report('first writer close', lambda: os.close(fd))
for i in range(100):  # the host marked the server down for a while (retry after 5 s)
    try:
        os.pwrite(w, b'c' * 10, 0); os.fsync(w); print('later write ok'); break
    except OSError:
        time.sleep(0.2)
report('writer close', lambda: os.close(w))
print(open(p, 'rb').read() == b'c' * 10)`, `w = os.open(p, os.O_RDWR)
w3 = os.open(p, os.O_RDWR)
rd = os.open(p, os.O_RDONLY)`, jsView)
  t.is(r.stdout, ['reader close ok', 'reader close at once', 'writer fsync EHOSTUNREACH', 'writer fsync again ok', 'other writer close EHOSTUNREACH',
    'first writer fsync EHOSTUNREACH', 'first writer close ok', 'later write ok', 'writer close ok', 'True', ''].join('\n'), r.stderr)
})
