/**
 * Third-party lookups (spec "Third-party Networks") with no application services: what Synapse answers then —
 * no protocols, 404 for a protocol's metadata, empty lists for every lookup — and the merging the service does once
 * application services provide sources.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ThirdPartyService, type ThirdPartySource } from "../../src/services/thirdparty.js";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let c: Client;
let u: TestUser;

beforeAll(async () => {
  ts = await startTestServer({ config: { allow_guest_access: true } });
  c = new Client(ts.baseUrl);
  u = await registerUser(c);
});
afterAll(async () => {
  await ts?.close();
});

const TP = "/_matrix/client/v3/thirdparty";

const LOOKUPS = [
  `${TP}/location/irc?network=irc.example.org&channel=%23matrix`,
  `${TP}/user/irc?network=irc.example.org&nickname=alice`,
  `${TP}/location?alias=${encodeURIComponent("#matrix:test.local")}`,
  `${TP}/user?userid=${encodeURIComponent("@alice:test.local")}`,
  // Synapse checks no parameters either.
  `${TP}/location`,
  `${TP}/user`,
];

describe("with no application services", () => {
  it("GET /thirdparty/protocols → {}", async () => {
    const res = await c.get(`${TP}/protocols`, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
  });

  it("GET /thirdparty/protocol/{protocol} → 404 M_NOT_FOUND", async () => {
    for (const p of ["irc", "gitter", "m.unknown"]) {
      expectError(await c.get(`${TP}/protocol/${p}`, { token: u.accessToken }), 404, "M_NOT_FOUND");
    }
  });

  it("every lookup → 200 [] (as Synapse, rather than the spec's 404)", async () => {
    for (const path of LOOKUPS) {
      const res = await c.get(path, { token: u.accessToken });
      expect(res.status, path).toBe(200);
      expect(res.body, path).toEqual([]);
    }
  });

  it("is served on r0 too", async () => {
    expect((await c.get(`${TP.replace("/v3/", "/r0/")}/protocols`, { token: u.accessToken })).body).toEqual({});
    expect((await c.get(`${TP.replace("/v3/", "/r0/")}/user/irc`, { token: u.accessToken })).body).toEqual([]);
    expectError(await c.get(`${TP.replace("/v3/", "/r0/")}/protocol/irc`, { token: u.accessToken }), 404, "M_NOT_FOUND");
  });
});

describe("access", () => {
  it("needs an access token: 401 M_MISSING_TOKEN, 401 M_UNKNOWN_TOKEN", async () => {
    for (const path of [`${TP}/protocols`, `${TP}/protocol/irc`, ...LOOKUPS]) {
      expectError(await c.get(path), 401, "M_MISSING_TOKEN");
      expectError(await c.get(path, { token: "not-a-token" }), 401, "M_UNKNOWN_TOKEN");
    }
  });

  it("the deprecated access_token query parameter works too", async () => {
    expect((await c.get(`${TP}/protocols?access_token=${encodeURIComponent(u.accessToken)}`)).body).toEqual({});
    expect((await c.get(`${TP}/user/irc?nickname=alice&access_token=${encodeURIComponent(u.accessToken)}`)).body).toEqual([]);
  });

  it("guests may use them (as Synapse)", async () => {
    const g = await c.post("/_matrix/client/v3/register?kind=guest", {});
    expect(g.status).toBe(200);
    const token = g.body.access_token as string;
    expect((await c.get(`${TP}/protocols`, { token })).body).toEqual({});
    expectError(await c.get(`${TP}/protocol/irc`, { token }), 404, "M_NOT_FOUND");
    for (const path of LOOKUPS) expect((await c.get(path, { token })).body, path).toEqual([]);
  });

  it("POST → 405 M_UNRECOGNIZED", async () => {
    expectError(await c.post(`${TP}/protocols`, {}, { token: u.accessToken }), 405, "M_UNRECOGNIZED");
  });
});

describe("ThirdPartyService with sources (the seam for application services)", () => {
  const ircA: ThirdPartySource = {
    protocols: ["irc"],
    protocol: async () => ({ user_fields: ["network", "nickname"], location_fields: ["network", "channel"], field_types: {}, instances: [{ network_id: "libera", desc: "Libera" }] }),
    query: async (kind, protocol, fields) => [{ [kind === "user" ? "userid" : "alias"]: "from-a", protocol, fields }],
  };
  const ircB: ThirdPartySource = {
    protocols: ["irc", "slack"],
    protocol: async (p) => (p === "irc" ? { user_fields: ["other"], location_fields: [], field_types: {}, instances: [{ network_id: "oftc", desc: "OFTC" }] } : undefined),
    query: async () => {
      throw new Error("bridge down");
    },
  };

  it("merges a protocol's instances across sources; other fields are the first answer's", async () => {
    const svc = new ThirdPartyService(() => [ircA, ircB]);
    const protocols = await svc.protocols();
    expect(Object.keys(protocols)).toEqual(["irc"]);
    expect(protocols.irc).toEqual({
      user_fields: ["network", "nickname"],
      location_fields: ["network", "channel"],
      field_types: {},
      instances: [
        { network_id: "libera", desc: "Libera" },
        { network_id: "oftc", desc: "OFTC" },
      ],
    });
    expect((await svc.protocol("irc")).instances).toHaveLength(2);
    await expect(svc.protocol("slack")).rejects.toMatchObject({ status: 404, errcode: "M_NOT_FOUND" });
  });

  it("asks the sources interested in the protocol; a failing source contributes nothing", async () => {
    const svc = new ThirdPartyService(() => [ircA, ircB]);
    expect(await svc.query("user", "irc", { nickname: ["alice"] })).toEqual([{ userid: "from-a", protocol: "irc", fields: { nickname: ["alice"] } }]);
    expect(await svc.query("location", "xmpp", {})).toEqual([]);
  });

  it("with no sources: {} and []", async () => {
    const svc = new ThirdPartyService();
    expect(await svc.protocols()).toEqual({});
    expect(await svc.query("location", undefined, { alias: ["#a:b"] })).toEqual([]);
  });
});
