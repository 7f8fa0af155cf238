// Host-side server choice (pure: no I/O, no clock, randomness injected): which server a host asks next, from what the
// replies told it (load, weight, latency), under one of three named strategies. The failover loop is in client.ts.
//
// - round-robin: the patent's baseline. Keep the current server; move to the next in the configured order when it
//   reports full load, rejects (the client skips it) or is down. Each host starts at a random place in the list.
// - least-load:  least projected load = last reported load aged by its timestamp + this host's requests in flight.
// - default:     score = projected load + weight + latency (EWMA) - the configuration's preference. A host stays on
//                its server while the score is near the best and moves a little at a time (randomised, to the best or
//                a close second best) when it is clearly worse, at once when it is full or down: hosts with the same
//                stale view do not all move together (see pemfsDefault and docs/PEMFS.md "Choosing a server").
// In every strategy a server with weight > 90 is used only when no other usable server is left (DESIGN §2).

export type SelectionName = 'default' | 'round-robin' | 'least-load'
export const SELECTIONS: readonly SelectionName[] = ['default', 'round-robin', 'least-load']

/** What the host knows of one server. client.ts's ServerState has these fields; the lb study's hosts too. */
export interface ServerView {
  readonly entry: { readonly id: string }
  state: 'up' | 'down'
  downUntil: number // ms (clock of the caller); a down server is tried again from then on
  load: { total: number } | null // last reported combined load, 0..1 (null: never heard)
  loadAt: number // when that report arrived (0: never)
  weight: number // 1..100 as reported; > 90 = only when nothing else is up
  latencyMs: number | null // EWMA of round trips
  inflight: number // this host's requests to it not answered yet
  preference: number // 0..1 from the configuration (1 = this host's preferred server)
}

export interface SelectionOptions {
  /** Uniform in [0, 1); tests and the study inject a seeded one. */
  random?: () => number
  /** Round robin moves on when a server reports at least this load (spd's default threshold). */
  fullLoad?: number
  /** A report younger than this counts as it is ... */
  freshMs?: number
  /** ... then decays toward UNKNOWN_LOAD with this time constant. */
  decayMs?: number
  /** Load one of this host's requests in flight adds to the projection. */
  inflightLoad?: number
}

/** What a server nobody has heard from lately counts as: neither preferred to a known idle one nor shunned. */
export const UNKNOWN_LOAD = 0.5
/** Default strategy: scores closer than this are a toss-up (the chance of the second falls linearly to 0 at it). */
export const CLOSE_SCORES = 0.1
/** Default strategy: a host moves off its server only when its score is worse than the best by more than this ... */
export const SWITCH_MARGIN = 0.05
/** ... with a chance per request growing over this much more gap ... */
export const SWITCH_SPAN = 0.3
/** ... up to this. */
export const SWITCH_CHANCE = 0.05
/** Default strategy: ms of latency (EWMA) that weigh as much as the whole load range. */
export const LATENCY_SCALE_MS = 250
/** Default strategy: what a preference of 1 takes off the score. */
export const PREFERENCE_BONUS = 0.1

const DEFAULTS = { fullLoad: 0.95, freshMs: 1000, decayMs: 2000, inflightLoad: 0.02 }
type Tuning = typeof DEFAULTS

export interface Selector {
  readonly name: SelectionName
  /** Usable servers (up, or down and due for a retry) in the order to try them; the host asks the first. */
  order: <T extends ServerView>(servers: readonly T[], now: number) => T[]
}

export function usable (s: ServerView, now: number): boolean { return s.state === 'up' || s.downUntil <= now }
function reserved (s: ServerView): boolean { return s.weight > 90 }

/** The last reported load as it counts now: as reported while fresh, then decaying toward UNKNOWN_LOAD. */
export function agedLoad (s: ServerView, now: number, t: Pick<Tuning, 'freshMs' | 'decayMs'> = DEFAULTS): number {
  if (s.load === null) return UNKNOWN_LOAD
  const age = Math.max(0, now - s.loadAt) - t.freshMs
  if (age <= 0) return s.load.total
  return UNKNOWN_LOAD + (s.load.total - UNKNOWN_LOAD) * Math.exp(-age / t.decayMs)
}

/** Aged load plus what this host has sent since and not yet had answered. */
export function projectedLoad (s: ServerView, now: number, t: Pick<Tuning, 'freshMs' | 'decayMs' | 'inflightLoad'> = DEFAULTS): number {
  return agedLoad(s, now, t) + s.inflight * t.inflightLoad
}

/** The default strategy's score (lower is better), without the reserve rule for weight > 90. */
export function defaultScore (s: ServerView, now: number, t: Pick<Tuning, 'freshMs' | 'decayMs' | 'inflightLoad'> = DEFAULTS): number {
  return projectedLoad(s, now, t) + Math.min(s.weight, 90) / 1000 + (s.latencyMs ?? 0) / LATENCY_SCALE_MS - PREFERENCE_BONUS * s.preference
}

/** Usable servers, the reserved ones (weight > 90) after the others; configuration order otherwise. */
function tiers<T extends ServerView> (servers: readonly T[], now: number): { main: T[], reserve: T[] } {
  const main: T[] = []
  const reserve: T[] = []
  for (const s of servers) if (usable(s, now)) (reserved(s) ? reserve : main).push(s)
  return { main, reserve }
}

function byKey<T> (list: T[], key: (x: T) => number): T[] {
  const keyed = list.map((x, i) => ({ x, k: key(x), i }))
  keyed.sort((a, b) => a.k - b.k || a.i - b.i)
  return keyed.map(e => e.x)
}

