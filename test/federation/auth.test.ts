/**
 * Request signing between two Myelin servers (hs1.test and hs2.test on 127.0.0.1, each with its own database, over
 * TLS): hs1's client signs, hs2 fetches hs1's key and accepts; forged requests get 401 M_UNAUTHORIZED.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey, type SigningKey } from "../../src/core/crypto/ed25519.js";
import { formatXMatrix, signRequest, type RequestToSign } from "../../src/core/federation/xmatrix.js";
import { startFederatedServer, TestNetwork } from "../helpers/federation.js";
import { expectError, type Response } from "../helpers/http.js";
import type { TestServer } from "../helpers/server.js";

const ECHO = "/_matrix/federation/v1/_test/echo";
let network: TestNetwork;
let hs1: TestServer;
let hs2: TestServer;
let guarded: TestServer;

beforeAll(async () => {
  network = new TestNetwork();
  hs1 = await startFederatedServer(network, "hs1.test");
  hs2 = await startFederatedServer(network, "hs2.test");
  // A server that federates with hs2.test only.
  guarded = await startFederatedServer(network, "guarded.test", { config: { federation_domain_whitelist: ["hs2.test"] } });
});

afterAll(async () => {
  await Promise.all([hs1?.close(), hs2?.close(), guarded?.close()]);
});

/** Sends a request with a hand-made Authorization header to a server's plain listener. */
async function send(to: TestServer, method: string, uri: string, authorization: string | undefined, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = {};
  if (authorization !== undefined) headers.authorization = authorization;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(to.baseUrl + uri, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {}, text };
}

function signed(req: Partial<RequestToSign> & { uri: string }, key: SigningKey = hs1.signingKey): string {
  return signRequest({ method: "GET", origin: "hs1.test", destination: "hs2.test", ...req }, key);
}

describe("signed requests between servers", () => {
  it("hs1's federation client reaches hs2, which authenticates hs1 with a key it fetches from hs1", async () => {
    const res = await hs1.server.services.federationClient.get("hs2.test", ECHO, { q: "a b", list: ["1", "2"] });
    expect(res).toEqual({ origin: "hs1.test", uri: `${ECHO}?q=a%20b&list=1&list=2`, content: {} });
    // hs2 now holds hs1's key.
    const keys = await hs2.server.services.keys.getVerifyKeys("hs1.test", [hs1.signingKey.keyId]);
    expect(keys.get(hs1.signingKey.keyId)?.key).toBe(hs1.signingKey.publicKeyBase64);
  });

  it("signs the JSON body of PUT and POST requests", async () => {
    const body = { pdus: [], edus: [{ edu_type: "m.typing", content: { room_id: "!r:hs1.test", user_id: "@a:hs1.test", typing: true } }], "é": "ü" };
    expect(await hs1.server.services.federationClient.put("hs2.test", ECHO, body)).toMatchObject({ origin: "hs1.test", content: body });
    expect(await hs1.server.services.federationClient.post("hs2.test", ECHO, {})).toMatchObject({ origin: "hs1.test", content: {} });
  });

  it("works both ways", async () => {
    expect(await hs2.server.services.federationClient.get("hs1.test", ECHO)).toMatchObject({ origin: "hs2.test" });
  });

  it("accepts a header without destination (older servers), and unusual but valid header syntax", async () => {
    const header = signed({ uri: ECHO });
    const sig = /sig="([^"]+)"/.exec(header)![1]!;
    // hs2 rebuilds the signed object with itself as destination, so a signature over destination "hs2.test" verifies.
    expect((await send(hs2, "GET", ECHO, formatXMatrix({ origin: "hs1.test", key: hs1.signingKey.keyId, sig }))).status).toBe(200);
    expect((await send(hs2, "GET", ECHO, `x-matrix   SIG=${sig} ,\tKey=${hs1.signingKey.keyId},ORIGIN=hs1.test, destination="hs2.test",future=1`)).body).toMatchObject({ origin: "hs1.test" });
  });

  it("/version answers anyone, and checks a signature that is sent", async () => {
    const version = await send(hs2, "GET", "/_matrix/federation/v1/version", undefined);
    expect(version.status).toBe(200);
    expect(version.body).toEqual({ server: { name: "Myelin", version: expect.any(String) } });
    expect(await hs1.server.services.federationClient.get("hs2.test", "/_matrix/federation/v1/version")).toEqual(version.body);
    expectError(await send(hs2, "GET", "/_matrix/federation/v1/version", signed({ uri: "/_matrix/federation/v1/other" })), 401, "M_UNAUTHORIZED");
  });
});

