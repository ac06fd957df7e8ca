/**
 * Media through matrix-js-sdk (what Element uses): uploadContent, another user downloading it from the
 * authenticated endpoint the SDK builds (mxcUrlToHttp with useAuthentication), and an avatar set with
 * setAvatarUrl that another user reads from the profile and downloads.
 */
import * as sdk from "matrix-js-sdk";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  ts = await startTestServer();
  const c = new Client(ts.baseUrl);
  alice = await registerUser(c);
  bob = await registerUser(c);
});
afterAll(async () => {
  await ts?.close();
});

const quietLogger: NonNullable<sdk.ICreateClientOpts["logger"]> = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: (...msg: unknown[]) => console.warn(...msg),
  error: (...msg: unknown[]) => console.error(...msg),
  getChild: () => quietLogger,
};

function clientFor(u: TestUser): sdk.MatrixClient {
  return sdk.createClient({ baseUrl: ts.baseUrl, accessToken: u.accessToken, userId: u.userId, deviceId: u.deviceId, logger: quietLogger });
}

/** What a client does with an authenticated media URL: GET it with its access token. */
async function fetchAuthenticated(url: string, u: TestUser): Promise<{ status: number; type: string | null; bytes: Buffer }> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${u.accessToken}` } });
  return { status: res.status, type: res.headers.get("content-type"), bytes: Buffer.from(await res.arrayBuffer()) };
}

describe("media with matrix-js-sdk", () => {
  it("uploadContent, then another user downloads it through the authenticated endpoint", async () => {
    const a = clientFor(alice);
    const b = clientFor(bob);
    const bytes = randomBytes(4096);
    const { content_uri } = await a.uploadContent(new Uint8Array(bytes), { name: "notes.bin", type: "application/x-notes" });
    expect(content_uri).toMatch(/^mxc:\/\/test\.local\/[A-Za-z0-9]{24}$/);

    const url = b.mxcUrlToHttp(content_uri, undefined, undefined, undefined, false, true, true)!;
    expect(url).toContain("/_matrix/client/v1/media/download/test.local/");
    const got = await fetchAuthenticated(url, bob);
    expect(got.status).toBe(200);
    expect(got.type).toBe("application/x-notes");
    expect(got.bytes.equals(bytes)).toBe(true);

    // Without authentication (the legacy URL the SDK builds otherwise) it is not served: uploaded with
    // enable_authenticated_media on.
    const legacy = b.mxcUrlToHttp(content_uri, undefined, undefined, undefined, false, true, false)!;
    expect(legacy).toContain("/_matrix/media/v3/download/");
    expect((await fetch(legacy)).status).toBe(404);
  });

  it("an avatar set with setAvatarUrl is read from the profile and downloaded by another user", async () => {
    const a = clientFor(alice);
    const b = clientFor(bob);
    const avatar = Buffer.from("\x89PNG\r\n\x1a\n not really a png");
    const { content_uri } = await a.uploadContent(new Uint8Array(avatar), { name: "me.png", type: "image/png" });
    await a.setAvatarUrl(content_uri);
    const profile = await b.getProfileInfo(alice.userId);
    expect(profile.avatar_url).toBe(content_uri);
    const got = await fetchAuthenticated(b.mxcUrlToHttp(profile.avatar_url!, undefined, undefined, undefined, false, true, true)!, bob);
    expect(got.status).toBe(200);
    expect(got.type).toBe("image/png");
    expect(got.bytes.equals(avatar)).toBe(true);
  });

  it("the SDK reads the upload limit from /media/v3/config", async () => {
    const config = await clientFor(bob).getMediaConfig();
    expect(config["m.upload.size"]).toBe(50 * 1024 * 1024);
  });
});
