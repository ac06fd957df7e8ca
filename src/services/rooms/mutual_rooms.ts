/**
 * Mutual rooms (spec v1.19 "Mutual Rooms", MSC2666): the rooms both users are joined to, in room id order, in
 * batches. A batch token carries the requesting user, the other user, the last room id given and when the
 * pagination began, so it works on any process; a token for other users, malformed or older than the spec's
 * 10 minutes (we keep 30) is 400.
 */
import { MatrixError } from "../../errors.js";
import type { Storage } from "../../storage/storage.js";

export interface MutualRoomsPage {
  joined: string[];
  count: number;
  next_batch?: string;
}

const TOKEN_MS = 30 * 60_000;

interface BatchToken {
  u: string;
  o: string;
  after: string;
  t: number;
}

export class MutualRooms {
  /** Rooms per batch; a field so tests can page through a few rooms. */
  batchSize = 100;

  constructor(
    private readonly storage: Storage,
    private readonly now: () => number = Date.now,
  ) {}

  async between(userId: string, otherId: string, from?: string): Promise<MutualRoomsPage> {
    const token = from !== undefined ? this.parseToken(from, userId, otherId) : undefined;
    const [mine, theirs] = await Promise.all([this.storage.rooms.roomsForUser(userId, ["join"]), this.storage.rooms.roomsForUser(otherId, ["join"])]);
    const theirSet = new Set(theirs.map((r) => r.room_id));
    const all = mine
      .map((r) => r.room_id)
      .filter((r) => theirSet.has(r))
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const rest = token ? all.filter((r) => r > token.after) : all;
    const joined = rest.slice(0, this.batchSize);
    const page: MutualRoomsPage = { joined, count: all.length };
    if (rest.length > joined.length) {
      const next: BatchToken = { u: userId, o: otherId, after: joined[joined.length - 1]!, t: token?.t ?? this.now() };
      page.next_batch = Buffer.from(JSON.stringify(next)).toString("base64url");
    }
    return page;
  }

  private parseToken(from: string, userId: string, otherId: string): BatchToken {
    let t: unknown;
    try {
      t = JSON.parse(Buffer.from(from, "base64url").toString("utf8"));
    } catch {
      t = undefined;
    }
    const ok = (x: unknown): x is BatchToken => {
      const o = x as Partial<BatchToken> | null;
      return typeof o === "object" && o !== null && o.u === userId && o.o === otherId && typeof o.after === "string" && typeof o.t === "number";
    };
    if (!ok(t) || this.now() - t.t > TOKEN_MS) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid or expired batch token");
    return t;
  }
}
