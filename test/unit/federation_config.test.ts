/** The federation keys of homeserver.yaml (Synapse's names and defaults). */
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.js";
import { ConfigError } from "../../src/config/reader.js";
import { generateSigningKey } from "../../src/core/crypto/ed25519.js";
import { DEFAULT_IP_RANGE_BLACKLIST } from "../../src/federation/ip_filter.js";
import { checkTlsListeners, startServer } from "../../src/server.js";

const DIR = "/etc/myelin";
const parse = (extra: Record<string, unknown> = {}) => parseConfig({ server_name: "example.org", listeners: [{ port: 8008 }], ...extra }, DIR);

function expectConfigError(extra: Record<string, unknown>, fragment: string): void {
  let error: unknown;
  try {
    parse(extra);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ConfigError);
  expect((error as Error).message).toContain(fragment);
}

describe("federation config", () => {
  it("has Synapse's defaults", () => {
    const { config, warnings } = parse();
    expect(warnings).toEqual([]);
    expect(config.keyRefreshIntervalMs).toBe(86_400_000);
    expect(config.oldSigningKeys).toEqual([]);
    expect(config.federationVerifyCertificates).toBe(true);
    expect(config.ipRangeBlacklist).toEqual(DEFAULT_IP_RANGE_BLACKLIST);
    expect(config.ipRangeWhitelist).toEqual([]);
    expect(config.federationDomainWhitelist).toBeUndefined();
  });

  it("reads every key without warnings", () => {
    const old = generateSigningKey();
    const { config, warnings } = parse({
      key_refresh_interval: "2h",
      old_signing_keys: { [old.keyId]: { key: old.publicKeyBase64, expired_ts: 1_600_000_000_000 } },
      federation_verify_certificates: false,
      ip_range_blacklist: ["10.0.0.0/8"],
      ip_range_whitelist: ["10.1.0.0/16", "fd00::1"],
      federation_domain_whitelist: ["a.example", "b.example"],
      trusted_key_servers: [{ server_name: "notary.example", verify_keys: { [old.keyId]: old.publicKeyBase64 } }],
    });
    expect(warnings).toEqual([]);
    expect(config.keyRefreshIntervalMs).toBe(7_200_000);
    expect(config.oldSigningKeys).toEqual([{ keyId: old.keyId, key: old.publicKeyBase64, expiredTs: 1_600_000_000_000 }]);
    expect(config.federationVerifyCertificates).toBe(false);
    expect(config.ipRangeBlacklist).toEqual(["10.0.0.0/8"]);
    expect(config.ipRangeWhitelist).toEqual(["10.1.0.0/16", "fd00::1"]);
    expect(config.federationDomainWhitelist).toEqual(["a.example", "b.example"]);
  });

  it("federation_ip_range_blacklist (deprecated) replaces the blacklist and, as in Synapse, disables the whitelist", () => {
    const { config } = parse({ federation_ip_range_blacklist: ["192.168.0.0/16"], ip_range_blacklist: ["10.0.0.0/8"], ip_range_whitelist: ["10.1.0.0/16"] });
    expect(config.ipRangeBlacklist).toEqual(["192.168.0.0/16"]);
    expect(config.ipRangeWhitelist).toEqual([]);
  });

  it("an empty federation_domain_whitelist federates with nobody", () => {
    expect(parse({ federation_domain_whitelist: [] }).config.federationDomainWhitelist).toEqual([]);
  });

  it("rejects malformed values, naming the key", () => {
    expectConfigError({ ip_range_blacklist: ["10.0.0.0/40"] }, "ip_range_blacklist");
    expectConfigError({ ip_range_whitelist: ["localhost"] }, "ip_range_whitelist");
    expectConfigError({ federation_ip_range_blacklist: "10.0.0.0/8" }, "federation_ip_range_blacklist");
    expectConfigError({ key_refresh_interval: "soon" }, "key_refresh_interval");
    expectConfigError({ old_signing_keys: { "rsa:1": { key: "x", expired_ts: 1 } } }, "old_signing_keys.rsa:1");
    expectConfigError({ old_signing_keys: { "ed25519:a": { key: "AAAA", expired_ts: 1 } } }, "old_signing_keys.ed25519:a.key");
    expectConfigError({ old_signing_keys: { "ed25519:a": { key: generateSigningKey().publicKeyBase64 } } }, "expired_ts");
    expectConfigError({ trusted_key_servers: [{ server_name: "n.example", verify_keys: { "ed25519:a": "AAAA" } }] }, "verify_keys");
    expectConfigError({ federation_verify_certificates: "no" }, "federation_verify_certificates");
  });

  it("refuses to start a TLS listener without certificate and key, as Synapse", async () => {
    const { config } = parse({ listeners: [{ port: 8448, tls: true }] });
    expect(() => checkTlsListeners(config)).toThrow(/tls_certificate_path/);
    await expect(startServer(config, { logger: pino({ level: "silent" }) })).rejects.toThrow(/tls_certificate_path/);
    const ok = parse({ listeners: [{ port: 8448, tls: true }], tls_certificate_path: "cert.pem", tls_private_key_path: "/k.pem" }).config;
    expect(() => checkTlsListeners(ok)).not.toThrow();
    expect([ok.tlsCertificatePath, ok.tlsPrivateKeyPath]).toEqual([`${DIR}/cert.pem`, "/k.pem"]);
  });

  it("without certificate checks, refuses a notary without verify_keys unless accept_keys_insecurely (as Synapse)", () => {
    expectConfigError({ federation_verify_certificates: false }, "trusted_key_servers[0]");
    expect(parse({ federation_verify_certificates: false, trusted_key_servers: [{ server_name: "matrix.org", accept_keys_insecurely: true }] }).warnings).toEqual([]);
    expect(parse({ federation_verify_certificates: false, trusted_key_servers: [] }).config.trustedKeyServers).toEqual([]);
  });
});
