/**
 * Presence for servers that newly share a room (as Synapse's presence handler does on a join): presence EDUs go to
 * the servers sharing a room with a user when that user's presence changes, so a server joining a room has heard
 * nothing of the members it now shares it with. On a join:
 *  - of a local user: their presence goes to the room's other servers;
 *  - of another server's user: the presence of the room's local members goes to that server.
 * Users whose presence this server has never seen are left out (their presence is "offline", which needs no EDU).
 */
import type { Logger } from "pino";
import { userIdDomain } from "../../core/ids/ids.js";
import type { JsonObject } from "../../core/json/types.js";
import type { EventCache, StoredEvent } from "../rooms/event_cache.js";
import type { EventConsumer } from "../rooms/pipeline/consumers.js";

export interface JoinPresenceDeps {
  serverName: string;
  events: EventCache;
  serversInRoom: (roomId: string) => Promise<string[]>;
  localMembers: (roomId: string) => Promise<string[]>;
  /** m.presence contents of the users whose presence is known. */
  presenceOf: (userIds: readonly string[]) => Promise<{ sender: string; content: object }[]>;
  sendEdu: (servers: Iterable<string>, edu: JsonObject) => void;
  log: Logger;
}

/** The event consumer that shares presence with the servers a join brings together. */
export function joinPresenceConsumer(deps: JoinPresenceDeps): EventConsumer {
  return {
    name: "federation presence on join",
    committed: (e) => {
      if (!isNewJoin(e)) return;
      void share(deps, e).catch((err: unknown) => deps.log.warn({ err, eventId: e.event.event_id }, "federation: sharing presence on a join failed"));
    },
  };
}

/** A join into the room's live timeline (not history, an outlier, or a refused event). */
function isNewJoin(e: StoredEvent): boolean {
  return e.event.type === "m.room.member" && e.event.content.membership === "join" && !!e.event.state_key && !e.outlier && !e.rejected && !e.softFailed && e.streamOrdering > 0;
}

async function share(deps: JoinPresenceDeps, e: StoredEvent): Promise<void> {
  // A join replacing a join is a profile change: nobody new shares the room.
  if (e.replacesState !== null && (await deps.events.get(e.replacesState))?.event.content.membership === "join") return;
  const userId = e.event.state_key!;
  const roomId = e.event.room_id;
  const joiningServer = userIdDomain(userId);
  if (joiningServer === null) return;
  let users: string[];
  let servers: string[];
  if (joiningServer === deps.serverName) {
    users = [userId];
    servers = (await deps.serversInRoom(roomId)).filter((s) => s !== deps.serverName);
  } else {
    users = await deps.localMembers(roomId);
    servers = [joiningServer];
  }
  if (users.length === 0 || servers.length === 0) return;
  const states = await deps.presenceOf(users);
  if (states.length === 0) return;
  deps.sendEdu(servers, { edu_type: "m.presence", content: { push: states.map((s) => ({ user_id: s.sender, ...s.content })) } });
}
