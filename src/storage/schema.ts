/**
 * Row types of every table, for Kysely. Booleans are stored as 0/1 integers and JSON as text in both engines,
 * so one query serves SQLite and PostgreSQL.
 */
import type { Generated } from "kysely";

/** Migration 012: one row per successful URL preview fetch. */
export interface UrlPreviewsTable {
  url: string;
  download_ts: number;
  expires_ts: number;
  /** The preview's JSON, as answered to clients. */
  og: string;
  /** The local media id of the page's image, when one was stored. */
  media_id: string | null;
}

export interface UsersTable {
  user_id: string;
  password_hash: string | null;
  created_ts: number;
  is_admin: number;
  is_guest: number;
  deactivated: number;
  locked: number;
  /** Spec "Account suspension" (migration 015). */
  suspended: number;
  shadow_banned: number;
  user_type: string | null;
  appservice_id: string | null;
}

export interface ProfilesTable {
  user_id: string;
  field: string;
  /** JSON-encoded value (displayname and avatar_url are strings; custom fields any JSON). */
  value: string;
}

export interface DevicesTable {
  user_id: string;
  device_id: string;
  display_name: string | null;
  created_ts: number;
  last_seen_ts: number | null;
  last_seen_ip: string | null;
  last_seen_user_agent: string | null;
}

export interface AccessTokensTable {
  id: Generated<number>;
  token_hash: string;
  user_id: string;
  device_id: string | null;
  created_ts: number;
  valid_until_ms: number | null;
  refresh_token_id: number | null;
  puppets_user_id: string | null;
  /** Set on first use of a token issued by /refresh: that use revokes the refresh token it replaced. */
  used: Generated<number>;
}

export interface RefreshTokensTable {
  id: Generated<number>;
  token_hash: string;
  user_id: string;
  device_id: string;
  created_ts: number;
  expiry_ts: number | null;
  ultimate_session_expiry_ts: number | null;
  next_token_id: number | null;
}

export interface UiaSessionsTable {
  session_id: string;
  created_ts: number;
  uri: string;
  method: string;
  user_id: string | null;
  /** JSON: the request body of the first request, replayed when the session completes. */
  clientdict: string;
  /** JSON: server-side data carried across stages (e.g. the registration token used). */
  serverdict: string;
  /** JSON: array of completed stage types. */
  completed: string;
}

export interface RegistrationTokensTable {
  token: string;
  uses_allowed: number | null;
  pending: number;
  completed: number;
  expiry_time: number | null;
}

export interface AccountDataTable {
  user_id: string;
  /** "" for global account data. */
  room_id: string;
  type: string;
  content: string;
  stream_id: number;
}

export interface FiltersTable {
  user_id: string;
  filter_id: number;
  filter_json: string;
}

export interface RoomsTable {
  room_id: string;
  room_version: string;
  creator: string | null;
  is_public: number;
  created_ts: number;
  /** The state group of the room's current state (resolved across forward extremities). */
  current_state_group: number | null;
  /** JSON array of the room's forward extremities (events with no successor yet). */
  forward_extremities: string;
}

export interface EventsTable {
  stream_ordering: number;
  event_id: string;
  room_id: string;
  type: string;
  state_key: string | null;
  sender: string;
  depth: number;
  origin_server_ts: number;
  received_ts: number;
  json: string;
  /** The state group of the state after this event. */
  state_group: number | null;
  /** For a state event, the event it replaced in the room state. */
  replaces_state: string | null;
  outlier: number;
  soft_failed: number;
  rejected_reason: string | null;
  redacted_by: string | null;
  contains_url: number;
  txn_device_id: string | null;
  txn_scope: string | null;
  txn_id: string | null;
}

export interface StateGroupsTable {
  id: number;
  room_id: string;
  event_id: string | null;
  prev_group: number | null;
  chain_depth: number;
}

export interface StateGroupEntriesTable {
  state_group: number;
  type: string;
  state_key: string;
  /** null: the key was removed relative to the ancestor. */
  event_id: string | null;
}

