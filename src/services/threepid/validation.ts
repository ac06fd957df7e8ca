/**
 * 3PID validation (spec "Adding Account Administrative Contact Information", the `requestToken` endpoints): a
 * session per (address, client_secret); each send attempt emails a single-use link to a submit_token endpoint we
 * serve; following it marks the session validated, and a validated session then proves ownership of the address to
 * /register (m.login.email.identity), /account/3pid/add and password reset. Secrets are stored only as hashes.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Config } from "../../config/config.js";
import { MatrixError, invalidParam } from "../../errors.js";
import type { Storage } from "../../storage/storage.js";
import type { Mailer } from "../email/mailer.js";
import type { RateLimiter } from "../ratelimit.js";

/** Which requestToken started the session: decides the email's wording and its link. */
export type ValidationPurpose = "registration" | "add_threepid" | "password_reset";

/** The submit_token endpoint of each purpose (Synapse's paths, so links in emails look the same). */
export const SUBMIT_TOKEN_PATHS: Record<ValidationPurpose, string> = {
  registration: "/_matrix/client/unstable/registration/email/submit_token",
  add_threepid: "/_matrix/client/unstable/add_threepid/email/submit_token",
  password_reset: "/_synapse/client/password_reset/email/submit_token",
};

/** How long a validated session stays usable (and any session is kept): as a UIA session. */
export const SESSION_LIFETIME_MS = 24 * 3600_000;

export interface ValidatedThreepid {
  medium: string;
  address: string;
  validatedAt: number;
}

/** A failed submit_token: shown to the person who followed the link. */
export class ThreepidValidationError extends Error {}

const CLIENT_SECRET = /^[0-9a-zA-Z.=_-]{1,255}$/;

/** Spec "Client secret": 1–255 characters of `[0-9a-zA-Z.=_-]`. */
export function assertValidClientSecret(secret: unknown): asserts secret is string {
  if (typeof secret !== "string" || !CLIENT_SECRET.test(secret)) throw invalidParam("Invalid client_secret parameter");
}

