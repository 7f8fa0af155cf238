// Matcher branches, one row each: a one-rule policy either permits the request (match) or falls to the default deny.
import test from 'ava'
import { decide, decideLinear, parsePolicyOrThrow } from '../../lib/policy'
import type { DecideInput } from '../../lib/policy'
import type { AccessAttrs, Action, HostContext } from '../../lib/wire/packets'

const SIG = 'ab'.repeat(32)

function input (over: { path?: string, action?: Action, attrs?: Partial<AccessAttrs>, ctx?: Partial<HostContext>, guard?: string } = {}): DecideInput {
  return {
    guard: over.guard ?? '/g',
    path: over.path ?? '/docs/a.txt',
    action: over.action ?? 'read',
    attrs: { uid: 1000, gids: [100], user: 'ann', groups: ['staff'], domain: 'CORP', pid: 7, sid: 7, exe: '/usr/bin/cat', exeHash: SIG, auth: 1, ...over.attrs },
    ctx: { host: 'host-a', ip: '10.1.2.3', ...over.ctx }
  }
}

/** `fields` is the YAML body of one rule (indented by 8). */
const matches = test.macro({
  exec (t, fields: string, req: Parameters<typeof input>[0], expected: boolean) {
    const p = parsePolicyOrThrow(`format: 1\nguards:\n  /g:\n    rules:\n      - id: r\n        effect: permit\n${fields.split('\n').map(l => '        ' + l).join('\n')}\n`)
    const d = decide(p, input(req))
    t.is(d.effect, expected ? 'permit' : 'deny')
    t.is(d.rule, expected ? 'r' : null)
    t.deepEqual(decideLinear(p, input(req)), d)
  },
  title: (provided = '', _f, _r, expected: boolean) => `${provided} -> ${expected ? 'match' : 'no match'}`
})