export interface CurrentStateEventsTable {
  room_id: string;
  type: string;
  state_key: string;
  event_id: string;
  membership: string | null;
}

export interface RoomMembershipsTable {
  event_id: string;
  room_id: string;
  user_id: string;
  sender: string;
  membership: string;
  stream_ordering: number;
  displayname: string | null;
  avatar_url: string | null;
}

export interface RedactionsTable {
  event_id: string;
  redacts: string;
  room_id: string;
}

export interface EventRelationsTable {
  event_id: string;
  relates_to_id: string;
  rel_type: string;
  room_id: string;
  aggregation_key: string | null;
}

export interface ThreadsTable {
  room_id: string;
  thread_id: string;
  latest_event_id: string;
  latest_stream_ordering: number;
}

export interface RoomAliasesTable {
  room_alias: string;
  room_id: string;
  creator: string;
  created_ts: number;
}

export interface ForgottenRoomsTable {
  user_id: string;
  room_id: string;
}

export interface ReceiptsTable {
  room_id: string;
  receipt_type: string;
  user_id: string;
  /** "" for unthreaded receipts. */
  thread_id: string;
  event_id: string;
  data: string;
  stream_id: number;
}

export interface PresenceTable {
  user_id: string;
  state: string;
  status_msg: string | null;
  last_active_ts: number;
  last_user_sync_ts: number;
  currently_active: number;
  stream_id: number;
}

export interface ServerSigningKeysTable {
  server_name: string;
  /** "ed25519:<version>". */
  key_id: string;
  /** Unpadded base64 public key. */
  verify_key: string;
  /** Until when the key may be used: the response's valid_until_ts capped at fetch time + 7 days (verify_keys), or
   * the key's expired_ts (old_verify_keys). */
  valid_until_ts: number;
  /** The server we got it from: the key's own server, or a notary. */
  from_server: string;
  ts_added_ms: number;
  /** The key response as received (canonical JSON). */
  key_json: string;
}

export interface FederationDestinationsTable {
  destination: string;
  last_successful_stream_ordering: number;
  failure_ts: number | null;
  retry_last_ts: number;
  retry_interval_ms: number;
}

export interface FederationReceivedTxnsTable {
  origin: string;
  txn_id: string;
  response: string;
  received_ts: number;
}

export interface RoomStrippedStateTable {
  event_id: string;
  state: string;
}

export interface DeviceInboxTable {
  stream_id: number;
  user_id: string;
  device_id: string;
  /** JSON: the to-device event (`sender`, `type`, `content`). */
  message: string;
}

export interface StreamPositionsTable {
  stream: string;
  position: number;
}

export interface DeviceMessageTxnsTable {
  user_id: string;
  /** The device id, or `token:<id>` for an access token without a device. */
  requester: string;
  txn_id: string;
  created_ts: number;
}

export interface DeviceFederationInboxTable {
  origin: string;
  message_id: string;
  received_ts: number;
}

export interface FederationOutboxTable {
  id: Generated<number>;
  destination: string;
  /** JSON: the whole EDU (`edu_type`, `content`). */
  edu: string;
  created_ts: number;
}

export interface DeviceListChangesTable {
  stream_id: number;
  user_id: string;
  device_id: string;
}

/** E2EE key tables (migration 008; see storage/e2e_keys.ts). Key objects are JSON text. */
export interface E2eDeviceKeysTable { user_id: string; device_id: string; key_json: string; ts: number }
export interface E2eOneTimeKeysTable { user_id: string; device_id: string; algorithm: string; key_id: string; key_json: string; ts: number }
export interface E2eFallbackKeysTable { user_id: string; device_id: string; algorithm: string; key_id: string; key_json: string; used: number }
export interface E2eCrossSigningKeysTable { user_id: string; key_type: string; key_json: string; ts: number }
export interface E2eCrossSigningSignaturesTable { target_user_id: string; target_key_id: string; signer_user_id: string; signer_key_id: string; signature: string }
export interface DeviceListsRemoteUsersTable { user_id: string; stream_id: number; stale: number }
export interface DeviceListsRemoteDevicesTable { user_id: string; device_id: string; display_name: string | null; key_json: string | null }

