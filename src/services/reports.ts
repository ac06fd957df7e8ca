/**
 * Reporting content (spec "Reporting content"): users report events, rooms and users to the server's admins; each
 * report is stored for the admin API. What an answer reveals is kept to what the spec allows: an event report is
 * 404 alike for an unknown event and one the reporter may not see; a user report is 200 alike for unknown, remote
 * and real users (as Synapse); a room report is 404 for a room this server does not know (as Synapse).
 */
import { isValidUserId, userIdDomain } from "../core/ids/ids.js";
import { MatrixError, badJson, invalidParam, notFound } from "../errors.js";
import type { Storage } from "../storage/storage.js";
import type { RateLimiter } from "./ratelimit.js";
import type { RoomAccess } from "./rooms/rooms.js";

/** Synapse's cap on a user report's reason. */
const MAX_USER_REPORT_REASON = 1000;

export class ReportService {
  constructor(
    private readonly serverName: string,
    private readonly storage: Storage,
    private readonly rooms: RoomAccess,
    /** rc_reports, per reporting user: the room and user reports (the endpoints the spec gives a 429). */
    private readonly limit: RateLimiter,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * POST /rooms/{roomId}/report/{eventId}. The reporter must be joined to the room and able to see the event,
   * which must not be redacted; otherwise one 404 for every case.
   */
  async reportEvent(reporter: string, roomId: string, eventId: string, body: Record<string, unknown>): Promise<void> {
    const reason = body.reason;
    if (reason !== undefined && typeof reason !== "string") throw badJson("Param 'reason' must be a string");
    // `score` was removed in v1.18; older clients still send it, so it is checked as the spec once defined it.
    const score = body.score;
    if (score !== undefined) {
      if (typeof score !== "number" || !Number.isInteger(score)) throw badJson("Param 'score' must be an integer");
      if (score < -100 || score > 0) throw invalidParam("Param 'score' must be between -100 and 0");
    }
    const hidden = notFound("Unable to report event: it does not exist or you aren't able to see it.");
    const head = await this.rooms.headIfKnown(roomId);
    if (!head || (await this.rooms.membership(head, reporter)) !== "join") throw hidden;
    const event = await this.rooms.core.events.get(eventId);
    if (!event || event.event.room_id !== roomId || event.redactedBy || !(await this.rooms.core.visibility.canSee(reporter, event))) throw hidden;
    await this.storage.reports.addEventReport({
      received_ts: this.now(),
      room_id: roomId,
      event_id: eventId,
      user_id: reporter,
      reason: reason ?? null,
      content: JSON.stringify(body),
    });
  }

  /** POST /rooms/{roomId}/report (v1.13): the reporter need not be in the room. */
  async reportRoom(reporter: string, roomId: string, reason: string): Promise<void> {
    this.limit.take(reporter);
    if (!(await this.rooms.headIfKnown(roomId))) throw notFound("Room does not exist");
    await this.storage.reports.addRoomReport({ received_ts: this.now(), room_id: roomId, user_id: reporter, reason });
  }

  /** POST /users/{userId}/report (v1.14): 200 whether or not the user exists here, as the spec allows. */
  async reportUser(reporter: string, targetUserId: string, reason: string): Promise<void> {
    this.limit.take(reporter);
    if (reason.length > MAX_USER_REPORT_REASON) throw badJson(`Reason must be less than ${MAX_USER_REPORT_REASON} characters`);
    if (!isValidUserId(targetUserId)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid user ID");
    // Remote and unknown users are answered like real ones, and nothing is stored: we cannot act on them.
    if (userIdDomain(targetUserId) !== this.serverName) return;
    if (!(await this.storage.users.get(targetUserId))) return;
    await this.storage.reports.addUserReport({ received_ts: this.now(), target_user_id: targetUserId, user_id: reporter, reason });
  }
}
