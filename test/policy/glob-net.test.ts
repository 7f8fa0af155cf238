// Unit rows for the path helpers (normalise, prefixes, dir boundary, glob -> RegExp + index key) and IP/CIDR parsing.
import test from 'ava'
import { normalizePath, parseGlob, pathPrefixes, underDir } from '../../lib/policy/glob'
import { cidrContains, parseCidr, parseIp } from '../../lib/policy/net'

const norm = test.macro((t, input: string, expected: string | null) => { t.is(normalizePath(input), expected) })
for (const [i, e] of [['/', ''], ['/a/b', '/a/b'], ['/a//b/', '/a/b'], ['a/b', null], ['/a/./b', null], ['/a/../b', null], ['/a\0b', null]] as const) {
  test(`normalizePath ${JSON.stringify(i)}`, norm, i, e)
}

test('pathPrefixes', t => {
  t.deepEqual(pathPrefixes(''), [])
  t.deepEqual(pathPrefixes('/a'), ['/a'])
  t.deepEqual(pathPrefixes('/a/b/c'), ['/a', '/a/b', '/a/b/c'])
})

const under = test.macro((t, p: string, d: string, expected: boolean) => { t.is(underDir(p, d), expected) })
for (const [p, d, e] of [['/fin', '/fin', true], ['/fin/x', '/fin', true], ['/finance', '/fin', false], ['/fi', '/fin', false], ['/x', '', true], ['', '', true], ['', '/fin', false]] as const) {
  test(`underDir ${p} in ${d || '(root)'}`, under, p, d, e)
}

const glob = test.macro((t, pattern: string, path: string, expected: boolean, literalDir?: string) => {
  const g = parseGlob(pattern)
  if (!g.ok) { t.fail(g.why); return }
  t.is(g.glob.re.test(path), expected)
  if (literalDir !== undefined) t.is(g.glob.literalDir, literalDir)
})
const globRows: Array<[string, string, boolean, string?]> = [
  ['*.pdf', '/a/b/x.pdf', true, ''],
  ['*.pdf', '/x.pdf.bak', false],
  ['*', '', false],
  ['**', '', true],
  ['/reports/*.pdf', '/reports/q.pdf', true, '/reports'],
  ['/reports/*.pdf', '/reports/2026/q.pdf', false],
  ['/reports/**/*.pdf', '/reports/2026/01/q.pdf', true, '/reports'],
  ['/a/b/c', '/a/b/c', true, '/a/b/c'],
  ['/a/*/c', '/a/x/c', true, '/a'],
  ['/a/**', '/a', true, '/a'],
  ['/a/**', '/ab', false],
  ['/*/x', '/a/x', true, ''],
  ['/x.y', '/xzy', false],
  ['/a+b(c)', '/a+b(c)', true, '/a+b(c)'],
  ['[a-c]?', '/bz', true],
  ['[!a-c]?', '/bz', false],
  ['\\[x]', '/[x]', true],
  ['a]', '/a]', true],
  ['.*', '/.hidden', true]
]
for (const [p, path, e, ld] of globRows) test(`glob ${p} ~ ${path || '(root)'}`, glob, p, path, e, ld)

const badGlob = test.macro((t, pattern: string, why: RegExp) => {
  const g = parseGlob(pattern)
  t.false(g.ok)
  if (!g.ok) t.regex(g.why, why)
})
for (const [p, why] of [['', /empty glob/], ['a**', /whole path segment/], ['/a//b', /empty path segment/], ['/a/', /empty path segment/],
  ['[ab', /unterminated/], ['[z-a]', /reversed range/], ['x\\', /lone/], ['/a/../b', /never match/]] as const) {
  test(`bad glob ${JSON.stringify(p)}`, badGlob, p, why)
}

const cidr = test.macro((t, c: string, ip: string, expected: boolean) => {
  const r = parseCidr(c)
  const a = parseIp(ip)
  if (!r.ok || a === null) { t.fail(`${c} ${ip}`); return }
  t.is(cidrContains(r.cidr, a), expected)
})
const cidrRows: Array<[string, string, boolean]> = [
  ['10.0.0.0/8', '10.255.1.1', true], ['10.0.0.0/8', '11.0.0.1', false], ['192.168.1.128/25', '192.168.1.200', true],
  ['192.168.1.128/25', '192.168.1.100', false], ['0.0.0.0/0', '1.2.3.4', true], ['1.2.3.4', '1.2.3.4', true], ['1.2.3.4/32', '1.2.3.5', false],
  ['255.255.255.255/32', '255.255.255.255', true],
  ['2001:db8::/32', '2001:db8:ffff::1', true], ['2001:db8::/33', '2001:db8:8000::1', false], ['::1', '::1', true],
  ['::/0', '10.0.0.1', false], ['fe80::/10', 'fe80::1%eth0', true], ['2001:db8::/120', '2001:db8::ff', true],
  ['::ffff:0:0/96', '2001:db8::1', false], ['10.0.0.0/8', '::ffff:10.9.8.7', true], ['64:ff9b::/96', '64:ff9b::10.0.0.1', true]
]
for (const [c, ip, e] of cidrRows) test(`${c} ${e ? 'holds' : 'lacks'} ${ip}`, cidr, c, ip, e)

const badCidr = test.macro((t, c: string) => { t.false(parseCidr(c).ok) })
for (const c of ['10.0.0.0/33', '10.0.0/8', '10.0.0.256', '10.0.0.1/8', '01.2.3.4', '2001:db8::1::2', '2001:db8::/129', '2001:db8::1/64', ':::', '1:2:3:4:5:6:7:8:9', 'x', '10.0.0.0/']) {
  test(`bad CIDR ${c}`, badCidr, c)
}

test('parseIp: forms and refusals', t => {
  t.deepEqual(parseIp('1.2.3.4'), { v: 4, n: 0x01020304 })
  t.deepEqual(parseIp('::ffff:1.2.3.4'), { v: 4, n: 0x01020304 })
  t.is(parseIp('1:2:3:4:5:6:7:8')?.v, 6)
  t.is(parseIp(''), null)
  t.is(parseIp('1.2.3'), null)
  t.is(parseIp('1:2:3:4:5:6:7'), null)
})
