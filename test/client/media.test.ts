/**
 * The content repository over real HTTP (spec "Content repository"): uploads and downloads byte for byte, the
 * headers media is served with, POST /create then PUT, waiting for a pending upload, the limits (max_upload_size,
 * media_upload_limits, max_pending_media_uploads, rc_media_create), the legacy endpoints under
 * enable_authenticated_media, and malformed or foreign ids.
 */
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { CLIENT_MEDIA, MEDIA_V3, expectMatrixError, rawRequest, upload, type Body } from "../helpers/media.js";
import { poll } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let c: Client;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  ts = await startTestServer({ config: { allow_guest_access: true } });
  c = new Client(ts.baseUrl);
  alice = await registerUser(c);
  bob = await registerUser(c);
});
afterAll(async () => {
  await ts?.close();
});

const get = (path: string, user?: TestUser) => rawRequest(ts.baseUrl, "GET", path, user ? { token: user.accessToken } : {});
const download = (mediaId: string, user: TestUser | null = bob, suffix = "") => get(`${CLIENT_MEDIA}/download/test.local/${mediaId}${suffix}`, user ?? undefined);

const CSP = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

describe("upload and download", () => {
  it("round-trips the exact bytes with their type, length, name and the safety headers", async () => {
    const bytes = Buffer.concat([Buffer.from([...Array(256).keys()]), randomBytes(100_000)]);
    const up = await upload(ts.baseUrl, alice, bytes, { contentType: "image/png", filename: "cat.png" });
    expect(up.serverName).toBe("test.local");
    expect(up.mediaId).toMatch(/^[A-Za-z0-9]{24}$/);

    const res = await download(up.mediaId);
    expect(res.status).toBe(200);
    expect(res.bytes.equals(bytes)).toBe(true);
    expect(res.headers.get("content-type")).toBe("image/png");
    expect(res.headers.get("content-length")).toBe(String(bytes.length));
    expect(res.headers.get("content-disposition")).toBe('inline; filename="cat.png"');
    expect(res.headers.get("content-security-policy")).toBe(CSP);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("cross-origin-resource-policy")).toBe("cross-origin");
    expect(res.headers.get("cache-control")).toBe("public, max-age=86400, s-maxage=0, proxy-revalidate");
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
  });

  it("defaults to application/octet-stream as an attachment without a name, and accepts r0 and v1 upload paths", async () => {
    for (const prefix of ["/_matrix/media/r0", "/_matrix/media/v1", MEDIA_V3]) {
      const res = await rawRequest(ts.baseUrl, "POST", `${prefix}/upload`, { token: alice.accessToken, body: new Uint8Array([1, 2, 3]) });
      expect(res.status, prefix).toBe(200);
      const mediaId = (res.json!.content_uri as string).split("/").pop()!;
      const dl = await download(mediaId);
      expect(dl.headers.get("content-type")).toBe("application/octet-stream");
      expect(dl.headers.get("content-disposition")).toBe("attachment");
      expect([...dl.bytes]).toEqual([1, 2, 3]);
    }
  });

  it("stores an empty upload", async () => {
    const up = await upload(ts.baseUrl, alice, Buffer.alloc(0), { contentType: "text/plain" });
    const res = await download(up.mediaId);
    expect(res.status).toBe(200);
    expect(res.bytes.length).toBe(0);
    expect(res.headers.get("content-length")).toBe("0");
  });

  it("serves text with charset=utf-8 unless it names one", async () => {
    const plain = await upload(ts.baseUrl, alice, "héllo", { contentType: "text/plain" });
    expect((await download(plain.mediaId)).headers.get("content-type")).toBe("text/plain; charset=utf-8");
    const latin = await upload(ts.baseUrl, alice, "hello", { contentType: "text/plain; charset=iso-8859-1" });
    expect((await download(latin.mediaId)).headers.get("content-type")).toBe("text/plain; charset=iso-8859-1");
  });

  it("a file name in the download path overrides the uploaded one", async () => {
    const up = await upload(ts.baseUrl, alice, "data", { contentType: "text/plain", filename: "original.txt" });
    const res = await download(up.mediaId, bob, "/renamed.txt");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-disposition")).toBe('inline; filename="renamed.txt"');
  });

  it.each([
    ["application/pdf", "report 2024.pdf", 'attachment; filename="report 2024.pdf"'],
    ["text/plain", "fête 🎉.txt", "inline; filename*=utf-8''f%C3%AAte%20%F0%9F%8E%89.txt"],
    ["text/plain", 'say "hi".txt', 'inline; filename="say \\"hi\\".txt"'],
    ["text/plain", "../../etc/passwd", 'inline; filename=".._.._etc_passwd"'],
    ["text/plain", "tab\there\r\n.txt", 'inline; filename="tabhere.txt"'],
    ["text/html", "page.html", 'attachment; filename="page.html"'],
    ["image/svg+xml", "logo.svg", 'attachment; filename="logo.svg"'],
    ["application/javascript", "x.js", 'attachment; filename="x.js"'],
    ["text/javascript", "y.js", 'attachment; filename="y.js"'],
    ["IMAGE/JPEG", "photo.jpg", 'inline; filename="photo.jpg"'],
  ])("Content-Disposition for %s %j", async (type, name, expected) => {
    const up = await upload(ts.baseUrl, alice, "x", { contentType: type, filename: name });
    const res = await download(up.mediaId);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-disposition")).toBe(expected);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
  });

  it("GET /media/config gives m.upload.size, authenticated and legacy", async () => {
    for (const path of [`${CLIENT_MEDIA}/config`, `${MEDIA_V3}/config`, "/_matrix/media/r0/config"]) {
      const res = await get(path, alice);
      expect(res.status, path).toBe(200);
      expect(res.json).toEqual({ "m.upload.size": 50 * 1024 * 1024 });
    }
  });
});

