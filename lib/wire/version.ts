// Protocol versions this build speaks. Peers settle on the highest version both support (Hello).
export const PROTOCOL = { MIN: 1, MAX: 1, CUR: 1 } as const

/** The highest version inside both ranges, or undefined when they do not overlap. */
export function negotiate (peerMin: number, peerMax: number): number | undefined {
  const v = Math.min(peerMax, PROTOCOL.MAX)
  return v >= Math.max(peerMin, PROTOCOL.MIN) ? v : undefined
}
