/**
 * Wires config → storage → services → HTTP listeners. The only module that knows every part; everything else gets
 * what it needs passed in.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { dirname } from "node:path";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { buildApp, type AppOptions } from "./api/http/app.js";
import { HTTP_SERVER_OPTIONS, answerClientError } from "./api/http/door.js";
import type { Config } from "./config/config.js";
import { ConfigError } from "./config/reader.js";
import { formatSigningKeyFile, generateSigningKey, parseSigningKeyFile, type SigningKey } from "./core/crypto/ed25519.js";
import { createLogger, logLevelOf } from "./logging.js";
import type { JsonObject } from "./core/json/types.js";
import { AccountDataService } from "./services/account_data.js";
import { AccountService } from "./services/accounts.js";
import { DeviceService } from "./services/devices.js";
import { PasswordHasher } from "./services/passwords.js";
import { ProfileService } from "./services/profile.js";
import { RateLimiter } from "./services/ratelimit.js";
import type { Services } from "./services/services.js";
import { TokenService } from "./services/tokens.js";
import { UiaService } from "./services/uia.js";
import { Notifier } from "./services/notifier.js";
import { EventCache } from "./services/rooms/event_cache.js";
import { StateService } from "./services/rooms/state.js";
import { EventPersister } from "./services/rooms/persister.js";
import { EventFormatter } from "./services/rooms/format.js";
import { VisibilityService } from "./services/rooms/visibility.js";
import { guestAccessConsumer } from "./services/rooms/guest_access.js";
import { RoomAccess, type RoomCore } from "./services/rooms/rooms.js";
import { RoomCreationService } from "./services/rooms/create.js";
import { PeekService } from "./services/rooms/peeks.js";
import { MembershipService } from "./services/rooms/membership.js";
import { MessageService } from "./services/rooms/messages.js";
import { RelationsService } from "./services/rooms/relations.js";
import { ThreadListService } from "./services/rooms/threads.js";
import { RoomUpgradeService } from "./services/rooms/upgrade.js";
import { TypingService } from "./services/ephemeral/typing.js";
import { ReceiptService } from "./services/ephemeral/receipts.js";
import { PresenceService } from "./services/ephemeral/presence.js";
import { SyncService } from "./services/sync/sync.js";
import { SlidingSyncService } from "./services/sync/sliding_sync.js";
import { SlidingConnections } from "./services/sync/sliding_connections.js";
import { BumpStamps } from "./services/sync/bump_stamps.js";
import { SlidingRoomLists } from "./services/sync/sliding_room_lists.js";
import { ToDeviceService } from "./services/to_device.js";
import { DeviceListService } from "./services/device_lists.js";
import { E2eKeyService } from "./services/e2e_keys.js";
import { CrossSigningService } from "./services/cross_signing.js";
import { RemoteDeviceLists } from "./services/remote_device_lists.js";
import { FederationClient } from "./federation/client.js";
import { ServerDiscovery, systemResolver, type Resolver, type WellKnownFetcher } from "./federation/discovery.js";
import { IpRangeFilter } from "./federation/ip_filter.js";
import { loadCaCertificates, Transport, wellKnownFetcher } from "./federation/transport.js";
import { KeyFetcher } from "./services/keys.js";
import { userIdDomain } from "./core/ids/ids.js";
import { FederationSender } from "./services/federation/sender.js";
import { joinPresenceConsumer } from "./services/federation/presence.js";
import { FederationPdus } from "./services/federation/pdus.js";
import { PolicyServerClient } from "./services/federation/policy_server.js";
import { FederationMembership } from "./services/federation/membership.js";
import { FederationTransactions } from "./services/federation/transactions.js";
import { KeyServer } from "./services/key_server.js";
import { RoomDirectory } from "./services/rooms/directory.js";
import { PreviewAccess, RemoteHierarchies, SpaceHierarchy } from "./services/rooms/hierarchy.js";
import { MutualRooms } from "./services/rooms/mutual_rooms.js";
import { RoomSummaries, resolveLocalAlias } from "./services/rooms/room_summary.js";
import { ServerRoomAccess } from "./services/federation/room_access.js";
import { FederationReads } from "./services/federation/reads.js";
import { TagService } from "./services/tags.js";
import { KeyBackupService } from "./services/key_backup.js";
import { SearchService } from "./services/search.js";
import { SelfDestructingEvents } from "./services/rooms/self_destruct.js";
import { CasProvider } from "./services/sso/cas.js";
import { SsoService } from "./services/sso/sso.js";
import { SearchIndexer } from "./services/search_index.js";
import { DehydratedDeviceService } from "./services/dehydrated_devices.js";
import { TurnService } from "./services/voip.js";
import { ThirdPartyService } from "./services/thirdparty.js";
import { PushRuleService } from "./services/push/rules.js";
import { PushRoomMembers } from "./services/push/room_members.js";
import { PushEvaluator } from "./services/push/evaluator.js";
import { UnreadCounts } from "./services/push/counts.js";
import { NotificationList } from "./services/push/notifications.js";
import { PusherService } from "./services/push/pushers.js";
import { PusherPool } from "./services/push/delivery.js";
import { OutboundHttp } from "./outbound/http_client.js";
import { UrlPreviewService } from "./services/media/url_preview.js";
import { UserRooms } from "./services/rooms/user_rooms.js";
import { RoomChanges } from "./services/rooms/room_changes.js";
import { RecentEvents } from "./services/rooms/recent_events.js";
import { UserDirectoryService } from "./services/user_directory.js";
import { CacheRegistry } from "./util/cache.js";
import { AccountModeration } from "./services/account_moderation.js";
import { ReportService } from "./services/reports.js";
import { LoginTokens } from "./services/login_tokens.js";
import type { Metrics } from "./services/metrics.js";
import { MediaRepository } from "./services/media/media_repository.js";
import { MediaFileStore } from "./services/media/media_store.js";
import { RemoteMedia } from "./services/media/remote_media.js";
import type { Thumbnailer } from "./services/media/thumbnailer.js";
import { createThumbnailer } from "./services/media/thumbnailer_factory.js";
import { openDatabase } from "./storage/database.js";
import { Mailer } from "./services/email/mailer.js";
import { ThreepidValidation } from "./services/threepid/validation.js";
import { IdentityServerClient } from "./services/threepid/identity_server.js";
import { ThreepidService } from "./services/threepid/threepids.js";
import { ThirdPartyInvites } from "./services/threepid/invites.js";
import { Storage } from "./storage/storage.js";
import { AppServiceApi } from "./services/appservices/api.js";
import { AppServices } from "./services/appservices/appservices.js";
import { AppServiceSender } from "./services/appservices/sender.js";

export interface RunningServer {
  services: Services;
  /** Where each listener ended up (port 0 in the config means "any free port"). */
  addresses: { host: string; port: number; resources: Set<string>; tls: boolean }[];
  close(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  /** Config warnings to log once the logger exists. */
  warnings?: string[];
  /** How federation finds other servers (tests map names to 127.0.0.1); the system's DNS and HTTPS by default. */
  federation?: FederationDeps;
  /** Extra routes on every listener (tests add federation endpoints of their own). */
  routes?: AppOptions["routes"];
  /** The media repository's thumbnailer (tests pass a fake); `createThumbnailer` by default. */
  thumbnailer?: Thumbnailer;
}

