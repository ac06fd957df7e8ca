/**
 * homeserver.yaml, read with Synapse's keys so an existing Synapse config mostly just works. Every key Myelin
 * supports is read here, once, into a typed `Config`; docs/configuration.md lists them all.
 */
import { decodeBase64 } from "../core/json/base64.js";
import { isValidServerName, isValidUserId } from "../core/ids/ids.js";
import { DEFAULT_IP_RANGE_BLACKLIST, parseIpRange } from "../federation/ip_filter.js";
import { DEFAULT_ROOM_VERSION, getRoomVersion } from "../core/rooms/versions.js";
import { ConfigError, ConfigReader } from "./reader.js";
import { loadAppServiceRegistrations, type AppServiceRegistration } from "./appservice.js";
import { CACHE_DEFAULTS, DEFAULT_CACHE_CONFIG, type CacheConfig } from "../util/cache.js";
import { DEFAULT_THUMBNAIL_SIZES, type ThumbnailSize } from "../services/media/thumbnailer.js";

export type ListenerResource = "client" | "federation" | "media" | "keys" | "health" | "metrics" | "static" | "openid" | "replication";
const RESOURCES: ReadonlySet<string> = new Set(["client", "federation", "media", "keys", "health", "metrics", "static", "openid", "replication", "consent", "webclient"]);

export interface ListenerConfig {
  port: number;
  bindAddresses: string[];
  type: "http" | "metrics";
  tls: boolean;
  xForwarded: boolean;
  resources: Set<string>;
}

export type DatabaseConfig =
  | { engine: "sqlite"; path: string }
  | {
      engine: "postgres";
      host: string;
      port: number;
      user?: string;
      password?: string;
      database: string;
      cpMin: number;
      cpMax: number;
    };

/** Synapse's rc_* shape: a token bucket refilled at per_second, holding burst_count. */
export interface RateLimit {
  perSecond: number;
  burstCount: number;
}

export interface RateLimits {
  message: RateLimit;
  registration: RateLimit;
  registrationTokenValidity: RateLimit;
  loginAddress: RateLimit;
  loginAccount: RateLimit;
  loginFailedAttempts: RateLimit;
  joinsLocal: RateLimit;
  joinsRemote: RateLimit;
  invitesPerRoom: RateLimit;
  invitesPerUser: RateLimit;
  roomCreation: RateLimit;
  /** Synapse's `rc_media_create`: POST /_matrix/media/v1/create, per user. */
  mediaCreate: RateLimit;
  /** Synapse `rc_reports`: content reports per user. */
  reports: RateLimit;
  /** Synapse `rc_3pid_validation`: validation emails sent, per address. */
  threepidValidation: RateLimit;
}

/** Synapse's `login_via_existing_session`: POST /login/get_token issues `m.login.token` tokens to logged-in users. */
export interface LoginViaExistingSession {
  enabled: boolean;
  requireUiAuth: boolean;
  tokenTimeoutMs: number;
}

/** One entry of `/.well-known/matrix/support`'s `contacts` (spec "Server support discovery"). */
export interface SupportContact {
  role: string;
  matrix_id?: string;
  email_address?: string;
}

/**
 * Myelin's `policy_server` section (Synapse has no such key): the public keys a Policy Server at this server name
 * publishes for rooms' `m.room.policy` events, served as they are by `/.well-known/matrix/policy_server`.
 */
export interface PolicyServerWellKnown {
  /** Unpadded base64 public keys by algorithm; `ed25519` always present. */
  public_keys: { ed25519: string } & Record<string, string>;
}

/** Myelin's `support` section (Synapse has no such key): what `/.well-known/matrix/support` serves. */
export interface SupportConfig {
  contacts?: SupportContact[];
  support_page?: string;
}

export interface PasswordPolicy {
  enabled: boolean;
  minimumLength: number;
  requireDigit: boolean;
  requireSymbol: boolean;
  requireLowercase: boolean;
  requireUppercase: boolean;
}

export interface Config {
  serverName: string;
  publicBaseurl: string;
  listeners: ListenerConfig[];
  database: DatabaseConfig;
  signingKeyPath: string;
  mediaStorePath: string;
  /** Synapse's `url_preview_*` keys and `max_spider_size`: GET /media/preview_url. */
  urlPreview: UrlPreviewConfig;
  tlsCertificatePath?: string;
  tlsPrivateKeyPath?: string;
  enableRegistration: boolean;
  enableRegistrationWithoutVerification: boolean;
  registrationSharedSecret?: string;
  registrationRequiresToken: boolean;
  /** Synapse's `enable_registration_captcha`: registration flows start with m.login.recaptcha. */
  enableRegistrationCaptcha: boolean;
  /** Synapse's `recaptcha_*` keys; the m.login.recaptcha stage exists when a private key is set. */
  recaptcha?: { publicKey?: string; privateKey: string; siteverifyApi: string };
  allowGuestAccess: boolean;
  inhibitUserInUseError: boolean;
  password: { enabled: boolean; localdbEnabled: boolean; pepper: string; policy: PasswordPolicy };
  /** Myelin: argon2id cost (defaults follow OWASP's recommendation). */
  passwordHashing: { memoryKib: number; iterations: number; parallelism: number };
  rateLimits: RateLimits;
  maxUploadSize: number;
  trustedKeyServers: { serverName: string; verifyKeys?: Record<string, string> }[];
  /** Synapse `key_refresh_interval`: how long the keys we publish stay valid (`valid_until_ts` = now + this), ms. */
  keyRefreshIntervalMs: number;
  /** Synapse `old_signing_keys`: keys we no longer sign with, published as `old_verify_keys`. */
  oldSigningKeys: OldSigningKey[];
  /** Verify the certificates of servers we connect to (Synapse `federation_verify_certificates`). */
  federationVerifyCertificates: boolean;
  /**
   * Synapse `federation_custom_ca_list`: PEM files whose CA certificates are trusted for outbound federation
   * *instead of* the system's store (as Synapse: "this list will replace those that are provided by your
   * operating environment"). Absolute paths; undefined when not set.
   */
  federationCustomCaList?: string[];
  /**
   * Synapse `federation_certificate_verification_whitelist`: globs (`*`, `?`, case-insensitive, whole name) of
   * the host names whose certificates outbound federation does not verify. Only matters while
   * `federation_verify_certificates` is true.
   */
  federationCertificateVerificationWhitelist: string[];
  /**
   * Synapse `use_insecure_ssl_client_just_for_testing_do_not_use`: the HTTP client for everything but federation
   * (push gateways) does not verify certificates. For test setups only; federation is not affected.
   */
  useInsecureSslClientJustForTesting: boolean;
  /** IP ranges outbound federation may not connect to (`ip_range_blacklist`, or `federation_ip_range_blacklist`). */
  ipRangeBlacklist: string[];
  /** Exceptions to the blacklist (`ip_range_whitelist`; ignored when `federation_ip_range_blacklist` is set). */
  ipRangeWhitelist: string[];
  /** `federation_domain_whitelist`: when set, federate with these servers only. */
  federationDomainWhitelist?: string[];
  logLevel: string;
  logConfig?: string;
  serveServerWellknown: boolean;
  defaultRoomVersion: string;
  /** Access token lifetime when the client asks for a refresh token (ms). */
  refreshableAccessTokenLifetimeMs: number;
  refreshTokenLifetimeMs?: number;
  nonrefreshableAccessTokenLifetimeMs?: number;
  sessionLifetimeMs?: number;
  requireAuthForProfileRequests: boolean;
  limitProfileRequestsToUsersWhoShareRooms: boolean;
  /** Synapse's `enable_set_displayname` / `enable_set_avatar_url`: users may change their own (admins always may). */
  enableSetDisplayname: boolean;
  enableSetAvatarUrl: boolean;
  allowPublicRoomsWithoutAuth: boolean;
  /** Other servers may read our published room directory (Synapse's key; off by default, as there). */
  allowPublicRoomsOverFederation: boolean;
  /** Synapse's `presence.enabled` (or the older `use_presence`). */
  presenceEnabled: boolean;
  /** Synapse's `enable_search`: off, events are not indexed and POST /search is refused. */
  enableSearch: boolean;
  /** Synapse's experimental `enable_ephemeral_messages`: MSC2228 self-destructing events are pruned when they expire. */
  enableEphemeralMessages: boolean;
  adminContact?: string;
  /** Synapse's `caches` section: how big each in-memory cache may grow (see util/cache.ts, docs/memory.md). */
  caches: CacheConfig;
  /** Synapse's `enable_metrics`: the `metrics` listeners serve Prometheus metrics. */
  enableMetrics: boolean;
  /** Synapse's `user_directory` section: who POST /user_directory/search finds (docs/user_directory.md). */
  userDirectory: UserDirectoryConfig;
  /** Synapse's `push` section: notifications sent to push gateways. */
  push: PushConfig;
  /** Synapse's `turn_*` keys: the TURN server handed to clients by GET /voip/turnServer. */
  turn: TurnConfig;
  /** Synapse's `cas_config`: single sign-on through a CAS server; undefined when off. */
  cas?: CasConfig;
  /** Synapse's `sso.client_whitelist`: client URLs an SSO login redirects to without a confirmation page. */
  ssoClientWhitelist: string[];
  loginViaExistingSession: LoginViaExistingSession;
  /** Served at /.well-known/matrix/support; undefined → 404 there. */
  support?: SupportConfig;
  /** Served at /.well-known/matrix/policy_server; undefined → 404 there. */
  policyServer?: PolicyServerWellKnown;
  /** The media repository's keys (Synapse's names; see docs/media.md). */
  media: MediaConfig;
  /** Synapse's `email` section: undefined when absent (no email is sent, email 3PIDs cannot be validated). */
  email?: EmailConfig;
  /** Synapse's 3PID keys (docs/threepid.md). */
  threepids: ThreepidConfig;
  /** `app_service_config_files`: the application services' registrations, read and checked at start-up. */
  appServices: AppServiceRegistration[];
  /** Absolute directory of the config file, for resolving relative paths. */
  configDir: string;
}