describe("authentication and malformed requests", () => {
  let mediaId: string;
  beforeAll(async () => {
    mediaId = (await upload(ts.baseUrl, alice, "secret", { contentType: "text/plain" })).mediaId;
  });

  it("the authenticated endpoints need an access token", async () => {
    expectMatrixError(await download(mediaId, null), 401, "M_MISSING_TOKEN");
    expectMatrixError(await get(`${CLIENT_MEDIA}/thumbnail/test.local/${mediaId}?width=32&height=32`), 401, "M_MISSING_TOKEN");
    expectMatrixError(await get(`${CLIENT_MEDIA}/config`), 401, "M_MISSING_TOKEN");
    expectMatrixError(await rawRequest(ts.baseUrl, "GET", `${CLIENT_MEDIA}/download/test.local/${mediaId}`, { token: "nope" }), 401, "M_UNKNOWN_TOKEN");
    expectMatrixError(await rawRequest(ts.baseUrl, "POST", `${MEDIA_V3}/upload`, { body: "x" }), 401, "M_MISSING_TOKEN");
    expectMatrixError(await rawRequest(ts.baseUrl, "POST", "/_matrix/media/v1/create"), 401, "M_MISSING_TOKEN");
  });

  it("guests may download but not upload", async () => {
    const guest = await c.post("/_matrix/client/v3/register?kind=guest", {});
    expect(guest.status).toBe(200);
    const token = guest.body.access_token as string;
    const dl = await rawRequest(ts.baseUrl, "GET", `${CLIENT_MEDIA}/download/test.local/${mediaId}`, { token });
    expect(dl.status).toBe(200);
    expectMatrixError(await rawRequest(ts.baseUrl, "POST", `${MEDIA_V3}/upload`, { token, body: "x" }), 403, "M_GUEST_ACCESS_FORBIDDEN");
  });

  it.each([
    ["unknown media id", "test.local/AAAAAAAAAAAAAAAAAAAAAAAA"],
    ["dots in the media id", "test.local/abc.def"],
    ["an encoded path traversal", "test.local/..%2F..%2Fetc%2Fpasswd"],
    ["an encoded traversal as the server name", "..%2F..%2Fetc/passwd"],
    ["an invalid server name", "bad_server!/AAAAAAAAAAAAAAAAAAAAAAAA"],
    ["a media id too long", `test.local/${"a".repeat(300)}`],
  ])("%s is 404 M_NOT_FOUND", async (_what, path) => {
    expectMatrixError(await get(`${CLIENT_MEDIA}/download/${path}`, bob), 404, "M_NOT_FOUND");
    expectMatrixError(await get(`${CLIENT_MEDIA}/thumbnail/${path}?width=32&height=32`, bob), 404, "M_NOT_FOUND");
  });

  it("media of a server that cannot be reached is 502, as Synapse answers", async () => {
    // Test servers resolve no names, so other.example is unreachable (test/federation/media.test.ts covers real peers).
    const path = "other.example/AAAAAAAAAAAAAAAAAAAAAAAA";
    expectMatrixError(await get(`${CLIENT_MEDIA}/download/${path}`, bob), 502, "M_UNKNOWN");
    expectMatrixError(await get(`${CLIENT_MEDIA}/thumbnail/${path}?width=32&height=32`, bob), 502, "M_UNKNOWN");
  });

  it("allow_remote=false never asks another server; bad query values are 400", async () => {
    expectMatrixError(await get(`${CLIENT_MEDIA}/download/other.example/AAAAAAAAAAAAAAAAAAAAAAAA?allow_remote=false`, bob), 404, "M_NOT_FOUND");
    expectMatrixError(await get(`${CLIENT_MEDIA}/download/test.local/${mediaId}?allow_remote=maybe`, bob), 400, "M_INVALID_PARAM");
    expectMatrixError(await get(`${CLIENT_MEDIA}/download/test.local/${mediaId}?timeout_ms=soon`, bob), 400, "M_INVALID_PARAM");
    expect((await get(`${CLIENT_MEDIA}/download/test.local/${mediaId}?allow_remote=true&timeout_ms=100`, bob)).status).toBe(200);
  });

  it("thumbnail parameters are checked", async () => {
    const base = `${CLIENT_MEDIA}/thumbnail/test.local/${mediaId}`;
    expectMatrixError(await get(base, bob), 400, "M_MISSING_PARAM");
    expectMatrixError(await get(`${base}?width=32`, bob), 400, "M_MISSING_PARAM");
    expectMatrixError(await get(`${base}?width=0&height=32`, bob), 400, "M_INVALID_PARAM");
    expectMatrixError(await get(`${base}?width=-5&height=32`, bob), 400, "M_INVALID_PARAM");
    expectMatrixError(await get(`${base}?width=abc&height=32`, bob), 400, "M_INVALID_PARAM");
    expectMatrixError(await get(`${base}?width=32&height=32&method=stretch`, bob), 400, "M_INVALID_PARAM");
    expectMatrixError(await get(`${base}?width=32&height=32&animated=yes`, bob), 400, "M_INVALID_PARAM");
  });

  it("a malformed Content-Type is 400, and the server goes on serving", async () => {
    const res = await rawRequest(ts.baseUrl, "POST", `${MEDIA_V3}/upload`, { token: alice.accessToken, body: "x", headers: { "content-type": "a".repeat(300) } });
    expectMatrixError(res, 400, "M_INVALID_PARAM");
    expect((await download(mediaId)).status).toBe(200);
  });
});

