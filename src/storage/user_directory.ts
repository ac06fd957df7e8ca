/**
 * The user directory's tables (migration 014) and its search. One code path for SQLite and PostgreSQL: the index is a
 * table of lowercased words searched by a byte-wise prefix range (`token >= w AND token < w + U+10FFFF`), which both
 * engines answer from the (token, user_id, kind) primary key.
 */
import { sql, type Kysely } from "kysely";
import type { Schema } from "./schema.js";

/** Where an indexed word comes from; a higher kind ranks higher (see `search`). */
export enum TokenKind {
  Domain = 1,
  DisplayName = 2,
  Localpart = 3,
}

export interface DirectoryEntry {
  user_id: string;
  display_name: string | null;
  avatar_url: string | null;
}

export interface DirectorySearch {
  searcher: string;
  /** Lowercased, normalised words (`searchWords`); a user must match every one by prefix. */
  words: string[];
  /** Rows to return; one more is read to tell whether the result is limited. */
  limit: number;
  /** Everyone in the directory, not only users in public rooms or sharing a room with the searcher. */
  allUsers: boolean;
  preferLocal: boolean;
  excludeRemote: boolean;
  showLocked: boolean;
}

const CHUNK = 500;
/** Above every character: `w + TOP` bounds the range of words starting with `w`. */
const TOP = "\u{10FFFF}";
/** At most this many words of a search term are used (as Synapse), so a pasted paragraph stays cheap. */
const MAX_WORDS = 10;
/** Longer words are cut: nobody searches by the 200th character of a name. */
const MAX_WORD_CHARS = 64;
/** Index rows the most selective word may match before the rest are dropped (a one-letter term on a big server). */
const MAX_CANDIDATES = 10_000;

/** Case-insensitive and unicode-aware: lowercased, then NFKC (so "Ǆ" finds "dž", and "①" finds "1"). */
export function normaliseText(text: string): string {
  return text.toLowerCase().normalize("NFKC");
}

function words(text: string): string[] {
  return normaliseText(text)
    .split(/[^\p{L}\p{N}\p{M}]+/u)
    .filter((w) => w.length > 0)
    .map((w) => w.slice(0, MAX_WORD_CHARS));
}

/** The words a search term is split into (`@alice:example.org` → alice, example, org). */
export function searchWords(term: string): string[] {
  return [...new Set(words(term))].slice(0, MAX_WORDS);
}

/** The index rows of a user: the whole localpart and its parts, the display name's words, the domain's parts. */
export function directoryTokens(userId: string, displayName: string | null): { token: string; kind: TokenKind }[] {
  const colon = userId.indexOf(":");
  const localpart = userId.slice(1, colon < 0 ? undefined : colon);
  const domain = colon < 0 ? "" : userId.slice(colon + 1);
  const out = new Map<string, TokenKind>();
  const add = (token: string, kind: TokenKind) => {
    if (token.length > 0 && (out.get(token) ?? 0) < kind) out.set(token, kind);
  };
  for (const w of words(domain)) add(w, TokenKind.Domain);
  if (displayName) for (const w of words(displayName)) add(w, TokenKind.DisplayName);
  add(normaliseText(localpart).slice(0, MAX_WORD_CHARS), TokenKind.Localpart);
  for (const w of words(localpart)) add(w, TokenKind.Localpart);
  return [...out].map(([token, kind]) => ({ token, kind }));
}

export class UserDirectoryStore {
  constructor(private readonly db: Kysely<Schema>) {}

  /** The stream position the directory reflects; undefined until it has been built once. */
  async streamPos(): Promise<number | undefined> {
    const r = await this.db.selectFrom("user_directory_stream_pos").select("stream_id").where("id", "=", 1).executeTakeFirst();
    return r?.stream_id;
  }

  async setStreamPos(pos: number): Promise<void> {
    await this.db
      .insertInto("user_directory_stream_pos")
      .values({ id: 1, stream_id: pos })
      .onConflict((oc) => oc.column("id").doUpdateSet({ stream_id: pos }))
      .execute();
  }

  async get(userId: string): Promise<DirectoryEntry | undefined> {
    return this.db.selectFrom("user_directory").selectAll().where("user_id", "=", userId).executeTakeFirst();
  }

