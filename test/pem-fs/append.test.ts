// O_APPEND through real mounts, encrypted and bypass: rounds of concurrent appenders — separate processes, and
// threads of one process each with its own descriptor or sharing one — and every line must arrive exactly once and
// whole, as on ext4 (each write(2) on an O_APPEND descriptor is atomic with respect to the others).
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { clusterWithHost, daemonLogs, mountOrThrow, sh, tearDown, tempDir, type Cluster } from '../helpers/mounts'

let c: Cluster
let enc: string
let byp: string
let linesDir: string

const policy = (e: string, b: string): string => `format: 1
ttl: 2s
keys: [k1]
guards:
  ${e}:
    rules:
      - id: encrypt
        effect: apply_key(k1)
  ${b}:
    rules:
      - id: bypass
        effect: permit
`

test.before(async () => {
  const root = tempDir('append')
  enc = path.join(root, 'enc'); byp = path.join(root, 'byp')
  fs.mkdirSync(enc); fs.mkdirSync(byp)
  linesDir = tempDir('append-lines')
  c = await clusterWithHost('pemfs-append', () => policy(enc, byp))
  await mountOrThrow(c, enc)
  await mountOrThrow(c, byp)
})

test.after.always(async () => { await tearDown(c) })

// Writer w appends lines "w-i-<pad>" (i = 1..n) of different lengths, so a merged or cut line never looks whole.
const THREADS = `
import os, sys, threading
f, n, shared = sys.argv[1], int(sys.argv[2]), sys.argv[3] == 'shared'
one = os.open(f, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if shared else None
def run(w):
    fd = one if shared else os.open(f, os.O_WRONLY | os.O_APPEND)
    for i in range(1, n + 1):
        line = ('%s-%d-' % (w, i)) + w * (7 + (i * 13 + ord(w)) % 50) + '\\n'
        assert os.write(fd, line.encode()) == len(line)
    if not shared: os.close(fd)
ts = [threading.Thread(target=run, args=(w,)) for w in 'pqrs']
[t.start() for t in ts]; [t.join() for t in ts]
`

/** Writer w's line i (without its newline), the shape the threads write too. */
const lineOf = (w: string, i: number): string => `${w}-${i}-${w.repeat(7 + (i * 13 + w.charCodeAt(0)) % 50)}`

/** Lines of `text` that are not whole lines of a writer, and lines of writers `ws` (n each) missing or doubled. */
function check (text: string, ws: string, n: number): string[] {
  const problems: string[] = []
  const seen = new Map<string, number>()
  for (const l of text.split('\n').slice(0, -1)) {
    const m = /^([a-z])-(\d+)-([a-z]+)$/.exec(l)
    if (m === null || !ws.includes(m[1]) || l !== lineOf(m[1], Number(m[2]))) { problems.push(`odd line ${JSON.stringify(l.slice(0, 80))}`); continue }
    seen.set(`${m[1]}-${m[2]}`, (seen.get(`${m[1]}-${m[2]}`) ?? 0) + 1)
  }
  for (const w of ws) {
    for (let i = 1; i <= n; i++) {
      const k = seen.get(`${w}-${i}`) ?? 0
      if (k !== 1) problems.push(`${w}-${i} seen ${k} times`)
    }
  }
  if (!text.endsWith('\n')) problems.push('the file does not end with a whole line')
  return problems
}

/**
 * The shell side: a process that appends writer w's n lines to f, opening f with >> for each line (one printf, one
 * write(2)). The lines are made beforehand outside the mount, so the loop runs shell builtins only: no process per line.
 */
function shellWriter (w: string, n: number, f: string): string {
  const lines = path.join(linesDir, `${w}-${n}`)
  fs.writeFileSync(lines, Array.from({ length: n }, (_, i) => `${lineOf(w, i + 1)}\n`).join(''))
  return `(while IFS= read -r l; do printf '%s\\n' "$l" >> '${f}'; done < '${lines}')`
}

for (const kind of ['encrypted', 'bypass'] as const) {
  test.serial(`${kind}: 4 processes appending at once, 2 rounds: every line exactly once and whole`, async t => {
    const dir = kind === 'encrypted' ? enc : byp
    for (let round = 0; round < 2; round++) {
      const f = path.join(dir, `procs-${round}.log`)
      const r = await sh(`${['a', 'b', 'c', 'd'].map(w => shellWriter(w, 100, f)).join(' & ')} & wait`, { timeoutMs: 120000 })
      t.is(r.code, 0, r.stderr)
      const text = (await sh(`cat '${f}'`)).stdout
      const problems = check(text, 'abcd', 100)
      t.deepEqual(problems.slice(0, 10), [], `round ${round}: ${problems.length} problems\n${daemonLogs(c)}`)
    }
  })

  for (const mode of ['own descriptors', 'one shared descriptor'] as const) {
    test.serial(`${kind}: 4 threads appending at once through ${mode}, 4 rounds: every line exactly once and whole`, async t => {
      const dir = kind === 'encrypted' ? enc : byp
      for (let round = 0; round < 4; round++) {
        const f = path.join(dir, `threads-${mode === 'own descriptors' ? 'own' : 'shared'}-${round}.log`)
        const r = await sh(`touch '${f}' && python3 -c "$1" '${f}' 300 ${mode === 'own descriptors' ? 'own' : 'shared'}`.replace('"$1"', `'${THREADS.replace(/'/g, "'\\''")}'`), { timeoutMs: 120000 })
        t.is(r.code, 0, r.stderr)
        const text = (await sh(`cat '${f}'`)).stdout
        const problems = check(text, 'pqrs', 300)
        t.deepEqual(problems.slice(0, 10), [], `round ${round}: ${problems.length} problems\n${daemonLogs(c)}`)
      }
    })
  }
}
