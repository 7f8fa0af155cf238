// Load registers and LoadMeter: CPU, loopback NIC and crypto-busy registers move with real load; bad input by code.
import test from 'ava'
import net from 'node:net'
import os from 'node:os'
import { LoadMeter, REG, cryptoBusyAdd, readRegs } from '../../lib/native/load-regs'
import { PemError } from '../../lib/wire/errors'

function spin (ms: number): void {
  const end = process.hrtime.bigint() + BigInt(ms * 1e6)
  let x = 0
  while (process.hrtime.bigint() < end) x = (x * 31 + 7) % 1000003
  if (x < 0) throw new Error('unreachable')
}

async function pushOverLoopback (bytes: number): Promise<void> {
  const server = net.createServer(sock => { sock.resume(); sock.on('end', () => sock.end()) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  await new Promise<void>((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1', () => { c.end(Buffer.alloc(bytes, 0x5a)) })
    c.on('error', reject)
    c.resume()
    c.on('close', () => resolve())
  })
  await new Promise<void>(resolve => server.close(() => resolve()))
}

test('register indices are distinct and inside REG.COUNT', t => {
  const idx = Object.entries(REG).filter(([k]) => k !== 'COUNT').map(([, v]) => v)
  t.is(new Set(idx).size, idx.length)
  for (const i of idx) t.true(Number.isInteger(i) && i >= 0 && i < REG.COUNT)
})

test.serial('cpu registers move while a core spins', t => {
  const a = readRegs(new Float64Array(REG.COUNT))
  const meter = new LoadMeter({ nic: 'lo' })
  spin(400)
  const b = readRegs(new Float64Array(REG.COUNT))
  const s = meter.sample()
  // USER_HZ is 100: 400 ms of one busy core is ~40 jiffies.
  t.true(b[REG.CPU_BUSY_JIFFIES] - a[REG.CPU_BUSY_JIFFIES] >= 20, `busy delta ${b[REG.CPU_BUSY_JIFFIES] - a[REG.CPU_BUSY_JIFFIES]}`)
  t.true(b[REG.CPU_TOTAL_JIFFIES] > a[REG.CPU_TOTAL_JIFFIES])
  t.true(b[REG.MONO_NS] - a[REG.MONO_NS] >= 390e6)
  const cores = b[REG.CRYPTO_THREADS]
  t.true(cores >= 1)
  t.true(s.cpu >= 0.8 / Math.max(2, os.cpus().length), `cpu ${s.cpu}`)
  t.true(s.cpu <= 1)
})

test.serial('nic byte counters move when traffic flows on lo; loopback speed is unknown (-1)', async t => {
  const a = readRegs(new Float64Array(REG.COUNT), 'lo')
  const meter = new LoadMeter({ nic: 'lo', nicCapacityBps: 1e6 })
  await pushOverLoopback(4 << 20)
  const b = readRegs(new Float64Array(REG.COUNT), 'lo')
  const s = meter.sample()
  t.true(b[REG.NIC_RX_BYTES] - a[REG.NIC_RX_BYTES] >= 4 << 20)
  t.true(b[REG.NIC_TX_BYTES] - a[REG.NIC_TX_BYTES] >= 4 << 20)
  t.is(b[REG.NIC_SPEED_MBPS], -1)
  // 4 MiB against a 1 MB/s capacity in well under 4 s saturates the meter.
  t.is(s.nic, 1)
})

test.serial('the crypto busy hook adds up and drives the crypto utilisation', t => {
  const a = readRegs(new Float64Array(REG.COUNT))
  cryptoBusyAdd(1_000_000)
  cryptoBusyAdd(2_500_000)
  cryptoBusyAdd(0)
  const b = readRegs(new Float64Array(REG.COUNT))
  t.is(b[REG.CRYPTO_BUSY_NS] - a[REG.CRYPTO_BUSY_NS], 3_500_000)

  const t0 = process.hrtime.bigint()
  const meter = new LoadMeter({ nic: 'lo', cryptoThreads: 2 })
  spin(100)
  cryptoBusyAdd(100e6) // 100 ms busy over >= 100 ms x 2 threads -> at most 0.5
  const s = meter.sample()
  const outer = Number(process.hrtime.bigint() - t0) // >= the interval the meter measured
  t.true(s.crypto >= 100e6 / (outer * 2) && s.crypto <= 0.5, `crypto ${s.crypto} over ${outer} ns`)
  const idle = meter.sample()
  t.true(idle.crypto < 0.05, `crypto ${idle.crypto}`)
})

test.serial('a sample straight after construction is near zero and always inside 0..1', t => {
  const meter = new LoadMeter({ nic: 'lo' })
  for (let i = 0; i < 100; i++) {
    const s = meter.sample()
    for (const v of [s.cpu, s.nic, s.crypto]) t.true(v >= 0 && v <= 1)
  }
})

test('an unknown interface is ENGINE_ERR_LOAD_REGS', t => {
  const e = t.throws(() => new LoadMeter({ nic: 'nosuchnic0' }), { code: 'ENGINE_ERR_LOAD_REGS' })
  t.true(e instanceof PemError)
  t.throws(() => readRegs(new Float64Array(REG.COUNT), 'nosuchnic1'), { code: 'ENGINE_ERR_LOAD_REGS' })
})

test('bad arguments are refused by code', t => {
  t.throws(() => readRegs(new Float64Array(REG.COUNT - 1)), { code: 'ENGINE_ERR_BAD_LENGTH' })
  t.throws(() => readRegs(new Float64Array(REG.COUNT), '../etc'), { code: 'ENGINE_ERR_BAD_ARGUMENT' })
  t.throws(() => cryptoBusyAdd(-1), { code: 'ENGINE_ERR_BAD_ARGUMENT' })
  t.throws(() => new LoadMeter({ nic: 'lo', nicCapacityBps: 0 }), { instanceOf: RangeError })
})
