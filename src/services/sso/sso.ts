/**
 * Single sign-on (spec "Client login via SSO"), whatever the identity provider: which local user a provider's user
 * is (the `user_external_ids` mapping), creating one on first login, and the short-lived login token the client
 * exchanges at `POST /login` (`m.login.token`). Providers (CAS now) only authenticate; this decides who logs in.
 */
import { MatrixError } from "../../errors.js";
import type { Storage } from "../../storage/storage.js";
import type { AccountService } from "../accounts.js";
import type { LoginTokens } from "../login_tokens.js";
import type { ProfileService } from "../profile.js";

/** How long the login token in the redirect stays valid: the browser hands it to the client right away. */
const LOGIN_TOKEN_TTL_MS = 2 * 60_000;

/**
 * An identity provider's user name as a Matrix localpart, as Synapse maps it (so users keep their ids when moving
 * from Synapse): lower-cased, every byte outside `a-z 0-9 . _ = - /` as `=xx` (its UTF-8 hex), a leading `_` as `=5f`.
 */
export function mapUsernameToLocalpart(username: string): string {
  let out = "";
  for (const byte of Buffer.from(username.toLowerCase(), "utf8")) {
    const c = String.fromCharCode(byte);
    out += /[a-z0-9._=/-]/.test(c) ? c : `=${byte.toString(16).padStart(2, "0")}`;
  }
  return out.replace(/^_/, "=5f");
}

export interface SsoDeps {
  storage: Storage;
  accounts: AccountService;
  profile: ProfileService;
  loginTokens: LoginTokens;
  serverName: string;
}

export class SsoService {
  constructor(private readonly deps: SsoDeps) {}

  /**
   * The local user a provider's user logs in as: the one mapped to them; else an existing user with the mapped
   * localpart (whom the mapping then records, as Synapse "grandfathers" users from before SSO); else a new user.
   */
  async loginUser(authProvider: string, remoteId: string, opts: { displayname?: string } = {}): Promise<string> {
    const { storage, accounts, profile } = this.deps;
    let userId = await storage.externalIds.userFor(authProvider, remoteId);
    if (userId === undefined) {
      const localpart = mapUsernameToLocalpart(remoteId);
      const candidate = accounts.userIdForUsername(localpart);
      if (!(await storage.users.get(candidate))) {
        await accounts.register({ username: localpart, inhibitLogin: true });
        if (opts.displayname) await profile.setField(candidate, candidate, "displayname", opts.displayname, { byAdmin: true }).catch(() => undefined);
      }
      await storage.externalIds.add(authProvider, remoteId, candidate);
      // Another login of the same remote user may have mapped it first: theirs stands.
      userId = (await storage.externalIds.userFor(authProvider, remoteId)) ?? candidate;
    }
    const user = await storage.users.get(userId);
    if (!user) throw new MatrixError(500, "M_UNKNOWN", "The mapped user does not exist");
    if (user.deactivated) throw new MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated");
    return userId;
  }

  /** The local user a provider's user is, for re-authentication (UIA); never creates one. */
  async mappedUser(authProvider: string, remoteId: string): Promise<string | undefined> {
    return this.deps.storage.externalIds.userFor(authProvider, remoteId);
  }

  /** Whether the user can re-authenticate by SSO (UIA offers `m.login.sso` only then, as Synapse). */
  async hasIdentity(userId: string): Promise<boolean> {
    return (await this.deps.storage.externalIds.forUser(userId)).length > 0;
  }

  async loginToken(userId: string, authProvider: string): Promise<string> {
    return (await this.deps.loginTokens.issue(userId, { ttlMs: LOGIN_TOKEN_TTL_MS, authProviderId: authProvider })).token;
  }
}