export interface FederationDeps {
  resolver?: Resolver;
  wellKnownFetcher?: WellKnownFetcher;
}

/** Synapse refuses open registration without verification unless explicitly allowed; so do we. */
export function checkRegistrationSafety(config: Config): void {
  if (config.enableRegistration && !config.enableRegistrationWithoutVerification && !config.registrationRequiresToken && config.threepids.registrationsRequire3pid.length === 0) {
    throw new ConfigError(
      "You have enabled open registration without any verification. This is a known vector for spam and abuse. " +
        "Set registration_requires_token: true or registrations_require_3pid: [email], or set enable_registration_without_verification: true if you really want open registration.",
    );
  }
}

/** As Synapse: a listener with `tls: true` needs tls_certificate_path and tls_private_key_path. */
export function checkTlsListeners(config: Config): void {
  if (config.listeners.some((l) => l.tls) && (config.tlsCertificatePath === undefined || config.tlsPrivateKeyPath === undefined)) {
    throw new ConfigError('config keys "tls_certificate_path" and "tls_private_key_path" are required when a listener has tls: true');
  }
}

export function loadOrCreateSigningKey(path: string, log: Logger): SigningKey {
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true });
    const key = generateSigningKey();
    writeFileSync(path, formatSigningKeyFile([key]), { mode: 0o600, flag: "wx" });
    log.info({ path, keyId: key.keyId }, "generated a new signing key");
    return key;
  }
  return parseSigningKeyFile(readFileSync(path, "utf8"))[0]!;
}

