/** The media file store: Synapse's layout, durable writes through a temp file, size limits, refused ids. */
import { mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MediaFileStore } from "../../src/services/media/media_store.js";

let root: string;
let store: MediaFileStore;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "myelin-media-"));
  store = new MediaFileStore(root);
  await store.start();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("MediaFileStore", () => {
  it("lays files out as Synapse does", () => {
    expect(store.localContent("abcdefghijklmnopqrstuvwx")).toBe(join(root, "local_content/ab/cd/efghijklmnopqrstuvwx"));
    expect(store.localThumbnail("abcdefghijklmnopqrstuvwx", { width: 32, height: 24, type: "image/jpeg", method: "crop" })).toBe(
      join(root, "local_thumbnails/ab/cd/efghijklmnopqrstuvwx/32-24-image-jpeg-crop"),
    );
    expect(store.remoteContent("matrix.org", "GerZNDnDZVjsOtardLuwfIBg")).toBe(join(root, "remote_content/matrix.org/Ge/rZ/NDnDZVjsOtardLuwfIBg"));
    expect(store.remoteThumbnail("[::1]:8448", "GerZNDnDZVjsOtardLuwfIBg", { width: 800, height: 600, type: "image/png", method: "scale" })).toBe(
      join(root, "remote_thumbnail/[::1]:8448/Ge/rZ/NDnDZVjsOtardLuwfIBg/800-600-image-png-scale"),
    );
  });

  it.each(["../etc/passwd", "ab/cd/efghijk", "abc.defghij", "", "a%2Fb"])("refuses %j as a media id", (id) => {
    expect(() => store.localContent(id)).toThrow();
  });

  it.each(["..", ".hidden", "a/b", "a\\b", "x..y"])("refuses %j as a server directory", (server) => {
    expect(() => store.remoteContent(server, "abcdefghijklmnopqrstuvwx")).toThrow();
  });

  it("refuses thumbnail types that are not type/subtype", () => {
    expect(() => store.localThumbnail("abcdefghijklmnopqrstuvwx", { width: 1, height: 1, type: "../x", method: "crop" })).toThrow();
    expect(() => store.localThumbnail("abcdefghijklmnopqrstuvwx", { width: 1, height: 1, type: "image/png", method: "zoom" })).toThrow();
  });

  it("writes a Buffer or a stream, with its size and SHA-256, leaving no temp file", async () => {
    const a = store.localContent("AAAAAAAAAAAAAAAAAAAAAAAA");
    expect(await store.write(a, Buffer.from("hello"), 100)).toEqual({ size: 5, sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" });
    expect(readFileSync(a, "utf8")).toBe("hello");
    const b = store.localContent("BBBBBBBBBBBBBBBBBBBBBBBB");
    expect((await store.write(b, Readable.from([Buffer.from("hel"), Buffer.from("lo")]), 100)).size).toBe(5);
    expect(readFileSync(b, "utf8")).toBe("hello");
    expect(readdirSync(join(root, "tmp"))).toEqual([]);
  });

  it("at start-up, removes temp files a crash left behind, but not those another process may be writing", async () => {
    const tmp = join(root, "tmp");
    writeFileSync(join(tmp, "old"), "x");
    writeFileSync(join(tmp, "new"), "y");
    const hourAgo = new Date(Date.now() - 2 * 3600_000);
    utimesSync(join(tmp, "old"), hourAgo, hourAgo);
    await new MediaFileStore(root).start();
    expect(readdirSync(tmp)).toEqual(["new"]);
    rmSync(join(tmp, "new"));
  });

  it("refuses a stream past the limit with 413 M_TOO_LARGE and leaves nothing behind", async () => {
    const c = store.localContent("CCCCCCCCCCCCCCCCCCCCCCCC");
    await expect(store.write(c, Readable.from([Buffer.alloc(60), Buffer.alloc(60)]), 100)).rejects.toMatchObject({ status: 413, errcode: "M_TOO_LARGE" });
    expect(() => readFileSync(c)).toThrow();
    expect(readdirSync(join(root, "tmp"))).toEqual([]);
  });
});