/** Synapse's `media_upload_limits` entry: at most `maxBytes` uploaded per user in any `timePeriodMs`. */
export interface MediaUploadLimit {
  timePeriodMs: number;
  maxBytes: number;
}

export interface MediaConfig {
  /** `enable_media_repo` (default true): this process serves the media endpoints. */
  enableMediaRepo: boolean;
  /** `max_image_pixels` (default 32M): larger images are not thumbnailed. */
  maxImagePixels: number;
  /** `dynamic_thumbnails` (default false): thumbnails of the exact requested size are made on demand. */
  dynamicThumbnails: boolean;
  /** `thumbnail_sizes`: generated after each upload. */
  thumbnailSizes: ThumbnailSize[];
  /**
   * `enable_authenticated_media` (default true): media uploaded while on is only served by the authenticated
   * /_matrix/client/v1/media endpoints.
   */
  enableAuthenticatedMedia: boolean;
  /** `media_upload_limits`, longest period first. */
  uploadLimits: MediaUploadLimit[];
  /** `max_pending_media_uploads` (default 5): media ids created with /create and not yet uploaded, per user. */
  maxPendingMediaUploads: number;
  /** `unused_expiration_time` (default 24h): how long a /create media id waits for its upload. */
  unusedExpirationTimeMs: number;
  /** `media_retention.local_media_lifetime` / `remote_media_lifetime` (ms): parsed; not yet applied. */
  localMediaLifetimeMs?: number;
  remoteMediaLifetimeMs?: number;
}

/** Synapse's `email` keys that Myelin uses: the SMTP server, the sender, and validation emails. */
export interface EmailConfig {
  smtpHost: string;
  smtpPort: number;
  smtpUser?: string;
  smtpPass?: string;
  /** `require_transport_security`: refuse to send unless STARTTLS succeeds. */
  requireTransportSecurity: boolean;
  /** `enable_tls` (default true): use STARTTLS when the server offers it. */
  enableTls: boolean;
  /** `force_tls`: TLS from the start of the connection (SMTPS, port 465 by default). */
  forceTls: boolean;
  /** `tlsname`: the name the server's certificate is checked against (default: smtp_host). */
  tlsName?: string;
  /** `notif_from`, with `%(app)s` replaced by app_name. */
  notifFrom: string;
  appName: string;
  /** `validation_token_lifetime` (default 1h): how long a link in a validation email works. */
  validationTokenLifetimeMs: number;
  /** `subjects.email_validation` / `subjects.password_reset`, with `%(server_name)s` and `%(app)s` replaced. */
  subjects: { emailValidation: string; passwordReset: string };
}

/** Synapse's top-level 3PID keys. */
export interface ThreepidConfig {
  /** `registrations_require_3pid`: registration flows all include these media (only "email" is supported). */
  registrationsRequire3pid: string[];
  /** `enable_3pid_changes` (default true): users may add and remove 3PIDs (the `m.3pid_changes` capability). */
  enable3pidChanges: boolean;
  /** `allowed_local_3pids`: when set, only addresses matching one entry's regex may be added or registered. */
  allowedLocal3pids?: { medium: string; pattern: RegExp }[];
  /** `request_token_inhibit_3pid_errors`: requestToken never says whether an address is in use. */
  requestTokenInhibit3pidErrors: boolean;
  /** `next_link_domain_whitelist`: when set, the only hosts a requestToken `next_link` may point to. */
  nextLinkDomainWhitelist?: string[];
}

/** Synapse's `user_directory` keys. */
export interface UserDirectoryConfig {
  /** `enabled`: false answers every search with no results. */
  enabled: boolean;
  /** `search_all_users`: every local user (and every known remote one), not only those sharing a room. */
  searchAllUsers: boolean;
  /** `prefer_local_users`: local users rank above remote ones. */
  preferLocalUsers: boolean;
  /** `exclude_remote_users`: only local users are returned. */
  excludeRemoteUsers: boolean;
  /** `show_locked_users`: locked users are found too. */
  showLockedUsers: boolean;
}

