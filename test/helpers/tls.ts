/**
 * Self-signed certificates for TLS listeners in tests. node:crypto cannot create X.509 certificates, so this runs
 * `openssl req -x509` (present on Debian and every CI image we use); the key is a P-256 key, quick to generate.
 */
import { execFileSync } from "node:child_process";
import { isIP } from "node:net";
import { writeFileSync } from "node:fs";
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

export interface CertificateAuthority extends CertificateFiles {
  /** Issues a certificate signed by this CA for the given DNS names and IP addresses, written into `dir`. */
  issue(dir: string, names: string[]): CertificateFiles;
}

/** A test CA (`ca.crt`, `ca.key` in `dir`, CN = `name`) that signs server certificates, as a private federation's CA. */
export function testCertificateAuthority(dir: string, name = "Myelin Test CA"): CertificateAuthority {
  const certPath = join(dir, "ca.crt");
  const keyPath = join(dir, "ca.key");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", `/CN=${name}`, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", keyPath, "-out", certPath],
    { stdio: "ignore" },
  );
  let serial = 0;
  return {
    certPath,
    keyPath,
    issue(outDir: string, names: string[]): CertificateFiles {
      const n = ++serial;
      const leafKey = join(outDir, `tls-${n}.key`);
      const csr = join(outDir, `tls-${n}.csr`);
      const leafCert = join(outDir, `tls-${n}.crt`);
      const ext = join(outDir, `tls-${n}.ext`);
      const san = names.map((x) => (isIP(x) ? `IP:${x}` : `DNS:${x}`)).join(",");
      execFileSync("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", `/CN=${names[0]}`, "-keyout", leafKey, "-out", csr], { stdio: "ignore" });
      writeFileSync(ext, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
      execFileSync("openssl", ["x509", "-req", "-in", csr, "-CA", certPath, "-CAkey", keyPath, "-set_serial", String(Date.now() * 100 + n), "-days", "2", "-extfile", ext, "-out", leafCert], { stdio: "ignore" });
      return { certPath: leafCert, keyPath: leafKey };
    },
  };
}
