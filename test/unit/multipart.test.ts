/** multipart/mixed as the federation media endpoints use it: the writer's framing, the push parser, and bad input. */
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  MultipartError,
  MultipartParser,
  boundaryOf,
  fileNameOfDisposition,
  multipartContentType,
  multipartFrame,
  newBoundary,
  type MultipartEvent,
  type PartHeaders,
} from "../../src/services/media/multipart.js";

interface Part {
  headers: PartHeaders;
  body: Buffer;
}

/** Feeds `input` in the given chunk sizes (cycled) and collects the parts. */
function parse(boundary: string, input: Buffer, sizes: number[] = [input.length || 1]): { parts: Part[]; ended: boolean } {
  const parser = new MultipartParser(boundary);
  const parts: Part[] = [];
  const chunks: Buffer[][] = [];
  let ended = false;
  const on = (events: MultipartEvent[]) => {
    for (const e of events) {
      if (e.type === "part") {
        parts.push({ headers: e.headers, body: Buffer.alloc(0) });
        chunks.push([]);
      } else if (e.type === "data") chunks[chunks.length - 1]!.push(e.data);
      else ended = true;
    }
  };
  for (let off = 0, i = 0; off < input.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length]!);
    on(parser.write(input.subarray(off, off + n)));
    off += n;
  }
  parser.end();
  parts.forEach((p, i) => (p.body = Buffer.concat(chunks[i]!)));
  return { parts, ended };
}

function frame(boundary: string, body: Buffer, headers: Record<string, string> = { "Content-Type": "image/png" }): Buffer {
  const { head, tail } = multipartFrame(boundary, {}, headers);
  return Buffer.concat([head, body, tail]);
}

describe("writer", () => {
  it("frames a JSON metadata part and the media part with its headers", () => {
    const { head, tail } = multipartFrame("b0undary", {}, { "Content-Type": "text/plain", "Content-Disposition": 'inline; filename="a.txt"' });
    expect(head.toString()).toBe('--b0undary\r\nContent-Type: application/json\r\n\r\n{}\r\n--b0undary\r\nContent-Type: text/plain\r\nContent-Disposition: inline; filename="a.txt"\r\n\r\n');
    expect(tail.toString()).toBe("\r\n--b0undary--\r\n");
    expect(multipartContentType("b0undary")).toBe("multipart/mixed; boundary=b0undary");
  });

  it("refuses header injection", () => {
    expect(() => multipartFrame("b", {}, { "Content-Type": "text/plain\r\nX-Evil: 1" })).toThrow();
    expect(() => multipartFrame("b", {}, { "Bad Name": "x" })).toThrow();
  });

  it("makes fresh 32-hex-digit boundaries", () => {
    const a = newBoundary();
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(newBoundary()).not.toBe(a);
  });
});

describe("boundaryOf", () => {
  it("reads the boundary parameter, quoted or not, of multipart/mixed only", () => {
    expect(boundaryOf("multipart/mixed; boundary=abc")).toBe("abc");
    expect(boundaryOf('Multipart/Mixed;charset=x; BOUNDARY="a b:c"')).toBe("a b:c");
    expect(boundaryOf("multipart/form-data; boundary=abc")).toBeUndefined();
    expect(boundaryOf("multipart/mixed")).toBeUndefined();
    expect(boundaryOf(`multipart/mixed; boundary=${"x".repeat(71)}`)).toBeUndefined();
    expect(boundaryOf(undefined)).toBeUndefined();
  });
});