describe("quarantine and deletion", () => {
  it("quarantined media is 404 until released; deleted media is gone with its file", async () => {
    const up = await upload(ts.baseUrl, alice, "bad", { contentType: "text/plain" });
    const media = ts.server.services.media;
    expect(await media.quarantine("test.local", up.mediaId, "@admin:test.local")).toBe(true);
    expectMatrixError(await download(up.mediaId), 404, "M_NOT_FOUND");
    await media.quarantine("test.local", up.mediaId, null);
    expect((await download(up.mediaId)).status).toBe(200);
    await media.delete("test.local", up.mediaId);
    expectMatrixError(await download(up.mediaId), 404, "M_NOT_FOUND");
    const dir = join(ts.config.mediaStorePath, "local_content", up.mediaId.slice(0, 2), up.mediaId.slice(2, 4));
    expect(readdirSync(dir)).not.toContain(up.mediaId.slice(4));
  });

  it("files are laid out as in Synapse's media store", async () => {
    const up = await upload(ts.baseUrl, alice, "layout", { contentType: "text/plain" });
    const dir = join(ts.config.mediaStorePath, "local_content", up.mediaId.slice(0, 2), up.mediaId.slice(2, 4));
    expect(readdirSync(dir)).toContain(up.mediaId.slice(4));
  });
});

