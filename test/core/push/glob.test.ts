// Glob-style matching for push rules (src/core/push/glob.ts): `*` and `?`, regex metacharacters taken literally,
// whole-value vs word-boundary matching (the spec's `lunc?*` and `ex*ple` examples), Unicode simple case folding,
// and the fold used as a pre-check, verified over all of Unicode.
import { describe, expect, it } from "vitest";
import { compileGlob, compileLiteral, foldForSearch, hasGlobChars } from "../../../src/core/push/glob.js";

const whole = (pattern: string, value: string) => compileGlob(pattern).matchesWhole(value);
const words = (pattern: string, value: string) => compileGlob(pattern).matchesWords(value);

describe("whole-value matching", () => {
  it.each([
    // The spec's event_match example: key content.topic, pattern lunc?*.
    ["lunc?*", "Lunch plans", true],
    ["lunc?*", "LUNCH", true],
    ["lunc?*", " lunch", false],
    ["lunc?*", "lunc", false],
    // `*` matches zero or more, `?` exactly one.
    ["a*", "a", true],
    ["a*b", "ab", true],
    ["a*b", "a-long-way-b", true],
    ["a*b", "a-long-way-bc", false],
    ["a?b", "ab", false],
    ["a?b", "axb", true],
    ["a?b", "axxb", false],
    ["a??b", "axxb", true],
    ["?*?", "a", false],
    ["?*?", "ab", true],
    ["*", "", true],
    ["*", "anything at all", true],
    ["", "", true],
    ["", "x", false],
    ["ab*ba", "aba", false],
    ["ab*ba", "abba", true],
    ["ab*ba", "abxyba", true],
    ["*a*b*c*", "xaybzcw", true],
    ["*a*b*c*", "xcybza", false],
    ["a**b", "ab", true],
    // Anchored at both ends; the value is one line or many, `*` and `?` cross newlines.
    ["foobaz", "foobaz\nfoobaz", false],
    ["a*b", "a\nb", true],
    ["a?b", "a\nb", true],
    // `?` is one code point, even outside the BMP.
    ["?", "😀", true],
    ["??", "😀", false],
    ["x?y", "x😀y", true],
    ["😀*", "😀😀", true],
  ])("%j against %j: %s", (pattern, value, expected) => {
    expect(whole(pattern, value)).toBe(expected);
  });

  it.each([
    // Regex metacharacters in a pattern are literal characters.
    ["m.room.member", "m.room.member", true],
    ["m.room.member", "mXroomXmember", false],
    ["(x)", "(x)", true],
    ["(x)", "x", false],
    ["[ab]", "[ab]", true],
    ["[ab]", "a", false],
    ["\\d", "\\d", true],
    ["\\d", "1", false],
    ["\\", "\\", true],
    ["$5", "$5", true],
    ["^x$", "^x$", true],
    ["^x$", "x", false],
    ["a+", "a+", true],
    ["a+", "aa", false],
    ["a{2}", "a{2}", true],
    ["a{2}", "aa", false],
    ["a|b", "a|b", true],
    ["a|b", "a", false],
    ["a/b", "a/b", true],
    ["a-b", "a-b", true],
    [".*", "x", false], // `.` is literal, `*` a wildcard: ".*" needs a leading dot
    [".*", ".anything", true],
    // Lone surrogates are characters like any other.
    ["\ud800", "\ud800", true],
    ["?", "\udc00", true],
    ["\ud800?", "\ud800\udc00", false], // the pair is one code point, so nothing is left for `?`
  ])("metacharacters: %j against %j: %s", (pattern, value, expected) => {
    expect(whole(pattern, value)).toBe(expected);
  });
});

describe("case-insensitive with Unicode simple case folding", () => {
  it.each([
    ["É", "é", true],
    ["école", "ÉCOLE", true],
    ["σ", "Σ", true],
    ["σ", "ς", true],
    ["ΣΑΣ", "σας", true],
    ["k", "\u212a", true], // KELVIN SIGN folds to k
    ["s", "\u017f", true], // LATIN SMALL LETTER LONG S folds to s
    ["ß", "ẞ", true],
    ["ß", "ss", false], // simple folding maps one code point to one: no expansion
    // Turkish dotted and dotless i have no simple folding to i/I.
    ["i", "İ", false],
    ["I", "ı", false],
    ["İ", "İ", true],
    ["istanbul", "İSTANBUL", false],
    ["ıi", "ıI", true],
  ])("%j against %j: %s", (pattern, value, expected) => {
    expect(whole(pattern, value)).toBe(expected);
    expect(words(pattern, value)).toBe(expected);
  });
});

