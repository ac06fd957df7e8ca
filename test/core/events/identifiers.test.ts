/** Identifier grammar (src/core/ids) and the event/room id helpers of src/core/events. */
import { describe, expect, it } from "vitest";
import { generateLocalEventId, generateRoomId, roomIdForCreateEvent } from "../../../src/core/events/index.js";
import {
  idDomain,
  isHistoricalUserId,
  isValidEventId,
  isValidRoomId,
  isValidServerName,
  isValidUserId,
  parseServerName,
  userIdDomain,
  userIdLocalpart,
} from "../../../src/core/ids/ids.js";

describe("server names", () => {
  it("accepts the spec's examples", () => {
    expect(parseServerName("matrix.org")).toEqual({ host: "matrix.org", kind: "dns" });
    expect(parseServerName("matrix.org:8888")).toEqual({ host: "matrix.org", port: 8888, kind: "dns" });
    expect(parseServerName("1.2.3.4")).toEqual({ host: "1.2.3.4", kind: "ipv4" });
    expect(parseServerName("1.2.3.4:1234")).toEqual({ host: "1.2.3.4", port: 1234, kind: "ipv4" });
    expect(parseServerName("[1234:5678::abcd]")).toEqual({ host: "[1234:5678::abcd]", kind: "ipv6" });
    expect(parseServerName("[1234:5678::abcd]:5678")).toEqual({ host: "[1234:5678::abcd]", port: 5678, kind: "ipv6" });
    expect(isValidServerName("localhost")).toBe(true);
    expect(isValidServerName("MATRIX.org")).toBe(true);
  });

  it("rejects names outside the grammar", () => {
    for (const bad of ["", "matrix.org:", "matrix.org:123456", "a_b.org", "ex ample.org", "::1", "[::1", "[]", "256.1.1.1",
      "matrix.org:80:80", "[1234:5678::abcd]:", "host/path", "x".repeat(256)]) {
      expect(isValidServerName(bad), bad).toBe(false);
    }
  });
});

describe("user ids", () => {
  it("accepts compliant user ids, including a port in the domain", () => {
    expect(isValidUserId("@alice:example.org")).toBe(true);
    expect(isValidUserId("@a.b_c=d-e/f+g:example.org:8448")).toBe(true);
    expect(userIdDomain("@alice:example.org:8448")).toBe("example.org:8448");
    expect(userIdLocalpart("@alice:example.org:8448")).toBe("alice");
  });

  it("accepts historical localparts in events but not as compliant ids", () => {
    // "any legal non-surrogate Unicode code points except for `:` and NUL ... including other control characters
    // and the empty string"
    for (const id of ["@Alice:example.org", "@:example.org", "@é😀:example.org", "@a b\u0001:example.org", "@!#$%:example.org"]) {
      expect(isValidUserId(id), id).toBe(false);
      expect(isHistoricalUserId(id), id).toBe(true);
    }
  });

  it("rejects what no grammar allows", () => {
    for (const id of ["alice:example.org", "@alice", "@alice:", "@a\u0000b:example.org", "@alice:bad_host", "#alice:example.org"]) {
      expect(isValidUserId(id), id).toBe(false);
      expect(isHistoricalUserId(id), id).toBe(false);
    }
  });

  it("limits user ids to 255 bytes, counted in UTF-8", () => {
    const domain = ":example.org";
    const fits = "@" + "a".repeat(255 - 1 - domain.length) + domain;
    expect(Buffer.byteLength(fits)).toBe(255);
    expect(isValidUserId(fits)).toBe(true);
    expect(isValidUserId("@a" + fits.slice(1))).toBe(false);
    // 80 three-byte characters: 253 bytes in all (93 UTF-16 units); 81: 256 bytes.
    expect(isHistoricalUserId("@" + "日".repeat(80) + domain)).toBe(true);
    expect(isHistoricalUserId("@" + "日".repeat(81) + domain)).toBe(false);
  });
});

describe("room and event ids", () => {
  it("accepts both room id forms", () => {
    expect(isValidRoomId("!abc:example.org")).toBe(true);
    expect(isValidRoomId("!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ")).toBe(true);
    expect(isValidRoomId("!short")).toBe(false);
    expect(isValidRoomId("$abc:example.org")).toBe(false);
    expect(isValidEventId("$abc:example.org")).toBe(true);
    expect(isValidEventId("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg")).toBe(true);
    expect(isValidEventId("$")).toBe(false);
    expect(idDomain("$abc:example.org:8448")).toBe("example.org:8448");
  });

  it("derives a v12 room id from the create event id", () => {
    expect(roomIdForCreateEvent("$Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ")).toBe("!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ");
    expect(() => roomIdForCreateEvent("!abc")).toThrow();
  });

  it("generates v1/v2 event ids and v1-v11 room ids for a server", () => {
    const eventIds = new Set<string>();
    const roomIds = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const e = generateLocalEventId("example.org:8448");
      expect(e).toMatch(/^\$[A-Za-z0-9]{24}:example\.org:8448$/);
      expect(isValidEventId(e)).toBe(true);
      eventIds.add(e);
      const r = generateRoomId("example.org");
      expect(r).toMatch(/^![A-Za-z]{18}:example\.org$/);
      expect(isValidRoomId(r)).toBe(true);
      roomIds.add(r);
    }
    expect(eventIds.size).toBe(200);
    expect(roomIds.size).toBe(200);
    expect(() => generateRoomId("bad host")).toThrow();
    expect(() => generateLocalEventId("")).toThrow();
  });
});
