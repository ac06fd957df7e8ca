/**
 * The 3PIDs of accounts (spec "Adding Account Administrative Contact Information"): those bound to an account here
 * (login, password reset) and those bound, through us, at identity servers — which we remember so that removing the
 * address or deactivating the account can unbind them there too.
 */
import { MatrixError } from "../../errors.js";
import type { Storage } from "../../storage/storage.js";
import type { UserThreepidRow } from "../../storage/threepids.js";
import type { IdentityServerClient } from "./identity_server.js";
import { canonicaliseEmail, type ThreepidValidation, type ValidatedThreepid } from "./validation.js";

/** What a client sees of an account's 3PID (GET /account/3pid). */
export interface AccountThreepid {
  medium: string;
  address: string;
  validated_at: number;
  added_at: number;
}

export class ThreepidService {
  constructor(
    private readonly storage: Storage,
    readonly validation: ThreepidValidation,
    readonly identityServers: IdentityServerClient,
  ) {}

  async list(userId: string): Promise<AccountThreepid[]> {
    return (await this.storage.threepids.userThreepids(userId)).map((r: UserThreepidRow) => ({ medium: r.medium, address: r.address, validated_at: r.validated_at, added_at: r.added_at }));
  }

  /** The local user an address belongs to (emails canonicalised as when they were added). */
  async userFor(medium: string, address: string): Promise<string | undefined> {
    let canonical = address;
    if (medium === "email") {
      try {
        canonical = canonicaliseEmail(address);
      } catch {
        return undefined;
      }
    }
    return this.storage.threepids.userFor(medium, canonical);
  }

  /** Binds a validated 3PID to a local account; refused when it is another user's or not allowed here. */
  async add(userId: string, threepid: ValidatedThreepid): Promise<void> {
    if (!this.validation.isAllowed(threepid.medium, threepid.address)) throw new MatrixError(403, "M_THREEPID_DENIED", "Third-party identifier is not allowed on this server");
    const ok = await this.storage.threepids.addUserThreepid({ user_id: userId, medium: threepid.medium, address: threepid.address, validated_at: threepid.validatedAt, added_at: Date.now() });
    if (!ok) throw new MatrixError(400, "M_THREEPID_IN_USE", "Third-party identifier is already in use");
  }

  /**
   * POST /account/3pid/bind: the identity server binds the 3PID it validated to the user; we remember the
   * identity server for later unbinding.
   */
  async bind(userId: string, req: { idServer: string; idAccessToken: string; sid: string; clientSecret: string }): Promise<void> {
    const res = await this.identityServers.bind(req.idServer, req.idAccessToken, req.sid, req.clientSecret, userId);
    if (typeof res.medium !== "string" || typeof res.address !== "string") throw new MatrixError(500, "M_UNKNOWN", "The identity server's bind answer lacks medium or address");
    await this.storage.threepids.addIdServer(userId, res.medium, res.address, req.idServer);
  }

  /**
   * Unbinds at `idServer`, or at every identity server we bound the 3PID to. True when every one removed it; false
   * when there was none to ask, or one could not (the spec's "no-support").
   */
  async unbind(userId: string, medium: string, address: string, idServer?: string): Promise<boolean> {
    const servers = idServer !== undefined ? [idServer] : await this.storage.threepids.idServers(userId, medium, address);
    if (servers.length === 0) return false;
    let all = true;
    for (const server of servers) {
      all = (await this.identityServers.unbind(server, userId, medium, address)) && all;
      await this.storage.threepids.removeIdServer(userId, medium, address, server);
    }
    return all;
  }

  /** POST /account/3pid/delete: unbinds at identity servers, then removes the 3PID from the account. */
  async delete(userId: string, medium: string, address: string, idServer?: string): Promise<boolean> {
    const canonical = medium === "email" ? canonicaliseEmail(address) : address;
    const unbound = await this.unbind(userId, medium, canonical, idServer);
    await this.storage.threepids.deleteUserThreepid(userId, medium, canonical);
    return unbound;
  }

  /** At deactivation (as Synapse): unbind everything we bound, then drop the account's 3PIDs. */
  async removeAll(userId: string, idServer?: string): Promise<boolean> {
    let all = true;
    for (const t of await this.storage.threepids.boundThreepids(userId)) {
      try {
        all = (await this.unbind(userId, t.medium, t.address, idServer)) && all;
      } catch {
        throw new MatrixError(400, "M_UNKNOWN", "Failed to remove threepid from ID server");
      }
    }
    for (const t of await this.storage.threepids.userThreepids(userId)) await this.storage.threepids.deleteUserThreepid(userId, t.medium, t.address);
    return all;
  }
}