  /** Sets a user's entry and re-indexes its words. */
  async upsert(entry: DirectoryEntry): Promise<void> {
    const tokens = directoryTokens(entry.user_id, entry.display_name).map((t) => ({ ...t, user_id: entry.user_id }));
    await this.db.transaction().execute(async (tx) => {
      await tx
        .insertInto("user_directory")
        .values(entry)
        .onConflict((oc) => oc.column("user_id").doUpdateSet({ display_name: entry.display_name, avatar_url: entry.avatar_url }))
        .execute();
      await tx.deleteFrom("user_directory_tokens").where("user_id", "=", entry.user_id).execute();
      for (let i = 0; i < tokens.length; i += CHUNK) await tx.insertInto("user_directory_tokens").values(tokens.slice(i, i + CHUNK)).execute();
    });
  }

  /** Many entries at once (the initial build, the benchmark): each replaces any entry of its user. */
  async upsertMany(entries: readonly DirectoryEntry[]): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      for (let i = 0; i < entries.length; i += CHUNK) {
        const chunk = entries.slice(i, i + CHUNK);
        const ids = chunk.map((e) => e.user_id);
        await tx.deleteFrom("user_directory").where("user_id", "in", ids).execute();
        await tx.deleteFrom("user_directory_tokens").where("user_id", "in", ids).execute();
        await tx.insertInto("user_directory").values(chunk).execute();
        const tokens = chunk.flatMap((e) => directoryTokens(e.user_id, e.display_name).map((t) => ({ ...t, user_id: e.user_id })));
        for (let j = 0; j < tokens.length; j += CHUNK) await tx.insertInto("user_directory_tokens").values(tokens.slice(j, j + CHUNK)).execute();
      }
    });
  }

  /** Removes a user from the directory and from every room-sharing row (deactivation; a remote user we no longer see). */
  async remove(userId: string): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom("user_directory").where("user_id", "=", userId).execute();
      await tx.deleteFrom("user_directory_tokens").where("user_id", "=", userId).execute();
      await tx.deleteFrom("users_in_public_rooms").where("user_id", "=", userId).execute();
      await tx.deleteFrom("users_who_share_private_rooms").where((eb) => eb.or([eb("user_id", "=", userId), eb("other_user_id", "=", userId)])).execute();
    });
  }

  /** Replaces what the directory records of one user in one room: its public-room row, or its private-room pairs. */
  async setUserInRoom(roomId: string, userId: string, inPublic: boolean, pairs: readonly [string, string][]): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom("users_in_public_rooms").where("room_id", "=", roomId).where("user_id", "=", userId).execute();
      await tx
        .deleteFrom("users_who_share_private_rooms")
        .where("room_id", "=", roomId)
        .where((eb) => eb.or([eb("user_id", "=", userId), eb("other_user_id", "=", userId)]))
        .execute();
      if (inPublic) await tx.insertInto("users_in_public_rooms").values({ user_id: userId, room_id: roomId }).execute();
      await insertPairs(tx, roomId, pairs);
    });
  }

  /** Replaces everything the directory records of a room. */
  async setRoom(roomId: string, publicUsers: readonly string[], pairs: readonly [string, string][]): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom("users_in_public_rooms").where("room_id", "=", roomId).execute();
      await tx.deleteFrom("users_who_share_private_rooms").where("room_id", "=", roomId).execute();
      const rows = publicUsers.map((user_id) => ({ user_id, room_id: roomId }));
      for (let i = 0; i < rows.length; i += CHUNK) await tx.insertInto("users_in_public_rooms").values(rows.slice(i, i + CHUNK)).execute();
      await insertPairs(tx, roomId, pairs);
    });
  }

  /** Whether any room still puts the user in the directory (a public room, or a private room shared with a local user). */
  async isInAnyRoom(userId: string): Promise<boolean> {
    const pub = await this.db.selectFrom("users_in_public_rooms").select("room_id").where("user_id", "=", userId).limit(1).executeTakeFirst();
    if (pub) return true;
    const shared = await this.db.selectFrom("users_who_share_private_rooms").select("room_id").where("other_user_id", "=", userId).limit(1).executeTakeFirst();
    return shared !== undefined;
  }

  /** Users the room's rows mention (to forget remote users once a room no longer counts). */
  async usersOfRoom(roomId: string): Promise<string[]> {
    const pub = await this.db.selectFrom("users_in_public_rooms").select("user_id").where("room_id", "=", roomId).execute();
    const priv = await this.db.selectFrom("users_who_share_private_rooms").select("other_user_id").where("room_id", "=", roomId).execute();
    return [...new Set([...pub.map((r) => r.user_id), ...priv.map((r) => r.other_user_id)])];
  }

  /** User ids of the room's currently joined members. */
  async joinedMembers(roomId: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom("current_state_events")
      .select("state_key")
      .where("room_id", "=", roomId)
      .where("type", "=", "m.room.member")
      .where("membership", "=", "join")
      .execute();
    return rows.map((r) => r.state_key);
  }

  /** Whether the user's current membership of the room is join. */
  async isJoined(roomId: string, userId: string): Promise<boolean> {
    const r = await this.db
      .selectFrom("current_state_events")
      .select("membership")
      .where("room_id", "=", roomId)
      .where("type", "=", "m.room.member")
      .where("state_key", "=", userId)
      .executeTakeFirst();
    return r?.membership === "join";
  }

  /** How many users of `serverName` are joined to the room, counting at most `max`. */
  async localMemberCount(roomId: string, serverName: string, max: number): Promise<number> {
    const rows = await this.db
      .selectFrom("current_state_events")
      .select("state_key")
      .where("room_id", "=", roomId)
      .where("type", "=", "m.room.member")
      .where("membership", "=", "join")
      .where("state_key", "like", `%:${serverName}`)
      .limit(max)
      .execute();
    return rows.length;
  }

  /** The content of the room's current state events of the given types (for deciding whether the room is public). */
  async stateContents(roomId: string, types: readonly string[]): Promise<Map<string, unknown>> {
    const rows = await this.db
      .selectFrom("current_state_events as c")
      .innerJoin("events as e", "e.event_id", "c.event_id")
      .select(["c.type", "e.json"])
      .where("c.room_id", "=", roomId)
      .where("c.type", "in", [...types])
      .where("c.state_key", "=", "")
      .execute();
    return new Map(rows.map((r) => [r.type, (JSON.parse(r.json) as { content?: unknown }).content]));
  }

  /** The display name and avatar of the user's current member event in the room. */
  async memberProfile(roomId: string, userId: string): Promise<{ displayname: string | null; avatar_url: string | null } | undefined> {
    // From the event itself: member events that came as a joined room's state (send_join) are outliers, which have
    // no room_memberships row.
    const row = await this.db
      .selectFrom("current_state_events as c")
      .innerJoin("events as e", "e.event_id", "c.event_id")
      .select("e.json")
      .where("c.room_id", "=", roomId)
      .where("c.type", "=", "m.room.member")
      .where("c.state_key", "=", userId)
      .executeTakeFirst();
    if (!row) return undefined;
    const content = (JSON.parse(row.json) as { content?: Record<string, unknown> }).content ?? {};
    const str = (v: unknown) => (typeof v === "string" ? v : null);
    return { displayname: str(content.displayname), avatar_url: str(content.avatar_url) };
  }

  /** Which of these local users belong in the directory: accounts that exist and are neither deactivated nor guests. */
  async includedLocalUsers(userIds: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    for (let i = 0; i < userIds.length; i += CHUNK) {
      const rows = await this.db
        .selectFrom("users")
        .select("user_id")
        .where("user_id", "in", userIds.slice(i, i + CHUNK))
        .where("deactivated", "=", 0)
        .where("is_guest", "=", 0)
        .execute();
      for (const r of rows) out.add(r.user_id);
    }
    return out;
  }

  /** Rooms where at least one user of `serverName` is joined (the initial build). */
  async roomsWithLocalMembers(serverName: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom("current_state_events")
      .select("room_id")
      .distinct()
      .where("type", "=", "m.room.member")
      .where("membership", "=", "join")
      .where("state_key", "like", `%:${serverName}`)
      .execute();
    return rows.map((r) => r.room_id);
  }

  /** Local users that belong in the directory (not deactivated, not guests), with their global profiles. */
  async localUsersWithProfiles(afterUserId: string, limit: number): Promise<DirectoryEntry[]> {
    const rows = await this.db
      .selectFrom("users as u")
      .leftJoin("profiles as n", (j) => j.onRef("n.user_id", "=", "u.user_id").on("n.field", "=", "displayname"))
      .leftJoin("profiles as a", (j) => j.onRef("a.user_id", "=", "u.user_id").on("a.field", "=", "avatar_url"))
      .select(["u.user_id", "n.value as name", "a.value as avatar"])
      .where("u.deactivated", "=", 0)
      .where("u.is_guest", "=", 0)
      .where("u.user_id", ">", afterUserId)
      .orderBy("u.user_id")
      .limit(limit)
      .execute();
    const str = (json: string | null) => {
      const v: unknown = json === null ? null : JSON.parse(json);
      return typeof v === "string" ? v : null;
    };
    return rows.map((r) => ({ user_id: r.user_id, display_name: str(r.name), avatar_url: str(r.avatar) }));
  }

  /** (room, type, state key) of the state events the directory follows written after `pos` (catching up after a restart). */
  async stateChangesSince(pos: number, types: readonly string[]): Promise<{ room_id: string; type: string; state_key: string }[]> {
    const rows = await this.db
      .selectFrom("events")
      .select(["room_id", "type", "state_key"])
      .distinct()
      .where("stream_ordering", ">", pos)
      .where("type", "in", [...types])
      .where("state_key", "is not", null)
      .where("outlier", "=", 0)
      .execute();
    return rows.map((r) => ({ room_id: r.room_id, type: r.type, state_key: r.state_key! }));
  }

  /**
   * The search. A user must match every word by prefix. The longest word (likely the most selective) is a prefix range
   * scan of the index, capped at MAX_CANDIDATES rows in index order (so exact matches come first; Synapse caps its
   * matches at 10,000 too); each other word is checked per candidate against that user's few index rows.
   *
   * Ranking, best first: local users (with `preferLocal`); then the sum over words of the best match's score,
   * kind × 2 (+1 if the word matches exactly): localpart 6–7, display name 4–5, domain 2–3; then users with a display
   * name, with an avatar; then by user id, so equal ranks come in a stable order.
   */
  async search(q: DirectorySearch): Promise<{ results: DirectoryEntry[]; limited: boolean }> {
    if (q.words.length === 0) return { results: [], limited: false };
    const driving = q.words.reduce((a, b) => (b.length > a.length ? b : a));
    const others = q.words.filter((w) => w !== driving);
    const score = (w: string) => sql`kind * 2 + CASE WHEN token = ${w} THEN 1 ELSE 0 END`;
    const otherScores = others.map(
      (w, i) =>
        sql`(SELECT MAX(${score(w)}) FROM user_directory_tokens t
             WHERE t.user_id = c.user_id AND t.token >= ${w} AND t.token < ${w + TOP}) AS ${sql.ref(`s${i}`)}`,
    );
    const total = sql.join([sql`m.s`, ...others.map((_, i) => sql.ref(`m.s${i}`))], sql` + `);
    const allMatch = others.length === 0 ? sql`1 = 1` : sql.join(others.map((_, i) => sql`${sql.ref(`m.s${i}`)} IS NOT NULL`), sql` AND `);
    const visible = q.allUsers
      ? sql`d.user_id <> ${q.searcher}`
      : sql`(EXISTS (SELECT 1 FROM users_in_public_rooms p WHERE p.user_id = d.user_id)
             OR EXISTS (SELECT 1 FROM users_who_share_private_rooms s WHERE s.user_id = ${q.searcher} AND s.other_user_id = d.user_id))`;
    // The users table holds only local users: a remote user has no row there.
    const account = q.showLocked ? sql`u.deactivated = 0` : sql`u.deactivated = 0 AND u.locked = 0`;
    const join = q.excludeRemote ? sql`INNER JOIN` : sql`LEFT JOIN`;
    const localFirst = q.preferLocal ? sql`CASE WHEN u.user_id IS NULL THEN 1 ELSE 0 END,` : sql``;
    const { rows } = await sql<DirectoryEntry>`
      SELECT d.user_id, d.display_name, d.avatar_url
      FROM (
        SELECT c.user_id, c.s ${others.length > 0 ? sql`, ${sql.join(otherScores, sql`, `)}` : sql``}
        FROM (
          SELECT user_id, MAX(score) AS s
          FROM (
            SELECT user_id, ${score(driving)} AS score FROM user_directory_tokens
            WHERE token >= ${driving} AND token < ${driving + TOP}
            ORDER BY token LIMIT ${MAX_CANDIDATES}
          ) a
          GROUP BY user_id
        ) c
      ) m
      INNER JOIN user_directory d ON d.user_id = m.user_id
      ${join} users u ON u.user_id = d.user_id
      WHERE ${allMatch}
        AND (u.user_id IS NULL OR (${account}))
        AND ${visible}
      ORDER BY ${localFirst} ${total} DESC,
        CASE WHEN d.display_name IS NULL THEN 1 ELSE 0 END,
        CASE WHEN d.avatar_url IS NULL THEN 1 ELSE 0 END,
        d.user_id
      LIMIT ${q.limit + 1}`.execute(this.db);
    return { results: rows.slice(0, q.limit), limited: rows.length > q.limit };
  }
}

async function insertPairs(db: Kysely<Schema>, roomId: string, pairs: readonly [string, string][]): Promise<void> {
  const rows = pairs.map(([user_id, other_user_id]) => ({ user_id, other_user_id, room_id: roomId }));
  for (let i = 0; i < rows.length; i += CHUNK) {
    await db
      .insertInto("users_who_share_private_rooms")
      .values(rows.slice(i, i + CHUNK))
      .onConflict((oc) => oc.doNothing())
      .execute();
  }
}
