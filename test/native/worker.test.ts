// The addon keeps its state per env (napi instance data): it loads and works in worker threads beside the main one.
import test from 'ava'
import path from 'node:path'
import { Worker } from 'node:worker_threads'

const LIB = path.join(__dirname, '../../lib/native')

const SCRIPT = `
const { parentPort } = require('node:worker_threads')
const c = require(${JSON.stringify(path.join(LIB, 'crypto-engine.js'))})
const r = require(${JSON.stringify(path.join(LIB, 'load-regs.js'))})
;(async () => {
  const e = c.createEngine(); const k = c.generateKey(); const lens = Uint32Array.from([70000, 5])
  const pt = Buffer.alloc(70005, 3); const sealed = Buffer.alloc(c.sealedLength(lens)); const back = Buffer.alloc(70005)
  await e.sealBatch(k, pt, lens, null, 0, sealed)
  await e.openBatch(k, sealed, lens.map(l => l + c.OVERHEAD_BYTES), null, 0, back)
  let code = null
  try { new r.LoadMeter({ nic: 'nosuchnic9' }) } catch (err) { code = err.code }
  const s = new r.LoadMeter({ nic: 'lo' }).sample()
  parentPort.postMessage({ same: back.equals(pt), code, sample: typeof s.cpu })
})().catch(err => parentPort.postMessage({ error: String(err) }))
`

test('four workers load the addon, seal/open and read registers at once', async t => {
  const results = await Promise.all(Array.from({ length: 4 }, async () => await new Promise<unknown>((resolve, reject) => {
    const w = new Worker(SCRIPT, { eval: true })
    w.once('message', m => { resolve(m); void w.terminate() })
    w.once('error', reject)
  })))
  for (const r of results) t.deepEqual(r, { same: true, code: 'ENGINE_ERR_LOAD_REGS', sample: 'number' })
})
