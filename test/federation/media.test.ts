/**
 * Media across servers (server-server API "Content Repository"): a user of hs2 downloads and thumbnails media
 * uploaded on hs1 through hs2's authenticated client endpoints; hs2 fetches it once (single-flight) and serves it
 * from its cache after; the legacy fallback for an origin without the federation endpoint; the size limit; unknown
 * media; backoff after a failing origin; and hs1's federation endpoints as raw signed multipart/mixed. hs1 sits
 * behind a FederationProxy that counts what reaches it.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FederationError } from "../../src/federation/errors.js";
import { MultipartParser, boundaryOf, type PartHeaders } from "../../src/services/media/multipart.js";
import { FederationProxy } from "../helpers/fed_proxy.js";
import { startServerPair } from "../helpers/federation.js";
import { registerUser, type TestUser } from "../helpers/http.js";
import { CLIENT_MEDIA, MEDIA_V3, expectMatrixError, rawRequest, upload } from "../helpers/media.js";
import type { TestServer } from "../helpers/server.js";

const FED_MEDIA = "/_matrix/federation/v1/media";
/** hs2's max_upload_size: small, to test refusing a larger remote file. */
const HS2_MAX_UPLOAD = 1024 * 1024;
const CSP = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

let hs1: TestServer;
let hs2: TestServer;
let proxy: FederationProxy;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  const pair = await startServerPair({
    // hs1 also serves the legacy /_matrix/media endpoints on its federation listener (for the fallback), and its
    // media stays servable by them.
    hs1: { tlsResources: ["federation", "keys", "media"], config: { enable_authenticated_media: false } },
    // hs2 may follow a `Location` to 127.0.0.1 (the proxy, with its self-signed certificate).
    hs2: { config: { max_upload_size: HS2_MAX_UPLOAD, ip_range_whitelist: ["127.0.0.1/32"], use_insecure_ssl_client_just_for_testing_do_not_use: true } },
  });
  ({ hs1, hs2 } = pair);
  proxy = await new FederationProxy(hs1.tlsPort!).start(pair.network, "hs1.test");
  proxy.passRaw = true;
  alice = await registerUser(pair.c1);
  bob = await registerUser(pair.c2);
});
afterAll(async () => {
  await proxy?.close();
  await Promise.all([hs1?.close(), hs2?.close()]);
});

/** Requests for one media id that reached hs1 (through the proxy), federation and legacy. */
const originRequests = (mediaId: string) => proxy.seen.filter((r) => r.path.includes(mediaId));
const viaHs2 = (path: string) => rawRequest(hs2.baseUrl, "GET", path, { token: bob.accessToken });
const download = (mediaId: string, suffix = "") => viaHs2(`${CLIENT_MEDIA}/download/hs1.test/${mediaId}${suffix}`);