export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  const { level, note } = logLevelOf(config);
  const log = opts.logger ?? createLogger(level);
  for (const w of opts.warnings ?? []) log.warn(w);
  if (note) log.info(note);
  checkRegistrationSafety(config);
  checkTlsListeners(config);
  if (config.enableRegistration && config.enableRegistrationWithoutVerification) {
    log.warn("open registration without verification is enabled: anyone who can reach this server can create accounts. Never expose such a server to the internet.");
  }

  if (!config.enableMetrics && config.listeners.some((l) => l.resources.has("metrics"))) {
    log.warn("a listener serves metrics, but enable_metrics is not true: metrics are off and that resource answers 404");
  }
  const signingKey = loadOrCreateSigningKey(config.signingKeyPath, log);
  const storage = new Storage(await openDatabase(config.database));
  const services = buildServices(config, log, storage, signingKey, opts.federation, await loadMetricsModule(config), opts.thumbnailer);
  await startServices(services);

  const apps: FastifyInstance[] = [];
  const extraServers: Server[] = [];
  const addresses: RunningServer["addresses"] = [];
  try {
    for (const listener of config.listeners) {
      // A `tls: true` listener serves HTTPS with tls_certificate_path/tls_private_key_path (as Synapse), e.g. federation
      // on 8448 next to a plain client listener on 8008.
      const https = listener.tls ? { cert: readFileSync(config.tlsCertificatePath!), key: readFileSync(config.tlsPrivateKeyPath!) } : undefined;
      const app = await buildApp(services, listener, { https, routes: opts.routes });
      apps.push(app);
      const [first, ...rest] = listener.bindAddresses;
      await app.listen({ port: listener.port, host: first ?? "0.0.0.0" });
      const addr = app.server.address();
      const port = typeof addr === "object" && addr ? addr.port : listener.port;
      addresses.push({ host: first ?? "0.0.0.0", port, resources: listener.resources, tls: listener.tls });
      // Fastify listens once; further bind addresses forward their requests to the same app.
      for (const host of rest) {
        const forward = (req: IncomingMessage, res: ServerResponse) => app.server.emit("request", req, res);
        // The same parser limits, JSON Content-Type and Matrix answers to parser errors as Fastify's own listener.
        const extra = https ? createHttpsServer({ ...https, ...HTTP_SERVER_OPTIONS }, forward) : createServer(HTTP_SERVER_OPTIONS, forward);
        extra.on("clientError", answerClientError);
        try {
          await new Promise<void>((resolve, reject) => {
            extra.once("error", reject);
            extra.listen(port, host, () => resolve());
          });
          extraServers.push(extra);
          addresses.push({ host, port, resources: listener.resources, tls: listener.tls });
        } catch (e) {
          // `::` usually covers IPv4 too, so a second bind on 0.0.0.0 may find the port taken: that is fine.
          if ((e as NodeJS.ErrnoException).code !== "EADDRINUSE") throw e;
        }
      }
      log.info({ port, bind: listener.bindAddresses, resources: [...listener.resources] }, "listening");
    }
  } catch (e) {
    await Promise.allSettled(apps.map((a) => a.close()));
    await storage.close();
    throw e;
  }
  log.info({ serverName: config.serverName }, "Myelin started");

  let closing: Promise<void> | undefined;
  return {
    services,
    addresses,
    close: () =>
      (closing ??= (async () => {
        // Release long-polling /sync requests first so closing the listeners does not wait for their timeouts.
        services.notifier.close();
        const media = services.media.close();
        const drain = drainConnections([...extraServers, ...apps.map((a) => a.server)]);
        await Promise.allSettled(extraServers.map((s) => new Promise((r) => s.close(r))));
        await Promise.allSettled(apps.map((a) => a.close()));
        drain.stop();
        stopServices(services);
        await media;
        await services.devices.flushSeen();
        await storage.close();
        log.info("Myelin stopped");
      })()),
  };
}

/**
 * While the listeners close: a request in flight when closing began is answered on a keep-alive connection, which
 * Node would then hold open until the peer drops it (another server's pooled socket: a minute). Connections are
 * closed as soon as they go idle, and any left after a grace period are closed outright.
 */
