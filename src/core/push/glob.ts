/**
 * Glob-style matching (spec appendix "Glob-style matching"): `*` matches zero or more characters, `?` exactly one,
 * everything else is literal. Push rules match case-insensitively; "case-insensitive" is ours to define, and we use
 * Unicode simple case folding, which is what a JavaScript RegExp with the `iu` flags does per code point.
 *
 * Two ways to match:
 * - whole: the pattern matches the entire value (`event_match` on any key but `content.body`);
 * - words: the pattern matches a substring that starts and ends at a word boundary, where a boundary is the start
 *   or end of the value or any character not in `[A-Za-z0-9_]` (`content.body`, content rules, display names).
 *
 * A pattern is compiled once into segments split at runs of `*`; each segment (literals and `?`) is a fixed-length
 * RegExp, so no pattern can make matching backtrack exponentially. Word boundaries are checked in code rather than
 * with lookarounds: under the `i` flag `[A-Za-z]` would also accept U+017F ſ and U+212A K (they fold to s and k),
 * which the spec's ASCII-only boundary definition counts as boundaries.
 */

/** How many compiled patterns each cache keeps; users' own rules are few, but display names are many. */
const CACHE_LIMIT = 4096;

export interface Glob {
  /** The pattern matches the entire value. */
  matchesWhole(value: string): boolean;
  /** The pattern matches some substring of the value that starts and ends at a word boundary. */
  matchesWords(value: string): boolean;
}

export function hasGlobChars(pattern: string): boolean {
  return pattern.includes("*") || pattern.includes("?");
}

/** The compiled glob for `pattern`, from a bounded cache. */
export function compileGlob(pattern: string): Glob {
  return cached(globCache, pattern, false);
}

/** `text` as a pattern with no wildcards (`*` and `?` literal): for display names, which are not globs. */
export function compileLiteral(text: string): Glob {
  return cached(literalCache, text, true);
}

/** The compiled literal for `text` if one is cached already; lets callers run a cheaper pre-check first. */
export function cachedLiteral(text: string): Glob | undefined {
  return literalCache.get(text);
}

/**
 * A cheap necessary condition for case-insensitive containment: if a literal `needle` matches a substring of
 * `haystack` under simple case folding, then `foldForSearch(needle)` is a substring of `foldForSearch(haystack)`.
 * Lowercasing then uppercasing maps every member of a simple-case-folding class (σ/ς/Σ, k/K/K, s/S/ſ, ß/ẞ…) to the
 * same string (test/core/push/glob.test.ts checks this over all of Unicode); the converse need not hold, so a hit
 * must still be confirmed with the real matcher.
 */
export function foldForSearch(text: string): string {
  return text.toLowerCase().toUpperCase();
}

// ---------------------------------------------------------------------------------------------------------------

const globCache = new Map<string, CompiledGlob>();
const literalCache = new Map<string, CompiledGlob>();

function cached(cache: Map<string, CompiledGlob>, pattern: string, literal: boolean): CompiledGlob {
  let glob = cache.get(pattern);
  if (glob === undefined) {
    // Oldest-first eviction (Map keeps insertion order): cheap, and a re-compile is only a RegExp away.
    if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
    glob = new CompiledGlob(pattern, literal);
    cache.set(pattern, glob);
  }
  return glob;
}

/** A run of literal characters and `?`: its RegExp source, a RegExp (null when empty), its length in code points. */
interface Segment {
  source: string;
  re: RegExp | null;
  length: number;
}

// Where an occurrence of a segment must sit.
const ANYWHERE = 0;
const AFTER_BOUNDARY = 1;
const BEFORE_BOUNDARY = 2;
const BETWEEN_BOUNDARIES = 3;

class CompiledGlob implements Glob {
  /** The pattern split at runs of `*`: one segment when there is no `*`. */
  private readonly segments: Segment[];
  /** Whole-value matching, built on first use: the anchored pattern, or its first and last segments anchored. */
  private whole: RegExp | undefined;
  private prefix: RegExp | null | undefined;
  private suffix: RegExp | null | undefined;

  constructor(pattern: string, literal: boolean) {
    this.segments = (literal ? [pattern] : pattern.split(/\*+/)).map((text) => {
      const source = segmentSource(text, literal);
      return { source, re: source === "" ? null : new RegExp(source, "gisu"), length: [...text].length };
    });
  }