/** As Synapse: `local@domain`, the local part case-folded, the domain lower-cased; anything else is refused. */
export function canonicaliseEmail(address: string): string {
  const parts = address.trim().split("@");
  if (parts.length !== 2 || parts[0] === "" || parts[1] === "" || /\s/.test(address.trim())) throw invalidParam("Unable to parse email address");
  return `${parts[0]!.toLowerCase()}@${parts[1]!.toLowerCase()}`;
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

export interface RequestTokenInput {
  purpose: ValidationPurpose;
  clientSecret: string;
  email: string;
  sendAttempt: number;
  nextLink?: string;
  /** The requesting client's address: sending is limited per address and per client (as Synapse). */
  ip: string;
}

export class ThreepidValidation {
  constructor(
    private readonly config: Config,
    private readonly storage: Storage,
    private readonly mailer: Mailer | undefined,
    private readonly limiter: RateLimiter,
  ) {}

  /** Whether email addresses can be validated here at all (an `email` section is configured). */
  get emailEnabled(): boolean {
    return this.mailer !== undefined;
  }

  /** May this address be bound to a local account (`allowed_local_3pids`)? */
  isAllowed(medium: string, address: string): boolean {
    const allowed = this.config.threepids.allowedLocal3pids;
    return allowed === undefined || allowed.some((a) => a.medium === medium && a.pattern.test(address));
  }

  /** Checks a requestToken's `next_link` (as Synapse: http(s) only, and the whitelist when configured). */
  checkNextLink(nextLink: string): void {
    let u: URL;
    try {
      u = new URL(nextLink);
    } catch {
      throw invalidParam("next_link is not a valid URL");
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") throw invalidParam("next_link must be an http(s) URL");
    const whitelist = this.config.threepids.nextLinkDomainWhitelist;
    if (whitelist !== undefined && !whitelist.includes(u.hostname)) throw new MatrixError(400, "M_INVALID_PARAM", "'next_link' domain not included in whitelist");
  }

  /**
   * Starts (or continues) a session and emails a link, unless `send_attempt` is not higher than the last one sent
   * for this session (spec: the server "should not send another email" then). Returns the session id.
   */
  async requestEmailToken(input: RequestTokenInput): Promise<string> {
    const mailer = this.mailer;
    if (!mailer) throw new MatrixError(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "Email validation is not configured on this server");
    const secretHash = sha256(input.clientSecret);
    const now = Date.now();
    let session = await this.storage.threepids.sessionBySecret("email", input.email, secretHash);
    if (session && now - session.created_ts > SESSION_LIFETIME_MS) session = undefined;
    if (session && input.sendAttempt <= session.last_send_attempt) return session.session_id;
    // Per address, so nobody can flood an inbox, and per client; a repeat of the same attempt (above) is free.
    this.limiter.check(`ip:${input.ip}`);
    this.limiter.take(`email:${input.email}`);
    this.limiter.take(`ip:${input.ip}`);
    let sessionId: string;
    if (session) {
      sessionId = session.session_id;
    } else {
      sessionId = randomBytes(16).toString("base64url");
      // A previous session of the same secret that expired is replaced: the unique index holds one per secret.
      await this.storage.threepids.deleteSessionBySecret("email", input.email, secretHash);
      await this.storage.threepids.insertSession({
        session_id: sessionId,
        medium: "email",
        address: input.email,
        client_secret_hash: secretHash,
        last_send_attempt: input.sendAttempt,
        created_ts: now,
        validated_at: null,
      });
    }
    const token = randomBytes(24).toString("base64url");
    await this.storage.threepids.insertToken({
      token_hash: sha256(token),
      session_id: sessionId,
      next_link: input.nextLink ?? null,
      expires_ts: now + this.emailConfig().validationTokenLifetimeMs,
    });
    const link = new URL(SUBMIT_TOKEN_PATHS[input.purpose].slice(1), this.config.publicBaseurl);
    link.search = new URLSearchParams({ token, client_secret: input.clientSecret, sid: sessionId }).toString();
    try {
      await mailer.send(this.validationEmail(input.purpose, input.email, link.toString()));
    } catch (e) {
      throw new MatrixError(500, "M_UNKNOWN", `Failed to send email: ${(e as Error).message}`);
    }
    await this.storage.threepids.setSendAttempt(sessionId, input.sendAttempt);
    return sessionId;
  }

  /** Closes the SMTP connection pool. */
  close(): void {
    this.mailer?.close();
  }

  /** A session id that looks like any other, for requestToken answers that must not reveal whether an address is in use. */
  fakeSessionId(): string {
    return randomBytes(16).toString("base64url");
  }

  /** The link in an email was followed: validates the session. Returns the session's next_link, if any. */
  async submitToken(sessionId: string, clientSecret: string, token: string): Promise<{ nextLink?: string }> {
    const session = await this.storage.threepids.session(sessionId);
    if (!session || Date.now() - session.created_ts > SESSION_LIFETIME_MS) throw new ThreepidValidationError("Unknown session_id");
    if (session.client_secret_hash !== sha256(clientSecret)) throw new ThreepidValidationError("This client_secret does not match the provided session_id");
    const tokenHash = sha256(token);
    const row = await this.storage.threepids.token(tokenHash);
    if (!row || row.session_id !== sessionId || row.expires_ts < Date.now()) throw new ThreepidValidationError("Validation token not found or has expired");
    if (!(await this.storage.threepids.validate(sessionId, tokenHash, Date.now()))) throw new ThreepidValidationError("Validation token not found or has expired");
    return row.next_link !== null ? { nextLink: row.next_link } : {};
  }

  /** The 3PID a validated session proves, or undefined (unknown, wrong secret, not validated, expired). */
  async validatedSession(sessionId: unknown, clientSecret: unknown): Promise<ValidatedThreepid | undefined> {
    if (typeof sessionId !== "string" || typeof clientSecret !== "string") return undefined;
    const session = await this.storage.threepids.session(sessionId);
    if (!session || session.client_secret_hash !== sha256(clientSecret) || session.validated_at === null) return undefined;
    if (Date.now() - session.created_ts > SESSION_LIFETIME_MS) return undefined;
    return { medium: session.medium, address: session.address, validatedAt: session.validated_at };
  }

  private emailConfig() {
    return this.config.email!;
  }

  private validationEmail(purpose: ValidationPurpose, to: string, link: string) {
    const email = this.emailConfig();
    const reset = purpose === "password_reset";
    const subject = reset ? email.subjects.passwordReset : email.subjects.emailValidation;
    const what = reset
      ? `A password reset request has been received for your ${email.appName} account on ${this.config.serverName}.`
      : `You have asked us to register this email with a ${email.appName} account on ${this.config.serverName}.`;
    const text = `${what}\n\nTo confirm, follow this link:\n\n${link}\n\nIf this was not you, you can safely ignore this email.\n`;
    const html = `<p>${escapeHtml(what)}</p><p>To confirm, follow <a href="${escapeHtml(link)}">this link</a>.</p><p>If this was not you, you can safely ignore this email.</p>`;
    return { to, subject, text, html };
  }
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}
