/**
 * Revoking guest access (Synapse's kick_guest_users): when a room's m.room.guest_access event, sent here or
 * received from another server, leaves the room without `can_join`, this server's guests leave it. Runs after the
 * event is committed, off the persisting path.
 */
import type { Logger } from "pino";
import type { MembershipService } from "./membership.js";
import type { EventConsumer } from "./pipeline/consumers.js";

export function guestAccessConsumer(membership: MembershipService, log: Logger): EventConsumer {
  return {
    name: "guest_access",
    committed: (e) => {
      const ev = e.event;
      if (ev.type !== "m.room.guest_access" || ev.state_key !== "" || ev.content.guest_access === "can_join") return;
      membership.kickGuests(ev.room_id).catch((err: unknown) => log.warn({ err, roomId: ev.room_id }, "could not remove guests after guest access was revoked"));
    },
  };
}