  matchesWhole(value: string): boolean {
    const segments = this.segments;
    if (segments.length === 1) {
      this.whole ??= new RegExp(`^(?:${(segments[0] as Segment).source})$`, "isu");
      return this.whole.test(value);
    }
    // S0*S1*…*Sk: S0 at the start, S1…Sk-1 each as early as possible, Sk ending at the end (and not overlapping).
    if (this.prefix === undefined) {
      const first = segments[0] as Segment;
      const last = segments[segments.length - 1] as Segment;
      this.prefix = first.re && new RegExp(first.source, "yisu");
      this.suffix = last.re && new RegExp(`(?:${last.source})$`, "gisu");
    }
    let at = 0;
    if (this.prefix) {
      this.prefix.lastIndex = 0;
      if (!this.prefix.test(value)) return false;
      at = this.prefix.lastIndex;
    }
    for (let i = 1; i < segments.length - 1; i++) {
      at = findSegment(segments[i] as Segment, value, at, ANYWHERE);
      if (at < 0) return false;
    }
    if (!this.suffix) return true;
    this.suffix.lastIndex = at;
    return this.suffix.test(value);
  }

  matchesWords(value: string): boolean {
    const segments = this.segments;
    if (segments.length === 1) return findSegment(segments[0] as Segment, value, 0, BETWEEN_BOUNDARIES) >= 0;
    // The earliest start after a boundary leaves the most room for the rest, so one greedy pass decides.
    let at = findSegment(segments[0] as Segment, value, 0, AFTER_BOUNDARY);
    for (let i = 1; i < segments.length - 1 && at >= 0; i++) {
      at = findSegment(segments[i] as Segment, value, at, ANYWHERE);
    }
    return at >= 0 && findSegment(segments[segments.length - 1] as Segment, value, at, BEFORE_BOUNDARY) >= 0;
  }
}

/** RegExp source for a segment: `?` is any one code point (with the `s` flag, newlines too), the rest literal. */
function segmentSource(text: string, literal: boolean): string {
  let source = "";
  for (const ch of text) {
    if (ch === "?" && !literal) source += ".";
    else source += escapeChar(ch);
  }
  return source;
}

function escapeChar(ch: string): string {
  if ("^$\\.*+?()[]{}|/".includes(ch)) return `\\${ch}`;
  const code = ch.charCodeAt(0);
  // A lone surrogate is written as an escape so it can never pair up with a neighbour in the source.
  if (ch.length === 1 && code >= 0xd800 && code <= 0xdfff) return `\\u{${code.toString(16)}}`;
  return ch;
}

/**
 * Finds the first occurrence of `segment` in `value` starting at or after `from` that sits where `where` says, and
 * returns the index just past it, or -1. Uses RegExp.test (no match array is allocated) and derives the start from
 * the end, since a segment always spans the same number of code points.
 */
function findSegment(segment: Segment, value: string, from: number, where: number): number {
  const re = segment.re;
  if (re === null) {
    // An empty segment occurs at every code point position.
    for (let at = from; at <= value.length; at += codePointLength(value, at)) {
      if (sitsWell(value, at, at, where)) return at;
    }
    return -1;
  }
  re.lastIndex = from;
  while (re.test(value)) {
    const end = re.lastIndex;
    const start = backCodePoints(value, end, segment.length);
    if (sitsWell(value, start, end, where)) return end;
    re.lastIndex = start + codePointLength(value, start);
  }
  return -1;
}

function sitsWell(value: string, start: number, end: number, where: number): boolean {
  if (where & AFTER_BOUNDARY && start > 0 && isWordChar(value.charCodeAt(start - 1))) return false;
  if (where & BEFORE_BOUNDARY && end < value.length && isWordChar(value.charCodeAt(end))) return false;
  return true;
}

/** `[A-Za-z0-9_]`: the characters that are not word boundaries. */
function isWordChar(code: number): boolean {
  return (code >= 0x61 && code <= 0x7a) || (code >= 0x41 && code <= 0x5a) || (code >= 0x30 && code <= 0x39) || code === 0x5f;
}

function isHigh(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function isLow(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** UTF-16 length of the code point at `at` (1 at the end of the string, so loops terminate). */
function codePointLength(value: string, at: number): number {
  return isHigh(value.charCodeAt(at)) && isLow(value.charCodeAt(at + 1)) ? 2 : 1;
}

/** The index `count` code points before `end`. */
function backCodePoints(value: string, end: number, count: number): number {
  let at = end;
  for (let i = 0; i < count; i++) {
    at -= at >= 2 && isLow(value.charCodeAt(at - 1)) && isHigh(value.charCodeAt(at - 2)) ? 2 : 1;
  }
  return at;
}