export interface PushConfig {
  /** `push.enabled` (default true): whether pushers deliver to push gateways at all. */
  enabled: boolean;
  /** `push.include_content` (default true): event content in notifications (false: only ids, for privacy). */
  includeContent: boolean;
  /** `push.group_unread_count_by_room` (default true): the badge counts rooms with unread notifications, not notifications. */
  groupUnreadCountByRoom: boolean;
  /** `push.jitter_delay` (ms, default 0): each push waits a random delay up to this, against timing analysis. */
  jitterDelayMs: number;
}

export interface TurnConfig {
  /** `turn_uris`: turn:/turns: URIs; none means no TURN server. */
  uris: string[];
  /** `turn_shared_secret`: shared with the TURN server (coturn `static-auth-secret`); only ever used as an HMAC key. */
  sharedSecret?: string;
  /** `turn_username` / `turn_password`: static credentials, used when there is no shared secret. */
  username?: string;
  password?: string;
  /** `turn_user_lifetime` (ms, default 1h): how long credentials stay valid. */
  userLifetimeMs: number;
  /** `turn_allow_guests` (default true). */
  allowGuests: boolean;
}

export interface OldSigningKey {
  /** "ed25519:<version>". */
  keyId: string;
  /** Unpadded base64 public key. */
  key: string;
  /** When we stopped using it (ms). */
  expiredTs: number;
}

/** Keys Synapse has that Myelin accepts without effect (no warning). */
const ACCEPTED_SILENTLY = ["track_appservice_user_ips", "report_stats", "macaroon_secret_key", "form_secret", "pid_file", "suppress_key_server_warning", "web_client_location"];

const rate = (r: ConfigReader, key: string, def: RateLimit): RateLimit => {
  if (!r.has(key)) {
    r.accept(key);
    return def;
  }
  const s = r.section(key);
  const out = { perSecond: s.number("per_second", def.perSecond), burstCount: s.number("burst_count", def.burstCount) };
  warnUnknown(s);
  return out;
};

let pendingWarnings: string[] = [];
function warnUnknown(r: ConfigReader): void {
  for (const k of r.unknownKeys()) pendingWarnings.push(`unknown config key "${k}" is not supported by Myelin and is ignored`);
}

export interface ParsedConfig {
  config: Config;
  warnings: string[];
}

/** Environment overrides for containers: MYELIN_DATABASE_URL and MYELIN_PORT. */
export interface ConfigEnv {
  MYELIN_DATABASE_URL?: string;
  MYELIN_PORT?: string;
}

