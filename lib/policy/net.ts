// IP addresses and CIDR blocks for host sets: parsing (IPv4, IPv6, IPv4-mapped IPv6) and prefix matching. Pure.

/** A parsed address: IPv4 as one unsigned 32-bit number, IPv6 as 16 bytes. */
export type Ip = { v: 4, n: number } | { v: 6, b: Uint8Array }

/** A CIDR block; `n`/`b` have every host bit cleared. */
export type Cidr = { v: 4, n: number, len: number } | { v: 6, b: Uint8Array, len: number }

export function parseIpv4 (s: string): number | null {
  // Hand-rolled (it runs on every decision that looks at the client address): four decimal octets, no leading zeros.
  let n = 0
  let octet = 0
  let digits = 0
  let dots = 0
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46
    if (c === 46) {
      if (digits === 0 || ++dots > 4) return null
      n = n * 256 + octet
      octet = 0; digits = 0
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && octet === 0) return null // leading zero
      octet = octet * 10 + (c - 48)
      if (++digits > 3 || octet > 255) return null
    } else {
      return null
    }
  }
  return dots === 4 ? n : null
}

function parseIpv6 (s: string): Uint8Array | null {
  const zone = s.indexOf('%')
  if (zone >= 0) s = s.slice(0, zone)
  const halves = s.split('::')
  if (halves.length > 2) return null
  const words = (part: string): number[] | null => {
    if (part === '') return []
    const out: number[] = []
    const groups = part.split(':')
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]
      if (i === groups.length - 1 && g.includes('.')) {
        const v4 = parseIpv4(g)
        if (v4 === null) return null
        out.push(Math.floor(v4 / 65536), v4 % 65536)
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null
        out.push(parseInt(g, 16))
      }
    }
    return out
  }
  const head = words(halves[0])
  const tail = halves.length === 2 ? words(halves[1]) : []
  if (head === null || tail === null) return null
  let all: number[]
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length
    if (missing < 1) return null
    all = [...head, ...new Array<number>(missing).fill(0), ...tail]
  } else {
    all = head
  }
  if (all.length !== 8) return null
  const b = new Uint8Array(16)
  all.forEach((w, i) => { b[2 * i] = w >> 8; b[2 * i + 1] = w & 0xff })
  return b
}

/** Parses an address; `::ffff:a.b.c.d` (IPv4-mapped) becomes the IPv4 address. */
export function parseIp (s: string): Ip | null {
  if (s.includes(':')) {
    const b = parseIpv6(s)
    if (b === null) return null
    if (b.subarray(0, 10).every(x => x === 0) && b[10] === 0xff && b[11] === 0xff) {
      return { v: 4, n: ((b[12] << 24) >>> 0) + (b[13] << 16) + (b[14] << 8) + b[15] }
    }
    return { v: 6, b }
  }
  const n = parseIpv4(s)
  return n === null ? null : { v: 4, n }
}

export function maskV4 (n: number, len: number): number {
  return len === 0 ? 0 : (n & ((0xffffffff << (32 - len)) >>> 0)) >>> 0
}

export function maskV6 (b: Uint8Array, len: number): Uint8Array {
  const out = new Uint8Array(16)
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, len - 8 * i))
    out[i] = bits === 0 ? 0 : b[i] & ((0xff << (8 - bits)) & 0xff)
  }
  return out
}

export type CidrResult = { ok: true, cidr: Cidr } | { ok: false, why: string }

/** Parses `a.b.c.d/len`, `x::y/len`, or a bare address (= /32 or /128). Host bits must be zero. */
export function parseCidr (s: string): CidrResult {
  const slash = s.indexOf('/')
  const addr = slash >= 0 ? s.slice(0, slash) : s
  const ip = s.includes(':') ? ((): Ip | null => { const b = parseIpv6(addr); return b === null ? null : { v: 6, b } })() : parseIp(addr)
  if (ip === null) return { ok: false, why: `'${addr}' is not an IPv4 or IPv6 address` }
  const max = ip.v === 4 ? 32 : 128
  let len = max
  if (slash >= 0) {
    const l = s.slice(slash + 1)
    if (!/^(0|[1-9][0-9]{0,2})$/.test(l) || Number(l) > max) return { ok: false, why: `prefix length '${l}' must be 0..${max}` }
    len = Number(l)
  }
  if (ip.v === 4) {
    const n = maskV4(ip.n, len)
    if (n !== ip.n) return { ok: false, why: `host bits are set; did you mean ${formatV4(n)}/${len}?` }
    return { ok: true, cidr: { v: 4, n, len } }
  }
  const b = maskV6(ip.b, len)
  if (!b.every((x, i) => x === ip.b[i])) return { ok: false, why: 'host bits are set below the prefix length' }
  return { ok: true, cidr: { v: 6, b, len } }
}

export function formatV4 (n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.')
}

/** Index key of an IPv6 network: hex of its bytes (host bits already zero). */
export function v6Key (b: Uint8Array): string {
  let s = ''
  for (const x of b) s += x.toString(16).padStart(2, '0')
  return s
}

export function cidrContains (c: Cidr, ip: Ip): boolean {
  if (c.v === 4) return ip.v === 4 && maskV4(ip.n, c.len) === c.n
  if (ip.v !== 6) return false
  const m = maskV6(ip.b, c.len)
  for (let i = 0; i < 16; i++) if (m[i] !== c.b[i]) return false
  return true
}
