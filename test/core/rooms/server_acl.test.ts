/** m.room.server_acl evaluation (spec "Server Access Control Lists (ACLs) for rooms"). */
import { describe, expect, it } from "vitest";
import { globRegex, serverAllowedByAcl } from "../../../src/core/rooms/server_acl.js";

describe("serverAllowedByAcl", () => {
  it("rule 1: no ACL event allows everyone", () => {
    expect(serverAllowedByAcl(undefined, "evil.com")).toBe(true);
    expect(serverAllowedByAcl(null, "1.2.3.4")).toBe(true);
  });

  it("an ACL without allow denies everyone, including the sender's server", () => {
    expect(serverAllowedByAcl({}, "example.org")).toBe(false);
    expect(serverAllowedByAcl({ deny: [] }, "example.org")).toBe(false);
    // Redacted or malformed content reads as the defaults.
    expect(serverAllowedByAcl("not an object", "example.org")).toBe(false);
  });

  it("rules 3-5: deny wins over allow; anything unmatched is denied", () => {
    const acl = { allow: ["*"], deny: ["evil.com", "*.evil.com"] };
    expect(serverAllowedByAcl(acl, "good.org")).toBe(true);
    expect(serverAllowedByAcl(acl, "evil.com")).toBe(false);
    expect(serverAllowedByAcl(acl, "sub.evil.com")).toBe(false);
    expect(serverAllowedByAcl(acl, "notevil.com")).toBe(true);
    expect(serverAllowedByAcl({ allow: ["*.example.org"] }, "example.org")).toBe(false);
    expect(serverAllowedByAcl({ allow: ["*.example.org"] }, "a.example.org")).toBe(true);
  });

  it("ignores the port: evil.com, evil.com:8448 and evil.com:1234 all match evil.com", () => {
    const acl = { allow: ["*"], deny: ["evil.com"] };
    for (const name of ["evil.com", "evil.com:8448", "evil.com:1234"]) expect(serverAllowedByAcl(acl, name)).toBe(false);
    expect(serverAllowedByAcl({ allow: ["good.org"] }, "good.org:8448")).toBe(true);
    // A pattern with a port can never match (ports are not considered).
    expect(serverAllowedByAcl({ allow: ["good.org:8448"] }, "good.org:8448")).toBe(false);
  });

  it("matches case-insensitively", () => {
    expect(serverAllowedByAcl({ allow: ["*"], deny: ["EVIL.com"] }, "evil.COM")).toBe(false);
    expect(serverAllowedByAcl({ allow: ["Good.Org"] }, "good.org")).toBe(true);
  });

  it("supports * (zero or more) and ? (exactly one)", () => {
    const acl = { allow: ["hs?.test", "a*z.org"] };
    expect(serverAllowedByAcl(acl, "hs1.test")).toBe(true);
    expect(serverAllowedByAcl(acl, "hs.test")).toBe(false);
    expect(serverAllowedByAcl(acl, "hs12.test")).toBe(false);
    expect(serverAllowedByAcl(acl, "az.org")).toBe(true);
    expect(serverAllowedByAcl(acl, "abcz.org")).toBe(true);
  });

  it("treats everything other than * and ? literally", () => {
    expect(serverAllowedByAcl({ allow: ["a.b"] }, "axb")).toBe(false);
    expect(serverAllowedByAcl({ allow: ["(x|y)"] }, "x")).toBe(false);
    expect(serverAllowedByAcl({ allow: ["[ab]"] }, "a")).toBe(false);
    expect(globRegex("a+b").test("a+b")).toBe(true);
  });

  it("rule 2: IP literals are denied when allow_ip_literals is false, before the lists", () => {
    const acl = { allow: ["*"], allow_ip_literals: false };
    expect(serverAllowedByAcl(acl, "1.2.3.4")).toBe(false);
    expect(serverAllowedByAcl(acl, "1.2.3.4:8448")).toBe(false);
    expect(serverAllowedByAcl(acl, "[::1]")).toBe(false);
    expect(serverAllowedByAcl(acl, "[2001:db8::1]:8448")).toBe(false);
    expect(serverAllowedByAcl(acl, "example.org")).toBe(true);
    // Allowed by default, or when the flag is not a boolean.
    expect(serverAllowedByAcl({ allow: ["*"] }, "1.2.3.4")).toBe(true);
    expect(serverAllowedByAcl({ allow: ["*"], allow_ip_literals: "false" }, "1.2.3.4")).toBe(true);
    // IPv6 literals are matched with their brackets, port removed.
    expect(serverAllowedByAcl({ allow: ["[::1]"] }, "[::1]:8448")).toBe(true);
  });

  it("ignores non-list fields and non-string entries", () => {
    expect(serverAllowedByAcl({ allow: "*" }, "a.org")).toBe(false);
    expect(serverAllowedByAcl({ allow: ["*"], deny: "a.org" }, "a.org")).toBe(true);
    expect(serverAllowedByAcl({ allow: [1, null, { x: 1 }, "a.org"] }, "a.org")).toBe(true);
    expect(serverAllowedByAcl({ allow: ["*"], deny: [7] }, "7")).toBe(true);
  });
});