describe("word-boundary matching (content.body)", () => {
  it.each([
    // The spec's example: pattern ex*ple.
    ["ex*ple", "An example event.", true],
    ["ex*ple", "exple", true],
    ["ex*ple", "An exciting triple-whammy", true],
    ["ex*ple", "An examples event", false],
    // Synapse's cases for the same rule.
    ["foobaz", "aaa FoobaZ zzz", true],
    ["foobaz", "aa xFoobaZ yy", false],
    ["foobaz", "aa foobazx yy", false],
    ["f?o*baz", "aaa FoobarbaZ zzz", true],
    ["f?o*baz", "aa foobaz yy", true],
    ["f?o*baz", "aa fobbaz yy", false],
    ["f?o*baz", "aa fiiobaz yy", false],
    ["f?o*baz", "aa xfooxbaz yy", false],
    ["f?o*baz", "aa fooxbazx yy", false],
    ["f\\oobaz", "F\\oobaz", true],
    // Boundaries: start/end, punctuation, `-`, spaces, newlines and non-ASCII letters; `_` and digits are not.
    ["foo", "foo", true],
    ["foo", "x-foo-y", true],
    ["foo", "(foo)", true],
    ["foo", "foo.", true],
    ["foo", "line\nfoo\nline", true],
    ["foo", "éfooé", true],
    ["foo", "日本foo語", true],
    ["foo", "\u017ffoo\u017f", true], // ſ is not in [A-Za-z] although it folds to s
    ["foo", "\u212afoo", true], // nor is the Kelvin sign
    ["foo", "foo_bar", false],
    ["foo", "_foo", false],
    ["foo", "foo1", false],
    ["foo", "xfoo", false],
    // A match may span boundaries, and may itself start or end with one.
    ["foo bar", "a foo bar b", true],
    ["@room", "hello @room", true],
    ["@room", "@room!", true],
    ["@room", "@roomy", false],
    ["@room", "foo@room", false], // the character before the match must be a boundary
    ["a.b", "x a.b y", true],
    ["a.b", "x aXb y", false],
    // Stars at the edges.
    ["*foo", "xfoo bar", true],
    ["foo*", "a foox", true],
    ["foo*", "a xfoo", false],
    ["*", "", true],
    ["*", "anything", true],
  ])("%j in %j: %s", (pattern, value, expected) => {
    expect(words(pattern, value)).toBe(expected);
  });

  it("a later start is tried when the first occurrence is not at a boundary", () => {
    expect(words("ab", "xab ab")).toBe(true);
    expect(words("ab*c", "xab abc")).toBe(true);
    expect(words("ab*c", "xab abcx")).toBe(false);
    expect(words("ab*c", "xab abcx c")).toBe(true);
  });

  it("has no catastrophic backtracking on adversarial patterns", () => {
    const pattern = "*a*a*a*a*a*a*a*a*a*a*a*a*b";
    const value = "a".repeat(20_000);
    expect(whole(pattern, value)).toBe(false);
    expect(words(pattern, value)).toBe(false);
    expect(whole(pattern, value + "b")).toBe(true);
  });
});

describe("literals (display names)", () => {
  it("treats * and ? as ordinary characters", () => {
    expect(compileLiteral("Ca?rol").matchesWords("hi Ca?rol!")).toBe(true);
    expect(compileLiteral("Ca?rol").matchesWords("hi Caxrol!")).toBe(false);
    expect(compileLiteral("a*").matchesWhole("abc")).toBe(false);
    expect(compileGlob("a*").matchesWhole("abc")).toBe(true);
  });

  it("hasGlobChars", () => {
    expect(hasGlobChars("@alice:example.org")).toBe(false);
    expect(hasGlobChars("a*")).toBe(true);
    expect(hasGlobChars("a?")).toBe(true);
  });

  it("compiled patterns are cached", () => {
    expect(compileGlob("cached*pattern")).toBe(compileGlob("cached*pattern"));
    expect(compileLiteral("Cached Name")).toBe(compileLiteral("Cached Name"));
  });

  it("the cache is bounded yet keeps giving correct answers", () => {
    for (let i = 0; i < 10_000; i++) expect(compileGlob(`p${i}*`).matchesWhole(`p${i}x`)).toBe(true);
    expect(compileGlob("p0*").matchesWhole("p0")).toBe(true);
  });
});

describe("foldForSearch, the pre-check before compiling a literal", () => {
  // The pre-check is sound only if every simple-case-folding class (the characters one `iu` RegExp literal
  // accepts) lands on a single foldForSearch value. Check that for the classes of every cased code point.
  it("maps every member of a simple-case-folding class to the same string", () => {
    const hex = (cp: number) => `\\u{${cp.toString(16)}}`;
    const anyIn = (lo: number, hi: number, ch: string) => lo <= hi && new RegExp(`[${hex(lo)}-${hex(hi)}]`, "iu").test(ch);
    const equivalents = (cp: number): number[] => {
      const ch = String.fromCodePoint(cp);
      const found: number[] = [];
      const search = (lo: number, hi: number): void => {
        if (!anyIn(lo, hi, ch)) return;
        if (lo === hi) {
          found.push(lo);
          return;
        }
        const mid = (lo + hi) >> 1;
        search(lo, mid);
        search(mid + 1, hi);
      };
      search(0, cp - 1);
      search(cp + 1, 0x10ffff);
      return found;
    };
    const mismatches: string[] = [];
    let cased = 0;
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      const ch = String.fromCodePoint(cp);
      if (ch.toLowerCase() === ch && ch.toUpperCase() === ch) continue;
      cased++;
      for (const other of equivalents(cp)) {
        if (foldForSearch(String.fromCodePoint(other)) !== foldForSearch(ch)) mismatches.push(`${hex(cp)}~${hex(other)}`);
      }
    }
    expect(cased).toBeGreaterThan(2000);
    expect(mismatches).toEqual([]);
  }, 60_000);

  it("keeps containment", () => {
    expect(foldForSearch("Hello ΣΟΦΊΑ and Zoë").includes(foldForSearch("σοφία"))).toBe(true);
    expect(foldForSearch("\u212aelvin").includes(foldForSearch("kelvin"))).toBe(true);
  });
});
