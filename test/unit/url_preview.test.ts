/** The pure parts of URL previews: url_preview_url_blacklist matching (Synapse's semantics), cache lifetimes, image sizes. */
import { describe, expect, it } from "vitest";
import { cacheLifetime, imageDimensions, urlMatches } from "../../src/services/media/url_preview.js";

describe("url_preview_url_blacklist entries", () => {
  const url = new URL("https://user:pw@Sub.Example.com:8443/a/b.html?x=1#frag");
  it("match when every component matches: globs match the whole value, ^regexes from the start", () => {
    expect(urlMatches(url, { netloc: "user:pw@sub.example.com:8443" })).toBe(true);
    expect(urlMatches(url, { netloc: "*.example.com" })).toBe(false); // netloc has the port (and user info)
    expect(urlMatches(url, { hostname: "*.example.com" })).toBe(true);
    expect(urlMatches(url, { hostname: "sub.example.co?" })).toBe(true);
    expect(urlMatches(url, { hostname: "[st]ub.example.com" })).toBe(true);
    expect(urlMatches(url, { hostname: "[!s]ub.example.com" })).toBe(false);
    expect(urlMatches(url, { scheme: "https", path: "^/a/" })).toBe(true);
    expect(urlMatches(url, { scheme: "http", path: "^/a/" })).toBe(false);
    expect(urlMatches(url, { path: "^/b" })).toBe(false);
    expect(urlMatches(url, { query: "x=*", fragment: "frag", port: "8443", username: "user", password: "pw" })).toBe(true);
  });
  it("a component the URL lacks never matches", () => {
    const plain = new URL("http://example.com/");
    expect(urlMatches(plain, { port: "*" })).toBe(false);
    expect(urlMatches(plain, { username: "*" })).toBe(false);
    expect(urlMatches(plain, { query: "" })).toBe(true); // present but empty, as urlsplit's ''
  });
  it("glob metacharacters of regexes are literal", () => {
    expect(urlMatches(new URL("http://a.b/x+y"), { path: "/x+y" })).toBe(true);
    expect(urlMatches(new URL("http://a.b/xxy"), { path: "/x+y" })).toBe(false);
  });
});

describe("cacheLifetime", () => {
  it("is Cache-Control max-age, at least an hour and at most a day", () => {
    expect(cacheLifetime(undefined)).toBe(3_600_000);
    expect(cacheLifetime("no-cache")).toBe(3_600_000);
    expect(cacheLifetime("public, max-age=60")).toBe(3_600_000);
    expect(cacheLifetime("public, max-age=7200")).toBe(7_200_000);
    expect(cacheLifetime("max-age=999999999")).toBe(86_400_000);
  });
});

describe("imageDimensions", () => {
  it("reads PNG, GIF and JPEG headers; null for anything else", () => {
    const png = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", "base64");
    expect(imageDimensions(png)).toEqual({ width: 1, height: 1 });
    const gif = Buffer.from([0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x20, 0x03, 0x58, 0x02, 0, 0]);
    expect(imageDimensions(gif)).toEqual({ width: 800, height: 600 });
    // SOI, an APP0 segment, then SOF0 with height 480 and width 640.
    const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x01, 0xe0, 0x02, 0x80, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(imageDimensions(jpeg)).toEqual({ width: 640, height: 480 });
    expect(imageDimensions(Buffer.from("not an image"))).toBeNull();
    expect(imageDimensions(Buffer.from([0xff, 0xd8, 0xff]))).toBeNull();
  });
});
