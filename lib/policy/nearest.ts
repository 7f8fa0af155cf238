// "Did you mean" hints: the known name closest to a misspelt one, by edit distance (policy fields, spd.json fields, commands).

/** Levenshtein distance of two short names, one row at a time. */
function distance (a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)))
    prev = row
  }
  return prev[b.length]
}

/** The closest of `names` to `word` when it is near enough to be a typo (at most a third of its letters off), else undefined. */
export function nearestName (word: string, names: Iterable<string>): string | undefined {
  let best: string | undefined
  let bestDistance = Math.max(1, Math.floor(word.length / 3)) + 1
  for (const name of names) {
    const d = distance(word.toLowerCase(), name.toLowerCase())
    if (d < bestDistance) { best = name; bestDistance = d }
  }
  return best
}

/** ` (did you mean 'effect'?)`, or nothing when no name is close. */
export function didYouMean (word: string, names: Iterable<string>): string {
  const near = nearestName(word, names)
  return near === undefined ? '' : ` (did you mean '${near}'?)`
}