export function parseConfig(doc: unknown, configDir: string, env: ConfigEnv = {}): ParsedConfig {
  pendingWarnings = [];
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new ConfigError("homeserver.yaml must be a mapping of keys to values");
  const r = new ConfigReader(doc as Record<string, unknown>, "");
  r.accept(...ACCEPTED_SILENTLY);

  const serverName = r.requireString("server_name");
  if (!isValidServerName(serverName)) throw new ConfigError(`config key "server_name": "${serverName}" is not a valid server name (hostname[:port])`);

  const listeners = readListeners(r, env);
  const database = readDatabase(r, configDir, env);
  const defaultBase = `https://${serverName}/`;
  let publicBaseurl = r.string("public_baseurl", defaultBase);
  if (!publicBaseurl.endsWith("/")) publicBaseurl += "/";

  const pc = r.section("password_config");
  const policy = pc.section("policy");
  const password = {
    enabled: pc.bool("enabled", true),
    localdbEnabled: pc.bool("localdb_enabled", true),
    pepper: pc.string("pepper", ""),
    policy: {
      enabled: policy.bool("enabled", false),
      minimumLength: policy.int("minimum_length", 0, 0),
      requireDigit: policy.bool("require_digit", false),
      requireSymbol: policy.bool("require_symbol", false),
      requireLowercase: policy.bool("require_lowercase", false),
      requireUppercase: policy.bool("require_uppercase", false),
    },
  };
  warnUnknown(policy);
  warnUnknown(pc);

  const ph = r.section("password_hashing");
  const passwordHashing = {
    memoryKib: ph.int("memory_kib", 19_456, 1024),
    iterations: ph.int("iterations", 2, 1),
    parallelism: ph.int("parallelism", 1, 1, 16),
  };
  warnUnknown(ph);

  const login = r.section("rc_login");
  const joins = r.section("rc_joins");
  const invites = r.section("rc_invites");
  // Defaults are Synapse's.
  const rateLimits: RateLimits = {
    message: rate(r, "rc_message", { perSecond: 0.2, burstCount: 10 }),
    registration: rate(r, "rc_registration", { perSecond: 0.17, burstCount: 3 }),
    registrationTokenValidity: rate(r, "rc_registration_token_validity", { perSecond: 0.1, burstCount: 5 }),
    loginAddress: rate(login, "address", { perSecond: 0.003, burstCount: 5 }),
    loginAccount: rate(login, "account", { perSecond: 0.003, burstCount: 5 }),
    loginFailedAttempts: rate(login, "failed_attempts", { perSecond: 0.17, burstCount: 3 }),
    joinsLocal: rate(joins, "local", { perSecond: 0.1, burstCount: 10 }),
    joinsRemote: rate(joins, "remote", { perSecond: 0.01, burstCount: 10 }),
    invitesPerRoom: rate(invites, "per_room", { perSecond: 0.3, burstCount: 10 }),
    invitesPerUser: rate(invites, "per_user", { perSecond: 0.003, burstCount: 5 }),
    roomCreation: rate(r, "rc_room_creation", { perSecond: 0.016, burstCount: 10 }),
    reports: rate(r, "rc_reports", { perSecond: 1, burstCount: 5 }),
    mediaCreate: rate(r, "rc_media_create", { perSecond: 10, burstCount: 50 }),
    threepidValidation: rate(r, "rc_3pid_validation", { perSecond: 0.003, burstCount: 5 }),
  };
  warnUnknown(login);
  warnUnknown(joins);
  warnUnknown(invites);

  const federationVerifyCertificates = r.bool("federation_verify_certificates", true);
  // As Synapse: an explicitly empty list is an error ("specified without any certificate files"), not "trust nothing".
  let federationCustomCaList: string[] | undefined;
  if (r.has("federation_custom_ca_list")) {
    federationCustomCaList = r.stringList("federation_custom_ca_list").map((p) => resolvePath(configDir, p));
    if (federationCustomCaList.length === 0) throw new ConfigError('config key "federation_custom_ca_list": specified without any certificate files');
  }
  r.accept("federation_custom_ca_list");
  const federationCertificateVerificationWhitelist = r.stringList("federation_certificate_verification_whitelist");
  for (const glob of federationCertificateVerificationWhitelist) {
    // Synapse: "IDNA domain names are not allowed" (write them in their ASCII, xn-- form).
    if (!/^[\x21-\x7e]+$/.test(glob)) throw new ConfigError(`config key "federation_certificate_verification_whitelist": "${glob}" is not an ASCII host name glob`);
  }
  // Synapse's default trusts matrix.org as a notary; an explicit empty list trusts none.
  const trustedKeyServers = (r.list("trusted_key_servers") ?? [new ConfigReader({ server_name: "matrix.org" }, "trusted_key_servers[0]")]).map((t) => {
    const entry: Config["trustedKeyServers"][number] = { serverName: t.requireString("server_name") };
    const verifyKeys = t.stringMap("verify_keys");
    if (verifyKeys !== undefined) {
      for (const [keyId, key] of Object.entries(verifyKeys)) {
        if (!keyId.startsWith("ed25519:")) throw new ConfigError(`config key "${t.path}.verify_keys": unsupported key algorithm in "${keyId}" (only ed25519)`);
        if (decodeBase64(key)?.length !== 32) throw new ConfigError(`config key "${t.path}.verify_keys.${keyId}": not an unpadded base64 ed25519 public key`);
      }
      entry.verifyKeys = verifyKeys;
    }
    // As Synapse: without certificate checks, a notary's answers are only trusted when signed by keys we know.
    if (!federationVerifyCertificates && !t.bool("accept_keys_insecurely", false) && (verifyKeys === undefined || Object.keys(verifyKeys).length === 0)) {
      throw new ConfigError(
        `config key "${t.path}": with federation_verify_certificates: false, a trusted key server needs verify_keys (or accept_keys_insecurely: true)`,
      );
    }
    warnUnknown(t);
    return entry;
  });
  const ipRanges = readIpRanges(r);
  // An empty whitelist means "federate with nobody", as in Synapse; absent means everyone.
  const domainWhitelist = r.has("federation_domain_whitelist") ? r.stringList("federation_domain_whitelist") : undefined;
  r.accept("federation_domain_whitelist");

  const defaultRoomVersion = r.string("default_room_version", DEFAULT_ROOM_VERSION);
  if (!getRoomVersion(defaultRoomVersion)) {
    throw new ConfigError(`config key "default_room_version": room version "${defaultRoomVersion}" is not supported`);
  }

  const registrationSharedSecret = r.string("registration_shared_secret");
  const config: Config = {
    serverName,
    publicBaseurl,
    listeners,
    database,
    signingKeyPath: resolvePath(configDir, r.string("signing_key_path", `${serverName}.signing.key`)),
    mediaStorePath: resolvePath(configDir, r.string("media_store_path", "media_store")),
    tlsCertificatePath: optionalPath(configDir, r.string("tls_certificate_path")),
    tlsPrivateKeyPath: optionalPath(configDir, r.string("tls_private_key_path")),
    enableRegistration: r.bool("enable_registration", false),
    enableRegistrationWithoutVerification: r.bool("enable_registration_without_verification", false),
    registrationRequiresToken: r.bool("registration_requires_token", false),
    enableRegistrationCaptcha: r.bool("enable_registration_captcha", false),
    recaptcha: readRecaptcha(r),
    allowGuestAccess: r.bool("allow_guest_access", false),
    inhibitUserInUseError: r.bool("inhibit_user_in_use_error", false),
    password,
    passwordHashing,
    rateLimits,
    maxUploadSize: r.size("max_upload_size", 50 * 1024 * 1024),
    trustedKeyServers,
    keyRefreshIntervalMs: r.duration("key_refresh_interval", 86_400_000),
    oldSigningKeys: readOldSigningKeys(r),
    federationVerifyCertificates,
    ...(federationCustomCaList ? { federationCustomCaList } : {}),
    federationCertificateVerificationWhitelist,
    useInsecureSslClientJustForTesting: r.bool("use_insecure_ssl_client_just_for_testing_do_not_use", false),
    ipRangeBlacklist: ipRanges.blacklist,
    ipRangeWhitelist: ipRanges.whitelist,
    federationDomainWhitelist: domainWhitelist,
    logLevel: r.string("log_level", "info"),
    logConfig: optionalPath(configDir, r.string("log_config")),
    serveServerWellknown: r.bool("serve_server_wellknown", false),
    defaultRoomVersion,
    refreshableAccessTokenLifetimeMs: r.duration("refreshable_access_token_lifetime", 5 * 60_000),
    refreshTokenLifetimeMs: r.duration("refresh_token_lifetime"),
    nonrefreshableAccessTokenLifetimeMs: r.duration("nonrefreshable_access_token_lifetime"),
    sessionLifetimeMs: r.duration("session_lifetime"),
    requireAuthForProfileRequests: r.bool("require_auth_for_profile_requests", false),
    limitProfileRequestsToUsersWhoShareRooms: r.bool("limit_profile_requests_to_users_who_share_rooms", false),
    enableSetDisplayname: r.bool("enable_set_displayname", true),
    enableSetAvatarUrl: r.bool("enable_set_avatar_url", true),
    allowPublicRoomsWithoutAuth: r.bool("allow_public_rooms_without_auth", false),
    allowPublicRoomsOverFederation: r.bool("allow_public_rooms_over_federation", false),
    presenceEnabled: readPresence(r),
    enableSearch: r.bool("enable_search", true),
    enableEphemeralMessages: r.bool("enable_ephemeral_messages", false),
    caches: readCaches(r),
    enableMetrics: r.bool("enable_metrics", false),
    push: readPush(r),
    userDirectory: readUserDirectory(r),
    turn: readTurn(r),
    cas: readCas(r),
    ssoClientWhitelist: readSso(r),
    loginViaExistingSession: readLoginViaExistingSession(r),
    ...readSupport(r),
    ...readPolicyServer(r),
    urlPreview: readUrlPreview(r),
    media: readMedia(r),
    ...readEmail(r, serverName),
    threepids: readThreepids(r),
    appServices: loadAppServiceRegistrations(r.stringList("app_service_config_files").map((p) => resolvePath(configDir, p))),
    adminContact: r.string("admin_contact"),
    configDir,
  };
  if (registrationSharedSecret !== undefined) config.registrationSharedSecret = registrationSharedSecret;
  if (r.has("registration_shared_secret_path") && config.registrationSharedSecret === undefined) {
    throw new ConfigError('config key "registration_shared_secret_path" is not supported yet: put the secret in "registration_shared_secret"');
  }
  r.accept("registration_shared_secret_path");
  if (!["trace", "debug", "info", "warn", "error", "fatal", "silent"].includes(config.logLevel.toLowerCase())) {
    throw new ConfigError(`config key "log_level": expected one of debug, info, warn, error, got "${config.logLevel}"`);
  }
  config.logLevel = config.logLevel.toLowerCase();
  warnUnknown(r);
  return { config, warnings: pendingWarnings };
}

/**
 * Synapse's outbound IP filtering keys: `ip_range_blacklist` (default: private, loopback, link-local… ranges) with
 * `ip_range_whitelist` exceptions; the deprecated `federation_ip_range_blacklist`, when present, replaces the
 * blacklist for federation and disables the whitelist, exactly as in Synapse.
 */
