/**
 * Thumbnails (spec "Thumbnails") with a fake Thumbnailer: the configured sizes made in the background after an
 * upload (never delaying it), the choice among them, dynamic_thumbnails, no upscaling, animated thumbnails, and
 * media that is not an image or is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { CLIENT_MEDIA, FakeThumbnailer, expectMatrixError, rawRequest, upload } from "../helpers/media.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const CSP = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

async function thumb(ts: TestServer, user: TestUser, mediaId: string, query: string) {
  return rawRequest(ts.baseUrl, "GET", `${CLIENT_MEDIA}/thumbnail/test.local/${mediaId}?${query}`, { token: user.accessToken });
}

async function thumbText(ts: TestServer, user: TestUser, mediaId: string, query: string): Promise<string> {
  const res = await thumb(ts, user, mediaId, query);
  if (res.status !== 200) throw new Error(`thumbnail ${query}: ${res.status} ${res.bytes.toString()}`);
  return res.bytes.toString();
}

describe("pre-generated thumbnails (thumbnail_sizes, the default)", () => {
  let ts: TestServer;
  let u: TestUser;
  const fake = new FakeThumbnailer();
  beforeAll(async () => {
    ts = await startTestServer({ server: { thumbnailer: fake } });
    u = await registerUser(new Client(ts.baseUrl));
  });
  afterAll(async () => {
    await ts?.close();
  });

  async function uploadImage(header: string): Promise<string> {
    const { mediaId } = await upload(ts.baseUrl, u, `${header}\nrest of the image`, { contentType: "image/png", filename: "pic.png" });
    await ts.server.services.media.thumbnailsSettled(mediaId);
    return mediaId;
  }

  it("makes Synapse's default sizes after the upload and serves the best one, with the safety headers", async () => {
    const mediaId = await uploadImage("FAKEIMG 1000x800");
    const res = await thumb(ts, u, mediaId, "width=32&height=32&method=crop");
    expect(res.status).toBe(200);
    expect(res.bytes.toString()).toBe("thumb 32x32 crop");
    expect(res.headers.get("content-type")).toBe("image/png");
    expect(res.headers.get("content-length")).toBe(String(res.bytes.length));
    expect(res.headers.get("content-disposition")).toBe("inline");
    expect(res.headers.get("content-security-policy")).toBe(CSP);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("cross-origin-resource-policy")).toBe("cross-origin");

    // The smallest at least as large as asked (crop: both sides; scale: either side), else the largest.
    expect(await thumbText(ts, u, mediaId, "width=50&height=50&method=crop")).toBe("thumb 96x96 crop");
    expect(await thumbText(ts, u, mediaId, "width=200&height=200&method=crop")).toBe("thumb 96x96 crop");
    expect(await thumbText(ts, u, mediaId, "width=300&height=200&method=scale")).toBe("thumb 300x240 scale");
    expect(await thumbText(ts, u, mediaId, "width=700&height=500&method=scale")).toBe("thumb 750x600 scale");
    expect(await thumbText(ts, u, mediaId, "width=2000&height=2000&method=scale")).toBe("thumb 750x600 scale");
    // method defaults to scale.
    expect(await thumbText(ts, u, mediaId, "width=600&height=480")).toBe("thumb 600x480 scale");
  });

  it("never upscales: an image smaller than asked gives thumbnails of its own size", async () => {
    const mediaId = await uploadImage("FAKEIMG 20x10");
    expect(await thumbText(ts, u, mediaId, "width=96&height=96&method=crop")).toBe("thumb 20x10 crop");
    expect(await thumbText(ts, u, mediaId, "width=800&height=600&method=scale")).toBe("thumb 20x10 scale");
  });

  it("animated images get animated thumbnails when asked for them", async () => {
    const mediaId = await uploadImage("FAKEIMG-ANIM 400x400");
    const animated = await thumb(ts, u, mediaId, "width=96&height=96&method=crop&animated=true");
    expect(animated.bytes.toString()).toBe("thumb 96x96 crop animated");
    expect(animated.headers.get("content-type")).toBe("image/gif");
    expect(await thumbText(ts, u, mediaId, "width=96&height=96&method=crop&animated=false")).toBe("thumb 96x96 crop");
  });

  it("media that is not an image, or an image the thumbnailer refuses, has no thumbnails: 400 M_UNKNOWN", async () => {
    const text = await uploadImage("just some text");
    expectMatrixError(await thumb(ts, u, text, "width=32&height=32"), 400, "M_UNKNOWN");
    const bomb = await uploadImage("FAKEIMG-BOMB 100000x100000");
    expectMatrixError(await thumb(ts, u, bomb, "width=32&height=32"), 400, "M_UNKNOWN");
    // The original is still served, and so is everything else.
    expect((await rawRequest(ts.baseUrl, "GET", `${CLIENT_MEDIA}/download/test.local/${bomb}`, { token: u.accessToken })).status).toBe(200);
  });

  it("generating thumbnails never delays the upload's 200; a thumbnail request waits for them", async () => {
    let release!: () => void;
    fake.gate = new Promise<void>((r) => (release = r));
    const before = fake.generated.length;
    try {
      const { mediaId } = await upload(ts.baseUrl, u, "FAKEIMG 500x500\n", { contentType: "image/png" });
      // The upload answered while every thumbnail was still blocked.
      expect(fake.generated.length).toBe(before);
      const pending = thumbText(ts, u, mediaId, "width=32&height=32&method=crop");
      release();
      expect(await pending).toBe("thumb 32x32 crop");
    } finally {
      release();
      fake.gate = undefined;
    }
  });

  it("a thumbnail of media not yet uploaded waits like a download, then 504 M_NOT_YET_UPLOADED", async () => {
    const created = await rawRequest(ts.baseUrl, "POST", "/_matrix/media/v1/create", { token: u.accessToken });
    const mediaId = (created.json!.content_uri as string).split("/").pop()!;
    expectMatrixError(await thumb(ts, u, mediaId, "width=32&height=32&timeout_ms=0"), 504, "M_NOT_YET_UPLOADED");
  });
});

describe("dynamic_thumbnails", () => {
  let ts: TestServer;
  let u: TestUser;
  const fake = new FakeThumbnailer();
  beforeAll(async () => {
    ts = await startTestServer({ config: { dynamic_thumbnails: true, thumbnail_sizes: [] }, server: { thumbnailer: fake } });
    u = await registerUser(new Client(ts.baseUrl));
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("makes the requested size on demand, once", async () => {
    const { mediaId } = await upload(ts.baseUrl, u, "FAKEIMG 1000x800\n", { contentType: "image/png" });
    await ts.server.services.media.thumbnailsSettled(mediaId);
    expect(fake.generated).toEqual([]);
    expect(await thumbText(ts, u, mediaId, "width=123&height=45&method=crop")).toBe("thumb 123x45 crop");
    expect(await thumbText(ts, u, mediaId, "width=500&height=500&method=scale")).toBe("thumb 500x400 scale");
    expect(fake.generated.length).toBe(2);
    expect(await thumbText(ts, u, mediaId, "width=123&height=45&method=crop")).toBe("thumb 123x45 crop");
    expect(await thumbText(ts, u, mediaId, "width=500&height=500&method=scale")).toBe("thumb 500x400 scale");
    expect(fake.generated.length).toBe(2);
  });

  it("never upscales, and refuses what is not an image with 400 M_UNKNOWN", async () => {
    const small = await upload(ts.baseUrl, u, "FAKEIMG 20x10\n", { contentType: "image/png" });
    expect(await thumbText(ts, u, small.mediaId, "width=100&height=100&method=scale")).toBe("thumb 20x10 scale");
    const text = await upload(ts.baseUrl, u, "hello", { contentType: "text/plain" });
    expectMatrixError(await thumb(ts, u, text.mediaId, "width=32&height=32"), 400, "M_UNKNOWN");
    const bomb = await upload(ts.baseUrl, u, "FAKEIMG-BOMB 1x1\n", { contentType: "image/png" });
    expectMatrixError(await thumb(ts, u, bomb.mediaId, "width=32&height=32"), 400, "M_UNKNOWN");
  });
});
