/**
 * Ranking for POST /search (services/search.ts): the relevance score, `rank` pages over windows of the newest
 * matches (each result exactly once, windows newest first, a pinned first window), and the estimated `count`.
 * The index is a fake: rows newest first below a bound, as SearchStore.newest answers.
 */
import { describe, expect, it } from "vitest";
import { estimateCount, RankedMatches, relevance } from "../../src/services/search.js";
import type { SearchQuery, SearchRow } from "../../src/storage/search.js";

const q: SearchQuery = { words: ["cat"], rooms: [{ roomId: "!r:x" }], keys: ["content.body"] };

function fakeIndex(rows: SearchRow[]) {
  return {
    newest: async (_q: SearchQuery, below: number | undefined, limit: number) =>
      rows
        .filter((r) => below === undefined || r.stream_ordering < below)
        .sort((a, b) => b.stream_ordering - a.stream_ordering)
        .slice(0, limit),
  };
}

const row = (stream: number, value: string): SearchRow => ({ event_id: `$${stream}`, room_id: "!r:x", sender: "@u:x", stream_ordering: stream, value });

async function walk(m: RankedMatches, pageSize: number) {
  const seen: { stream: number; rank: number; window?: number }[] = [];
  let cursor: { stream: number; rank?: number; window?: number } | undefined;
  for (let i = 0; i < 100; i++) {
    const { hits, end } = await m.after(cursor, pageSize);
    seen.push(...hits.map((h) => ({ stream: h.stream_ordering, rank: h.rank, window: h.window })));
    if (end || hits.length === 0) break;
    const last = hits[hits.length - 1]!;
    cursor = { stream: last.stream_ordering, rank: last.rank, window: last.window };
  }
  return seen;
}

describe("search ranking", () => {
  it("relevance: more of the words scores higher, a longer text lower, a stemmed match at least once", () => {
    expect(relevance(["cat"], "cat cat cat")).toBeGreaterThan(relevance(["cat"], "cat"));
    expect(relevance(["cat"], "cat")).toBeGreaterThan(relevance(["cat"], "cat and a great many other words about nothing in particular"));
    expect(relevance(["cat", "dog"], "cat dog")).toBeGreaterThan(relevance(["cat"], "cat dog"));
    expect(relevance(["running"], "he runs")).toBeGreaterThan(0);
    expect(relevance(["cat"], "Catalogue")).toBe(relevance(["cat"], "cat"));
  });

  it("rank: fewer matches than a window are ordered by relevance alone, each once", async () => {
    const rows = [row(1, "cat"), row(2, "cat cat cat"), row(3, "cat and more words here"), row(4, "cat cat")];
    const seen = await walk(new RankedMatches(fakeIndex(rows), q, 10), 1);
    expect(seen.map((s) => s.stream)).toEqual([2, 4, 1, 3]);
  });

  it("rank: over several windows, every match exactly once, by relevance within each window, windows newest first", async () => {
    const rows = Array.from({ length: 23 }, (_, i) => row(100 + i, `${"cat ".repeat(1 + (i % 4))}filler`));
    const seen = await walk(new RankedMatches(fakeIndex(rows), q, 5), 3);
    expect(seen).toHaveLength(23);
    expect(new Set(seen.map((s) => s.stream)).size).toBe(23);
    // Five windows of 5, 5, 5, 5 and 3, from the newest down.
    const windows = [...new Set(seen.map((s) => s.window))];
    expect(windows).toHaveLength(5);
    for (let w = 0; w < windows.length; w++) {
      const inW = seen.filter((s) => s.window === windows[w]);
      for (let i = 1; i < inW.length; i++) expect(inW[i]!.rank).toBeLessThanOrEqual(inW[i - 1]!.rank);
      if (w > 0) expect(Math.max(...inW.map((s) => s.stream))).toBeLessThan(Math.min(...seen.filter((s) => s.window === windows[w - 1]).map((s) => s.stream)));
    }
  });

  it("rank: the first window is pinned, so matches arriving between pages never repeat a result", async () => {
    const rows = Array.from({ length: 8 }, (_, i) => row(10 + i, `cat ${"x ".repeat(i)}`));
    const index = fakeIndex(rows);
    const first = await new RankedMatches(index, q, 4).after(undefined, 2);
    rows.push(row(50, "cat cat cat cat"), row(51, "cat cat cat cat"));
    const last = first.hits[first.hits.length - 1]!;
    // Continue from the first page's cursor with the newer rows present.
    const seen = first.hits.map((h) => h.stream_ordering);
    let cursor: { stream: number; rank?: number; window?: number } | undefined = { stream: last.stream_ordering, rank: last.rank, window: last.window };
    for (let i = 0; i < 20 && cursor; i++) {
      const page = await new RankedMatches(index, q, 4).after(cursor, 2);
      seen.push(...page.hits.map((h) => h.stream_ordering));
      const l = page.hits[page.hits.length - 1];
      cursor = page.end || !l ? undefined : { stream: l.stream_ordering, rank: l.rank, window: l.window };
    }
    expect(seen.sort((a, b) => a - b)).toEqual([10, 11, 12, 13, 14, 15, 16, 17]);
  });

  it("count: estimated from the density of the newest matches over the whole span", () => {
    // 2,000 newest in consecutive stream orderings, the oldest a million back: a match per stream ordering.
    const newest = Array.from({ length: 2000 }, (_, i) => 1_000_099 - i);
    expect(estimateCount(newest, 100)).toBe(1_000_000);
    // Every other stream ordering, back to 1.
    const sparse = Array.from({ length: 2000 }, (_, i) => 10_000 - 2 * i);
    expect(Math.abs(estimateCount(sparse, 2) - 5000)).toBeLessThanOrEqual(1);
    // Never below what was seen.
    expect(estimateCount(newest, 1_000_099)).toBe(2001);
  });
});
