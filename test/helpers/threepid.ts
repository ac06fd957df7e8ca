/**
 * Fakes for 3PID tests, both on 127.0.0.1: an SMTP server that keeps what it receives (smtp-server, without STARTTLS
 * or AUTH), and an HTTPS identity server with the v2 endpoints a homeserver calls.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer as createHttpsServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SMTPServer } from "smtp-server";
import { generateSigningKey, type SigningKey } from "../../src/core/crypto/ed25519.js";
import { signJson } from "../../src/core/crypto/signing.js";
import { selfSignedCertificate } from "./tls.js";

export interface ReceivedMail {
  from: string;
  to: string[];
  raw: string;
}

export class FakeSmtp {
  readonly mails: ReceivedMail[] = [];
  private waiters: { to: string; resolve: (m: ReceivedMail) => void }[] = [];
  private server!: SMTPServer;
  port = 0;

  async start(): Promise<this> {
    this.server = new SMTPServer({
      disabledCommands: ["STARTTLS", "AUTH"],
      authOptional: true,
      logger: false,
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => {
          const mail: ReceivedMail = {
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
            to: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks).toString("utf8"),
          };
          this.mails.push(mail);
          for (const w of this.waiters.filter((w) => mail.to.includes(w.to))) w.resolve(mail);
          this.waiters = this.waiters.filter((w) => !mail.to.includes(w.to));
          callback();
        });
      },
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", () => resolve()));
    this.port = (this.server.server.address() as AddressInfo).port;
    return this;
  }

  /** The next mail to `to` (one already received and not yet taken counts). */
  next(to: string, timeoutMs = 10_000): Promise<ReceivedMail> {
    const i = this.mails.findIndex((m) => m.to.includes(to));
    if (i >= 0) return Promise.resolve(this.mails.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no mail to ${to} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        to,
        resolve: (m) => {
          clearTimeout(timer);
          this.mails.splice(this.mails.indexOf(m), 1);
          resolve(m);
        },
      });
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** The first http(s) link of a mail's text (quoted-printable undone), as SyTest takes it. */
export function linkOf(mail: ReceivedMail): string {
  const text = mail.raw.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  const m = /(https?:\/\/\S+)/.exec(text);
  if (!m) throw new Error(`no link in mail:\n${mail.raw}`);
  return m[1]!;
}

export interface IdentityRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown> | undefined;
}

/** A fake identity server: sessions are "validated" by the test (`validate`), bindings kept in memory. */
export class FakeIdentityServer {
  static readonly ACCESS_TOKEN = "id-access-token";
  readonly requests: IdentityRequest[] = [];
  /** medium\0address → mxid */
  readonly bindings = new Map<string, string>();
  private readonly sessions = new Map<string, { medium: string; address: string }>();
  readonly invites: Record<string, unknown>[] = [];
  /** The key store-invite publishes and `sign` signs with; `revoked` keys answer isvalid with false. */
  key: SigningKey = generateSigningKey();
  readonly revoked = new Set<string>();
  private server!: Server;
  private query = "";
  private dir = "";
  port = 0;

  get name(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Signs as this identity server (key id ed25519:0, as SyTest's). */
  sign<T extends Record<string, unknown>>(obj: T, key: SigningKey = this.key): T {
    return signJson(obj as never, this.name, { ...key, keyId: "ed25519:0" } as SigningKey) as T;
  }

  validate(sid: string, medium: string, address: string): void {
    this.sessions.set(sid, { medium, address });
  }

  async start(): Promise<this> {
    this.dir = mkdtempSync(join(tmpdir(), "myelin-is-"));
    const { certPath, keyPath } = selfSignedCertificate(this.dir, ["127.0.0.1"]);
    this.server = createHttpsServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        const body = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
        const [path, query] = (req.url ?? "").split("?") as [string, string | undefined];
        this.query = query ?? "";
        this.requests.push({ method: req.method ?? "", path, headers: req.headers, body });
        const [status, answer] = this.answer(req.method ?? "", path, req.headers, body);
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(answer));
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", () => resolve()));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  private answer(method: string, path: string, headers: IdentityRequest["headers"], body: Record<string, unknown> | undefined): [number, unknown] {
    const bearer = headers.authorization === `Bearer ${FakeIdentityServer.ACCESS_TOKEN}`;
    const unauthorized: [number, unknown] = [401, { errcode: "M_UNAUTHORIZED", error: "Unauthorized" }];
    if (method === "POST" && path === "/_matrix/identity/v2/3pid/bind") {
      if (!bearer) return unauthorized;
      const s = this.sessions.get(String(body?.sid));
      if (!s) return [400, { errcode: "M_SESSION_NOT_VALIDATED", error: "Session not validated" }];
      this.bindings.set(`${s.medium}\0${s.address}`, String(body?.mxid));
      return [200, { medium: s.medium, address: s.address, mxid: body?.mxid, not_before: 0, not_after: 4582425849161, ts: 0, signatures: {} }];
    }
    if (method === "POST" && path === "/_matrix/identity/v2/3pid/unbind") {
      if (typeof headers.authorization !== "string" || !headers.authorization.startsWith("X-Matrix ")) return unauthorized;
      const t = body?.threepid as { medium?: string; address?: string } | undefined;
      const key = `${t?.medium}\0${t?.address}`;
      if (this.bindings.get(key) !== body?.mxid) return [404, { errcode: "M_NOT_FOUND", error: "No binding" }];
      this.bindings.delete(key);
      return [200, {}];
    }
    if (method === "GET" && path === "/_matrix/identity/v2/hash_details") {
      if (!bearer) return unauthorized;
      return [200, { algorithms: ["none"], lookup_pepper: "pepper" }];
    }
    if (method === "POST" && path === "/_matrix/identity/v2/lookup") {
      if (!bearer) return unauthorized;
      const mappings: Record<string, string> = {};
      for (const a of (body?.addresses as string[]) ?? []) {
        const [address, medium] = a.split(" ");
        const mxid = this.bindings.get(`${medium}\0${address}`);
        if (mxid !== undefined) mappings[a] = mxid;
      }
      return [200, { mappings }];
    }
    if (method === "POST" && path === "/_matrix/identity/v2/store-invite") {
      if (!bearer) return unauthorized;
      this.invites.push(body ?? {});
      return [200, { token: `invite-token-${this.invites.length}`, public_keys: [{ public_key: this.key.publicKeyBase64, key_validity_url: `https://${this.name}/_matrix/identity/v2/pubkey/isvalid` }], display_name: "i...@e..." }];
    }
    if (method === "GET" && path === "/_matrix/identity/v2/pubkey/isvalid") {
      const pk = new URLSearchParams(this.query).get("public_key") ?? "";
      return [200, { valid: pk === this.key.publicKeyBase64 && !this.revoked.has(pk) }];
    }
    return [404, { errcode: "M_UNRECOGNIZED", error: "Unrecognized" }];
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