export function createSelector (name: SelectionName, opts: SelectionOptions = {}): Selector {
  const t: Tuning = { ...DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([k, v]) => k !== 'random' && v !== undefined)) }
  const random = opts.random ?? Math.random
  switch (name) {
    case 'least-load':
      return {
        name,
        order: (servers, now) => {
          const { main, reserve } = tiers(servers, now)
          return [...byKey(main, s => projectedLoad(s, now, t)), ...byKey(reserve, s => projectedLoad(s, now, t))]
        }
      }
    case 'round-robin':
      return roundRobin(t, random)
    case 'default':
      return pemfsDefault(t, random)
    default:
      throw new Error(`unknown server selection '${name as string}' (one of ${SELECTIONS.join(', ')})`)
  }
}

/**
 * pemfs's default: stay on the current server while its score is near the best; when it is clearly worse (by more
 * than SWITCH_MARGIN), move with a chance per request that grows with the gap (at most SWITCH_CHANCE), and at once
 * when it reports full load or is down. A move goes to the best or, when their scores are close, the second best at
 * random. The hosts of a fleet see the same (stale) loads; choosing afresh on every request sends them all to the
 * same server until its next report (herding), while moving a few hosts at a time shifts load in small steps.
 */
function pemfsDefault (t: Tuning, random: () => number): Selector {
  let current: string | null = null
  return {
    name: 'default',
    order: (servers, now) => {
      const { main, reserve } = tiers(servers, now)
      const score = (s: ServerView): number => defaultScore(s, now, t)
      const sorted = byKey(main, score)
      const rest = byKey(reserve, score)
      if (sorted.length === 0) return rest
      const on = sorted.find(s => s.entry.id === current)
      let pick = on
      if (on === undefined || projectedLoad(on, now, t) >= t.fullLoad) pick = bestOfTwo(sorted, score, random)
      else {
        const gap = score(on) - score(sorted[0])
        if (random() < SWITCH_CHANCE * Math.min(1, Math.max(0, (gap - SWITCH_MARGIN) / SWITCH_SPAN))) pick = bestOfTwo(sorted, score, random)
      }
      current = (pick as ServerView).entry.id
      return [pick as (typeof sorted)[number], ...sorted.filter(s => s !== pick), ...rest]
    }
  }
}

/** The best, or the second best with a chance that falls from 1/2 (equal scores) to 0 (CLOSE_SCORES apart). */
function bestOfTwo<T> (sorted: T[], score: (s: T) => number, random: () => number): T {
  if (sorted.length < 2) return sorted[0]
  const gap = score(sorted[1]) - score(sorted[0])
  return random() < 0.5 * Math.max(0, 1 - gap / CLOSE_SCORES) ? sorted[1] : sorted[0]
}

/** The patent's round robin: stay on the current server until it is full, rejects or is down; then the next one. */
function roundRobin (t: Tuning, random: () => number): Selector {
  let current: string | null = null // id of the server this host is on
  let at = -1 // its place in the list (kept when the list changes and the server is gone)
  const full = (s: ServerView, now: number): boolean =>
    s.load !== null && s.load.total >= t.fullLoad && now - s.loadAt < t.freshMs + t.decayMs
  return {
    name: 'round-robin',
    order: (servers, now) => {
      const n = servers.length
      if (n === 0) return []
      const found = current === null ? -1 : servers.findIndex(s => s.entry.id === current)
      const start = found >= 0 ? found : at < 0 ? Math.floor(random() * n) : at % n
      const ring = Array.from({ length: n }, (_, k) => servers[(start + k) % n])
      const { main, reserve } = tiers(ring, now)
      // The current server (or the next usable one) unless it reported full load; when all did, the next after it.
      let pick = main.find(s => !full(s, now))
      if (pick === undefined) pick = main.find(s => s.entry.id !== current) ?? main[0]
      const rest = pick === undefined ? reserve : [...main.slice(main.indexOf(pick)), ...main.slice(0, main.indexOf(pick)), ...reserve]
      if (rest.length > 0) { current = rest[0].entry.id; at = servers.indexOf(rest[0]) }
      return rest
    }
  }
}

// ---- the table updates every strategy reads (client.ts and the lb study both call these) ----

/** A reply from `s` arrived after `ms`: it is up, and its load and weight are as reported now. */
export function noteReply (s: ServerView, reply: { load: { total: number }, weight: number }, ms: number, now: number): void {
  s.latencyMs = s.latencyMs === null ? ms : s.latencyMs * 0.8 + ms * 0.2
  s.state = 'up'
  s.load = reply.load
  s.loadAt = now
  s.weight = reply.weight
}

/** `s` timed out, closed its channel or failed: it may be dead; skip it until `retryDownMs` from now. */
export function noteDown (s: ServerView, now: number, retryDownMs: number): void {
  s.state = 'down'
  s.downUntil = now + retryDownMs
}

/**
 * How long a host skips a server that rejected for overload (ClientOptions.overloadBackoffMs): two of spd's load
 * samples (250 ms). Overload is not death: the server answered, and its next sample may admit again; skipping it for
 * retryDownMs (5 s) moved its load onto the others until they crossed the threshold in turn and hosts with every
 * server skipped failed requests while servers sat idle (docs/PEMFS.md "Choosing a server").
 */
export const OVERLOAD_BACKOFF_MS = 500

/** `s` rejected for overload: it is alive (its channel stays open) but skipped for `backoffMs` from now. */
export function noteOverload (s: ServerView, now: number, backoffMs: number = OVERLOAD_BACKOFF_MS): void {
  s.state = 'down'
  s.downUntil = now + backoffMs
}