export interface PushRulesTable {
  user_id: string;
  /** core/push UserPushRules as JSON. */
  rules: string;
  stream_id: number;
}

export interface PushersTable {
  id: Generated<number>;
  user_id: string;
  device_id: string | null;
  access_token_id: number | null;
  kind: string;
  app_id: string;
  app_display_name: string;
  device_display_name: string;
  pushkey: string;
  pushkey_ts: number;
  lang: string;
  /** JSON object. */
  data: string;
  profile_tag: string;
  last_stream_ordering: number;
  failing_since: number | null;
}

export interface EventPushTable {
  stream_ordering: number;
  event_id: string;
  room_id: string;
  sender: string;
  thread_id: string;
  actions: string;
  highlight: number;
  ts: number;
}

export interface EventPushUserTable {
  user_id: string;
  stream_ordering: number;
  event_id: string;
  room_id: string;
  thread_id: string;
  actions: string;
  notif: number;
  highlight: number;
  ts: number;
}

export interface PushReadPositionsTable {
  user_id: string;
  room_id: string;
  thread_id: string;
  stream_ordering: number;
}

/** Server-side key backup versions (migration 009). */
export interface KeyBackupVersionsTable {
  user_id: string;
  version: number;
  algorithm: string;
  /** JSON object, as the client sent it. */
  auth_data: string;
  etag: number;
  deleted: number;
}

/** The backed-up session keys of a key backup version (migration 009). */
export interface KeyBackupSessionsTable {
  user_id: string;
  version: number;
  room_id: string;
  session_id: string;
  first_message_index: number;
  forwarded_count: number;
  is_verified: number;
  /** JSON object, as the client sent it. */
  session_data: string;
}

/** A user's dehydrated device (migration 010, MSC3814). */
export interface DehydratedDevicesTable {
  user_id: string;
  device_id: string;
  /** JSON object, as the client sent it (the encrypted device pickle). */
  device_data: string;
  created_ts: number;
}

export interface EventReportsTable {
  id: Generated<number>;
  received_ts: number;
  room_id: string;
  event_id: string;
  user_id: string;
  reason: string | null;
  /** JSON: the whole request body, as Synapse keeps it (reason, and the deprecated score). */
  content: string;
}

export interface RoomReportsTable {
  id: Generated<number>;
  received_ts: number;
  room_id: string;
  user_id: string;
  reason: string;
}

export interface UserReportsTable {
  id: Generated<number>;
  received_ts: number;
  target_user_id: string;
  user_id: string;
  reason: string;
}

export interface LoginTokensTable {
  /** SHA-256 of the token: the token itself is never stored. */
  token_hash: string;
  user_id: string;
  expiry_ts: number;
  /** Set by the one login the token allows. */
  used_ts: number | null;
  /** The SSO provider that authenticated the user (SSO logins, later); null for POST /login/get_token. */
  auth_provider_id: string | null;
  auth_provider_session_id: string | null;
}

/** 3PID validation sessions (migration 019). */
export interface ThreepidValidationSessionsTable {
  session_id: string;
  medium: string;
  address: string;
  client_secret_hash: string;
  last_send_attempt: number;
  created_ts: number;
  validated_at: number | null;
}

export interface ThreepidValidationTokensTable {
  token_hash: string;
  session_id: string;
  next_link: string | null;
  expires_ts: number;
}

export interface UserThreepidsTable {
  user_id: string;
  medium: string;
  address: string;
  validated_at: number;
  added_at: number;
}

export interface UserThreepidIdServerTable {
  user_id: string;
  medium: string;
  address: string;
  id_server: string;
}

