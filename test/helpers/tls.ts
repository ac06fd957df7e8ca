/**
 * Self-signed certificates for TLS listeners in tests. node:crypto cannot create X.509 certificates, so this runs
 * `openssl req -x509` (present on Debian and every CI image we use); the key is a P-256 key, quick to generate.
 */
import { execFileSync } from "node:child_process";
import { isIP } from "node:net";
import { join } from "node:path";

export interface CertificateFiles {
  certPath: string;
  keyPath: string;
}

/** Writes `tls.crt` and `tls.key` into `dir`, valid for the given DNS names and IP addresses. */
export function selfSignedCertificate(dir: string, names: string[]): CertificateFiles {
  const certPath = join(dir, "tls.crt");
  const keyPath = join(dir, "tls.key");
  const san = names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(",");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", `/CN=${names[0]}`, "-addext", `subjectAltName=${san}`, "-keyout", keyPath, "-out", certPath],
    { stdio: "ignore" },
  );
  return { certPath, keyPath };
}