describe("downloading remote media", () => {
  it("serves hs1's media through hs2 byte for byte, with its type, name and the safety headers, then from the cache", async () => {
    const bytes = randomBytes(300_000);
    const up = await upload(hs1.baseUrl, alice, bytes, { contentType: "application/pdf", filename: "résumé.pdf" });
    const res = await download(up.mediaId);
    expect(res.status, res.bytes.toString().slice(0, 200)).toBe(200);
    expect(res.bytes.equals(bytes)).toBe(true);
    expect(res.headers.get("content-type")).toBe("application/pdf");
    expect(res.headers.get("content-length")).toBe(String(bytes.length));
    expect(res.headers.get("content-disposition")).toBe("attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf");
    expect(res.headers.get("content-security-policy")).toBe(CSP);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(originRequests(up.mediaId).map((r) => r.path)).toEqual([`${FED_MEDIA}/download/${up.mediaId}`]);

    const again = await download(up.mediaId, "/other.pdf");
    expect(again.status).toBe(200);
    expect(again.bytes.equals(bytes)).toBe(true);
    expect(again.headers.get("content-disposition")).toBe('attachment; filename="other.pdf"');
    expect(originRequests(up.mediaId)).toHaveLength(1);

    const row = await hs2.server.services.storage.media.getRemote("hs1.test", up.mediaId);
    expect(row).toMatchObject({ media_type: "application/pdf", upload_name: "résumé.pdf", media_length: bytes.length });
    expect(row!.last_access_ts).not.toBeNull();
    expect(row!.filesystem_id).not.toBe(up.mediaId);
    const file = join(hs2.dataDir, "media", "remote_content", "hs1.test", row!.filesystem_id.slice(0, 2), row!.filesystem_id.slice(2, 4), row!.filesystem_id.slice(4));
    expect(existsSync(file)).toBe(true);
  });

  it("makes one fetch for concurrent downloads of the same file", async () => {
    const bytes = randomBytes(200_000);
    const up = await upload(hs1.baseUrl, alice, bytes, { contentType: "image/png" });
    const all = await Promise.all(Array.from({ length: 6 }, () => download(up.mediaId)));
    for (const r of all) {
      expect(r.status).toBe(200);
      expect(r.bytes.equals(bytes)).toBe(true);
    }
    expect(originRequests(up.mediaId)).toHaveLength(1);
  });

  it("answers 404 M_NOT_FOUND for media hs1 does not have, and never asks with allow_remote=false or for our own name", async () => {
    expectMatrixError(await download("NoSuchMediaAnywhere0001"), 404, "M_NOT_FOUND");
    expect(originRequests("NoSuchMediaAnywhere0001")).toHaveLength(1);

    const up = await upload(hs1.baseUrl, alice, "hello", { contentType: "text/plain" });
    expectMatrixError(await download(up.mediaId, "?allow_remote=false"), 404, "M_NOT_FOUND");
    expect(originRequests(up.mediaId)).toHaveLength(0);
    expectMatrixError(await viaHs2(`${CLIENT_MEDIA}/download/hs2.test/${up.mediaId}`), 404, "M_NOT_FOUND");
    expect(originRequests(up.mediaId)).toHaveLength(0);
    // Legacy unauthenticated endpoints of hs2 (enable_authenticated_media) do not fetch remote media either.
    expectMatrixError(await rawRequest(hs2.baseUrl, "GET", `${MEDIA_V3}/download/hs1.test/${up.mediaId}`), 404, "M_NOT_FOUND");
    expect(originRequests(up.mediaId)).toHaveLength(0);
  });

  it("falls back to the legacy download endpoint when the origin lacks the federation one", async () => {
    const bytes = randomBytes(50_000);
    const up = await upload(hs1.baseUrl, alice, bytes, { contentType: "image/jpeg", filename: "old.jpg" });
    proxy.intercept = (r) => (r.path.startsWith(FED_MEDIA) ? { status: 404, body: { errcode: "M_UNRECOGNIZED", error: "Unrecognized request" } } : undefined);
    try {
      const res = await download(up.mediaId);
      expect(res.status, res.bytes.toString().slice(0, 200)).toBe(200);
      expect(res.bytes.equals(bytes)).toBe(true);
      expect(res.headers.get("content-type")).toBe("image/jpeg");
      expect(res.headers.get("content-disposition")).toBe('inline; filename="old.jpg"');
    } finally {
      proxy.intercept = undefined;
    }
    const seen = originRequests(up.mediaId);
    expect(seen.map((r) => r.path)).toEqual([`${FED_MEDIA}/download/${up.mediaId}`, `${MEDIA_V3}/download/hs1.test/${up.mediaId}`]);
    expect(seen[1]!.query.get("allow_remote")).toBe("false");
    expect(seen[1]!.query.get("allow_redirect")).toBe("true");
  });

  it("follows a Location part: the file is fetched from there (streamed to disk) and served", async () => {
    const bytes = randomBytes(300_000);
    const mediaId = `loc${randomBytes(8).toString("hex")}`;
    const boundary = "locboundary42";
    proxy.intercept = (r) => {
      if (r.path === `${FED_MEDIA}/download/${mediaId}`) {
        const body = Buffer.from(
          `--${boundary}\r\nContent-Type: application/json\r\n\r\n{}\r\n--${boundary}\r\nLocation: https://127.0.0.1:${proxy.port}/elsewhere/${mediaId}\r\n\r\n\r\n--${boundary}--\r\n`,
        );
        return { status: 200, body: undefined, raw: { headers: { "content-type": `multipart/mixed; boundary=${boundary}` }, bytes: body } };
      }
      if (r.path === `/elsewhere/${mediaId}`) return { status: 200, body: undefined, raw: { headers: { "content-type": "image/png", "content-disposition": 'attachment; filename="far.png"' }, bytes } };
      return undefined;
    };
    try {
      const res = await download(mediaId);
      expect(res.status, res.bytes.toString().slice(0, 200)).toBe(200);
      expect(res.bytes.equals(bytes)).toBe(true);
      expect(res.headers.get("content-type")).toBe("image/png");
      // From the cache afterwards: neither the origin nor the Location is asked again.
      const again = await download(mediaId);
      expect(again.bytes.equals(bytes)).toBe(true);
    } finally {
      proxy.intercept = undefined;
    }
    expect(originRequests(mediaId).map((r) => r.path)).toEqual([`${FED_MEDIA}/download/${mediaId}`, `/elsewhere/${mediaId}`]);
  });

  it("refuses a remote file over max_upload_size with 502 M_TOO_LARGE, storing nothing", async () => {
    const up = await upload(hs1.baseUrl, alice, randomBytes(HS2_MAX_UPLOAD + 1000), { contentType: "application/octet-stream" });
    expectMatrixError(await download(up.mediaId), 502, "M_TOO_LARGE");
    expect(await hs2.server.services.storage.media.getRemote("hs1.test", up.mediaId)).toBeUndefined();
    expect(readdirSync(join(hs2.dataDir, "media", "tmp"))).toEqual([]);
    // Not a failing origin: the next request asks again.
    expectMatrixError(await download(up.mediaId), 502, "M_TOO_LARGE");
    expect(originRequests(up.mediaId)).toHaveLength(2);
  });
});

