/**
 * User-Interactive Authentication (spec "User-Interactive Authentication API"): one mechanism for every endpoint
 * that needs it. An endpoint names its flows; the client completes stages one request at a time within a session;
 * when every stage of some flow is done the endpoint proceeds. Incomplete → 401 with flows, params, session and
 * completed (plus errcode/error when the last attempted stage failed).
 */
import { randomBytes } from "node:crypto";
import { isJsonObject } from "../core/json/types.js";
import { MatrixError, UiaRequiredError, badJson, forbidden } from "../errors.js";
import type { Storage } from "../storage/storage.js";

export type UiaFlows = string[][];

export interface UiaRequest {
  /** The request body's `auth` dict, if any. */
  auth: unknown;
  /** The request body without `auth`. */
  body: Record<string, unknown>;
  uri: string;
  method: string;
  /** The authenticated user, for endpoints other than /register. */
  userId?: string;
  ip: string;
}

export interface UiaOutcome {
  sessionId: string;
  /** The request body to act on: this request's, or the session's first one when this request sent only `auth`. */
  body: Record<string, unknown>;
  /** Results of completed stages, e.g. the user a password stage authenticated or the registration token used. */
  results: Record<string, unknown>;
}

/**
 * A stage failure the client cannot put right within the session, such as authenticating as another user than the
 * requester: answered as this error (Synapse: 403 "Invalid auth"), not as the 401 that invites another attempt.
 */
export class UiaRefusal extends MatrixError {}

/** A stage checks its part of the auth dict; it throws a MatrixError (shown to the client inside the 401) on failure. */
export type StageHandler = (auth: Record<string, unknown>, ctx: { request: UiaRequest; sessionResults: Record<string, unknown> }) => Promise<unknown>;

const SESSION_LIFETIME_MS = 24 * 3600_000;

export class UiaService {
  private readonly stages = new Map<string, StageHandler>();
  /** Stages a client may complete even where no flow lists them (as Synapse validates any enabled stage). */
  private readonly anyFlow = new Set<string>();

  constructor(private readonly storage: Storage) {
    this.stages.set("m.login.dummy", async () => true);
  }

  registerStage(type: string, handler: StageHandler, opts: { outsideFlows?: boolean } = {}): void {
    this.stages.set(type, handler);
    if (opts.outsideFlows) this.anyFlow.add(type);
  }

