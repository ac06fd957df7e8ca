/** Pure E2EE key checks (core/e2e/keys.ts): device keys, one-time keys, cross-signing keys and their signatures. */
import { describe, expect, it } from "vitest";
import { signJson } from "../../../src/core/crypto/signing.js";
import { KeyError, checkCrossSigningKey, checkDeviceKeys, checkUploadedKeys, crossSigningPublicKey, identityKeysChanged, isKey32, signedByCrossSigningKey, splitKeyId } from "../../../src/core/e2e/keys.js";
import type { JsonObject } from "../../../src/core/json/types.js";
import { curveKey, makeCrossSigning, makeDevice } from "../../helpers/e2e.js";

const U = "@alice:example.org";
const errcodeOf = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    if (e instanceof KeyError) return e.errcode;
    throw e;
  }
  return undefined;
};

describe("device keys", () => {
  const d = makeDevice(U, "DEV");
  it("accepts self-signed keys of the user's device", () => {
    expect(checkDeviceKeys(d.deviceKeys, U, "DEV")).toBe(d.deviceKeys);
  });
  it("refuses another user or device, bad names, non-base64, missing or wrong signatures", () => {
    expect(errcodeOf(() => checkDeviceKeys(d.deviceKeys, "@bob:example.org", "DEV"))).toBe("M_INVALID_PARAM");
    expect(errcodeOf(() => checkDeviceKeys(d.deviceKeys, U, "OTHER"))).toBe("M_INVALID_PARAM");
    expect(errcodeOf(() => checkDeviceKeys({ ...d.deviceKeys, signatures: undefined }, U, "DEV"))).toBe("M_BAD_JSON");
    expect(errcodeOf(() => checkDeviceKeys({ ...d.deviceKeys, signatures: { [U]: {} } }, U, "DEV"))).toBe("M_INVALID_SIGNATURE");
    expect(errcodeOf(() => checkDeviceKeys({ ...d.deviceKeys, algorithms: [] }, U, "DEV"))).toBe("M_INVALID_SIGNATURE");
    const keys = d.deviceKeys.keys as JsonObject;
    const resign = (k: JsonObject) => signJson({ ...d.deviceKeys, keys: k, signatures: {} }, U, d.signing);
    expect(errcodeOf(() => checkDeviceKeys(resign({ ...keys, "curve25519:DEV": "@@@" }), U, "DEV"))).toBe("M_INVALID_PARAM");
    expect(errcodeOf(() => checkDeviceKeys(resign({ ...keys, "curve25519:DEV": `${curveKey()}=` }), U, "DEV"))).toBe("M_INVALID_PARAM");
    expect(errcodeOf(() => checkDeviceKeys(resign({ ...keys, "curve25519:OTHER": curveKey() }), U, "DEV"))).toBe("M_INVALID_PARAM");
    // No ed25519 key: a missing field.
    expect(errcodeOf(() => checkDeviceKeys(resign({ "curve25519:DEV": curveKey() }), U, "DEV"))).toBe("M_BAD_JSON");
  });
  it("accepts a device with no identity keys (user_id and device_id only); any of the three fields needs all", () => {
    const bare = { user_id: U, device_id: "DEV" };
    expect(checkDeviceKeys(bare, U, "DEV")).toBe(bare);
    expect(errcodeOf(() => checkDeviceKeys(bare, U, "OTHER"))).toBe("M_INVALID_PARAM");
    expect(errcodeOf(() => checkDeviceKeys({ device_id: "DEV" }, U, "DEV"))).toBe("M_BAD_JSON");
    for (const only of [{ algorithms: [] }, { keys: {} }, { signatures: {} }]) expect(errcodeOf(() => checkDeviceKeys({ ...bare, ...only }, U, "DEV"))).toBe("M_BAD_JSON");
  });
  it("tells a changed identity from a re-upload; a device without identity keys may gain them, not lose them", () => {
    expect(identityKeysChanged(d.deviceKeys as never, { ...d.deviceKeys, algorithms: ["x"] } as never)).toBe(false);
    expect(identityKeysChanged(d.deviceKeys as never, makeDevice(U, "DEV").deviceKeys as never)).toBe(true);
    const bare = { user_id: U, device_id: "DEV" };
    expect(identityKeysChanged(bare, d.deviceKeys as never)).toBe(false);
    expect(identityKeysChanged(d.deviceKeys as never, bare)).toBe(true);
  });
});

