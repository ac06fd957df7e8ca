/**
 * Cross-signing over HTTP (spec "Cross-signing"): POST /keys/device_signing/upload (usage, user, signatures by the
 * master key; no UIA for the first upload, UIA to replace; identical re-upload idempotent), POST
 * /keys/signatures/upload (every signature checked, per-key failures), what /keys/query shows to whom, and the
 * device-list change room-mates see.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signJson } from "../../src/core/crypto/signing.js";
import type { JsonObject } from "../../src/core/json/types.js";
import { makeCrossSigning, makeDevice, signOnly, type CrossSigningKeys, type TestDevice } from "../helpers/e2e.js";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { V3, roomWith, sync, type Json } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let c: Client;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

const signingUpload = (u: TestUser, body: Json) => c.post<Json>(`${V3}/keys/device_signing/upload`, body, { token: u.accessToken });
const sigUpload = (u: TestUser, body: Json) => c.post<Json>(`${V3}/keys/signatures/upload`, body, { token: u.accessToken });
const query = (u: TestUser, users: string[]) => c.post<Json>(`${V3}/keys/query`, { device_keys: Object.fromEntries(users.map((x) => [x, []])) }, { token: u.accessToken });
const password = (u: TestUser) => ({ type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password: u.password });

async function setUp(): Promise<{ u: TestUser; d: TestDevice; cs: CrossSigningKeys }> {
  const u = await registerUser(c);
  const d = makeDevice(u.userId, u.deviceId);
  expect((await c.post(`${V3}/keys/upload`, { device_keys: d.deviceKeys }, { token: u.accessToken })).status).toBe(200);
  const cs = makeCrossSigning(u.userId);
  const r = await signingUpload(u, { master_key: cs.masterKey, self_signing_key: cs.selfSigningKey, user_signing_key: cs.userSigningKey });
  expect(r.status, r.text).toBe(200);
  return { u, d, cs };
}

describe("POST /keys/device_signing/upload", () => {
  it("first upload needs no UIA; /keys/query shows master and self-signing keys to all, user-signing only to the owner", async () => {
    const { u, cs } = await setUp();
    const other = await registerUser(c);
    const mine = await query(u, [u.userId]);
    expect((mine.body.master_keys as Json)[u.userId]).toEqual(cs.masterKey);
    expect((mine.body.self_signing_keys as Json)[u.userId]).toEqual(cs.selfSigningKey);
    expect((mine.body.user_signing_keys as Json)[u.userId]).toEqual(cs.userSigningKey);
    const theirs = await query(other, [u.userId]);
    expect((theirs.body.master_keys as Json)[u.userId]).toEqual(cs.masterKey);
    expect(theirs.body.user_signing_keys).toEqual({});
  });

  it("an identical re-upload needs no UIA; a new master key does (password), and then replaces the old", async () => {
    const { u, cs } = await setUp();
    expect((await signingUpload(u, { master_key: cs.masterKey, self_signing_key: cs.selfSigningKey })).status).toBe(200);
    const fresh = makeCrossSigning(u.userId);
    const body = { master_key: fresh.masterKey, self_signing_key: fresh.selfSigningKey, user_signing_key: fresh.userSigningKey };
    const r = await signingUpload(u, body);
    expect(r.status).toBe(401);
    expect(r.body.flows).toEqual([{ stages: ["m.login.password"] }]);
    expect((await signingUpload(u, { ...body, auth: { ...password(u), password: "wrong" } })).status).toBe(401);
    // The session carries the keys: a follow-up with only `auth` completes it.
    const ok = await signingUpload(u, { auth: { ...password(u), session: r.body.session } });
    expect(ok.status, ok.text).toBe(200);
    expect(((await query(u, [u.userId])).body.master_keys as Json)[u.userId]).toEqual(fresh.masterKey);
  });

  it("checks usage, user, and signatures by the master key; needs a master key", async () => {
    const u = await registerUser(c);
    const cs = makeCrossSigning(u.userId);
    expectError(await signingUpload(u, { self_signing_key: cs.selfSigningKey }), 400, "M_MISSING_PARAM");
    expectError(await signingUpload(u, { master_key: { ...cs.masterKey, usage: ["self_signing"] } }), 400, "M_INVALID_PARAM");
    expectError(await signingUpload(u, { master_key: { ...cs.masterKey, user_id: "@x:y" } }), 400, "M_INVALID_PARAM");
    expectError(await signingUpload(u, { master_key: { ...cs.masterKey, keys: { "ed25519:abc": "abc" } } }), 400, "M_INVALID_PARAM");
    expectError(await signingUpload(u, { master_key: { ...cs.masterKey, keys: {} } }), 400, "M_INVALID_PARAM");
    expectError(await signingUpload(u, { master_key: "x" }), 400, "M_BAD_JSON");
    const unsignedSsk = { ...cs.selfSigningKey, signatures: {} };
    expectError(await signingUpload(u, { master_key: cs.masterKey, self_signing_key: unsignedSsk }), 400, "M_INVALID_SIGNATURE");
    const wrongSigner = signOnly(cs.selfSigningKey, u.userId, cs.userSigning);
    expectError(await signingUpload(u, { master_key: cs.masterKey, user_signing_key: cs.userSigningKey, self_signing_key: wrongSigner }), 400, "M_INVALID_SIGNATURE");
    // Nothing was stored by the refused uploads.
    expect((await query(u, [u.userId])).body.master_keys).toEqual({});
  });

  it("room-mates see the user in device_lists.changed", async () => {
    const u = await registerUser(c);
    const mate = await registerUser(c);
    await roomWith(c, u, [mate]);
    const since = (await sync(c, mate)).next_batch;
    const cs = makeCrossSigning(u.userId);
    expect((await signingUpload(u, { master_key: cs.masterKey, self_signing_key: cs.selfSigningKey })).status).toBe(200);
    expect((await sync(c, mate, { since })).device_lists.changed).toContain(u.userId);
    // A new user-signing key alone is news for the user's own devices only (it is private to them).
    const mateSince = (await sync(c, mate)).next_batch;
    const ownSince = (await sync(c, u)).next_batch;
    const us = await signingUpload(u, { user_signing_key: cs.userSigningKey, auth: password(u) });
    expect(us.status, us.text).toBe(200);
    expect((await sync(c, u, { since: ownSince })).device_lists.changed).toContain(u.userId);
    expect((await sync(c, mate, { since: mateSince })).device_lists.changed).not.toContain(u.userId);
  });
});

describe("POST /keys/signatures/upload", () => {
  it("self-signing a device, a device signing the master key, user-signing another's master key", async () => {
    const { u, d, cs } = await setUp();
    const { u: v, cs: vcs } = await setUp();
    const deviceSigned = signOnly(d.deviceKeys, u.userId, cs.selfSigning);
    const masterSigned = signOnly(cs.masterKey, u.userId, d.signing);
    const otherSigned = signOnly(vcs.masterKey, u.userId, cs.userSigning);
    const r = await sigUpload(u, {
      [u.userId]: { [u.deviceId]: deviceSigned, [cs.master.publicKeyBase64]: masterSigned },
      [v.userId]: { [vcs.master.publicKeyBase64]: otherSigned },
    });
    expect(r.status, r.text).toBe(200);
    expect(r.body).toEqual({ failures: {} });
    const sigOf = (o: JsonObject, user: string, key: string) => ((o.signatures as Json | undefined)?.[user] as Json | undefined)?.[key];
    // Everyone sees the self-signing signature on the device and the device's on the master key.
    const seenByV = await query(v, [u.userId, v.userId]);
    const dev = ((seenByV.body.device_keys as Json)[u.userId] as Json)[u.deviceId] as JsonObject;
    expect(sigOf(dev, u.userId, cs.selfSigning.keyId)).toBe(sigOf(deviceSigned, u.userId, cs.selfSigning.keyId));
    expect(sigOf((seenByV.body.master_keys as Json)[u.userId] as JsonObject, u.userId, d.signing.keyId)).toBeDefined();
    // u's user-signing signature over v's master key is private to u.
    expect(sigOf((seenByV.body.master_keys as Json)[v.userId] as JsonObject, u.userId, cs.userSigning.keyId)).toBeUndefined();
    const seenByU = await query(u, [v.userId]);
    expect(sigOf((seenByU.body.master_keys as Json)[v.userId] as JsonObject, u.userId, cs.userSigning.keyId)).toBe(sigOf(otherSigned, u.userId, cs.userSigning.keyId));
  });

  it("signing another user's master key puts that user in the signer's device_lists.changed, nobody else's", async () => {
    const { u, cs } = await setUp();
    const { u: v, cs: vcs } = await setUp();
    const mate = await registerUser(c);
    await roomWith(c, mate, [v]);
    const [uSince, vSince, mateSince] = [(await sync(c, u)).next_batch, (await sync(c, v)).next_batch, (await sync(c, mate)).next_batch];
    const r = await sigUpload(u, { [v.userId]: { [vcs.master.publicKeyBase64]: signOnly(vcs.masterKey, u.userId, cs.userSigning) } });
    expect(r.body).toEqual({ failures: {} });
    // u and v share no room: the signature is still news to u (as Synapse's user_signature_stream).
    const mine = (await sync(c, u, { since: uSince })).device_lists.changed;
    expect(mine).toContain(v.userId);
    expect(mine).not.toContain(u.userId);
    expect((await sync(c, v, { since: vSince })).device_lists.changed).not.toContain(v.userId);
    expect((await sync(c, mate, { since: mateSince })).device_lists.changed).not.toContain(v.userId);
    const ch = await c.get<Json>(`${V3}/keys/changes?from=${uSince}&to=${(await sync(c, u)).next_batch}`, { token: u.accessToken });
    expect(ch.body.changed).toContain(v.userId);
  });

  it("bad signatures, unknown keys and altered objects are per-key failures; good ones beside them are stored", async () => {
    const { u, d, cs } = await setUp();
    const { u: v, cs: vcs } = await setUp();
    const good = signOnly(d.deviceKeys, u.userId, cs.selfSigning);
    const forged = signOnly(d.deviceKeys, u.userId, { ...makeCrossSigning(u.userId).selfSigning, keyId: cs.selfSigning.keyId });
    const altered = signOnly({ ...vcs.masterKey, usage: ["master", "extra"] }, u.userId, cs.userSigning);
    const r = await sigUpload(u, {
      [u.userId]: { [u.deviceId]: good, NOSUCHDEVICE: signOnly(d.deviceKeys, u.userId, cs.selfSigning), [cs.master.publicKeyBase64]: { ...cs.masterKey } },
      [v.userId]: { [vcs.master.publicKeyBase64]: altered, [vcs.selfSigning.publicKeyBase64]: signOnly(vcs.selfSigningKey, u.userId, cs.userSigning) },
      "@nobody:nowhere.invalid": { abc: signJson({ a: 1 }, u.userId, cs.userSigning) },
    });
    expect(r.status, r.text).toBe(200);
    const f = r.body.failures as Record<string, Record<string, { errcode: string }>>;
    expect(f[u.userId]!.NOSUCHDEVICE!.errcode).toBe("M_NOT_FOUND");
    expect(f[u.userId]![cs.master.publicKeyBase64]!.errcode).toBe("M_INVALID_PARAM");
    expect(f[u.userId]![u.deviceId]).toBeUndefined();
    expect(f[v.userId]![vcs.master.publicKeyBase64]!.errcode).toBe("M_INVALID_SIGNATURE");
    expect(f[v.userId]![vcs.selfSigning.publicKeyBase64]!.errcode).toBe("M_NOT_FOUND");
    expect(f["@nobody:nowhere.invalid"]!.abc!.errcode).toBe("M_NOT_FOUND");
    const r2 = await sigUpload(u, { [u.userId]: { [u.deviceId]: forged } });
    expect((r2.body.failures as Record<string, Record<string, { errcode: string }>>)[u.userId]![u.deviceId]!.errcode).toBe("M_INVALID_SIGNATURE");
    expectError(await sigUpload(u, { [u.userId]: "x" }), 400, "M_BAD_JSON");
  });

  it("without cross-signing keys, signatures cannot be checked", async () => {
    const u = await registerUser(c);
    const d = makeDevice(u.userId, u.deviceId);
    const r = await sigUpload(u, { [u.userId]: { [u.deviceId]: signOnly(d.deviceKeys, u.userId, d.signing) } });
    expect(((r.body.failures as Json)[u.userId] as Record<string, { errcode: string }>)[u.deviceId]!.errcode).toBe("M_NOT_FOUND");
  });
});