function readIpRanges(r: ConfigReader): { blacklist: string[]; whitelist: string[] } {
  const check = (key: string, ranges: string[]) => {
    for (const range of ranges) {
      if (!parseIpRange(range)) throw new ConfigError(`config key "${key}": "${range}" is not an IP address or CIDR range`);
    }
    return ranges;
  };
  const general = check("ip_range_blacklist", r.stringList("ip_range_blacklist", [...DEFAULT_IP_RANGE_BLACKLIST]));
  const whitelist = check("ip_range_whitelist", r.stringList("ip_range_whitelist"));
  if (r.has("federation_ip_range_blacklist")) {
    return { blacklist: check("federation_ip_range_blacklist", r.stringList("federation_ip_range_blacklist")), whitelist: [] };
  }
  r.accept("federation_ip_range_blacklist");
  return { blacklist: general, whitelist };
}

/** Synapse's `old_signing_keys`: `{"ed25519:id": {key: <base64 public key>, expired_ts: <ms>}}`. */
function readOldSigningKeys(r: ConfigReader): OldSigningKey[] {
  const raw = r.raw("old_signing_keys");
  if (raw === undefined || raw === null) return [];
  if (typeof raw !== "object" || Array.isArray(raw)) throw new ConfigError('config key "old_signing_keys": expected a mapping of key ids to {key, expired_ts}');
  return Object.entries(raw as Record<string, unknown>).map(([keyId, v]) => {
    const path = `old_signing_keys.${keyId}`;
    if (!/^ed25519:[A-Za-z0-9_]+$/.test(keyId)) throw new ConfigError(`config key "${path}": unsupported key id (expected ed25519:<version>)`);
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ConfigError(`config key "${path}": expected a mapping with key and expired_ts`);
    const entry = new ConfigReader(v as Record<string, unknown>, path);
    const key = entry.requireString("key");
    if (decodeBase64(key)?.length !== 32) throw new ConfigError(`config key "${path}.key": not an unpadded base64 ed25519 public key`);
    const expiredTs = entry.int("expired_ts", -1, 0);
    if (expiredTs < 0) throw new ConfigError(`config key "${path}.expired_ts" is required (a timestamp in milliseconds)`);
    warnUnknown(entry);
    return { keyId, key: key.replace(/=+$/, ""), expiredTs };
  });
}

/** Synapse's VoIP keys; `turn_shared_secret_path` is refused for now, as `registration_shared_secret_path` is. */
function readLoginViaExistingSession(r: ConfigReader): LoginViaExistingSession {
  const s = r.section("login_via_existing_session");
  const out = {
    enabled: s.bool("enabled", false),
    requireUiAuth: s.bool("require_ui_auth", true),
    tokenTimeoutMs: s.duration("token_timeout", 5 * 60_000),
  };
  if (out.tokenTimeoutMs <= 0) throw new ConfigError('config key "login_via_existing_session.token_timeout": must be more than 0');
  warnUnknown(s);
  return out;
}

/**
 * `support: {contacts: [{role, matrix_id?, email_address?}], support_page?}`, checked against the spec's shape:
 * at least one of contacts (non-empty) and support_page; each contact has a role and a matrix_id or email_address.
 */
function readSupport(r: ConfigReader): { support?: SupportConfig } {
  if (!r.has("support")) {
    r.accept("support");
    return {};
  }
  const s = r.section("support");
  const support: SupportConfig = {};
  const contacts = s.list("contacts");
  if (contacts !== undefined) {
    support.contacts = contacts.map((c) => {
      const contact: SupportContact = { role: c.requireString("role") };
      const matrixId = c.string("matrix_id");
      const email = c.string("email_address");
      if (matrixId !== undefined) {
        if (!isValidUserId(matrixId)) throw new ConfigError(`config key "${c.path}.matrix_id": "${matrixId}" is not a Matrix user ID`);
        contact.matrix_id = matrixId;
      }
      if (email !== undefined) {
        if (!/^[^@\s]+@[^@\s]+$/.test(email)) throw new ConfigError(`config key "${c.path}.email_address": "${email}" is not an email address`);
        contact.email_address = email;
      }
      if (matrixId === undefined && email === undefined) throw new ConfigError(`config key "${c.path}": needs matrix_id or email_address`);
      warnUnknown(c);
      return contact;
    });
  }
  const page = s.string("support_page");
  if (page !== undefined) {
    if (!URL.canParse(page)) throw new ConfigError(`config key "support.support_page": "${page}" is not a URL`);
    support.support_page = page;
  }
  if ((support.contacts === undefined || support.contacts.length === 0) && support.support_page === undefined) {
    throw new ConfigError('config key "support": needs at least one contact in "contacts", or "support_page"');
  }
  warnUnknown(s);
  return { support };
}

/** `policy_server: {public_keys: {ed25519: <unpadded base64>, …}}`; the ed25519 key must be 32 bytes of base64. */
function readPolicyServer(r: ConfigReader): { policyServer?: PolicyServerWellKnown } {
  if (!r.has("policy_server")) {
    r.accept("policy_server");
    return {};
  }
  const s = r.section("policy_server");
  const keys = s.stringMap("public_keys");
  const ed25519 = keys?.ed25519;
  if (ed25519 === undefined) throw new ConfigError('config key "policy_server.public_keys": needs an "ed25519" key');
  if (decodeBase64(ed25519)?.length !== 32) throw new ConfigError('config key "policy_server.public_keys.ed25519": not an unpadded base64 ed25519 public key (32 bytes)');
  warnUnknown(s);
  return { policyServer: { public_keys: { ...keys, ed25519 } } };
}

function readTurn(r: ConfigReader): TurnConfig {
  const turn: TurnConfig = {
    uris: r.stringList("turn_uris"),
    userLifetimeMs: r.duration("turn_user_lifetime", 3_600_000),
    allowGuests: r.bool("turn_allow_guests", true),
  };
  const secret = r.string("turn_shared_secret");
  const username = r.string("turn_username");
  const password = r.string("turn_password");
  if (secret !== undefined) turn.sharedSecret = secret;
  if (username !== undefined) turn.username = username;
  if (password !== undefined) turn.password = password;
  if (r.has("turn_shared_secret_path")) {
    if (secret) throw new ConfigError('config keys "turn_shared_secret" and "turn_shared_secret_path" are mutually incompatible: set only one');
    throw new ConfigError('config key "turn_shared_secret_path" is not supported yet: put the secret in "turn_shared_secret"');
  }
  r.accept("turn_shared_secret_path");
  return turn;
}

/**
 * `caches.global_factor` and `caches.per_cache_factors` scale Myelin's default cache sizes (factor 1) as Synapse's
 * scale its own; `caches.memory_budget` (Myelin's, or Synapse's `cache_autotuning.max_cache_memory_usage`) sets
 * what all caches may take together.
 */
