/** Everything the HTTP layer can call, built once by server.ts. */
import type { Logger } from "pino";
import type { Config } from "../config/config.js";
import type { SigningKey } from "../core/crypto/ed25519.js";
import type { Storage } from "../storage/storage.js";
import type { AccountDataService } from "./account_data.js";
import type { AccountService } from "./accounts.js";
import type { DeviceService } from "./devices.js";
import type { ProfileService } from "./profile.js";
import type { RateLimiter } from "./ratelimit.js";
import type { TokenService } from "./tokens.js";
import type { UiaService } from "./uia.js";
import type { Notifier } from "./notifier.js";
import type { RoomCore, RoomAccess } from "./rooms/rooms.js";
import type { RoomCreationService } from "./rooms/create.js";
import type { MembershipService } from "./rooms/membership.js";
import type { MessageService } from "./rooms/messages.js";
import type { RelationsService } from "./rooms/relations.js";
import type { ThreadListService } from "./rooms/threads.js";
import type { RoomUpgradeService } from "./rooms/upgrade.js";
import type { TypingService } from "./ephemeral/typing.js";
import type { ReceiptService } from "./ephemeral/receipts.js";
import type { PresenceService } from "./ephemeral/presence.js";
import type { SyncService } from "./sync/sync.js";
import type { SlidingSyncService } from "./sync/sliding_sync.js";
import type { ToDeviceService } from "./to_device.js";
import type { DeviceListService } from "./device_lists.js";
import type { E2eKeyService } from "./e2e_keys.js";
import type { DehydratedDeviceService } from "./dehydrated_devices.js";
import type { CrossSigningService } from "./cross_signing.js";
import type { RemoteDeviceLists } from "./remote_device_lists.js";
import type { FederationClient } from "../federation/client.js";
import type { KeyFetcher } from "./keys.js";
import type { KeyServer } from "./key_server.js";
import type { RoomDirectory } from "./rooms/directory.js";
import type { SpaceHierarchy } from "./rooms/hierarchy.js";
import type { MutualRooms } from "./rooms/mutual_rooms.js";
import type { RoomSummaries } from "./rooms/room_summary.js";
import type { ServerRoomAccess } from "./federation/room_access.js";
import type { FederationReads } from "./federation/reads.js";
import type { FederationSender } from "./federation/sender.js";
import type { FederationPdus } from "./federation/pdus.js";
import type { FederationMembership } from "./federation/membership.js";
import type { FederationTransactions } from "./federation/transactions.js";
import type { TagService } from "./tags.js";
import type { TurnService } from "./voip.js";
import type { ThirdPartyService } from "./thirdparty.js";
import type { PushRuleService } from "./push/rules.js";
import type { PusherService } from "./push/pushers.js";
import type { PusherPool } from "./push/delivery.js";
import type { NotificationList } from "./push/notifications.js";
import type { UnreadCounts } from "./push/counts.js";
import type { CacheRegistry } from "../util/cache.js";
import type { Metrics } from "./metrics.js";
import type { RoomChanges } from "./rooms/room_changes.js";
import type { KeyBackupService } from "./key_backup.js";
import type { AccountModeration } from "./account_moderation.js";
import type { ReportService } from "./reports.js";
import type { LoginTokens } from "./login_tokens.js";
import type { UrlPreviewService } from "./media/url_preview.js";
import type { MediaRepository } from "./media/media_repository.js";
import type { SearchService } from "./search.js";
import type { UserDirectoryService } from "./user_directory.js";
import type { PeekService } from "./rooms/peeks.js";
import type { SelfDestructingEvents } from "./rooms/self_destruct.js";
import type { CasProvider } from "./sso/cas.js";
import type { SsoService } from "./sso/sso.js";
import type { OutboundHttp } from "../outbound/http_client.js";
import type { ThreepidService } from "./threepid/threepids.js";
import type { ThirdPartyInvites } from "./threepid/invites.js";
import type { AppServices } from "./appservices/appservices.js";
import type { AppServiceSender } from "./appservices/sender.js";

export interface RateLimiters {
  registration: RateLimiter;
  registrationTokenValidity: RateLimiter;
  loginAddress: RateLimiter;
  loginAccount: RateLimiter;
  loginFailedAttempts: RateLimiter;
  message: RateLimiter;
  joinsLocal: RateLimiter;
  invitesPerRoom: RateLimiter;
  invitesPerUser: RateLimiter;
  roomCreation: RateLimiter;
  /** POST /login/get_token: as Synapse, one a minute per user (not configurable). */
  loginTokenRequest: RateLimiter;
}