describe("remote thumbnails", () => {
  it("thumbnails a real PNG from hs1 on hs2, from the cached original (as Synapse: the origin is asked for the file only)", async () => {
    const png = await sharp({ create: { width: 640, height: 480, channels: 3, background: { r: 200, g: 30, b: 90 } } }).png().toBuffer();
    const up = await upload(hs1.baseUrl, alice, png, { contentType: "image/png", filename: "red.png" });
    const res = await viaHs2(`${CLIENT_MEDIA}/thumbnail/hs1.test/${up.mediaId}?width=96&height=96&method=crop`);
    expect(res.status, res.bytes.toString().slice(0, 200)).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^image\/(png|jpeg|webp)$/);
    expect(res.headers.get("content-security-policy")).toBe(CSP);
    const meta = await sharp(res.bytes).metadata();
    expect([meta.width, meta.height]).toEqual([96, 96]);

    const scaled = await viaHs2(`${CLIENT_MEDIA}/thumbnail/hs1.test/${up.mediaId}?width=320&height=320&method=scale`);
    expect(scaled.status).toBe(200);
    const m2 = await sharp(scaled.bytes).metadata();
    expect(m2.width! <= 640 && m2.width! >= 320).toBe(true);
    expect(m2.width! / m2.height!).toBeCloseTo(4 / 3, 1);

    expect(originRequests(up.mediaId).map((r) => r.path)).toEqual([`${FED_MEDIA}/download/${up.mediaId}`]);
    expect((await hs2.server.services.storage.media.remoteThumbnails("hs1.test", up.mediaId)).length).toBeGreaterThan(0);
  });

  it("answers 400 for a remote file that is not an image", async () => {
    const up = await upload(hs1.baseUrl, alice, "just text", { contentType: "text/plain" });
    expectMatrixError(await viaHs2(`${CLIENT_MEDIA}/thumbnail/hs1.test/${up.mediaId}?width=32&height=32`), 400, "M_UNKNOWN");
  });
});

/** A signed GET from hs2 to hs1 over the federation transport, body read whole. */
async function signedGet(path: string, query: Record<string, string | number> = {}): Promise<{ status: number; contentType: string | undefined; body: Buffer; errcode?: string }> {
  try {
    const res = await hs2.server.services.federationClient.requestStream({ method: "GET", destination: "hs1.test", path, query });
    const chunks: Buffer[] = [];
    for await (const c of res.body as AsyncIterable<Buffer>) chunks.push(c);
    return { status: res.status, contentType: res.headers["content-type"], body: Buffer.concat(chunks) };
  } catch (e) {
    if (e instanceof FederationError && e.reason === "http") return { status: e.status!, contentType: undefined, body: Buffer.from(e.message), errcode: e.errcode };
    throw e;
  }
}

function parseMultipart(contentType: string | undefined, body: Buffer): { headers: PartHeaders; body: Buffer }[] {
  const boundary = boundaryOf(contentType);
  expect(boundary).toBeDefined();
  const parser = new MultipartParser(boundary!);
  const parts: { headers: PartHeaders; chunks: Buffer[] }[] = [];
  let ended = false;
  for (const e of parser.write(body)) {
    if (e.type === "part") parts.push({ headers: e.headers, chunks: [] });
    else if (e.type === "data") parts[parts.length - 1]!.chunks.push(e.data);
    else ended = true;
  }
  parser.end();
  expect(ended).toBe(true);
  return parts.map((p) => ({ headers: p.headers, body: Buffer.concat(p.chunks) }));
}