  /** Runs UIA for a request; resolves when a flow is complete, throws the 401 response otherwise. */
  async authenticate(req: UiaRequest, flows: UiaFlows, params: Record<string, unknown> = {}): Promise<UiaOutcome> {
    const auth = req.auth;
    if (auth !== undefined && !isJsonObject(auth)) throw badJson("'auth' must be an object");
    const sessionIdIn = auth?.session;
    if (sessionIdIn !== undefined && typeof sessionIdIn !== "string") throw badJson("'auth.session' must be a string");

    let sessionId: string;
    let body = req.body;
    let completed: string[] = [];
    let results: Record<string, unknown> = {};
    if (sessionIdIn === undefined) {
      sessionId = randomBytes(18).toString("base64url");
      await this.storage.uia.create({
        session_id: sessionId,
        created_ts: Date.now(),
        uri: req.uri,
        method: req.method,
        user_id: req.userId ?? null,
        clientdict: JSON.stringify(body),
        serverdict: "{}",
        completed: "[]",
      });
    } else {
      sessionId = sessionIdIn;
      const row = await this.storage.uia.get(sessionId);
      if (!row || Date.now() - row.created_ts > SESSION_LIFETIME_MS) {
        throw new MatrixError(400, "M_INVALID_PARAM", `Unknown session ID: ${sessionId}`);
      }
      if (row.uri !== req.uri || row.method !== req.method) {
        throw forbidden("Requested operation has changed during the UI authentication session.");
      }
      if ((row.user_id ?? undefined) !== req.userId) throw forbidden("UI authentication session belongs to another user.");
      completed = JSON.parse(row.completed) as string[];
      results = JSON.parse(row.serverdict) as Record<string, unknown>;
      // A client may send only `auth` on later requests; the first request's parameters then apply.
      if (Object.keys(body).length === 0) body = JSON.parse(row.clientdict) as Record<string, unknown>;
    }

    let stageError: MatrixError | undefined;
    const type = auth?.type;
    if (auth && type !== undefined) {
      const handler = typeof type === "string" ? this.stages.get(type) : undefined;
      const allowed = typeof type === "string" && (this.anyFlow.has(type) || flows.some((f) => f.includes(type)));
      if (!handler || !allowed) {
        stageError = new MatrixError(400, "M_UNRECOGNIZED", `Unrecognised authentication stage: ${String(type)}`);
      } else {
        try {
          const result = await handler(auth, { request: req, sessionResults: results });
          if (!completed.includes(type as string)) completed.push(type as string);
          results = { ...results, [type as string]: result };
          await this.storage.uia.update(sessionId, { completed: JSON.stringify(completed), serverdict: JSON.stringify(results) });
        } catch (e) {
          if (!(e instanceof MatrixError)) throw e;
          // A stage that the client cannot retry within UIA (e.g. wrong user) is returned as is.
          if (e instanceof UiaRefusal || (e.status !== 401 && e.status !== 403)) throw e;
          stageError = e;
        }
      }
    }

    const done = flows.find((f) => f.every((s) => completed.includes(s)));
    if (done) {
      // A stage completed in a browser (SSO) records who authenticated there; it must be the requester (Synapse:
      // 403 "Invalid auth", the same as a password stage for another user).
      for (const s of done) {
        const r = results[s];
        if (isJsonObject(r) && typeof r.externalUser === "string" && req.userId !== undefined && r.externalUser !== req.userId) {
          throw new UiaRefusal(403, "M_FORBIDDEN", "Invalid auth");
        }
      }
      return { sessionId, body, results };
    }

    const response: Record<string, unknown> = {
      flows: flows.map((stages) => ({ stages })),
      params,
      session: sessionId,
    };
    // As Synapse: once the client sent an `auth` dict, `completed` is always there, even empty (after a failed
    // first stage); the first request of a session, without one, gets none.
    if (auth !== undefined || completed.length > 0) response.completed = completed;
    if (stageError) {
      response.errcode = stageError.errcode;
      response.error = stageError.message;
    }
    throw new UiaRequiredError(response);
  }

  /**
   * A value the endpoint stored in the session named by a request's `auth` (e.g. the user /register created), or
   * undefined when there is no such session or value.
   */
  async sessionValue(auth: unknown, key: string): Promise<unknown> {
    const sessionId = isJsonObject(auth) && typeof auth.session === "string" ? auth.session : undefined;
    if (sessionId === undefined) return undefined;
    const row = await this.storage.uia.get(sessionId);
    if (!row || Date.now() - row.created_ts > SESSION_LIFETIME_MS) return undefined;
    return (JSON.parse(row.serverdict) as Record<string, unknown>)[key];
  }

  /** Stores a value in the session, among the stage results (`outcome.results`) of later requests. */
  async setSessionValue(sessionId: string, key: string, value: unknown): Promise<void> {
    const row = await this.storage.uia.get(sessionId);
    if (!row) return;
    const results = { ...(JSON.parse(row.serverdict) as Record<string, unknown>), [key]: value };
    await this.storage.uia.update(sessionId, { serverdict: JSON.stringify(results) });
  }

  /**
   * Completes a stage done outside the API, in the user's browser (`m.login.sso` through the fallback page):
   * `userId` is the local user who authenticated there ("" when the provider's user is nobody here). The session's
   * next request checks it against the requester. False when the session is unknown or expired.
   */
  async completeExternally(sessionId: string, type: string, userId: string): Promise<boolean> {
    const row = await this.storage.uia.get(sessionId);
    if (!row || Date.now() - row.created_ts > SESSION_LIFETIME_MS) return false;
    const completed = JSON.parse(row.completed) as string[];
    if (!completed.includes(type)) completed.push(type);
    const results = { ...(JSON.parse(row.serverdict) as Record<string, unknown>), [type]: { externalUser: userId } };
    await this.storage.uia.update(sessionId, { completed: JSON.stringify(completed), serverdict: JSON.stringify(results) });
    return true;
  }

  /** Ends a session once the operation it authorised has succeeded. */
  async finish(sessionId: string): Promise<void> {
    await this.storage.uia.delete(sessionId);
  }
}