export interface Services {
  config: Config;
  log: Logger;
  storage: Storage;
  signingKey: SigningKey;
  tokens: TokenService;
  devices: DeviceService;
  accounts: AccountService;
  uia: UiaService;
  profile: ProfileService;
  accountData: AccountDataService;
  limits: RateLimiters;
  notifier: Notifier;
  roomCore: RoomCore;
  rooms: RoomAccess;
  roomCreation: RoomCreationService;
  membership: MembershipService;
  messages: MessageService;
  relations: RelationsService;
  threads: ThreadListService;
  roomUpgrades: RoomUpgradeService;
  typing: TypingService;
  receipts: ReceiptService;
  presence: PresenceService;
  sync: SyncService;
  /** Simplified Sliding Sync (MSC4186). */
  slidingSync: SlidingSyncService;
  /** Send-to-device messages: device inboxes and m.direct_to_device. */
  toDevice: ToDeviceService;
  /** The device-list stream and m.device_list_update. */
  deviceLists: DeviceListService;
  /** E2EE device, one-time and fallback keys (local and through other servers). */
  e2eKeys: E2eKeyService;
  /** MSC3814 dehydrated devices. */
  dehydratedDevices: DehydratedDeviceService;
  crossSigning: CrossSigningService;
  /** The cache of remote users' device lists. */
  remoteDeviceLists: RemoteDeviceLists;
  /** Signed outbound federation requests. */
  federationClient: FederationClient;
  /** Other servers' signing keys; verifies their signatures. */
  keys: KeyFetcher;
  /** Our published keys and the notary. */
  keyServer: KeyServer;
  /** The published room directory and room summaries (client and federation). */
  directory: RoomDirectory;
  /** The client space hierarchy (GET /rooms/{roomId}/hierarchy). */
  hierarchy: SpaceHierarchy;
  /** GET /room_summary/{roomIdOrAlias}. */
  roomSummaries: RoomSummaries;
  /** GET /mutual_rooms. */
  mutualRooms: MutualRooms;
  /** Server ACL and "server in room" checks for room-scoped federation endpoints. */
  serverRoomAccess: ServerRoomAccess;
  /** Events, state and auth chains served to other servers. */
  federationReads: FederationReads;
  federationSender: FederationSender;
  federationPdus: FederationPdus;
  federationMembership: FederationMembership;
  federationTransactions: FederationTransactions;
  /** Prometheus metrics, when `enable_metrics` is on. */
  metrics?: Metrics;
  /** What changed per room since a stream position (for /sync). */
  roomChanges: RoomChanges;
  /** Every in-memory cache, sized from the config (for the metrics). */
  caches: CacheRegistry;
  /** Room tags, kept as m.tag room account data. */
  tags: TagService;
  /** Users' push rules (m.push_rules). */
  pushRules: PushRuleService;
  /** POST /pushers/set and GET /pushers. */
  pushers: PusherService;
  /** Delivery of notifications to push gateways. */
  pusherPool: PusherPool;
  /** GET /notifications. */
  notifications: NotificationList;
  /** Unread notification counts. */
  unread: UnreadCounts;
  /** TURN credentials for VoIP. */
  turn: TurnService;
  /** Accounts' 3PIDs (email): validation sessions, bindings here and at identity servers. */
  threepids: ThreepidService;
  /** Inviting email addresses: m.room.third_party_invite, onbind and exchange_third_party_invite. */
  thirdPartyInvites: ThirdPartyInvites;
  /** Third-party protocols and lookups (from application services). */
  thirdParty: ThirdPartyService;
  /** Server-side key backups (/room_keys). */
  keyBackup: KeyBackupService;
  /** Locking and suspending accounts; `assertNotSuspended` guards the actions a suspension forbids. */
  accountModeration: AccountModeration;
  /** Reports of events, rooms and users. */
  reports: ReportService;
  /** Single-use `m.login.token` tokens. */
  loginTokens: LoginTokens;
  /** Single sign-on; both set when an identity provider (CAS) is configured. */
  sso?: SsoService;
  cas?: CasProvider;
  /** GET /media/preview_url: page fetching, Open Graph, the preview cache. */
  urlPreviews: UrlPreviewService;
  /** The content repository: uploads, downloads, thumbnails. */
  media: MediaRepository;
  /** POST /search. */
  search: SearchService;
  /** HTTP to URLs the admin configured (CAPTCHA siteverify): no IP range filter. */
  configuredHttp: OutboundHttp;
  /** Peeking into world-readable rooms (MSC2753 /peek, `rooms.peek` in /sync). */
  peeks: PeekService;
  /** MSC2228 expiries; only with `enable_ephemeral_messages`. */
  selfDestruct?: SelfDestructingEvents;
  /** POST /user_directory/search and the tables behind it. */
  userDirectory: UserDirectoryService;
  /** The registered application services: as_tokens, identity assertion, namespaces, queries, ping. */
  appServices: AppServices;
  /** Transactions of events (and ephemeral data) to application services. */
  appServiceSender: AppServiceSender;
}
