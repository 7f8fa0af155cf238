// The package as npm ships it (issue 21 finding 11): `npm pack` of a copy of the tree holding a prebuilt addon where
// `npm run prebuildify` puts it (prebuilds/linux-x64/pemfs-spd.node; here the addon this checkout built), installed
// into a clean directory with no compiler on PATH (node, npm and sh only; dependencies from npm's cache or registry):
// `pemfs --version` runs and the addon loads from prebuilds/, not from a build/ of its own.
import test from 'ava'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { ROOT, tempDir } from '../../scripts/procs'

interface Run { code: number, stdout: string, stderr: string }
async function run (file: string, args: string[], cwd: string, env: Record<string, string> = {}, timeoutMs = 240000): Promise<Run> {
  return await new Promise(resolve => {
    execFile(file, args, { cwd, env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1, stdout, stderr })
    })
  })
}

/** Which of `names` the directory's PATH would find (none, for the install's PATH). */
const onPath = (dir: string, names: string[]): string[] => names.filter(n => fs.existsSync(path.join(dir, n)))

test('npm pack output installs without a compiler and runs pemfs --version; the addon comes from prebuilds/', async t => {
  t.timeout(480000)
  const work = tempDir('pack')
  const tree = path.join(work, 'tree')
  fs.mkdirSync(tree)
  const archive = await run('sh', ['-c', `git archive HEAD | tar -x -C '${tree}'`], ROOT)
  t.is(archive.code, 0, archive.stderr)
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(tree, 'package.json')) // the tree as it is, not as committed
  fs.cpSync(path.join(ROOT, 'dist', 'lib'), path.join(tree, 'dist', 'lib'), { recursive: true })
  fs.mkdirSync(path.join(tree, 'prebuilds', 'linux-x64'), { recursive: true })
  fs.copyFileSync(path.join(ROOT, 'build', 'Release', 'pem_native.node'), path.join(tree, 'prebuilds', 'linux-x64', 'pemfs-spd.node'))
  const npm = path.join(path.dirname(process.execPath), 'npm')
  const pack = await run(npm, ['pack', '--silent', '--pack-destination', work], tree)
  t.is(pack.code, 0, pack.stderr)
  const tarball = path.join(work, pack.stdout.trim().split('\n').pop() ?? '')
  const listing = await run('tar', ['-tzf', tarball], work)
  t.true(listing.stdout.includes('package/dist/lib/cli/pemfs.js'), 'the compiled CLI is in the package')
  t.true(listing.stdout.includes('package/prebuilds/linux-x64/pemfs-spd.node'), 'the prebuilt addon is in the package')
  t.false(listing.stdout.includes('package/build/'), 'no build directory')

  const bin = path.join(work, 'bin') // node, npm and sh: no cc, c++, make or python
  fs.mkdirSync(bin)
  for (const [name, target] of [['node', process.execPath], ['npm', fs.realpathSync(npm)], ['sh', '/bin/sh']]) fs.symlinkSync(target, path.join(bin, name))
  t.deepEqual(onPath(bin, ['cc', 'gcc', 'c++', 'g++', 'make', 'python3']), [])
  const clean = path.join(work, 'clean')
  fs.mkdirSync(clean)
  fs.writeFileSync(path.join(clean, 'package.json'), '{"name":"clean","version":"1.0.0","private":true}\n')
  const env = { PATH: bin }
  const install = await run(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], clean, env)
  t.is(install.code, 0, install.stderr)
  const version = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version as string
  const v = await run(path.join(clean, 'node_modules', '.bin', 'pemfs'), ['--version'], clean, env)
  t.is(v.code, 0, v.stderr)
  t.is(v.stdout, `${version}\n`)
  const installed = path.join(clean, 'node_modules', 'pemfs-spd')
  t.false(fs.existsSync(path.join(installed, 'build')), 'nothing was compiled at install')
  const addon = await run(process.execPath, ['-e', "const p = require('path').dirname(require.resolve('pemfs-spd/package.json')); console.log(require('node-gyp-build').resolve(p)); require('pemfs-spd/dist/lib/native/binding')"], clean, env)
  t.is(addon.code, 0, addon.stderr)
  t.is(addon.stdout.trim(), path.join(fs.realpathSync(installed), 'prebuilds', 'linux-x64', 'pemfs-spd.node'))
})
