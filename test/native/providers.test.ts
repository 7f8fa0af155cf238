// Provider selection and code path: default works, legacy loads but is refused strictly, an absent provider is
// ENGINE_ERR_PROVIDER (never a silent fallback); OPENSSL_ia32cap masking changes the reported path; busy time.
import test from 'ava'
import { execFileSync } from 'node:child_process'
import crypto from 'node:crypto'
import path from 'node:path'
import { createEngine, generateKey, importKey, sealedLength } from '../../lib/native/crypto-engine'
import { REG, readRegs } from '../../lib/native/load-regs'
import { nodeOpen } from './node-aead'

test('the default provider serves both ciphers; the path names the provider and the implementation', t => {
  const gcm = createEngine({ provider: 'default', cipher: 'aes-256-gcm' }).info()
  t.is(gcm.provider, 'default')
  t.is(gcm.requested, 'default')
  t.regex(gcm.path, /^default\/(aesni|vpaes|generic)(\+ghash4bit)?$/)
  t.is(gcm.path.startsWith('default/aesni'), gcm.cpu.aes)
  const cc = createEngine({ cipher: 'chacha20-poly1305' }).info()
  t.regex(cc.path, /^default\/(avx512|avx2|ssse3|generic)$/)
  t.true(gcm.threads >= 1)
})

test("'legacy' loads but offers no AES-256-GCM: strict is ENGINE_ERR_PROVIDER, not strict says who serves it", t => {
  const e = t.throws(() => createEngine({ provider: 'legacy' }), { code: 'ENGINE_ERR_PROVIDER' })
  t.regex(e?.message ?? '', /loaded but offers no AES-256-GCM/)
  const engine = createEngine({ provider: 'legacy', strict: false })
  t.is(engine.info().requested, 'legacy')
  t.is(engine.info().provider, 'default')
  const keyBytes = crypto.randomBytes(32)
  const lens = Uint32Array.from([100])
  const out = Buffer.alloc(sealedLength(lens))
  engine.sealBatchSync(importKey(keyBytes), Buffer.alloc(100, 1), lens, null, 0, out)
  t.deepEqual(nodeOpen('aes-256-gcm', keyBytes, out, Buffer.alloc(0)), Buffer.alloc(100, 1))
})

test('a provider that cannot be loaded is ENGINE_ERR_PROVIDER, strict or not', t => {
  for (const strict of [true, false]) {
    const e = t.throws(() => createEngine({ provider: 'nosuchprovider', strict }), { code: 'ENGINE_ERR_PROVIDER' })
    t.regex(e?.message ?? '', /'nosuchprovider' could not be loaded/)
  }
  t.throws(() => createEngine({ provider: '../../tmp/x' }), { code: 'ENGINE_ERR_BAD_ARGUMENT' })
})

test('OPENSSL_ia32cap masking AES-NI and PCLMULQDQ changes the code path, and results still match node:crypto', t => {
  const mod = path.join(__dirname, '../../lib/native/crypto-engine.js')
  const script = `
    const c = require(${JSON.stringify(mod)}); const crypto = require('node:crypto')
    const e = c.createEngine(); const kb = crypto.randomBytes(32); const lens = Uint32Array.from([777])
    const pt = crypto.randomBytes(777); const out = Buffer.alloc(c.sealedLength(lens))
    e.sealBatchSync(c.importKey(kb), pt, lens, null, 0, out)
    const d = crypto.createDecipheriv('aes-256-gcm', kb, out.subarray(0, 12)); d.setAuthTag(out.subarray(789))
    const ok = Buffer.concat([d.update(out.subarray(12, 789)), d.final()]).equals(pt)
    console.log(JSON.stringify({ info: e.info(), ok }))`
  const run = (env: NodeJS.ProcessEnv): { info: { path: string, cpu: { aes: boolean, pclmul: boolean } }, ok: boolean } =>
    JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' }))
  const masked = run({ OPENSSL_ia32cap: '~0x200000200000000' })
  t.false(masked.info.cpu.aes)
  t.false(masked.info.cpu.pclmul)
  t.regex(masked.info.path, /^default\/(vpaes|generic)\+ghash4bit$/)
  t.true(masked.ok)
  const plain = run({ OPENSSL_ia32cap: undefined })
  t.true(plain.ok)
  t.is(plain.info.path, createEngine().info().path)
})

test('each batch adds its time to REG_CRYPTO_BUSY_NS', async t => {
  const engine = createEngine()
  const key = generateKey()
  const lens = new Uint32Array(64).fill(65536)
  const input = Buffer.alloc(64 * 65536)
  const out = Buffer.alloc(sealedLength(lens))
  const a = readRegs(new Float64Array(REG.COUNT))
  engine.sealBatchSync(key, input, lens, null, 0, out)
  const b = readRegs(new Float64Array(REG.COUNT))
  await engine.sealBatch(key, input, lens, null, 0, out)
  const c = readRegs(new Float64Array(REG.COUNT))
  // 4 MiB of AES-GCM takes well over 100 us on any CPU, well under the wall time between the reads.
  t.true(b[REG.CRYPTO_BUSY_NS] - a[REG.CRYPTO_BUSY_NS] > 100e3)
  t.true(b[REG.CRYPTO_BUSY_NS] - a[REG.CRYPTO_BUSY_NS] <= b[REG.MONO_NS] - a[REG.MONO_NS])
  t.true(c[REG.CRYPTO_BUSY_NS] - b[REG.CRYPTO_BUSY_NS] > 100e3)
})