describe("media_retention", () => {
  it("deletes local and cached remote media not accessed within their lifetimes, keeping protected and quarantined media", async () => {
    const { media: repo, storage, config } = ts.server.services;
    const old = Date.now() - 2 * 3600_000;
    const [stale, fresh, safe, quarantined] = await Promise.all(
      ["stale", "fresh", "safe", "quarantined"].map(async (s) => (await upload(ts.baseUrl, alice, s, { contentType: "text/plain" })).mediaId),
    );
    await storage.db.updateTable("local_media_repository").set({ last_access_ts: old }).where("media_id", "in", [stale!, safe!, quarantined!]).execute();
    await storage.media.setSafeFromQuarantine(safe!, true);
    await repo.quarantine("test.local", quarantined!, "@admin:test.local");
    await storage.media.storeRemote({
      media_origin: "other.example",
      media_id: "remote1",
      filesystem_id: "AAAAAAAAAAAAAAAAAAAAAAAB",
      media_type: "text/plain",
      upload_name: null,
      media_length: 1,
      created_ts: old,
      authenticated: 1,
      sha256: null,
    });
    const saved = { ...config.media };
    config.media.localMediaLifetimeMs = 3600_000;
    config.media.remoteMediaLifetimeMs = 3600_000;
    try {
      const result = await repo.applyRetention();
      expect(result.local).toBeGreaterThanOrEqual(1);
      expect(result.remote).toBe(1);
    } finally {
      Object.assign(config.media, saved);
      delete config.media.localMediaLifetimeMs;
      delete config.media.remoteMediaLifetimeMs;
    }
    expectMatrixError(await download(stale!), 404, "M_NOT_FOUND");
    expect((await download(fresh!)).status).toBe(200);
    expect((await download(safe!)).status).toBe(200);
    expect(await storage.media.getLocal(quarantined!)).toBeDefined();
    expect(await storage.media.getRemote("other.example", "remote1")).toBeUndefined();
  });
});

