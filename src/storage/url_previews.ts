/** Stored URL previews (migration 012), as Synapse's url cache. One code path for SQLite and PostgreSQL. */
import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

export interface StoredUrlPreview {
  downloadTs: number;
  expiresTs: number;
  /** The preview's JSON. */
  og: string;
}

export class UrlPreviewStore {
  constructor(private readonly db: Kysely<Schema>) {}

  /**
   * The preview of `url` as of `ts`: the latest fetched at or before it, or else the earliest after it (a `ts`
   * older than every fetch gets the oldest one), as Synapse's get_url_cache. The caller decides if it expired.
   */
  async get(url: string, ts: number): Promise<StoredUrlPreview | undefined> {
    const select = () => this.db.selectFrom("url_previews").select(["download_ts", "expires_ts", "og"]).where("url", "=", url);
    const row =
      (await select().where("download_ts", "<=", ts).orderBy("download_ts", "desc").limit(1).executeTakeFirst()) ??
      (await select().where("download_ts", ">", ts).orderBy("download_ts", "asc").limit(1).executeTakeFirst());
    return row ? { downloadTs: Number(row.download_ts), expiresTs: Number(row.expires_ts), og: row.og } : undefined;
  }

  async store(url: string, downloadTs: number, expiresTs: number, og: string, mediaId: string | null): Promise<void> {
    await this.db.insertInto("url_previews").values({ url, download_ts: downloadTs, expires_ts: expiresTs, og, media_id: mediaId }).execute();
  }

  /** Deletes previews that expired before `ts`; returns how many. */
  async deleteExpired(ts: number): Promise<number> {
    const r = await this.db.deleteFrom("url_previews").where("expires_ts", "<", ts).executeTakeFirst();
    return Number(r.numDeletedRows);
  }
}