/** Identity providers' users mapped to local users (migration 021). */
export interface UserExternalIdsTable {
  auth_provider: string;
  external_id: string;
  user_id: string;
}

/** When self-destructing events expire (MSC2228, migration 020). */
export interface EventExpiryTable {
  event_id: string;
  expiry_ts: number;
}

/** Users erased at deactivation (migration 017). */
export interface ErasedUsersTable {
  user_id: string;
}

/** Rooms a device peeks into (migration 016). */
export interface RoomPeeksTable {
  id: Generated<number>;
  user_id: string;
  device_id: string;
  room_id: string;
}

/** The user directory (migration 014). */
export interface UserDirectoryTable {
  user_id: string;
  display_name: string | null;
  avatar_url: string | null;
}
export interface UserDirectoryTokensTable {
  token: string;
  user_id: string;
  /** Which part of the user the word comes from (storage/user_directory.ts TokenKind). */
  kind: number;
}
export interface UsersInPublicRoomsTable {
  user_id: string;
  room_id: string;
}
export interface UsersWhoSharePrivateRoomsTable {
  user_id: string;
  other_user_id: string;
  room_id: string;
}
export interface UserDirectoryStreamPosTable {
  id: number;
  stream_id: number;
}

/** Sliding Sync connections (migration 018). */
export interface SlidingSyncConnectionsTable {
  id: Generated<number>;
  user_id: string;
  /** "" for a requester without a device. */
  device_id: string;
  conn_id: string;
  base_position: number;
  created_ts: number;
  last_used_ts: number;
}
export interface SlidingSyncPositionsTable {
  id: Generated<number>;
  connection_id: number;
  parent_id: number;
  /** The sync token (services/sync/token.ts) the response was computed at. */
  token: string;
  /** JSON: the sticky request config the response was computed with. */
  config: string;
  created_ts: number;
}
export interface SlidingSyncRoomsTable {
  connection_id: number;
  room_id: string;
  position_id: number;
  membership: string;
  /** Events stream position the room was sent up to. */
  sent_stream: number;
  timeline_limit: number;
  /** JSON: the required_state the room was sent with (services/sync/sliding_connections.ts). */
  required_state: string;
}