function readCaches(r: ConfigReader): CacheConfig {
  if (!r.has("caches")) {
    r.accept("caches");
    return { ...DEFAULT_CACHE_CONFIG };
  }
  const c = r.section("caches");
  const globalFactor = c.number("global_factor", 1);
  if (globalFactor <= 0) throw new ConfigError('config key "caches.global_factor" must be greater than 0');
  const perCacheFactors: Record<string, number> = {};
  if (c.has("per_cache_factors")) {
    const p = c.section("per_cache_factors");
    for (const name of p.keys()) {
      const f = p.number(name, 1);
      if (f <= 0) throw new ConfigError(`config key "caches.per_cache_factors.${name}" must be greater than 0`);
      if (name in CACHE_DEFAULTS) perCacheFactors[name] = f;
      else pendingWarnings.push(`caches.per_cache_factors: Myelin has no cache named "${name}" (it has ${Object.keys(CACHE_DEFAULTS).join(", ")}); ignored`);
    }
  } else c.accept("per_cache_factors");
  let memoryBudgetBytes = c.has("memory_budget") ? c.size("memory_budget", 0) : undefined;
  if (c.has("cache_autotuning")) {
    const t = c.section("cache_autotuning");
    if (memoryBudgetBytes === undefined && t.has("max_cache_memory_usage")) memoryBudgetBytes = t.size("max_cache_memory_usage", 0);
    t.accept("target_cache_memory_usage", "min_cache_ttl", "max_cache_memory_usage");
    warnUnknown(t);
  } else c.accept("cache_autotuning");
  if (memoryBudgetBytes !== undefined && memoryBudgetBytes <= 0) throw new ConfigError('config key "caches.memory_budget" must be a size greater than 0');
  // Synapse's time-based expiry has no equivalent: every Myelin cache is bounded by size.
  c.accept("expire_caches", "cache_entry_ttl", "sync_response_cache_duration");
  warnUnknown(c);
  return { globalFactor, perCacheFactors, ...(memoryBudgetBytes !== undefined ? { memoryBudgetBytes } : {}) };
}

function readPush(r: ConfigReader): PushConfig {
  const defaults: PushConfig = { enabled: true, includeContent: true, groupUnreadCountByRoom: true, jitterDelayMs: 0 };
  if (!r.has("push")) {
    r.accept("push");
    return defaults;
  }
  const p = r.section("push");
  const out: PushConfig = {
    enabled: p.bool("enabled", true),
    includeContent: p.bool("include_content", true),
    groupUnreadCountByRoom: p.bool("group_unread_count_by_room", true),
    jitterDelayMs: p.duration("jitter_delay", 0),
  };
  warnUnknown(p);
  return out;
}

function readRecaptcha(r: ConfigReader): Config["recaptcha"] {
  const privateKey = r.string("recaptcha_private_key");
  const publicKey = r.string("recaptcha_public_key");
  const siteverifyApi = r.string("recaptcha_siteverify_api", "https://www.recaptcha.net/recaptcha/api/siteverify");
  if (privateKey === undefined) {
    if (r.bool("enable_registration_captcha", false)) throw new ConfigError('config key "enable_registration_captcha": needs recaptcha_private_key (and recaptcha_public_key)');
    return undefined;
  }
  return { privateKey, siteverifyApi, ...(publicKey !== undefined ? { publicKey } : {}) };
}

/**
 * Synapse's `email` section. Only what validation emails need is used; the notification-email keys are accepted
 * (Myelin sends no notification emails yet) and the template keys are refused with a warning (its emails are plain).
 */
function readEmail(r: ConfigReader, serverName: string): { email?: EmailConfig } {
  if (!r.has("email")) {
    r.accept("email");
    return {};
  }
  const e = r.section("email");
  const appName = e.string("app_name", "Matrix");
  const notifFrom = e.string("notif_from");
  if (notifFrom === undefined) throw new ConfigError('config key "email.notif_from" is required when the email section is present (the sender of emails, e.g. "Your Server <noreply@example.org>")');
  const forceTls = e.bool("force_tls", false);
  const fill = (t: string) => t.replaceAll("%(app)s", appName).replaceAll("%(server_name)s", serverName);
  const subjects = e.section("subjects");
  const email: EmailConfig = {
    smtpHost: e.string("smtp_host", "localhost"),
    smtpPort: e.int("smtp_port", forceTls ? 465 : 25, 1, 65535),
    requireTransportSecurity: e.bool("require_transport_security", false),
    enableTls: e.bool("enable_tls", true),
    forceTls,
    notifFrom: fill(notifFrom),
    appName,
    validationTokenLifetimeMs: e.duration("validation_token_lifetime", 3600_000),
    subjects: {
      emailValidation: fill(subjects.string("email_validation", "[%(server_name)s] Validate your email")),
      passwordReset: fill(subjects.string("password_reset", "[%(server_name)s] Password reset")),
    },
  };
  if (email.forceTls && email.requireTransportSecurity) throw new ConfigError('config keys "email.force_tls" and "email.require_transport_security" are mutually exclusive');
  if (!email.enableTls && email.requireTransportSecurity) throw new ConfigError('config key "email.require_transport_security" needs enable_tls: true');
  const user = e.string("smtp_user");
  const pass = e.string("smtp_pass");
  const tlsName = e.string("tlsname");
  if (user !== undefined) email.smtpUser = user;
  if (pass !== undefined) email.smtpPass = pass;
  if (tlsName !== undefined) email.tlsName = tlsName;
  if (e.bool("enable_notifs", false)) pendingWarnings.push('"email.enable_notifs": Myelin sends no notification emails yet; ignored');
  e.accept("notif_for_new_users", "client_base_url", "riot_base_url", "invite_client_location", "can_verify_email");
  // Other subjects belong to emails Myelin does not send.
  subjects.accept("message_from_person_in_room", "message_from_person", "messages_from_person", "messages_in_room", "messages_in_room_and_others", "messages_from_person_and_others", "invite_from_person", "invite_from_person_to_room", "invite_from_person_to_space", "password_reset", "email_already_in_use");
  warnUnknown(subjects);
  warnUnknown(e);
  return { email };
}

function readThreepids(r: ConfigReader): ThreepidConfig {
  const registrationsRequire3pid = r.stringList("registrations_require_3pid");
  for (const m of registrationsRequire3pid) {
    if (m !== "email") throw new ConfigError(`config key "registrations_require_3pid": only "email" is supported, not "${m}"`);
  }
  if (registrationsRequire3pid.includes("email") && !r.has("email")) {
    throw new ConfigError('config key "registrations_require_3pid": requiring an email address needs the "email" section (an SMTP server to send validation emails)');
  }
  const out: ThreepidConfig = {
    registrationsRequire3pid,
    enable3pidChanges: r.bool("enable_3pid_changes", true),
    requestTokenInhibit3pidErrors: r.bool("request_token_inhibit_3pid_errors", false),
  };
  if (r.has("allowed_local_3pids")) {
    out.allowedLocal3pids = (r.list("allowed_local_3pids") ?? []).map((a) => {
      const medium = a.requireString("medium");
      const pattern = a.requireString("pattern");
      let re: RegExp;
      try {
        re = new RegExp(pattern);
      } catch (err) {
        throw new ConfigError(`config key "${a.path}.pattern": "${pattern}" is not a valid regular expression (${(err as Error).message})`);
      }
      warnUnknown(a);
      return { medium, pattern: re };
    });
  } else r.accept("allowed_local_3pids");
  if (r.has("next_link_domain_whitelist")) out.nextLinkDomainWhitelist = r.stringList("next_link_domain_whitelist");
  else r.accept("next_link_domain_whitelist");
  // Identity servers are always chosen by the client (id_server); lookups through the homeserver are not offered.
  r.accept("enable_3pid_lookup", "disable_msisdn_registration");
  if (r.has("account_threepid_delegates")) pendingWarnings.push('"account_threepid_delegates": Myelin validates email addresses itself and sends no SMS; ignored');
  r.accept("account_threepid_delegates");
  return out;
}