describe("one-time and fallback keys", () => {
  const d = makeDevice(U, "DEV");
  const ed = d.signing.publicKeyBase64;
  it("parses names and checks signed keys against the device key", () => {
    const k = signJson({ key: curveKey() }, U, d.signing);
    expect(checkUploadedKeys({ "signed_curve25519:AAA": k, "curve25519:B": curveKey(), "other:x:y": "z" }, "one_time_keys", U, "DEV", ed).map((x) => [x.algorithm, x.keyId])).toEqual([
      ["signed_curve25519", "AAA"],
      ["curve25519", "B"],
      ["other", "x:y"],
    ]);
    expect(errcodeOf(() => checkUploadedKeys({ "signed_curve25519:A": k }, "one_time_keys", U, "DEV", makeDevice(U, "DEV").signing.publicKeyBase64))).toBe("M_INVALID_SIGNATURE");
    expect(errcodeOf(() => checkUploadedKeys({ ":A": "x" }, "one_time_keys", U, "DEV", ed))).toBe("M_INVALID_PARAM");
    expect(errcodeOf(() => checkUploadedKeys({ "signed_curve25519:": k }, "one_time_keys", U, "DEV", ed))).toBe("M_INVALID_PARAM");
    expect(errcodeOf(() => checkUploadedKeys({ "signed_curve25519:A": { key: "x", signatures: {} } }, "one_time_keys", U, "DEV", ed))).toBe("M_INVALID_PARAM");
    expect(errcodeOf(() => checkUploadedKeys({ "signed_curve25519:A": curveKey() }, "one_time_keys", U, "DEV", ed))).toBe("M_INVALID_SIGNATURE");
    expect(errcodeOf(() => checkUploadedKeys({ "a:b": [] }, "one_time_keys", U, "DEV", ed))).toBe("M_BAD_JSON");
    expect(errcodeOf(() => checkUploadedKeys([], "one_time_keys", U, "DEV", ed))).toBe("M_BAD_JSON");
  });
  it("helpers", () => {
    expect(splitKeyId("a:b:c")).toEqual(["a", "b:c"]);
    expect(splitKeyId("ab")).toBeUndefined();
    expect(isKey32(curveKey())).toBe(true);
    expect(isKey32("AAAA")).toBe(false);
  });
});

describe("cross-signing keys", () => {
  const cs = makeCrossSigning(U);
  it("checks user, usage and the one self-named ed25519 key", () => {
    expect(checkCrossSigningKey(cs.masterKey, U, "master").publicKey).toBe(cs.master.publicKeyBase64);
    expect(errcodeOf(() => checkCrossSigningKey(cs.masterKey, U, "self_signing"))).toBe("M_INVALID_PARAM");
    expect(errcodeOf(() => checkCrossSigningKey(cs.masterKey, "@b:c", "master"))).toBe("M_INVALID_PARAM");
    const pub = cs.master.publicKeyBase64;
    expect(crossSigningPublicKey({ keys: { [`ed25519:${pub}`]: pub, "ed25519:x": "x" } })).toBeUndefined();
    expect(crossSigningPublicKey({ keys: { [`ed25519:${curveKey()}`]: pub } })).toBeUndefined();
  });
  it("verifies signatures by the master key over canonical JSON", () => {
    expect(signedByCrossSigningKey(cs.selfSigningKey, U, cs.master.publicKeyBase64)).toBe(true);
    expect(signedByCrossSigningKey({ ...cs.selfSigningKey, usage: ["user_signing"] }, U, cs.master.publicKeyBase64)).toBe(false);
    expect(signedByCrossSigningKey(cs.selfSigningKey, U, cs.userSigning.publicKeyBase64)).toBe(false);
  });
});
