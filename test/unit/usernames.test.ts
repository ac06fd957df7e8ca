/** Username rules for new accounts (spec "User Identifiers" plus Synapse's reservations) and login identifiers. */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.js";
import { MatrixError } from "../../src/errors.js";
import { AccountService } from "../../src/services/accounts.js";

const { config } = parseConfig({ server_name: "example.org", listeners: [{ port: 8008 }] }, "/tmp");
// Only the config is used by the methods under test; the other collaborators are never touched.
const accounts = new AccountService(null as never, config, null as never, null as never, null as never);

function errcodeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof MatrixError) return `${e.status} ${e.errcode}`;
    throw e;
  }
  return "ok";
}

describe("userIdForUsername", () => {
  it("accepts the allowed characters and lower-cases", () => {
    expect(accounts.userIdForUsername("alice")).toBe("@alice:example.org");
    expect(accounts.userIdForUsername("Alice")).toBe("@alice:example.org");
    expect(accounts.userIdForUsername("a.b-c=d/e+f_g9")).toBe("@a.b-c=d/e+f_g9:example.org");
  });

  it("refuses empty names, other characters, a leading underscore and over-long ids", () => {
    for (const bad of ["", "with space", "colon:name", "ümlaut", "emoji😀", "at@sign", "hash#", "_bridge", "tab\t"]) {
      expect(errcodeOf(() => accounts.userIdForUsername(bad)), bad).toBe("400 M_INVALID_USERNAME");
    }
    // The whole user id may be 255 bytes: "@" + localpart + ":example.org" (12 bytes).
    const max = 255 - 1 - ":example.org".length;
    expect(accounts.userIdForUsername("x".repeat(max))).toHaveLength(255);
    expect(errcodeOf(() => accounts.userIdForUsername("x".repeat(max + 1)))).toBe("400 M_INVALID_USERNAME");
  });
});

describe("resolveIdentifier", () => {
  it("takes m.id.user with a localpart or a full user id, in any case", () => {
    for (const user of ["alice", "ALICE", "@alice:example.org", "@Alice:example.org"]) {
      expect(accounts.resolveIdentifier({ identifier: { type: "m.id.user", user } })).toBe("@alice:example.org");
    }
  });

  it("takes the legacy top-level user field", () => {
    expect(accounts.resolveIdentifier({ user: "Bob" })).toBe("@bob:example.org");
  });

  it("refuses other servers' users, missing and malformed identifiers", () => {
    expect(errcodeOf(() => accounts.resolveIdentifier({ identifier: { type: "m.id.user", user: "@alice:elsewhere.org" } }))).toBe("403 M_FORBIDDEN");
    expect(errcodeOf(() => accounts.resolveIdentifier({}))).toBe("400 M_MISSING_PARAM");
    expect(errcodeOf(() => accounts.resolveIdentifier({ identifier: "alice" }))).toBe("400 M_BAD_JSON");
    expect(errcodeOf(() => accounts.resolveIdentifier({ identifier: { type: "m.id.user" } }))).toBe("400 M_BAD_JSON");
    expect(errcodeOf(() => accounts.resolveIdentifier({ identifier: { type: "m.id.user", user: 5 } }))).toBe("400 M_BAD_JSON");
    expect(errcodeOf(() => accounts.resolveIdentifier({ identifier: { type: "m.id.weird", user: "a" } }))).toBe("400 M_UNKNOWN");
    expect(errcodeOf(() => accounts.resolveIdentifier({ identifier: { type: "m.id.thirdparty", medium: "email", address: "a@b.c" } }))).toBe("403 M_FORBIDDEN");
  });
});
