// Progress display: plain lines off a terminal (one per 10 %, not per update), in-place redraws on one, rate and ETA.
import test from 'ava'
import { Progress } from '../../lib/cli/progress'

function sink (tty: boolean): { stream: NodeJS.WriteStream, text: () => string } {
  let out = ''
  const stream = { isTTY: tty, write: (s: string) => { out += s; return true } } as unknown as NodeJS.WriteStream
  return { stream, text: () => out }
}

test('off a terminal: one plain line per tenth, whatever the number of updates, then a final line', t => {
  const s = sink(false)
  const p = new Progress({ total: 1000, label: 'copy', unit: 'items', stream: s.stream })
  for (let i = 0; i <= 1000; i++) p.update(i)
  p.finish()
  const lines = s.text().trimEnd().split('\n')
  t.is(lines.length, 12, lines.join('\n')) // 0 %, 10 % … 100 %, and "done"
  t.false(s.text().includes('\r'))
  t.regex(lines[5], /^copy \[#{12}-{12}\] 50% 500\/1000 /)
  t.regex(lines[11], /100% 1000\/1000 .* done$/)
})

test('on a terminal: redrawn in place with bytes, rate and ETA', t => {
  const s = sink(true)
  const p = new Progress({ total: 8 << 20, label: 'write', unit: 'bytes', stream: s.stream, width: 10 })
  p.update(2 << 20)
  t.regex(s.text(), /^\rwrite \[###-------\] 25% 2\.0 MiB\/8\.0 MiB [0-9.]+ (B|KiB|MiB|GiB)\/s ETA [0-9.]+(s|m)/)
  p.finish()
  t.true(s.text().endsWith('\n'))
  t.is(s.text().split('\n').length, 2, 'one line, redrawn')
})

test('a second count shown after the amount, kept until it changes (pemfs encrypt: files)', t => {
  const s = sink(true)
  const p = new Progress({ total: 100, label: 'pemfs encrypt', unit: 'bytes', stream: s.stream, width: 4 })
  p.update(50, '3/10 files')
  t.regex(s.text(), /^\rpemfs encrypt \[##--\] 50% 50 B\/100 B 3\/10 files [0-9.]+ (B|KiB|MiB)\/s ETA /)
  p.update(60)
  t.regex(s.text().split('\r')[2], /60 B\/100 B 3\/10 files /)
})