/** The media repository's keys, with Synapse's defaults. */
function readMedia(r: ConfigReader): MediaConfig {
  const thumbnailSizes = r.has("thumbnail_sizes")
    ? (r.list("thumbnail_sizes") ?? []).map((t) => {
        const method = t.string("method", "scale");
        if (method !== "crop" && method !== "scale") throw new ConfigError(`config key "${t.path}.method": expected "crop" or "scale", got "${method}"`);
        const size: ThumbnailSize = { width: t.int("width", 0, 1, 10_000), height: t.int("height", 0, 1, 10_000), method };
        if (size.width === 0 || size.height === 0) throw new ConfigError(`config key "${t.path}": width and height are required (positive integers)`);
        warnUnknown(t);
        return size;
      })
    : DEFAULT_THUMBNAIL_SIZES.map((s) => ({ ...s }));
  r.accept("thumbnail_sizes");
  const uploadLimits = (r.list("media_upload_limits") ?? []).map((l) => {
    if (!l.has("time_period") || !l.has("max_size")) throw new ConfigError(`config key "${l.path}": time_period and max_size are required`);
    const limit = { timePeriodMs: l.duration("time_period", 0), maxBytes: l.size("max_size", 0) };
    warnUnknown(l);
    return limit;
  });
  r.accept("media_upload_limits");
  // Longest period first: the check then stops at the first exceeded limit with one query in the common case.
  uploadLimits.sort((a, b) => b.timePeriodMs - a.timePeriodMs);
  const retention = r.section("media_retention");
  const media: MediaConfig = {
    enableMediaRepo: r.bool("enable_media_repo", true),
    maxImagePixels: r.size("max_image_pixels", 32 * 1024 * 1024),
    dynamicThumbnails: r.bool("dynamic_thumbnails", false),
    thumbnailSizes,
    enableAuthenticatedMedia: r.bool("enable_authenticated_media", true),
    uploadLimits,
    maxPendingMediaUploads: r.int("max_pending_media_uploads", 5, 0),
    unusedExpirationTimeMs: r.duration("unused_expiration_time", 24 * 3600_000),
  };
  const local = retention.duration("local_media_lifetime");
  const remote = retention.duration("remote_media_lifetime");
  if (local !== undefined) media.localMediaLifetimeMs = local;
  if (remote !== undefined) media.remoteMediaLifetimeMs = remote;
  warnUnknown(retention);
  return media;
}

export interface CasConfig {
  /** The CAS server's base URL (its `/login` and `/proxyValidate` are under it), without a trailing slash. */
  serverUrl: string;
  /** The CAS attribute that gives a new user's display name. */
  displaynameAttribute?: string;
  /** Attributes a CAS user must have to log in: the value required, or null for any value. */
  requiredAttributes: Record<string, string | null>;
  idpName: string;
  idpIcon?: string;
  idpBrand?: string;
}

/** `cas_config`, as Synapse reads it: on when the section is there, unless `enabled: false`. */
function readCas(r: ConfigReader): CasConfig | undefined {
  if (!r.has("cas_config")) {
    r.accept("cas_config");
    return undefined;
  }
  const c = r.section("cas_config");
  const enabled = c.bool("enabled", true);
  const out: CasConfig = {
    serverUrl: (enabled ? c.requireString("server_url") : (c.string("server_url") ?? "")).replace(/\/+$/, ""),
    requiredAttributes: {},
    idpName: c.string("idp_name", "CAS"),
  };
  const displayname = c.string("displayname_attribute");
  if (displayname !== undefined) out.displaynameAttribute = displayname;
  const icon = c.string("idp_icon");
  if (icon !== undefined) out.idpIcon = icon;
  const brand = c.string("idp_brand");
  if (brand !== undefined) out.idpBrand = brand;
  const required = c.raw("required_attributes");
  if (required !== undefined && required !== null) {
    if (typeof required !== "object" || Array.isArray(required)) throw new ConfigError('config key "cas_config.required_attributes": expected a mapping');
    for (const [k, v] of Object.entries(required as Record<string, unknown>)) {
      if (v !== null && typeof v !== "string") throw new ConfigError(`config key "cas_config.required_attributes.${k}": expected a string or null`);
      out.requiredAttributes[k] = v;
    }
  }
  // The service URL is always our public_baseurl (Synapse deprecated `service_url` and ignores it too).
  c.accept("service_url");
  warnUnknown(c);
  return enabled ? out : undefined;
}

function readSso(r: ConfigReader): string[] {
  if (!r.has("sso")) {
    r.accept("sso");
    return [];
  }
  const s = r.section("sso");
  const list = s.stringList("client_whitelist");
  s.accept("update_profile_information");
  warnUnknown(s);
  return list;
}

function readUserDirectory(r: ConfigReader): UserDirectoryConfig {
  const d = r.has("user_directory") ? r.section("user_directory") : undefined;
  if (!d) r.accept("user_directory");
  const out: UserDirectoryConfig = {
    enabled: d?.bool("enabled", true) ?? true,
    searchAllUsers: d?.bool("search_all_users", false) ?? false,
    preferLocalUsers: d?.bool("prefer_local_users", false) ?? false,
    excludeRemoteUsers: d?.bool("exclude_remote_users", false) ?? false,
    showLockedUsers: d?.bool("show_locked_users", false) ?? false,
  };
  if (d) warnUnknown(d);
  return out;
}

function readPresence(r: ConfigReader): boolean {
  const legacy = r.bool("use_presence", true);
  if (!r.has("presence")) {
    r.accept("presence");
    return legacy;
  }
  const p = r.section("presence");
  const enabled = p.bool("enabled", legacy);
  warnUnknown(p);
  return enabled;
}

function resolvePath(dir: string, p: string): string {
  return p.startsWith("/") ? p : `${dir.replace(/\/$/, "")}/${p}`;
}

function optionalPath(dir: string, p: string | undefined): string | undefined {
  return p === undefined ? undefined : resolvePath(dir, p);
}