function drainConnections(servers: Pick<Server, "closeIdleConnections" | "closeAllConnections">[]): { stop(): void } {
  const started = Date.now();
  const timer = setInterval(() => {
    const all = Date.now() - started > CLOSE_GRACE_MS;
    for (const s of servers) {
      if (all) s.closeAllConnections();
      else s.closeIdleConnections();
    }
  }, 50);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
const CLOSE_GRACE_MS = 10_000;

/** Loads what services need from the database before the first request. */
export async function startServices(s: Services): Promise<void> {
  await s.accountData.start();
  await s.roomCore.state.start();
  await s.roomCore.visibility.start();
  await s.roomCore.persister.start();
  s.roomCore.userRooms.start(s.roomCore.persister.position());
  s.roomChanges.start(s.roomCore.persister.position());
  s.userDirectory.start();
  await s.peeks.start();
  s.unread.start();
  await s.pushRules.start();
  await s.receipts.start();
  await s.presence.start();
  await s.toDevice.start();
  await s.deviceLists.start();
  await s.federationSender.start();
  await s.appServices.start();
  await s.appServiceSender.start();
  await s.pusherPool.start();
  await s.media.start();
  await s.selfDestruct?.start();
  startHousekeeping(s);
}

const housekeeping = new WeakMap<Services, NodeJS.Timeout>();

export function stopServices(s: Services): void {
  s.typing.close();
  s.presence.close();
  s.federationSender.close();
  s.appServiceSender.close();
  s.federationClient.close();
  s.pusherPool.close();
  s.urlPreviews.close();
  s.threepids.validation.close();
  void s.selfDestruct?.close();
  clearInterval(housekeeping.get(s));
}

/**
 * Periodic clean-up: UIA sessions, sendToDevice transaction ids and received to-device message ids older than a day;
 * push outcomes, login tokens, idle Sliding Sync connections.
 */
function startHousekeeping(s: Services): void {
  const timer = setInterval(() => {
    s.storage.uia.deleteOlderThan(Date.now() - 24 * 3600_000).catch((e: unknown) => s.log.warn({ err: e }, "UIA session clean-up failed"));
    s.storage.deviceInbox.deleteIdsBefore(Date.now() - 24 * 3600_000).catch((e: unknown) => s.log.warn({ err: e }, "to-device id clean-up failed"));
    // Synapse keeps a month of notifications (GET /notifications); older push outcomes go.
    s.storage.push.deleteOutcomesBefore(Date.now() - 30 * 24 * 3600_000).catch((e: unknown) => s.log.warn({ err: e }, "push outcome clean-up failed"));
    s.storage.threepids.deleteOlderThan(Date.now() - 24 * 3600_000).catch((e: unknown) => s.log.warn({ err: e }, "3PID validation session clean-up failed"));
    s.loginTokens.deleteExpired().catch((e: unknown) => s.log.warn({ err: e }, "login token clean-up failed"));
    // Sliding Sync connections idle for a week (their client starts over on M_UNKNOWN_POS).
    s.storage.slidingSync.deleteIdleBefore(Date.now() - 7 * 24 * 3600_000).catch((e: unknown) => s.log.warn({ err: e }, "sliding sync connection clean-up failed"));
  }, 3600_000);
  timer.unref();
  housekeeping.set(s, timer);
}

/**
 * What local activity other servers hear about: new local events (to the servers in the room), typing and public
 * read receipts of local users (EDUs to the room's servers), and local presence (to servers sharing a room).
 */
function wireOutboundFederation(
  serverName: string,
  storage: Storage,
  persister: EventPersister,
  sender: FederationSender,
  typing: TypingService,
  receipts: ReceiptService,
  presence: PresenceService,
  log: Logger,
): void {
  const isLocal = (userId: string) => userId.endsWith(`:${serverName}`);
  const warn = (what: string) => (e: unknown) => log.warn({ err: e }, `federation: ${what} failed`);
  persister.use({ name: "federation", committed: (e, local) => void (local && sender.sendEvent(e).catch(warn("queueing an event"))) });
  typing.onChange = (roomId, userId, isTyping) => {
    if (!isLocal(userId)) return;
    storage.federation
      .serversInRoom(roomId)
      .then((servers) => sender.sendEdu(servers, { edu_type: "m.typing", content: { room_id: roomId, user_id: userId, typing: isTyping } }))
      .catch(warn("sending typing"));
  };
  receipts.onLocalReceipt = (roomId, userId, receiptType, eventId, data) => {
    if (receiptType !== "m.read" || !isLocal(userId)) return;
    const edu = { edu_type: "m.receipt", content: { [roomId]: { "m.read": { [userId]: { event_ids: [eventId], data: data as JsonObject } } } } };
    storage.federation
      .serversInRoom(roomId)
      .then((servers) => sender.sendEdu(servers, edu))
      .catch(warn("sending a receipt"));
  };
  presence.onLocalChange = (userId, content) => {
    if (!isLocal(userId)) return;
    (async () => {
      const servers = new Set<string>();
      for (const r of await storage.rooms.roomsForUser(userId, ["join"])) for (const s of await storage.federation.serversInRoom(r.room_id)) servers.add(s);
      const edu = { edu_type: "m.presence", content: { push: [{ user_id: userId, ...content }] } };
      sender.sendEdu(servers, edu);
    })().catch(warn("sending presence"));
  };
}

/**
 * Application services: the registrations, their HTTP API (to the admin's URLs: no IP range filter), and the
 * transaction sender, a consumer of every new event, fed typing, local receipts and presence too (MSC2409).
 */
function buildAppServices(
  config: Config,
  log: Logger,
  storage: Storage,
  roomCore: RoomCore,
  configuredHttp: OutboundHttp,
  typing: TypingService,
  receipts: ReceiptService,
  presence: PresenceService,
) {
  const api = new AppServiceApi(configuredHttp);
  const appServices = new AppServices(config.appServices, config.serverName, storage, api);
  const sender = new AppServiceSender({ services: appServices.all, storage, events: roomCore.events, formatter: roomCore.formatter, api, position: () => roomCore.persister.position(), log });
  roomCore.persister.use(sender);
  const thirdPartySources = appServices.thirdPartySources();
  if (appServices.all.some((as) => as.registration.receiveEphemeral)) {
    const warn = (e: unknown) => log.warn({ err: e }, "application services: queueing ephemeral data failed");
    const inRoom = (roomId: string) => (as: Parameters<typeof sender.interestedInRoom>[0]) => sender.interestedInRoom(as, roomId);
    const onTyping = typing.onChange;
    typing.onChange = (roomId, userId, isTyping) => {
      onTyping?.(roomId, userId, isTyping);
      const edu = typing.eventFor(roomId, undefined) ?? { type: "m.typing", content: { user_ids: [] } };
      sender.ephemeral({ ...edu, room_id: roomId }, inRoom(roomId)).catch(warn);
    };
    const onReceipt = receipts.onLocalReceipt;
    receipts.onLocalReceipt = (roomId, userId, receiptType, eventId, data) => {
      onReceipt?.(roomId, userId, receiptType, eventId, data);
      const edu = { type: "m.receipt", room_id: roomId, content: { [eventId]: { [receiptType]: { [userId]: data as JsonObject } } } };
      sender.ephemeral(edu, inRoom(roomId)).catch(warn);
    };
    const onPresence = presence.onLocalChange;
    presence.onLocalChange = (userId, content) => {
      onPresence?.(userId, content);
      const edu = { type: "m.presence", sender: userId, content: { ...content } as JsonObject };
      sender
        .ephemeral(edu, async (as) => {
          if (as.isInterestedInUser(userId)) return true;
          for (const r of await storage.rooms.roomsForUser(userId, ["join"])) if (await sender.interestedInRoom(as, r.room_id)) return true;
          return false;
        })
        .catch(warn);
    };
  }
  return { appServices, sender, thirdPartySources };
}

/** The room directory and what describes rooms with it: the space hierarchy, room summaries; and mutual rooms. */
function buildSpaces(config: Config, log: Logger, storage: Storage, rooms: RoomAccess, serverAccess: ServerRoomAccess, client: FederationClient, membership: MembershipService, caches: CacheRegistry) {
  const directory = new RoomDirectory(rooms, serverAccess);
  const access = new PreviewAccess(rooms);
  const serverName = config.serverName;
  const remote = new RemoteHierarchies({ client, serverName, log, caches });
  const resolveAlias = (alias: string) => (alias.slice(alias.indexOf(":") + 1) !== serverName && membership.remote ? membership.remote.queryAlias(alias) : resolveLocalAlias(rooms, serverName, alias));
  return {
    directory,
    hierarchy: new SpaceHierarchy({ rooms, directory, serverAccess, access, remote, serverName, caches }),
    roomSummaries: new RoomSummaries({ rooms, directory, serverAccess, access, remote, serverName, resolveAlias }),
    mutualRooms: new MutualRooms(storage),
  };
}

/** Metrics: counters fed by the write path and push delivery, the rest read from the services when scraped. */
function buildMetrics(
  metricsModule: MetricsModule,
  storage: Storage,
  caches: CacheRegistry,
  persister: EventPersister,
  notifier: Notifier,
  sender: FederationSender,
  passwords: PasswordHasher,
  pusherPool: PusherPool,
): Metrics {
  const metrics = new metricsModule.Metrics();
  const local = metrics.eventsPersisted.labels("local");
  const remote = metrics.eventsPersisted.labels("remote");
  persister.observe(
    (n) => metrics.persistBatchSize.observe(n),
    (isLocal) => (isLocal ? local : remote).inc(),
  );
  pusherPool.onDelivered = (outcome) => metrics.pushDeliveries.inc({ outcome });
  metrics.observe({
    caches,
    federationQueues: () => sender.queueDepths(),
    databasePool: () => storage.databaseStats().pool,
    sqlitePageCacheBytes: () => storage.databaseStats().pageCacheBytes,
    passwordHashQueue: () => passwords.waiting,
    waitingSyncs: () => notifier.waiting,
    syncWakeups: () => notifier.wakeups,
  });
  return metrics;
}

/**
 * Push notifications: users' rules, their evaluation for every new event (a consumer of the persister), unread
 * counts moved by receipts, and delivery to push gateways.
 */
function buildPush(
  config: Config,
  log: Logger,
  storage: Storage,
  roomCore: RoomCore,
  accountData: AccountDataService,
  receipts: ReceiptService,
  devices: DeviceService,
  outbound: OutboundHttp,
  caches: CacheRegistry,
) {
  const isLocal = (userId: string) => userId.endsWith(`:${config.serverName}`);
  const pushRules = new PushRuleService(storage, accountData, caches);
  const unread = new UnreadCounts(storage, () => roomCore.persister.position(), caches);
  const pusherPool = new PusherPool({ storage, events: roomCore.events, state: roomCore.state, unread, http: outbound, config: config.push, log, caches });
  const pushers = new PusherService(storage, () => roomCore.persister.position(), pusherPool);
  roomCore.persister.use(
    new PushEvaluator({
      storage,
      events: roomCore.events,
      rules: pushRules,
      members: new PushRoomMembers(storage, roomCore.events, isLocal, caches),
      isLocal,
      hasPushers: (u) => pusherPool.hasPushers(u),
      usersWithPushers: () => pusherPool.usersWithPushersSet(),
      // Once the position covers the event, so the push's badge counts it (an earlier event may commit later).
      onNotified: (users, e) => void roomCore.persister.reached(e.streamOrdering).then(() => pusherPool.notified(users)),
      onWritten: (roomId, stream) => unread.wrote(roomId, stream),
      log,
    }),
  );
  receipts.onRead = async (roomId, userId, threadId, stream) => {
    await storage.push.moveReadPosition(userId, roomId, threadId, stream);
    pusherPool.readChanged(userId);
  };
  devices.hooks.onDeleted = (userId) => pushers.devicesDeleted(userId);
  return { pushRules, unread, pusherPool, pushers, notifications: new NotificationList(storage, roomCore.events, roomCore.formatter) };
}

/** The federation stack: discovery → transport (IP filtering, TLS) → signed client → keys. */
function buildFederation(config: Config, log: Logger, storage: Storage, signingKey: SigningKey, deps: FederationDeps, caches: CacheRegistry) {
  const resolver = deps.resolver ?? systemResolver;
  const transport = new Transport({
    resolver,
    ipFilter: new IpRangeFilter(config.ipRangeBlacklist, config.ipRangeWhitelist),
    verifyCertificates: config.federationVerifyCertificates,
    customCas: config.federationCustomCaList ? loadCaCertificates(config.federationCustomCaList) : undefined,
    verificationWhitelist: config.federationCertificateVerificationWhitelist,
  });
  const discovery = new ServerDiscovery({ resolver, fetchWellKnown: deps.wellKnownFetcher ?? wellKnownFetcher(transport), caches });
  const federationClient = new FederationClient({
    serverName: config.serverName,
    signingKey,
    discovery,
    transport,
    domainWhitelist: config.federationDomainWhitelist ? new Set(config.federationDomainWhitelist) : undefined,
  });
  const keys = new KeyFetcher({
    serverName: config.serverName,
    ownKeys: [
      { keyId: signingKey.keyId, key: signingKey.publicKeyBase64, validUntilTs: Number.MAX_SAFE_INTEGER },
      ...config.oldSigningKeys.map((k) => ({ keyId: k.keyId, key: k.key, validUntilTs: k.expiredTs })),
    ],
    store: storage.serverKeys,
    client: federationClient,
    trustedKeyServers: config.trustedKeyServers,
    log,
    caches,
  });
  const keyServer = new KeyServer({
    serverName: config.serverName,
    signingKey,
    oldSigningKeys: config.oldSigningKeys,
    keyRefreshIntervalMs: config.keyRefreshIntervalMs,
    fetcher: keys,
    store: storage.serverKeys,
    isDomainAllowed: (name) => federationClient.isDomainAllowed(name),
    log,
  });
  // Requests to hosts clients name (push gateways) follow the same address rules as federation. As Synapse's
  // "simple" HTTP client, they trust the system's CAs (not federation_custom_ca_list), and verify nothing under
  // use_insecure_ssl_client_just_for_testing_do_not_use.
  const outbound = new OutboundHttp({
    resolver,
    ipFilter: new IpRangeFilter(config.ipRangeBlacklist, config.ipRangeWhitelist),
    verifyCertificates: !config.useInsecureSslClientJustForTesting,
  });
  // URL previews fetch what users name, under their own ranges (url_preview_ip_range_blacklist/whitelist).
  const previewHttp = new OutboundHttp({
    resolver,
    ipFilter: new IpRangeFilter(config.urlPreview.ipRangeBlacklist, config.urlPreview.ipRangeWhitelist),
    verifyCertificates: !config.useInsecureSslClientJustForTesting,
    refuseIfAnyAddressBlocked: true,
  });
  // URLs the admin configured (the CAPTCHA's siteverify API) are theirs to point anywhere, private ranges included.
  const configuredHttp = new OutboundHttp({ resolver, ipFilter: new IpRangeFilter([]), verifyCertificates: !config.useInsecureSslClientJustForTesting });
  return { federationClient, keys, keyServer, outbound, previewHttp, configuredHttp };
}

/** Other servers' media come through the federation media client. */
function withRemoteMedia(media: MediaRepository, remote: RemoteMedia): MediaRepository {
  media.remote = remote.fetch;
  return media;
}

/** The metrics module, imported only when `enable_metrics` is on: prom-client alone takes ~4 MB. */
type MetricsModule = typeof import("./services/metrics.js");

export async function loadMetricsModule(config: Config): Promise<MetricsModule | undefined> {
  return config.enableMetrics ? await import("./services/metrics.js") : undefined;
}

export function buildServices(
  config: Config,
  log: Logger,
  storage: Storage,
  signingKey: SigningKey,
  federation: FederationDeps = {},
  metricsModule?: MetricsModule,
  thumbnailer: Thumbnailer = createThumbnailer({ maxImagePixels: config.media.maxImagePixels }),
): Services {
  const tokens = new TokenService(storage, config);
  const devices = new DeviceService(storage, tokens);
  const passwords = new PasswordHasher(config);
  const accounts = new AccountService(storage, config, passwords, tokens, devices);
  const profile = new ProfileService(storage, config);
  const accountData = new AccountDataService(storage);
  const rl = config.rateLimits;
  const mediaFiles = new MediaFileStore(config.mediaStorePath);

  const caches = new CacheRegistry(config.caches);
  const notifier = new Notifier();
  const events = new EventCache(storage, caches);
  const state = new StateService(storage, caches);
  const persister = new EventPersister(storage, config.serverName, signingKey, events, state, notifier, log, caches);
  const formatter = new EventFormatter(storage, events);
  // /sync's view of what changed: users' memberships, rooms' member events and relations.
  const userRooms = new UserRooms(storage, caches);
  const roomChanges = new RoomChanges();
  const recent = new RecentEvents(caches);
  persister.use(userRooms);
  persister.use(roomChanges);
  persister.use(recent);
  // Sliding Sync's room-list order.
  const bumpStamps = new BumpStamps(storage);
  persister.use(bumpStamps);
  const visibility = new VisibilityService(storage, events, state);
  formatter.visibleTo = (userId, list) => visibility.filter(userId, list);
  const roomCore = { config, storage, persister, events, state, formatter, visibility, notifier, userRooms };
  const rooms = new RoomAccess(roomCore);
  const roomLists = new SlidingRoomLists(rooms, userRooms, bumpStamps, caches);
  persister.use(roomLists);
  const membership = new MembershipService(rooms);
  const peeks = new PeekService({ storage, rooms, notifier: roomCore.notifier, resolveRoom: (r) => membership.resolveRoom(r) });
  const roomCreation = new RoomCreationService(rooms, membership);
  const messages = new MessageService(rooms);
  const typing = new TypingService(notifier);
  const receipts = new ReceiptService(storage, events, accountData, notifier);
  const presence = new PresenceService(storage, notifier, config.presenceEnabled);
  accountData.hooks.onChange = (userId) => notifier.notify({ users: [userId] });
  // The user directory (services/user_directory.ts): its failures are logged, never the caller's.
  const userDirectory = new UserDirectoryService({ storage, config: config.userDirectory, serverName: config.serverName, position: () => persister.position(), log });
  persister.use(userDirectory);
  const directoryWarn = (what: string, userId: string) => (err: unknown) => log.warn({ err, userId }, `user directory: ${what} failed`);
  profile.hooks.onProfileChanged = async (userId) => {
    await userDirectory.localProfileChanged(userId).catch(directoryWarn("a profile update", userId));
    await membership.propagateProfile(userId);
  };
  accounts.hooks.onRegistered = (userId) => userDirectory.localProfileChanged(userId).catch(directoryWarn("adding a user", userId));
  accounts.hooks.onErased = (userId) => visibility.markErased(userId);
  accounts.hooks.onDeactivate = async (userId) => {
    await userDirectory.deactivated(userId).catch(directoryWarn("removing a deactivated user", userId));
    await membership.leaveAll(userId);
  };
  persister.use(guestAccessConsumer(membership, log));
  if (config.enableSearch) persister.use(new SearchIndexer(storage));
  const selfDestruct = config.enableEphemeralMessages ? new SelfDestructingEvents({ storage, events, recent, log }) : undefined;
  if (selfDestruct) persister.use(selfDestruct);

  const loginTokens = new LoginTokens(storage);
  const fed = buildFederation(config, log, storage, signingKey, federation, caches);
  // The client names the identity server: requests to it go through the IP-range-filtered client.
  const identityServers = new IdentityServerClient(fed.outbound, config.serverName, signingKey);
  const serverRoomAccess = new ServerRoomAccess(rooms);
  const federationSender = new FederationSender({ serverName: config.serverName, storage, client: fed.federationClient, events, log, caches });
  const federationPdus = new FederationPdus({
    serverName: config.serverName,
    events,
    persister,
    keys: fed.keys,
    client: fed.federationClient,
    log,
    serversInRoom: (roomId) => storage.federation.serversInRoom(roomId),
    earliestEventIds: async (roomId, limit) => (await storage.events.earliestEvents(roomId, limit)).map((r) => r.event_id),
    caches,
  });
  // Rooms with a Policy Server: our events are signed by it, received ones without its signature are soft-failed.
  const policyServerClient = new PolicyServerClient(fed.federationClient, log);
  persister.policyServers.ask = (ps, version, event) => policyServerClient.sign(ps, version, event);
  messages.backfill = (roomId, limit) => federationPdus.backfill(roomId, limit);
  messages.fillGaps = (roomId, events, limit) => federationPdus.fillGaps(roomId, events, limit);
  const federationMembership = new FederationMembership({
    serverName: config.serverName,
    signingKey,
    events,
    persister,
    pdus: federationPdus,
    sender: federationSender,
    client: fed.federationClient,
    log,
    profileOf: (userId) => membership.profileContent(userId),
    serversInRoom: (roomId) => storage.federation.serversInRoom(roomId),
    checkAcl: async (origin, roomId) => {
      await serverRoomAccess.checkAcl(origin, roomId);
    },
    restrictedJoin: (roomId, userId) => membership.restrictedJoinForServer(roomId, userId),
  });
  const toDevice = new ToDeviceService({ serverName: config.serverName, storage, notifier, sender: federationSender, log });
  const deviceLists = new DeviceListService({ serverName: config.serverName, storage, notifier, sender: federationSender, log });
  // A local device appeared, was renamed or deleted: the user's device list changed (for /sync and other servers).
  devices.hooks.onChanged = async (userId, deviceIds, deleted) => {
    await deviceLists.localChanged(userId, deviceIds, deleted).catch((e: unknown) => log.warn({ err: e, userId }, "recording a device-list change failed"));
    // A deleted device's Sliding Sync connections go with it.
    if (deleted) for (const d of deviceIds) await storage.slidingSync.deleteConnectionsOfDevice(userId, d).catch((e: unknown) => log.warn({ err: e, userId }, "deleting sliding sync connections failed"));
  };
  const crossSigning = new CrossSigningService(storage, deviceLists);
  const remoteDeviceLists = new RemoteDeviceLists({ storage, federation: fed.federationClient, deviceLists, crossSigning, log });
  const e2eKeys = new E2eKeyService({ serverName: config.serverName, storage, deviceLists, crossSigning, remote: remoteDeviceLists, federation: fed.federationClient, log });
  deviceLists.keysOf = (userId, deviceIds) => e2eKeys.localDeviceKeys(userId, deviceIds);
  persister.use(remoteDeviceLists.staleOnJoinConsumer(config.serverName));
  const federationTransactions = new FederationTransactions({
    storage,
    toDevice,
    remoteDeviceLists,
    pdus: federationPdus,
    sender: federationSender,
    typing,
    receipts,
    presence,
    log,
    aclAllows: (origin, roomId) => serverRoomAccess.checkAcl(origin, roomId).then(() => true, () => false),
  });
  membership.remote = federationMembership;
  profile.remote = (userId, field) => federationMembership.queryProfile(userId, field);
  userDirectory.remoteProfile = (userId) => federationMembership.queryProfile(userId);
  wireOutboundFederation(config.serverName, storage, persister, federationSender, typing, receipts, presence, log);
  persister.use(
    joinPresenceConsumer({
      serverName: config.serverName,
      events,
      serversInRoom: (roomId) => storage.federation.serversInRoom(roomId),
      localMembers: async (roomId) => (await storage.rooms.members(roomId, ["join"])).map((m) => m.user_id).filter((u) => userIdDomain(u) === config.serverName),
      presenceOf: (userIds) => presence.currentOf(userIds),
      sendEdu: (servers, edu) => federationSender.sendEdu(servers, edu),
      log,
    }),
  );
  const appServices = buildAppServices(config, log, storage, roomCore, fed.configuredHttp, typing, receipts, presence);
  accounts.hooks.checkReserved = (userId, as) => appServices.appServices.checkUserRegistration(userId, as);
  membership.askAppServices = { user: (u) => appServices.appServices.queryUserExists(u), alias: (a) => appServices.appServices.queryAliasExists(a) };
  const push = buildPush(config, log, storage, roomCore, accountData, receipts, devices, fed.outbound, caches);
  const roomUpgrades = new RoomUpgradeService(rooms, roomCreation, log, { accountData, pushRules: push.pushRules });
  membership.onRemoteJoin = (roomId) => roomUpgrades.afterRemoteJoin(roomId).catch((err: unknown) => log.warn({ err, roomId }, "room upgrade: carrying state over after a remote join failed"));
  const metrics = metricsModule ? buildMetrics(metricsModule, storage, caches, persister, notifier, federationSender, passwords, push.pusherPool) : undefined;
  const media = withRemoteMedia(
    new MediaRepository({
      serverName: config.serverName,
      config: config.media,
      maxUploadSize: config.maxUploadSize,
      store: storage.media,
      files: mediaFiles,
      thumbnailer,
      createLimiter: new RateLimiter(rl.mediaCreate),
      log,
    }),
    new RemoteMedia({
      serverName: config.serverName,
      config: config.media,
      maxUploadSize: config.maxUploadSize,
      store: storage.media,
      files: mediaFiles,
      thumbnailer,
      federation: fed.federationClient,
      outbound: fed.outbound,
      log,
    }),
  );
  const urlPreviews = new UrlPreviewService({ config: config.urlPreview, http: fed.previewHttp, store: storage.urlPreviews, caches, log });
  // Previews store their page's image as local media.
  urlPreviews.media = media;
  const sync = new SyncService({ rooms, accountData, receipts, typing, presence, toDevice, deviceLists, unread: push.unread, pushRules: push.pushRules, userRooms, roomChanges, recent, peeks, keyCounts: (u, d) => e2eKeys.syncFields(u, d) });
  return {
    config,
    log,
    storage,
    signingKey,
    tokens,
    devices,
    accounts,
    uia: new UiaService(storage),
    profile,
    accountData,
    notifier,
    roomCore,
    rooms,
    roomCreation,
    membership,
    messages,
    relations: new RelationsService(rooms),
    threads: new ThreadListService(rooms, messages),
    roomUpgrades,
    typing,
    receipts,
    presence,
    sync,
    slidingSync: new SlidingSyncService({
      rooms,
      accountData,
      receipts,
      typing,
      presence,
      toDevice,
      deviceLists,
      unread: push.unread,
      pushRules: push.pushRules,
      userRooms,
      roomChanges,
      recent,
      bumpStamps,
      roomLists,
      connections: new SlidingConnections(storage),
      currentToken: () => sync.currentToken(),
      strippedState: (roomId, eventId) => sync.strippedState(roomId, eventId),
      keyCounts: (u, d) => e2eKeys.syncFields(u, d),
    }),
    peeks,
    selfDestruct,
    toDevice,
    deviceLists,
    e2eKeys,
    dehydratedDevices: new DehydratedDeviceService({ storage, devices, e2eKeys, toDevice }),
    crossSigning,
    remoteDeviceLists,
    ...fed,
    federationSender,
    federationPdus,
    federationMembership,
    federationTransactions,
    ...buildSpaces(config, log, storage, rooms, serverRoomAccess, fed.federationClient, membership, caches),
    serverRoomAccess,
    federationReads: new FederationReads({ serverName: config.serverName, rooms, access: serverRoomAccess }),
    caches,
    metrics,
    roomChanges,
    tags: new TagService(storage, accountData),
    ...push,
    turn: new TurnService(config.turn),
    // One source per application service with `protocols`.
    thirdParty: new ThirdPartyService(() => appServices.thirdPartySources),
    appServices: appServices.appServices,
    appServiceSender: appServices.sender,
    threepids: new ThreepidService(
      storage,
      new ThreepidValidation(config, storage, config.email ? new Mailer(config.email) : undefined, new RateLimiter(rl.threepidValidation)),
      identityServers,
    ),
    thirdPartyInvites: new ThirdPartyInvites({ config, rooms, membership, identityServers, http: fed.outbound, federation: fed.federationClient }),
    keyBackup: new KeyBackupService(storage),
    accountModeration: new AccountModeration(config.serverName, storage, tokens, events),
    reports: new ReportService(config.serverName, storage, rooms, new RateLimiter(rl.reports)),
    loginTokens,
    ...(config.cas ? { cas: new CasProvider(config.cas, fed.configuredHttp), sso: new SsoService({ storage, accounts, profile, loginTokens, serverName: config.serverName }) } : {}),
    urlPreviews,
    media,
    search: new SearchService({ storage, events, state, visibility, formatter, messages, enabled: config.enableSearch }),
    userDirectory,
    limits: {
      registration: new RateLimiter(rl.registration),
      registrationTokenValidity: new RateLimiter(rl.registrationTokenValidity),
      loginAddress: new RateLimiter(rl.loginAddress),
      loginAccount: new RateLimiter(rl.loginAccount),
      loginFailedAttempts: new RateLimiter(rl.loginFailedAttempts),
      message: new RateLimiter(rl.message),
      joinsLocal: new RateLimiter(rl.joinsLocal),
      invitesPerRoom: new RateLimiter(rl.invitesPerRoom),
      invitesPerUser: new RateLimiter(rl.invitesPerUser),
      roomCreation: new RateLimiter(rl.roomCreation),
      loginTokenRequest: new RateLimiter({ perSecond: 1 / 60, burstCount: 1 }),
    },
  };
}
