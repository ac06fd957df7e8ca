/**
 * Uploads and downloads stream: a 100 MB upload goes to disk chunk by chunk as it arrives (seen mid-request in the
 * store's temp file) and comes back the same way.
 */
import { createHash } from "node:crypto";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { CLIENT_MEDIA, MEDIA_V3 } from "../helpers/media.js";
import { poll } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let u: TestUser;

beforeAll(async () => {
  ts = await startTestServer({ config: { max_upload_size: "200M" } });
  u = await registerUser(new Client(ts.baseUrl));
});
afterAll(async () => {
  await ts?.close();
});

const MIB = 1024 * 1024;
const CHUNKS = 100;
const PAUSE_AT = 60;
/** What may be in flight between the client and the file: socket buffers and the streams' high-water marks. */
const IN_FLIGHT = 8 * MIB;

/** The size of the upload's temp file in the media store's tmp/ (0 while there is none). */
function tempFileSize(): number {
  const dir = join(ts.config.mediaStorePath, "tmp");
  return readdirSync(dir).reduce((max, f) => Math.max(max, statSync(join(dir, f)).size), 0);
}

describe("streaming", () => {
  it("a 100 MB upload goes to disk as it arrives, and downloads back byte for byte", { timeout: 120_000 }, async () => {
    const expected = createHash("sha256");
    let i = 0;
    let resume!: () => void;
    const resumed = new Promise<void>((r) => (resume = r));
    // Pull-based: the client makes each chunk only when the connection takes it, and stops for a while at 60 MB.
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (i === PAUSE_AT) await resumed;
        if (i === CHUNKS) return controller.close();
        const chunk = Buffer.allocUnsafe(MIB).fill(i++ % 251);
        expected.update(chunk);
        controller.enqueue(chunk);
      },
    });
    const uploading = fetch(`${ts.baseUrl}${MEDIA_V3}/upload?filename=big.bin`, {
      method: "POST",
      headers: { authorization: `Bearer ${u.accessToken}`, "content-type": "application/octet-stream" },
      body,
      duplex: "half",
    } as RequestInit & { duplex: "half" });
    try {
      // With the request still incomplete, what the client sent is already in the file: the server holds at most
      // what is in flight, never the upload (GC timing makes the process's RSS a poor measure of that).
      await poll(async () => (i === PAUSE_AT && tempFileSize() >= PAUSE_AT * MIB - IN_FLIGHT ? true : undefined), 30_000);
    } finally {
      resume();
    }
    const res = await uploading;
    expect(res.status).toBe(200);
    const contentUri = ((await res.json()) as { content_uri: string }).content_uri;

    const mediaId = contentUri.split("/").pop()!;
    const dl = await fetch(`${ts.baseUrl}${CLIENT_MEDIA}/download/test.local/${mediaId}`, { headers: { authorization: `Bearer ${u.accessToken}` } });
    expect(dl.status).toBe(200);
    expect(dl.headers.get("content-length")).toBe(String(CHUNKS * MIB));
    const got = createHash("sha256");
    let length = 0;
    for await (const chunk of dl.body as unknown as AsyncIterable<Uint8Array>) {
      got.update(chunk);
      length += chunk.length;
    }
    expect(length).toBe(CHUNKS * MIB);
    expect(got.digest("hex")).toBe(expected.digest("hex"));
  });
});