function readListeners(r: ConfigReader, env: ConfigEnv): ListenerConfig[] {
  const items = r.list("listeners");
  if (!items || items.length === 0) throw new ConfigError('config key "listeners" is required: a list with at least one listener');
  const listeners = items.map((l) => {
    const type = l.string("type", "http");
    if (type !== "http" && type !== "metrics") throw new ConfigError(`config key "${l.path}.type": expected "http" or "metrics", got "${type}"`);
    const port = l.int("port", 0, 1, 65535);
    if (port === 0) throw new ConfigError(`config key "${l.path}.port" is required (an integer between 1 and 65535)`);
    const bind = l.has("bind_addresses") ? l.stringList("bind_addresses") : l.has("bind_address") ? [l.requireString("bind_address")] : ["::", "0.0.0.0"];
    l.accept("bind_address");
    const resources = new Set<string>();
    for (const res of l.list("resources") ?? []) {
      for (const name of res.stringList("names")) {
        if (!RESOURCES.has(name)) throw new ConfigError(`config key "${res.path}.names": unknown resource "${name}"`);
        resources.add(name);
      }
      res.accept("compress");
      warnUnknown(res);
    }
    if (type === "metrics") resources.add("metrics");
    const listener: ListenerConfig = { port, bindAddresses: bind, type, tls: l.bool("tls", false), xForwarded: l.bool("x_forwarded", false), resources };
    l.accept("request_id_header", "tag");
    warnUnknown(l);
    return listener;
  });
  if (env.MYELIN_PORT) {
    const port = Number(env.MYELIN_PORT);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError(`MYELIN_PORT: expected a port number, got "${env.MYELIN_PORT}"`);
    const first = listeners.find((l) => l.type === "http" && !l.tls) ?? listeners[0]!;
    first.port = port;
  }
  return listeners;
}

function readDatabase(r: ConfigReader, configDir: string, env: ConfigEnv): DatabaseConfig {
  if (env.MYELIN_DATABASE_URL) {
    r.accept("database");
    return parseDatabaseUrl(env.MYELIN_DATABASE_URL, configDir);
  }
  const db = r.section("database");
  const name = db.string("name", "sqlite3");
  const args = db.section("args");
  db.accept("allow_unsafe_locale", "txn_limit");
  let out: DatabaseConfig;
  if (name === "sqlite3" || name === "sqlite") {
    out = { engine: "sqlite", path: resolvePath(configDir, args.string("database", "homeserver.db")) };
    args.accept("cp_min", "cp_max");
  } else if (name === "psycopg2" || name === "psycopg" || name === "postgres" || name === "postgresql") {
    const cpMin = args.int("cp_min", 5, 1);
    const cpMax = args.int("cp_max", 10, 1);
    out = {
      engine: "postgres",
      host: args.string("host", "localhost"),
      port: args.int("port", 5432, 1, 65535),
      database: args.string("database") ?? args.string("dbname") ?? "synapse",
      cpMin,
      cpMax: Math.max(cpMin, cpMax),
    };
    const user = args.string("user");
    const password = args.string("password");
    if (user !== undefined) out.user = user;
    if (password !== undefined) out.password = password;
    args.accept("keepalives_idle", "keepalives_interval", "keepalives_count", "sslmode", "application_name");
  } else {
    throw new ConfigError(`config key "database.name": expected "sqlite3" or "psycopg2", got "${name}"`);
  }
  warnUnknown(args);
  warnUnknown(db);
  return out;
}

/** `postgres://user:pass@host:port/db` or `sqlite:///path/to.db` / `sqlite:relative.db`. */
export function parseDatabaseUrl(url: string, configDir: string): DatabaseConfig {
  if (url.startsWith("sqlite:")) {
    const p = url.replace(/^sqlite:(\/\/)?/, "");
    return { engine: "sqlite", path: resolvePath(configDir, p) };
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`database URL "${url}" is not a URL (expected postgres://user@host:port/database)`);
  }
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") {
    throw new ConfigError(`database URL "${url}": expected a postgres:// or sqlite: URL`);
  }
  const out: DatabaseConfig = {
    engine: "postgres",
    host: decodeURIComponent(u.hostname) || "localhost",
    port: u.port ? Number(u.port) : 5432,
    database: decodeURIComponent(u.pathname.replace(/^\//, "")) || "postgres",
    cpMin: 5,
    cpMax: 10,
  };
  if (u.username) out.user = decodeURIComponent(u.username);
  if (u.password) out.password = decodeURIComponent(u.password);
  return out;
}

/** A `url_preview_url_blacklist` entry: URL component (scheme, netloc, path…) → glob, or a regex when it starts with ^. */
export type UrlBlacklistEntry = Record<string, string>;

export interface UrlPreviewConfig {
  /** `url_preview_enabled` (default false): off, the preview endpoints answer 404 M_UNRECOGNIZED, as Synapse's. */
  enabled: boolean;
  /** `url_preview_ip_range_blacklist`: required when enabled (plus 0.0.0.0 and :: always). */
  ipRangeBlacklist: string[];
  /** `url_preview_ip_range_whitelist`: exceptions to the blacklist. */
  ipRangeWhitelist: string[];
  /** `url_preview_url_blacklist`: a URL matching every component of one entry is not previewed. */
  urlBlacklist: UrlBlacklistEntry[];
  /** `max_spider_size` (default 10M): the largest page or image fetched. */
  maxSpiderSize: number;
  /** `url_preview_accept_language` (default ["en"]): sent as Accept-Language. */
  acceptLanguage: string[];
}

/** The components of a `url_preview_url_blacklist` entry: Python's urlsplit attributes, as Synapse matches them. */
export const URL_BLACKLIST_COMPONENTS: ReadonlySet<string> = new Set(["scheme", "netloc", "path", "query", "fragment", "username", "password", "hostname", "port"]);

/** As Synapse: previews fetch whatever URL a user names, so they are refused without an explicit IP blacklist. */
function readUrlPreview(r: ConfigReader): UrlPreviewConfig {
  const enabled = r.bool("url_preview_enabled", false);
  if (enabled && !r.has("url_preview_ip_range_blacklist")) {
    throw new ConfigError(
      'config key "url_preview_ip_range_blacklist" is required when url_preview_enabled is true: for security, list the IP ranges ' +
        "URL previews may not fetch from (at least your private networks; see docs/url_previews.md for a suggested list)",
    );
  }
  const ranges = (key: string) =>
    r.stringList(key).map((range) => {
      if (!parseIpRange(range)) throw new ConfigError(`config key "${key}": "${range}" is not an IP address or CIDR range`);
      return range;
    });
  const urlBlacklist = (r.list("url_preview_url_blacklist") ?? []).map((entry) => {
    const out: UrlBlacklistEntry = {};
    for (const component of entry.keys()) {
      if (!URL_BLACKLIST_COMPONENTS.has(component)) {
        throw new ConfigError(`config key "${entry.path}.${component}": not a URL component (expected one of ${[...URL_BLACKLIST_COMPONENTS].join(", ")})`);
      }
      const pattern = entry.requireString(component);
      if (pattern.startsWith("^")) {
        try {
          new RegExp(pattern);
        } catch (e) {
          throw new ConfigError(`config key "${entry.path}.${component}": "${pattern}" is not a valid regular expression (${(e as Error).message})`);
        }
      }
      out[component] = pattern;
    }
    return out;
  });
  const acceptLanguage = r.has("url_preview_accept_language") ? r.stringList("url_preview_accept_language") : ["en"];
  r.accept("url_preview_accept_language");
  return {
    enabled,
    ipRangeBlacklist: ranges("url_preview_ip_range_blacklist"),
    ipRangeWhitelist: ranges("url_preview_ip_range_whitelist"),
    urlBlacklist,
    maxSpiderSize: r.size("max_spider_size", 10 * 1024 * 1024),
    acceptLanguage,
  };
}