describe("forged requests are refused with M_UNAUTHORIZED", () => {
  it("a missing or non-X-Matrix Authorization header", async () => {
    expectError(await send(hs2, "GET", ECHO, undefined), 401, "M_UNAUTHORIZED");
    expectError(await send(hs2, "GET", ECHO, "Bearer abc"), 401, "M_UNAUTHORIZED");
  });

  it("a malformed header is a bad request: 400 M_UNAUTHORIZED", async () => {
    const good = signed({ uri: ECHO });
    expectError(await send(hs2, "GET", ECHO, good.replace(",key=", " key=")), 400, "M_UNAUTHORIZED");
    expectError(await send(hs2, "GET", ECHO, `${good},origin="hs1.test"`), 400, "M_UNAUTHORIZED");
    expectError(await send(hs2, "GET", ECHO, 'X-Matrix origin="hs1.test"'), 400, "M_UNAUTHORIZED");
  });

  it("an origin that is not a server name (a non-numeric port) is a bad request", async () => {
    const header = signRequest({ method: "GET", uri: ECHO, origin: "hs1.test:http", destination: "hs2.test" }, hs1.signingKey);
    expectError(await send(hs2, "GET", ECHO, header), 400, "M_UNAUTHORIZED");
  });

  it("a bad signature", async () => {
    const other = signed({ uri: "/_matrix/federation/v1/elsewhere" });
    const sig = /sig="([^"]+)"/.exec(other)![1]!;
    expectError(await send(hs2, "GET", ECHO, formatXMatrix({ origin: "hs1.test", destination: "hs2.test", key: hs1.signingKey.keyId, sig })), 401, "M_UNAUTHORIZED");
    expectError(await send(hs2, "GET", ECHO, formatXMatrix({ origin: "hs1.test", destination: "hs2.test", key: hs1.signingKey.keyId, sig: "AAAA" })), 401, "M_UNAUTHORIZED");
  });

  it("a wrong destination, even when correctly signed for it", async () => {
    const res = await send(hs2, "GET", ECHO, signed({ uri: ECHO, destination: "hs3.test" }));
    expect(expectError(res, 401, "M_UNAUTHORIZED").error).toContain("Destination");
  });

  it("a key the origin does not have", async () => {
    const stranger = generateSigningKey();
    expectError(await send(hs2, "GET", ECHO, signed({ uri: ECHO }, stranger)), 401, "M_UNAUTHORIZED");
  });

  it("a wrong origin: signed by hs1 but claiming to be another server, or us", async () => {
    for (const origin of ["hs3.test", "hs2.test", "guarded.test"]) {
      const header = signRequest({ method: "GET", uri: ECHO, origin, destination: "hs2.test" }, hs1.signingKey);
      expectError(await send(hs2, "GET", ECHO, header), 401, "M_UNAUTHORIZED");
    }
  });

  it("a tampered method, target, query or body", async () => {
    expectError(await send(hs2, "POST", ECHO, signed({ uri: ECHO }), {}), 401, "M_UNAUTHORIZED");
    expectError(await send(hs2, "GET", `${ECHO}?x=1`, signed({ uri: ECHO })), 401, "M_UNAUTHORIZED");
    expectError(await send(hs2, "GET", `${ECHO}?x=2`, signed({ uri: `${ECHO}?x=1` })), 401, "M_UNAUTHORIZED");
    const header = signed({ method: "PUT", uri: ECHO, content: { amount: 1 } });
    expect((await send(hs2, "PUT", ECHO, header, { amount: 1 })).status).toBe(200);
    expectError(await send(hs2, "PUT", ECHO, header, { amount: 1000 }), 401, "M_UNAUTHORIZED");
    expectError(await send(hs2, "PUT", ECHO, header, {}), 401, "M_UNAUTHORIZED");
  });
});

describe("federation_domain_whitelist", () => {
  it("answers 403 M_FORBIDDEN to a server outside it, and accepts one inside", async () => {
    const header = signRequest({ method: "GET", uri: ECHO, origin: "hs1.test", destination: "guarded.test" }, hs1.signingKey);
    expectError(await send(guarded, "GET", ECHO, header), 403, "M_FORBIDDEN");
    expect(await hs2.server.services.federationClient.get("guarded.test", ECHO)).toMatchObject({ origin: "hs2.test" });
  });

  it("refuses to send to a server outside it", async () => {
    await expect(guarded.server.services.federationClient.get("hs1.test", ECHO)).rejects.toMatchObject({ reason: "denied" });
  });
});