describe("parser", () => {
  const boundary = newBoundary();
  const body = Buffer.concat([randomBytes(5000), Buffer.from(`\r\n--${boundary.slice(0, 10)}`), randomBytes(3000)]);
  const input = frame(boundary, body);

  it("parses the writer's output whole", () => {
    const { parts, ended } = parse(boundary, input);
    expect(ended).toBe(true);
    expect(parts).toHaveLength(2);
    expect(parts[0]!.headers.get("content-type")).toBe("application/json");
    expect(parts[0]!.body.toString()).toBe("{}");
    expect(parts[1]!.headers.get("content-type")).toBe("image/png");
    expect(parts[1]!.body.equals(body)).toBe(true);
  });

  it("gives the same parts however the input is split (a delimiter across chunks, single bytes)", () => {
    for (const sizes of [[1], [2, 3], [7], [boundary.length + 3], [4096, 1, 13]]) {
      const { parts } = parse(boundary, input, sizes);
      expect(parts[1]!.body.equals(body), String(sizes)).toBe(true);
      expect(parts[0]!.body.toString()).toBe("{}");
    }
  });

  it("accepts a preamble, transport padding after a delimiter, a part without headers, and ignores the epilogue", () => {
    const text = `preamble\r\n--${boundary}  \r\nContent-Type: application/json\r\n\r\n{}\r\n--${boundary}\r\n\r\nraw\r\n--${boundary}--\r\nepilogue`;
    const { parts, ended } = parse(boundary, Buffer.from(text), [3]);
    expect(ended).toBe(true);
    expect(parts.map((p) => p.body.toString())).toEqual(["{}", "raw"]);
    expect(parts[1]!.headers.size).toBe(0);
  });

  it("keeps an empty body", () => {
    const { parts } = parse(boundary, frame(boundary, Buffer.alloc(0)));
    expect(parts[1]!.body.length).toBe(0);
  });

  it("reads a Location part", () => {
    const { parts } = parse(boundary, frame(boundary, Buffer.alloc(0), { Location: "https://cdn.example/x" }));
    expect(parts[1]!.headers.get("location")).toBe("https://cdn.example/x");
  });

  it("throws MultipartError on malformed input, never anything else", () => {
    const bad = [
      "", // nothing
      `--${boundary}\r\nContent-Type: application/json\r\n\r\n{}`, // no close delimiter
      `--${boundary}\r\nno colon here\r\n\r\nx\r\n--${boundary}--`, // header line without a name
      `--${boundary}\r\nBad Name: x\r\n\r\nx\r\n--${boundary}--`, // space in a header name
      `--${boundary}garbage\r\n\r\nx\r\n--${boundary}--`, // junk after the delimiter
      `--${boundary}\r\nX: ${"a".repeat(20_000)}`, // endless headers
      "x".repeat(20_000), // no boundary at all
    ];
    for (const text of bad) {
      let thrown: unknown;
      try {
        parse(boundary, Buffer.from(text), [5]);
      } catch (e) {
        thrown = e;
      }
      expect(thrown, JSON.stringify(text.slice(0, 40))).toBeInstanceOf(MultipartError);
    }
  });

  it("holds back no more than a delimiter's length of body", () => {
    const parser = new MultipartParser(boundary);
    parser.write(Buffer.from(`--${boundary}\r\nContent-Type: x/y\r\n\r\n`));
    const events = parser.write(Buffer.alloc(10_000, 0x61));
    const data = events.filter((e) => e.type === "data").reduce((n, e) => n + (e.type === "data" ? e.data.length : 0), 0);
    expect(data).toBeGreaterThanOrEqual(10_000 - boundary.length - 4);
  });
});

describe("fileNameOfDisposition", () => {
  it("prefers filename* (RFC 5987) over filename, unescapes quotes", () => {
    expect(fileNameOfDisposition('inline; filename="cat.png"')).toBe("cat.png");
    expect(fileNameOfDisposition('attachment; filename="a \\"b\\".txt"')).toBe('a "b".txt');
    expect(fileNameOfDisposition("attachment; filename=plain.txt")).toBe("plain.txt");
    expect(fileNameOfDisposition("attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf")).toBe("résumé.pdf");
    expect(fileNameOfDisposition("attachment; filename=\"x\"; filename*=UTF-8''%E2%9C%93")).toBe("✓");
    expect(fileNameOfDisposition("attachment; filename*=utf-8''%ZZ")).toBeNull();
    expect(fileNameOfDisposition("attachment")).toBeNull();
    expect(fileNameOfDisposition(undefined)).toBeNull();
  });
});