const rows: Array<[string, string, Parameters<typeof input>[0], boolean]> = [
  ['no constraint', 'actions: all', {}, true],
  ['uid equal', 'users: {uids: [1000]}', {}, true],
  ['uid differs', 'users: {uids: [1001]}', {}, false],
  ['user name equal', 'users: {users: [ann]}', {}, true],
  ['user name differs', 'users: {users: [bob]}', {}, false],
  ['user name unknown to the host (attrs.user absent)', 'users: {users: [ann]}', { attrs: { user: undefined } }, false],
  ['uid still matches without a user name', 'users: {uids: [1000]}', { attrs: { user: undefined } }, true],
  ['gid among gids', 'users: {gids: [5, 100]}', { attrs: { gids: [4, 100] } }, true],
  ['gid not among gids', 'users: {gids: [5]}', {}, false],
  ['group among groups', 'users: {groups: [staff]}', {}, true],
  ['group not among groups', 'users: {groups: [finance]}', {}, false],
  ['group with no group names sent', 'users: {groups: [staff]}', { attrs: { groups: undefined } }, false],
  ['domain case-insensitive', 'users: {domains: [corp]}', {}, true],
  ['domain differs', 'users: {domains: [other]}', {}, false],
  ['domain absent', 'users: {domains: [corp]}', { attrs: { domain: undefined } }, false],
  ['user set fields are ANDed', 'users: {uids: [1000], groups: [finance]}', {}, false],
  ['user sets in a list are ORed', 'users: [{uids: [1]}, {groups: [staff]}]', {}, true],
  ['exe path exact', 'processes: {paths: [/usr/bin/cat]}', {}, true],
  ['exe path differs', 'processes: {paths: [/usr/bin/vi]}', {}, false],
  ['exe path glob', 'processes: {paths: [/usr/bin/c*]}', {}, true],
  ['exe path glob no match', 'processes: {paths: [/opt/**]}', {}, false],
  ['sha256 signature equal', `processes: {signatures: ["sha256:${SIG.toUpperCase()}"]}`, {}, true],
  ['sha256 signature differs', `processes: {signatures: ["sha256:${'cd'.repeat(32)}"]}`, {}, false],
  ['sha256 signature unknown exe hash', `processes: {signatures: ["sha256:${SIG}"]}`, { attrs: { exeHash: '' } }, false],
  ['path AND signature: path wrong', `processes: {paths: [/bin/x], signatures: ["sha256:${SIG}"]}`, {}, false],
  ['host id equal', 'hosts: {ids: [host-a]}', {}, true],
  ['host id differs', 'hosts: {ids: [host-b]}', {}, false],
  ['IPv4 CIDR contains', 'hosts: {cidrs: [10.0.0.0/8]}', {}, true],
  ['IPv4 CIDR excludes', 'hosts: {cidrs: [10.2.0.0/16]}', {}, false],
  ['IPv4 single address', 'hosts: {cidrs: [10.1.2.3]}', {}, true],
  ['IPv4 /0 holds every IPv4', 'hosts: {cidrs: [0.0.0.0/0]}', {}, true],
  ['IPv4-mapped IPv6 client is IPv4', 'hosts: {cidrs: [10.1.0.0/16]}', { ctx: { ip: '::ffff:10.1.2.3' } }, true],
  ['IPv6 CIDR contains', 'hosts: {cidrs: ["2001:db8::/32"]}', { ctx: { ip: '2001:db8:1::5' } }, true],
  ['IPv6 CIDR excludes', 'hosts: {cidrs: ["2001:db8::/32"]}', { ctx: { ip: '2001:db9::5' } }, false],
  ['IPv6 CIDR does not hold IPv4', 'hosts: {cidrs: ["::/0"]}', {}, false],
  ['unparsable client IP', 'hosts: {cidrs: [0.0.0.0/0]}', { ctx: { ip: 'nonsense' } }, false],
  ['min auth reached', 'min_auth: 1', {}, true],
  ['min auth not reached', 'min_auth: 2', {}, false],
  ['action listed', 'actions: [read, write]', {}, true],
  ['action not listed', 'actions: [write]', {}, false],
  ['single action string', 'actions: read', {}, true],
  ['shorthand all', 'actions: all', { action: 'chown' }, true],
  ['shorthand readonly holds open', 'actions: readonly', { action: 'open' }, true],
  ['shorthand readonly lacks write', 'actions: readonly', { action: 'write' }, false],
  ['shorthand modify holds rename', 'actions: modify', { action: 'rename' }, true],
  ['shorthand metadata lacks read', 'actions: metadata', { action: 'read' }, false],
  ['dir prefix itself', 'resources: {dirs: [/fin]}', { path: '/fin' }, true],
  ['dir prefix below', 'resources: {dirs: [/fin]}', { path: '/fin/q1.ods' }, true],
  ['dir prefix not on a segment boundary', 'resources: {dirs: [/fin]}', { path: '/finance/q1.ods' }, false],
  ['dir with trailing slash', 'resources: {dirs: [/fin/]}', { path: '/fin/x' }, true],
  ['dir / holds everything', 'resources: {dirs: [/]}', { path: '/' }, true],
  ['request path with doubled slashes', 'resources: {dirs: [/fin]}', { path: '//fin//x/' }, true],
  ['request path with .. is denied', 'actions: all', { path: '/public/../fin/x' }, false],
  ['request path with . is denied', 'actions: all', { path: '/./x' }, false],
  ['glob * basename', 'resources: {files: ["*.txt"]}', { path: '/docs/deep/a.txt' }, true],
  ['glob * basename miss', 'resources: {files: ["*.pdf"]}', {}, false],
  ['glob * stays in a segment', 'resources: {files: [/docs/*]}', { path: '/docs/x/a.txt' }, false],
  ['glob anchored *', 'resources: {files: [/docs/*]}', {}, true],
  ['glob ** across segments', 'resources: {files: [/docs/**/a.txt]}', { path: '/docs/1/2/a.txt' }, true],
  ['glob ** matches zero segments', 'resources: {files: [/docs/**/a.txt]}', {}, true],
  ['glob ** holds the dir itself', 'resources: {files: [/docs/**]}', { path: '/docs' }, true],
  ['glob anchored without leading /', 'resources: {files: [docs/*.txt]}', {}, true],
  ['glob ? one character', 'resources: {files: ["?.txt"]}', {}, true],
  ['glob ? not two', 'resources: {files: ["?.txt"]}', { path: '/docs/ab.txt' }, false],
  ['glob class', 'resources: {files: ["[a-c].txt"]}', {}, true],
  ['glob negated class', 'resources: {files: ["[!a].txt"]}', {}, false],
  ['glob escaped *', 'resources: {files: ["\\\\*.txt"]}', { path: '/*.txt' }, true],
  ['glob escaped * is literal', 'resources: {files: ["\\\\*.txt"]}', {}, false],
  ['dirs AND files', 'resources: {dirs: [/docs], files: ["*.pdf"]}', {}, false],
  ['resource guard list holds the guard', 'resources: {guards: [/g]}', {}, true],
  ['resource sets ORed', 'resources: [{dirs: [/x]}, {dirs: [/docs]}]', {}, true]
]
for (const [name, fields, req, expected] of rows) test(name, matches, fields, req, expected)

test('unknown guard point is denied by no rule', t => {
  const p = parsePolicyOrThrow('format: 1\nguards:\n  /g:\n    rules:\n      - {id: r, effect: permit}\n')
  t.like(decide(p, input({ guard: '/other' })), { effect: 'deny', rule: null })
  t.like(decide(p, input({ guard: '/g/' })), { effect: 'permit', rule: 'r' })
})
