/**
 * GET /.well-known/matrix/support (spec "Server support discovery", v1.10): served from Myelin's `support` config
 * key, 404 when unconfigured; the config is checked against the spec's shape at start-up.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.js";
import { ConfigError } from "../../src/config/reader.js";
import { Client } from "../helpers/http.js";
import { baseYaml, startTestServer, type TestServer } from "../helpers/server.js";

const SUPPORT = {
  contacts: [
    { matrix_id: "@admin:test.local", email_address: "admin@example.org", role: "m.role.admin" },
    { email_address: "security@example.org", role: "m.role.security" },
  ],
  support_page: "https://example.org/support.html",
};

let configured: TestServer;
let bare: TestServer;

beforeAll(async () => {
  configured = await startTestServer({ config: { support: SUPPORT } });
  bare = await startTestServer();
});
afterAll(async () => {
  await Promise.all([configured?.close(), bare?.close()]);
});

describe("GET /.well-known/matrix/support", () => {
  it("serves the configured contacts and support page, without authentication", async () => {
    const res = await new Client(configured.baseUrl).get("/.well-known/matrix/support");
    expect(res.status, res.text).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(res.body).toEqual(SUPPORT);
  });

  it("is 404 when nothing is configured", async () => {
    const res = await new Client(bare.baseUrl).get("/.well-known/matrix/support");
    expect(res.status).toBe(404);
    expect(res.body.errcode).toBe("M_NOT_FOUND");
  });
});

describe("the support config key", () => {
  const base = baseYaml("test.local", "/tmp", { name: "sqlite3", args: { database: ":memory:" } });
  const parse = (support: unknown) => parseConfig({ ...base, support }, "/tmp");

  it("accepts a support page alone, or contacts alone", () => {
    expect(parse({ support_page: "https://example.org/help" }).config.support).toEqual({ support_page: "https://example.org/help" });
    expect(parse({ contacts: [{ matrix_id: "@a:b.example", role: "org.example.role" }] }).config.support).toEqual({ contacts: [{ matrix_id: "@a:b.example", role: "org.example.role" }] });
    expect(parseConfig(base, "/tmp").config.support).toBeUndefined();
  });

  it.each([
    ["neither contacts nor support_page", {}],
    ["an empty contacts list", { contacts: [] }],
    ["a contact without a role", { contacts: [{ matrix_id: "@a:b.example" }] }],
    ["a contact with neither matrix_id nor email_address", { contacts: [{ role: "m.role.admin" }] }],
    ["an invalid matrix_id", { contacts: [{ matrix_id: "admin", role: "m.role.admin" }] }],
    ["an invalid email address", { contacts: [{ email_address: "nope", role: "m.role.admin" }] }],
    ["a support_page that is not a URL", { support_page: "not a url" }],
    ["a support section that is not a mapping", ["x"]],
  ])("rejects %s", (_what, support) => {
    expect(() => parse(support)).toThrow(ConfigError);
    expect(() => parse(support)).toThrow(/"support/);
  });
});
