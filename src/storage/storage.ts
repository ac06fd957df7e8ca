/**
 * The data-access layer: one store per concern over one Kysely instance. `transaction()` hands the callback stores
 * bound to the transaction, so a multi-row write commits or rolls back as one.
 */
import type { CompiledQuery, Kysely } from "kysely";
import type { Database, DatabaseStats, Engine } from "./database.js";
import type { Schema } from "./schema.js";
import { AccountDataStore } from "./account_data.js";
import { DeviceStore } from "./devices.js";
import { FilterStore } from "./filters.js";
import { RegistrationTokenStore } from "./registration_tokens.js";
import { TokenStore } from "./tokens.js";
import { UiaStore } from "./uia.js";
import { EventStore } from "./events.js";
import { RoomStore } from "./rooms.js";
import { FederationStore } from "./federation.js";
import { StateGroupStore } from "./state_groups.js";
import { ProfileStore, UserStore } from "./users.js";
import { ServerKeyStore } from "./server_keys.js";
import { DeviceInboxStore } from "./device_inbox.js";
import { DeviceListStore } from "./device_lists.js";
import { FederationOutboxStore } from "./federation_outbox.js";
import { PushStore } from "./push.js";
import { KeyBackupStore } from "./key_backup.js";
import { E2eKeyStore } from "./e2e_keys.js";
import { DehydratedDeviceStore } from "./dehydrated_devices.js";
import { ReportStore } from "./reports.js";
import { SlidingSyncStore } from "./sliding_sync.js";
import { LoginTokenStore } from "./login_tokens.js";
import { UrlPreviewStore } from "./url_previews.js";
import { MediaStore } from "./media.js";
import { SearchStore } from "./search.js";
import { UserDirectoryStore } from "./user_directory.js";
import { PeekStore } from "./peeks.js";
import { ErasedUserStore } from "./erased_users.js";
import { EventExpiryStore } from "./event_expiry.js";
import { ExternalIdStore } from "./external_ids.js";
import { ThreepidStore } from "./threepids.js";
import { AppServiceStore } from "./appservices.js";

export class Stores {
  readonly users: UserStore;
  readonly profiles: ProfileStore;
  readonly devices: DeviceStore;
  readonly tokens: TokenStore;
  readonly uia: UiaStore;
  readonly registrationTokens: RegistrationTokenStore;
  readonly accountData: AccountDataStore;
  readonly filters: FilterStore;
  readonly events: EventStore;
  readonly rooms: RoomStore;
  readonly federation: FederationStore;
  readonly stateGroups: StateGroupStore;
  readonly serverKeys: ServerKeyStore;
  readonly deviceInbox: DeviceInboxStore;
  readonly deviceLists: DeviceListStore;
  readonly outbox: FederationOutboxStore;
  readonly push: PushStore;
  readonly keyBackup: KeyBackupStore;
  readonly e2eKeys: E2eKeyStore;
  readonly dehydratedDevices: DehydratedDeviceStore;
  readonly reports: ReportStore;
  readonly slidingSync: SlidingSyncStore;
  readonly loginTokens: LoginTokenStore;
  readonly urlPreviews: UrlPreviewStore;
  readonly media: MediaStore;
  readonly search: SearchStore;
  readonly userDirectory: UserDirectoryStore;
  readonly peeks: PeekStore;
  readonly erasedUsers: ErasedUserStore;
  readonly eventExpiry: EventExpiryStore;
  readonly externalIds: ExternalIdStore;
  readonly threepids: ThreepidStore;
  readonly appServices: AppServiceStore;

  constructor(readonly db: Kysely<Schema>) {
    this.users = new UserStore(db);
    this.profiles = new ProfileStore(db);
    this.devices = new DeviceStore(db);
    this.tokens = new TokenStore(db);
    this.uia = new UiaStore(db);
    this.registrationTokens = new RegistrationTokenStore(db);
    this.accountData = new AccountDataStore(db);
    this.filters = new FilterStore(db);
    this.events = new EventStore(db);
    this.rooms = new RoomStore(db);
    this.federation = new FederationStore(db);
    this.stateGroups = new StateGroupStore(db);
    this.serverKeys = new ServerKeyStore(db);
    this.deviceInbox = new DeviceInboxStore(db);
    this.deviceLists = new DeviceListStore(db);
    this.outbox = new FederationOutboxStore(db);
    this.push = new PushStore(db);
    this.keyBackup = new KeyBackupStore(db);
    this.e2eKeys = new E2eKeyStore(db);
    this.dehydratedDevices = new DehydratedDeviceStore(db);
    this.reports = new ReportStore(db);
    this.slidingSync = new SlidingSyncStore(db);
    this.loginTokens = new LoginTokenStore(db);
    this.urlPreviews = new UrlPreviewStore(db);
    this.media = new MediaStore(db);
    this.search = new SearchStore(db);
    this.userDirectory = new UserDirectoryStore(db);
    this.peeks = new PeekStore(db);
    this.erasedUsers = new ErasedUserStore(db);
    this.eventExpiry = new EventExpiryStore(db);
    this.externalIds = new ExternalIdStore(db);
    this.threepids = new ThreepidStore(db);
    this.appServices = new AppServiceStore(db);
  }
}

export class Storage extends Stores {
  readonly engine: Engine;

  constructor(private readonly database: Database) {
    super(database.db);
    this.engine = database.engine;
  }

  /** Runs `fn` in one transaction; it commits when `fn` resolves and rolls back when it throws. */
  async transaction<T>(fn: (tx: Stores) => Promise<T>): Promise<T> {
    return this.database.db.transaction().execute((trx) => fn(new Stores(trx)));
  }

  databaseStats(): DatabaseStats {
    return this.database.stats();
  }

  /** Runs compiled statements as one transaction on the batch executor (the event write path). */
  runBatch(queries: readonly CompiledQuery[]): Promise<void> {
    return this.database.batch.run(queries);
  }

  close(): Promise<void> {
    return this.database.close();
  }
}