export interface Schema {
  sliding_sync_connections: SlidingSyncConnectionsTable;
  sliding_sync_positions: SlidingSyncPositionsTable;
  sliding_sync_rooms: SlidingSyncRoomsTable;
  event_reports: EventReportsTable;
  room_reports: RoomReportsTable;
  user_reports: UserReportsTable;
  login_tokens: LoginTokensTable;
  e2e_device_keys: E2eDeviceKeysTable;
  e2e_one_time_keys: E2eOneTimeKeysTable;
  e2e_fallback_keys: E2eFallbackKeysTable;
  e2e_cross_signing_keys: E2eCrossSigningKeysTable;
  e2e_cross_signing_signatures: E2eCrossSigningSignaturesTable;
  device_lists_remote_users: DeviceListsRemoteUsersTable;
  device_lists_remote_devices: DeviceListsRemoteDevicesTable;
  push_rules: PushRulesTable;
  pushers: PushersTable;
  event_push: EventPushTable;
  event_push_user: EventPushUserTable;
  push_read_positions: PushReadPositionsTable;
  device_inbox: DeviceInboxTable;
  stream_positions: StreamPositionsTable;
  device_message_txns: DeviceMessageTxnsTable;
  device_federation_inbox: DeviceFederationInboxTable;
  federation_outbox: FederationOutboxTable;
  device_list_changes: DeviceListChangesTable;
  rooms: RoomsTable;
  federation_destinations: FederationDestinationsTable;
  federation_received_txns: FederationReceivedTxnsTable;
  room_stripped_state: RoomStrippedStateTable;
  events: EventsTable;
  state_groups: StateGroupsTable;
  state_group_entries: StateGroupEntriesTable;
  current_state_events: CurrentStateEventsTable;
  room_memberships: RoomMembershipsTable;
  redactions: RedactionsTable;
  event_relations: EventRelationsTable;
  threads: ThreadsTable;
  room_aliases: RoomAliasesTable;
  forgotten_rooms: ForgottenRoomsTable;
  receipts: ReceiptsTable;
  presence: PresenceTable;
  users: UsersTable;
  profiles: ProfilesTable;
  devices: DevicesTable;
  access_tokens: AccessTokensTable;
  refresh_tokens: RefreshTokensTable;
  uia_sessions: UiaSessionsTable;
  registration_tokens: RegistrationTokensTable;
  account_data: AccountDataTable;
  filters: FiltersTable;
  server_signing_keys: ServerSigningKeysTable;
  key_backup_versions: KeyBackupVersionsTable;
  key_backup_sessions: KeyBackupSessionsTable;
  dehydrated_devices: DehydratedDevicesTable;
  url_previews: UrlPreviewsTable;
  local_media_repository: LocalMediaTable;
  local_media_repository_thumbnails: LocalMediaThumbnailsTable;
  remote_media_cache: RemoteMediaTable;
  remote_media_cache_thumbnails: RemoteMediaThumbnailsTable;
  user_directory: UserDirectoryTable;
  room_peeks: RoomPeeksTable;
  erased_users: ErasedUsersTable;
  event_expiry: EventExpiryTable;
  user_external_ids: UserExternalIdsTable;
  threepid_validation_sessions: ThreepidValidationSessionsTable;
  threepid_validation_tokens: ThreepidValidationTokensTable;
  user_threepids: UserThreepidsTable;
  user_threepid_id_server: UserThreepidIdServerTable;
  appservice_state: AppserviceStateTable;
  appservice_txns: AppserviceTxnsTable;
  appservice_room_list: AppserviceRoomListTable;
  user_directory_tokens: UserDirectoryTokensTable;
  users_in_public_rooms: UsersInPublicRoomsTable;
  users_who_share_private_rooms: UsersWhoSharePrivateRoomsTable;
  user_directory_stream_pos: UserDirectoryStreamPosTable;
}

/** Local media (migration 011). `media_length` is null until the upload of a /create media id. */
export interface LocalMediaTable {
  media_id: string;
  user_id: string;
  media_type: string | null;
  upload_name: string | null;
  media_length: number | null;
  created_ts: number;
  unused_expires_at: number | null;
  uploaded_ts: number | null;
  last_access_ts: number | null;
  quarantined_by: string | null;
  safe_from_quarantine: number;
  authenticated: number;
  sha256: string | null;
}

export interface LocalMediaThumbnailsTable {
  media_id: string;
  thumbnail_width: number;
  thumbnail_height: number;
  thumbnail_type: string;
  thumbnail_method: string;
  thumbnail_length: number;
  animated: number;
}

/** Other servers' media, cached (filled by the federation media client). */
export interface RemoteMediaTable {
  media_origin: string;
  media_id: string;
  filesystem_id: string;
  media_type: string | null;
  upload_name: string | null;
  media_length: number | null;
  created_ts: number;
  last_access_ts: number | null;
  quarantined_by: string | null;
  authenticated: number;
  sha256: string | null;
}

export interface RemoteMediaThumbnailsTable {
  media_origin: string;
  media_id: string;
  filesystem_id: string;
  thumbnail_width: number;
  thumbnail_height: number;
  thumbnail_type: string;
  thumbnail_method: string;
  thumbnail_length: number;
  animated: number;
}

/** Application services (migration 022): what each was sent, and its transactions not yet acknowledged. */
export interface AppserviceStateTable {
  as_id: string;
  stream_position: number;
  last_txn_id: number;
}

export interface AppserviceTxnsTable {
  as_id: string;
  txn_id: number;
  body: string;
  created_ts: number;
}

/** Rooms an application service published in one of its networks' directories. */
export interface AppserviceRoomListTable {
  appservice_id: string;
  network_id: string;
  room_id: string;
}
