/**
 * Room tagging (spec "Room Tagging"): a user's tags on a room are stored as that room's `m.tag` account data,
 * `{"tags": {<tag>: {"order"?: number, ...}}}`, so /sync delivers them as it delivers any room account data — in
 * full on an initial sync, and again whenever they change. Adding or removing one tag is a read-modify-write of
 * that object, serialised per user so concurrent changes do not lose each other's tags.
 */
import { badJson, forbidden, invalidParam } from "../errors.js";
import type { Storage } from "../storage/storage.js";
import { KeyedLock } from "../util/keyed_lock.js";
import type { AccountDataService } from "./account_data.js";

export const TAG_EVENT_TYPE = "m.tag";

/** Spec: "The name of a tag MUST NOT exceed 255 bytes" (UTF-8). */
export const MAX_TAG_BYTES = 255;

/** What the spec puts in a tag: an optional order; other keys are kept as the client sent them (as Synapse). */
export type TagContent = Record<string, unknown> & { order?: number };
export type Tags = Record<string, TagContent>;

/**
 * A PUT body: a JSON object whose `order`, when present, is a number. The spec describes `order` as "a number in a
 * range [0,1]"; like Synapse (and Dendrite and Conduit) a number outside it is accepted as sent.
 */
export function parseTagContent(body: unknown): TagContent {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw badJson("Content must be a JSON object.");
  const content = body as Record<string, unknown>;
  if ("order" in content && (typeof content.order !== "number" || !Number.isFinite(content.order))) {
    throw badJson("'order' must be a number");
  }
  return content;
}

export class TagService {
  /** Per user: every write of any of the user's m.tag objects runs alone. In-process (see KeyedLock). */
  private readonly lock = new KeyedLock();

  constructor(
    private readonly storage: Storage,
    private readonly accountData: AccountDataService,
  ) {}

  async list(requesterId: string, userId: string, roomId: string): Promise<Tags> {
    if (requesterId !== userId) throw forbidden("Cannot get tags for other users.");
    return this.current(userId, roomId);
  }

  /**
   * Checks in Synapse's order: whose tags, the tag's length, that the user has (or had) some membership in the room,
   * then the body.
   */
  async add(requesterId: string, userId: string, roomId: string, tag: string, body: unknown): Promise<void> {
    if (requesterId !== userId) throw forbidden("Cannot add tags for other users.");
    if (Buffer.byteLength(tag, "utf8") > MAX_TAG_BYTES) throw invalidParam(`tag parameter's length is over ${MAX_TAG_BYTES} bytes`);
    // As Synapse: tagging a room the user never had anything to do with is refused (any membership, even leave, will do).
    if ((await this.storage.rooms.currentStateEventId(roomId, "m.room.member", userId)) === undefined) {
      throw forbidden(`User ${userId} has no membership in room ${roomId}`);
    }
    const content = parseTagContent(body);
    await this.modify(userId, roomId, (tags) => {
      tags[tag] = content;
      return true;
    });
  }

  /** Removing a tag the room does not have succeeds (as Synapse), and changes nothing. */
  async remove(requesterId: string, userId: string, roomId: string, tag: string): Promise<void> {
    if (requesterId !== userId) throw forbidden("Cannot add tags for other users.");
    await this.modify(userId, roomId, (tags) => {
      if (!Object.hasOwn(tags, tag)) return false;
      delete tags[tag];
      return true;
    });
  }

  /** The room's tags; `{}` when none were set (or the m.tag object, set through the account data API, has none). */
  private async current(userId: string, roomId: string): Promise<Tags> {
    return tagsOf(await this.storage.accountData.get(userId, roomId, TAG_EVENT_TYPE));
  }

  private async modify(userId: string, roomId: string, change: (tags: Tags) => boolean): Promise<void> {
    await this.lock.run(userId, async () => {
      const existing = (await this.storage.accountData.get(userId, roomId, TAG_EVENT_TYPE)) ?? {};
      const tags = tagsOf(existing);
      if (!change(tags)) return;
      await this.accountData.write(userId, roomId, TAG_EVENT_TYPE, { ...existing, tags });
    });
  }
}

/** A copy of the `tags` object of stored m.tag content, tolerating content of another shape. */
function tagsOf(content: Record<string, unknown> | undefined): Tags {
  const tags = content?.tags;
  return typeof tags === "object" && tags !== null && !Array.isArray(tags) ? { ...(tags as Tags) } : {};
}