describe("POST /create, then PUT", () => {
  const put = (user: TestUser, serverName: string, mediaId: string, body: string, contentType = "text/plain") =>
    rawRequest(ts.baseUrl, "PUT", `${MEDIA_V3}/upload/${serverName}/${mediaId}?filename=later.txt`, { token: user.accessToken, body, headers: { "content-type": contentType } });
  const create = async (user: TestUser) => {
    const res = await rawRequest(ts.baseUrl, "POST", "/_matrix/media/v1/create", { token: user.accessToken });
    expect(res.status, res.bytes.toString()).toBe(200);
    return res.json as { content_uri: string; unused_expires_at: number };
  };

  it("creates an id that expires in 24 h, uploads once, and refuses other users and a second upload", async () => {
    const before = Date.now();
    const created = await create(alice);
    const mediaId = created.content_uri.split("/").pop()!;
    expect(created.content_uri).toMatch(/^mxc:\/\/test\.local\/[A-Za-z0-9]{24}$/);
    expect(created.unused_expires_at).toBeGreaterThanOrEqual(before + 24 * 3600_000);
    expect(created.unused_expires_at).toBeLessThanOrEqual(Date.now() + 24 * 3600_000);

    expectMatrixError(await download(mediaId, bob, "?timeout_ms=0"), 504, "M_NOT_YET_UPLOADED");
    expectMatrixError(await put(bob, "test.local", mediaId, "mine"), 403, "M_FORBIDDEN");
    const ok = await put(alice, "test.local", mediaId, "hello later");
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({});
    const dl = await download(mediaId);
    expect(dl.bytes.toString()).toBe("hello later");
    expect(dl.headers.get("content-disposition")).toBe('inline; filename="later.txt"');
    expectMatrixError(await put(alice, "test.local", mediaId, "again"), 409, "M_CANNOT_OVERWRITE_MEDIA");
    expect((await download(mediaId)).bytes.toString()).toBe("hello later");
  });

  it("unknown, foreign and expired media ids are 404", async () => {
    expectMatrixError(await put(alice, "test.local", "AAAAAAAAAAAAAAAAAAAAAAAA", "x"), 404, "M_NOT_FOUND");
    expectMatrixError(await put(alice, "test.local", "bad.id", "x"), 404, "M_NOT_FOUND");
    const created = await create(alice);
    const mediaId = created.content_uri.split("/").pop()!;
    expectMatrixError(await put(alice, "other.example", mediaId, "x"), 404, "M_NOT_FOUND");

    const media = ts.server.services.config.media;
    const saved = media.unusedExpirationTimeMs;
    media.unusedExpirationTimeMs = 0;
    try {
      const expired = (await create(alice)).content_uri.split("/").pop()!;
      expectMatrixError(await put(alice, "test.local", expired, "x"), 404, "M_NOT_FOUND");
      expectMatrixError(await download(expired, bob, "?timeout_ms=0"), 404, "M_NOT_FOUND");
    } finally {
      media.unusedExpirationTimeMs = saved;
    }
  });

  it("a download waiting on a pending upload gets the bytes when the upload lands", async () => {
    const mediaId = (await create(alice)).content_uri.split("/").pop()!;
    const waiting = download(mediaId, bob, "?timeout_ms=20000");
    await poll(async () => (ts.server.services.media.waitingFor(mediaId) > 0 ? true : undefined));
    expect((await put(alice, "test.local", mediaId, "worth the wait")).status).toBe(200);
    const res = await waiting;
    expect(res.status).toBe(200);
    expect(res.bytes.toString()).toBe("worth the wait");
  });

  it("a download waits at most timeout_ms, then 504 M_NOT_YET_UPLOADED", async () => {
    const mediaId = (await create(alice)).content_uri.split("/").pop()!;
    const started = Date.now();
    expectMatrixError(await download(mediaId, bob, "?timeout_ms=300"), 504, "M_NOT_YET_UPLOADED");
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(ts.server.services.media.waitingFor(mediaId)).toBe(0);
  });

  it("max_pending_media_uploads (5): the sixth pending id is 429 M_LIMIT_EXCEEDED", async () => {
    const carol = await registerUser(c);
    for (let i = 0; i < 5; i++) await create(carol);
    const res = await rawRequest(ts.baseUrl, "POST", "/_matrix/media/v1/create", { token: carol.accessToken });
    expectMatrixError(res, 429, "M_LIMIT_EXCEEDED");
    expect(res.json!.retry_after_ms).toBeGreaterThan(23 * 3600_000);
  });
});

describe("enable_authenticated_media and the legacy endpoints", () => {
  it("media uploaded while it is on is not served unauthenticated; older media still is", async () => {
    const media = ts.server.services.config.media;
    media.enableAuthenticatedMedia = false;
    let old: string;
    try {
      old = (await upload(ts.baseUrl, alice, "from before", { contentType: "text/plain" })).mediaId;
      const legacy = await get(`${MEDIA_V3}/download/test.local/${old}`);
      expect(legacy.status).toBe(200);
      expect(legacy.bytes.toString()).toBe("from before");
      expect(legacy.headers.get("content-security-policy")).toBe(CSP);
    } finally {
      media.enableAuthenticatedMedia = true;
    }
    const fresh = (await upload(ts.baseUrl, alice, "from now on", { contentType: "text/plain" })).mediaId;
    expect((await get(`${MEDIA_V3}/download/test.local/${old}`)).status).toBe(200);
    expect((await get(`/_matrix/media/r0/download/test.local/${old}/name.txt`)).status).toBe(200);
    expectMatrixError(await get(`${MEDIA_V3}/download/test.local/${fresh}`), 404, "M_NOT_FOUND");
    expectMatrixError(await get(`${MEDIA_V3}/download/test.local/${fresh}`, bob), 404, "M_NOT_FOUND");
    expectMatrixError(await get(`${MEDIA_V3}/thumbnail/test.local/${fresh}?width=32&height=32`), 404, "M_NOT_FOUND");
    expect((await download(fresh)).bytes.toString()).toBe("from now on");
  });
});

