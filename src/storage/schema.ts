/**
 * Row types of every table, for Kysely. Booleans are stored as 0/1 integers and JSON as text in both engines,
 * so one query serves SQLite and PostgreSQL.
 */
import type { Generated } from "kysely";

export interface UsersTable {
  user_id: string;
  password_hash: string | null;
  created_ts: number;
  is_admin: number;
  is_guest: number;
  deactivated: number;
  locked: number;
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

export interface Schema {
  users: UsersTable;
  profiles: ProfilesTable;
  devices: DevicesTable;
  access_tokens: AccessTokensTable;
  refresh_tokens: RefreshTokensTable;
  uia_sessions: UiaSessionsTable;
  registration_tokens: RegistrationTokensTable;
  account_data: AccountDataTable;
  filters: FiltersTable;
}