describe("the federation endpoints (raw signed HTTP)", () => {
  it("download answers multipart/mixed: {} metadata, then the bytes with type and disposition", async () => {
    const bytes = randomBytes(70_000);
    const up = await upload(hs1.baseUrl, alice, bytes, { contentType: "image/png", filename: "x.png" });
    const res = await signedGet(`${FED_MEDIA}/download/${encodeURIComponent(up.mediaId)}`);
    expect(res.status, res.body.toString().slice(0, 300)).toBe(200);
    expect(res.contentType).toMatch(/^multipart\/mixed; boundary=[0-9a-f]{32}$/);
    const boundary = boundaryOf(res.contentType)!;
    expect(res.body.subarray(0, boundary.length + 2).toString()).toBe(`--${boundary}`);
    expect(res.body.subarray(-(boundary.length + 8)).toString()).toBe(`\r\n--${boundary}--\r\n`);
    const parts = parseMultipart(res.contentType, res.body);
    expect(parts).toHaveLength(2);
    expect(parts[0]!.headers.get("content-type")).toBe("application/json");
    expect(JSON.parse(parts[0]!.body.toString())).toEqual({});
    expect(parts[1]!.headers.get("content-type")).toBe("image/png");
    expect(parts[1]!.headers.get("content-disposition")).toBe('inline; filename="x.png"');
    expect(parts[1]!.body.equals(bytes)).toBe(true);
  });

  it("thumbnail answers multipart/mixed with a thumbnail", async () => {
    const png = await sharp({ create: { width: 200, height: 100, channels: 3, background: "#00ff00" } }).png().toBuffer();
    const up = await upload(hs1.baseUrl, alice, png, { contentType: "image/png" });
    const res = await signedGet(`${FED_MEDIA}/thumbnail/${encodeURIComponent(up.mediaId)}`, { width: 32, height: 32, method: "crop" });
    expect(res.status).toBe(200);
    const parts = parseMultipart(res.contentType, res.body);
    expect(parts[1]!.headers.get("content-type")).toMatch(/^image\//);
    const meta = await sharp(parts[1]!.body).metadata();
    expect([meta.width, meta.height]).toEqual([32, 32]);
  });

  it("errors: unknown media 404, a bad thumbnail request 400, no signature 401", async () => {
    const unknown = await signedGet(`${FED_MEDIA}/download/NoSuchMedia0000000000000`);
    expect([unknown.status, unknown.errcode]).toEqual([404, "M_NOT_FOUND"]);
    const up = await upload(hs1.baseUrl, alice, "x", { contentType: "text/plain" });
    const bad = await signedGet(`${FED_MEDIA}/thumbnail/${encodeURIComponent(up.mediaId)}`, { width: "wide", height: 32 });
    expect([bad.status, bad.errcode]).toEqual([400, "M_INVALID_PARAM"]);
    const missing = await signedGet(`${FED_MEDIA}/thumbnail/${encodeURIComponent(up.mediaId)}`);
    expect([missing.status, missing.errcode]).toEqual([400, "M_MISSING_PARAM"]);
    // Unsigned, on the plain listener (which serves the federation resource too):
    const unsigned = await rawRequest(hs1.baseUrl, "GET", `${FED_MEDIA}/download/${up.mediaId}`);
    expectMatrixError(unsigned, 401, "M_UNAUTHORIZED");
  });
});

describe("a failing origin", () => {
  // Last: hs1 is then backed off for a while.
  it("answers 502 M_UNKNOWN, and 502 at once (without asking) while backing off", async () => {
    const a = await upload(hs1.baseUrl, alice, "a", { contentType: "text/plain" });
    const b = await upload(hs1.baseUrl, alice, "b", { contentType: "text/plain" });
    proxy.intercept = (r) => (r.path.startsWith(FED_MEDIA) ? { status: 500, body: { errcode: "M_UNKNOWN", error: "boom" } } : undefined);
    try {
      expectMatrixError(await download(a.mediaId), 502, "M_UNKNOWN");
      expect(originRequests(a.mediaId)).toHaveLength(1);
      expectMatrixError(await download(b.mediaId), 502, "M_UNKNOWN");
      expect(originRequests(b.mediaId)).toHaveLength(0);
    } finally {
      proxy.intercept = undefined;
    }
  });
});