describe("limits", () => {
  let lim: TestServer;
  let u: TestUser;
  beforeAll(async () => {
    lim = await startTestServer({
      config: {
        max_upload_size: 1000,
        media_upload_limits: [{ time_period: "1h", max_size: 3000 }, { time_period: "1d", max_size: 5000 }],
        rc_media_create: { per_second: 0.001, burst_count: 2 },
      },
    });
    u = await registerUser(new Client(lim.baseUrl));
  });
  afterAll(async () => {
    await lim?.close();
  });

  const post = (user: TestUser, body: Body, headers: Record<string, string> = {}, duplex = false) =>
    rawRequest(lim.baseUrl, "POST", `${MEDIA_V3}/upload`, { token: user.accessToken, body, headers, duplex });

  it("max_upload_size: 413 M_TOO_LARGE by Content-Length, and by a chunked body as it streams", async () => {
    expectMatrixError(await post(u, new Uint8Array(1001)), 413, "M_TOO_LARGE");
    const chunks = function* () {
      for (let i = 0; i < 20; i++) yield new Uint8Array(100);
    };
    const stream = ReadableStream.from(chunks());
    const res = await post(u, stream as unknown as Body, { "content-type": "application/octet-stream" }, true);
    expectMatrixError(res, 413, "M_TOO_LARGE");
    // Exactly the limit is fine, chunked too; and the server serves on (the refused bodies left no files).
    expect((await post(u, new Uint8Array(1000))).status).toBe(200);
    expect((await post(u, ReadableStream.from([new Uint8Array(500)]) as unknown as Body, {}, true)).status).toBe(200);
    expect(readdirSync(join(lim.config.mediaStorePath, "tmp"))).toEqual([]);
    expect((await rawRequest(lim.baseUrl, "GET", `${CLIENT_MEDIA}/config`, { token: u.accessToken })).json).toEqual({ "m.upload.size": 1000 });
  });

  it("an upload the client abandons halfway leaves no file, and the server goes on serving", async () => {
    const abort = new AbortController();
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent === 3) {
          // Let the server take what was sent, then go away.
          await poll(async () => (readdirSync(join(lim.config.mediaStorePath, "tmp")).length > 0 ? true : undefined));
          abort.abort();
          return;
        }
        sent++;
        controller.enqueue(new Uint8Array(100));
      },
    });
    const res = fetch(`${lim.baseUrl}${MEDIA_V3}/upload`, {
      method: "POST",
      headers: { authorization: `Bearer ${u.accessToken}` },
      body,
      duplex: "half",
      signal: abort.signal,
    } as RequestInit & { duplex: "half" });
    await expect(res).rejects.toThrow();
    await poll(async () => (readdirSync(join(lim.config.mediaStorePath, "tmp")).length === 0 ? true : undefined));
    expect((await post(u, new Uint8Array(10))).status).toBe(200);
  });

  it("media_upload_limits: past the bytes per period, 400 M_RESOURCE_LIMIT_EXCEEDED, per user", async () => {
    const v = await registerUser(new Client(lim.baseUrl));
    for (const n of [1000, 1000, 900]) expect((await post(v, new Uint8Array(n))).status).toBe(200);
    expectMatrixError(await post(v, new Uint8Array(200)), 400, "M_RESOURCE_LIMIT_EXCEEDED");
    expect((await post(v, new Uint8Array(100))).status).toBe(200);
    const w = await registerUser(new Client(lim.baseUrl));
    expect((await post(w, new Uint8Array(1000))).status).toBe(200);
  });

  it("rc_media_create: POST /create past its burst is 429 M_LIMIT_EXCEEDED", async () => {
    const x = await registerUser(new Client(lim.baseUrl));
    for (let i = 0; i < 2; i++) expect((await rawRequest(lim.baseUrl, "POST", "/_matrix/media/v1/create", { token: x.accessToken })).status).toBe(200);
    const res = await rawRequest(lim.baseUrl, "POST", "/_matrix/media/v1/create", { token: x.accessToken });
    expectMatrixError(res, 429, "M_LIMIT_EXCEEDED");
    expect(res.json!.retry_after_ms).toEqual(expect.any(Number));
  });
});
