/**
 * Profiles (spec "Profiles"): displayname, avatar_url, m.tz and custom fields (v1.16). The whole profile must stay
 * under 64 KiB; key names are at most 255 bytes.
 */
import type { Config } from "../config/config.js";
import { userIdDomain } from "../core/ids/ids.js";
import { MatrixError, badJson, forbidden, notFound } from "../errors.js";
import type { Storage } from "../storage/storage.js";

export const MAX_PROFILE_BYTES = 64 * 1024;
/** The spec's keyName pattern: the three defined keys, or a namespaced custom key. */
const KEY_PATTERN = /^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$/;
/** Fields for which null means "unset" (clients get them left out, or a 404 for the field alone). */
const UNSET_AS_NULL: readonly string[] = ["displayname", "avatar_url"];

export interface ProfileHooks {
  /** Called after displayname/avatar_url change, to propagate into the user's rooms. */
  onProfileChanged?: (userId: string) => Promise<void>;
}

export class ProfileService {
  readonly hooks: ProfileHooks = {};

  constructor(
    private readonly storage: Storage,
    private readonly config: Config,
  ) {}

  checkKeyName(key: string): void {
    if (Buffer.byteLength(key) > 255) throw new MatrixError(400, "M_KEY_TOO_LARGE", "Profile key exceeds 255 bytes");
    if (!KEY_PATTERN.test(key)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid profile key.");
  }

  private async requireUser(userId: string): Promise<void> {
    if (userIdDomain(userId) !== this.config.serverName) throw notFound("Profile not found");
    const user = await this.storage.users.get(userId);
    if (!user) throw notFound("Profile not found");
  }

  /** Asks another server for its user's profile (federation `query/profile`); set once federation is wired. */
  remote?: (userId: string, field?: string) => Promise<Record<string, unknown>>;

  async getProfile(userId: string): Promise<Record<string, unknown>> {
    if (userIdDomain(userId) !== this.config.serverName && this.remote) {
      // Another server may answer an unset field with "the value null" (the spec allows it; Synapse does): unset to
      // our clients too, as for our own users.
      const remote = await this.remote(userId);
      for (const k of UNSET_AS_NULL) if (remote[k] === null) delete remote[k];
      return remote;
    }
    await this.requireUser(userId);
    const all = await this.storage.profiles.getAll(userId);
    // A null stored for displayname/avatar_url means "unset" to clients.
    for (const k of UNSET_AS_NULL) if (all[k] === null) delete all[k];
    // Spec: 404 when "there is no profile information for this user" (Synapse too, e.g. after an erasing deactivation).
    if (Object.keys(all).length === 0) throw notFound("Profile not found");
    return all;
  }

  async getField(userId: string, key: string): Promise<unknown> {
    this.checkKeyName(key);
    if (userIdDomain(userId) !== this.config.serverName && this.remote) {
      const value = (await this.remote(userId, key))[key];
      if (value === undefined || (UNSET_AS_NULL.includes(key) && value === null)) throw notFound("Profile field not found");
      return value;
    }
    await this.requireUser(userId);
    const value = await this.storage.profiles.get(userId, key);
    if (value === undefined || (UNSET_AS_NULL.includes(key) && value === null)) throw notFound("Profile field not found");
    return value;
  }

  async setField(requesterId: string, userId: string, key: string, value: unknown, opts: { byAdmin?: boolean } = {}): Promise<void> {
    this.checkKeyName(key);
    if (requesterId !== userId && !opts.byAdmin) throw forbidden("Cannot set another user's profile");
    await this.requireUser(userId);
    if (key === "displayname" || key === "m.tz") {
      if (value !== null && typeof value !== "string") throw badJson(`'${key}' must be a string`);
      if (key === "displayname" && typeof value === "string" && value.length > 256) throw badJson("Display name is too long (max 256 characters)");
    }
    if (key === "avatar_url" && value !== null && (typeof value !== "string" || (value !== "" && !value.startsWith("mxc://")))) {
      throw badJson("'avatar_url' must be an mxc:// URI");
    }
    const all = await this.storage.profiles.getAll(userId);
    all[key] = value;
    if (Buffer.byteLength(JSON.stringify(all)) > MAX_PROFILE_BYTES) {
      throw new MatrixError(400, "M_PROFILE_TOO_LARGE", "The profile would exceed 64 KiB");
    }
    await this.storage.profiles.set(userId, key, value);
    if (key === "displayname" || key === "avatar_url") await this.hooks.onProfileChanged?.(userId);
  }

  async deleteField(requesterId: string, userId: string, key: string): Promise<void> {
    this.checkKeyName(key);
    if (requesterId !== userId) throw forbidden("Cannot change another user's profile");
    await this.requireUser(userId);
    await this.storage.profiles.delete(userId, key);
    if (key === "displayname" || key === "avatar_url") await this.hooks.onProfileChanged?.(userId);
  }
}
