/**
 * Pushers (spec "Client behaviour": GET /pushers, POST /pushers/set): where a user's notifications are delivered.
 * Only `http` pushers exist until email is configurable; a pusher belongs to the device (or device-less access
 * token) that set it and goes when that device logs out, as in Synapse.
 */
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { MatrixError, invalidParam, missingParam } from "../../errors.js";
import type { PusherRow } from "../../storage/push.js";
import type { Storage } from "../../storage/storage.js";
import type { Requester } from "../tokens.js";

export const NOTIFY_PATH = "/_matrix/push/v1/notify";
const MAX_PUSHKEY_BYTES = 512;
const MAX_APP_ID_CHARS = 64;

/**
 * What changes the set of pushers: the delivery side reloads the user. POST /pushers/set answers once that is done,
 * so an event sent right after the answer already finds the pusher.
 */
export interface PusherChanges {
  changed(userId: string): Promise<void> | void;
}

export class PusherService {
  constructor(
    private readonly storage: Storage,
    /** The events stream position: a new pusher starts from here (it is not sent older notifications). */
    private readonly position: () => number,
    private readonly changes: PusherChanges,
  ) {}

  async list(userId: string): Promise<JsonObject[]> {
    return (await this.storage.push.pushersOf(userId)).map(publicView);
  }

  /** POST /pushers/set. */
  async set(me: Requester, body: Record<string, unknown>): Promise<void> {
    const missing = ["kind", "app_id", "pushkey"].filter((k) => !(k in body));
    if (missing.length > 0) throw missingParam(`Missing parameters: ${missing.join(", ")}`);
    const { kind, app_id: appId, pushkey } = body;
    if (typeof appId !== "string" || appId === "") throw invalidParam("'app_id' must be a non-empty string");
    if (typeof pushkey !== "string" || pushkey === "") throw invalidParam("'pushkey' must be a non-empty string");
    if ([...appId].length > MAX_APP_ID_CHARS) throw invalidParam(`'app_id' is longer than ${MAX_APP_ID_CHARS} characters`);
    if (Buffer.byteLength(pushkey) > MAX_PUSHKEY_BYTES) throw invalidParam(`'pushkey' is longer than ${MAX_PUSHKEY_BYTES} bytes`);
    if (kind === null) {
      await this.storage.push.deletePushers(appId, pushkey, { userId: me.userId });
      await this.changes.changed(me.userId);
      return;
    }
    if (typeof kind !== "string") throw invalidParam("'kind' must be a string or null");
    const required = ["app_display_name", "device_display_name", "lang", "data"].filter((k) => !(k in body) || body[k] === null);
    if (required.length > 0) throw missingParam(`Missing parameters: ${required.join(", ")}`);
    for (const k of ["app_display_name", "device_display_name", "lang"]) if (typeof body[k] !== "string") throw invalidParam(`'${k}' must be a string`);
    if (body.profile_tag !== undefined && typeof body.profile_tag !== "string") throw invalidParam("'profile_tag' must be a string");
    if (body.append !== undefined && typeof body.append !== "boolean") throw invalidParam("'append' must be a boolean");
    const data = body.data;
    if (!isJsonObject(data)) throw invalidParam("'data' must be an object");
    if (kind === "email") throw invalidParam("Email pushers need email to be configured on this server, and it is not");
    if (kind !== "http") throw invalidParam(`Unknown pusher kind '${kind}'`);
    if (!("url" in data)) throw missingParam("'url' required in data for HTTP pushers");
    checkGatewayUrl(data.url);
    // "Currently the only format available is 'event_id_only'": any other string is kept and gets the full format,
    // as Synapse does (pushers set up by older clients carry other values).
    if (data.format !== undefined && typeof data.format !== "string") throw invalidParam("'format' must be a string");

    // Synapse: without `append`, this app's pusher with this pushkey belongs to one user only.
    if (body.append !== true) {
      for (const other of await this.storage.push.deletePushers(appId, pushkey, { otherUsersThan: me.userId })) await this.changes.changed(other);
    }
    await this.storage.push.upsertPusher({
      user_id: me.userId,
      device_id: me.deviceId,
      access_token_id: me.deviceId === null ? me.tokenId : null,
      kind,
      app_id: appId,
      app_display_name: body.app_display_name as string,
      device_display_name: body.device_display_name as string,
      pushkey,
      pushkey_ts: Date.now(),
      lang: body.lang as string,
      data: JSON.stringify(data),
      profile_tag: (body.profile_tag as string | undefined) ?? "",
      last_stream_ordering: this.position(),
      failing_since: null,
    });
    await this.changes.changed(me.userId);
  }

  /** A device logged out or was deleted (see DeviceService.deleteInTx, which deletes its pushers). */
  devicesDeleted(userId: string): void {
    this.changes.changed(userId);
  }

  /** A device-less access token was logged out. */
  async tokenDeleted(userId: string, tokenId: number): Promise<void> {
    if ((await this.storage.push.deletePushersOfToken(userId, tokenId)) > 0) this.changes.changed(userId);
  }
}

/** `data.url`: an absolute http(s) URL whose path is the Push Gateway API's notify endpoint. */
function checkGatewayUrl(url: unknown): void {
  if (typeof url !== "string") throw invalidParam("'url' must be a string");
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw invalidParam("'url' must be an absolute URL");
  }
  // The spec asks for https; Synapse accepts http too (gateways on a private network, tests), and so do we.
  if (u.protocol !== "https:" && u.protocol !== "http:") throw invalidParam("'url' must be an http or https URL");
  if (u.pathname !== NOTIFY_PATH) throw new MatrixError(400, "M_INVALID_PARAM", `'url' must have a path of '${NOTIFY_PATH}'`);
}

/** A pusher as GET /pushers shows it. */
function publicView(p: PusherRow): JsonObject {
  const out: JsonObject = {
    pushkey: p.pushkey,
    kind: p.kind,
    app_id: p.app_id,
    app_display_name: p.app_display_name,
    device_display_name: p.device_display_name,
    lang: p.lang,
    data: JSON.parse(p.data) as JsonObject,
  };
  if (p.profile_tag !== "") out.profile_tag = p.profile_tag;
  return out;
}
