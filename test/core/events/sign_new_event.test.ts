import { describe, expect, it } from "vitest";
import { generateSigningKey } from "../../../src/core/crypto/ed25519.js";
import { canonicalJsonBytes } from "../../../src/core/json/canonical.js";
import { hashAndSignEvent, signNewEvent } from "../../../src/core/events/signing.js";
import { eventIdOf } from "../../../src/core/events/ids.js";
import { ROOM_VERSIONS } from "../../../src/core/rooms/versions.js";
import type { JsonObject } from "../../../src/core/json/types.js";

describe("signNewEvent", () => {
  const key = generateSigningKey();
  for (const version of ROOM_VERSIONS.values()) {
    it(`matches hashAndSignEvent + eventIdOf in room version ${version.id}`, () => {
      const pdu: JsonObject = {
        auth_events: version.eventIdFormat === "v1" ? [["$a:x", { sha256: "abc" }]] : ["$abc"],
        prev_events: version.eventIdFormat === "v1" ? [["$b:x", {}]] : ["$def"],
        type: "m.room.member",
        state_key: "@u:x",
        room_id: "!r:x",
        sender: "@u:x",
        content: { membership: "join", displayname: "Ü ✓", "org.extra": { nested: [1, 2, 3] } },
        depth: 12,
        origin_server_ts: 1_700_000_000_000,
        hashes: {},
      };
      if (version.eventIdFormat === "v1") pdu.event_id = "$local:x";
      const fast = signNewEvent(version, pdu, "x", key);
      const slow = hashAndSignEvent(version, pdu, "x", key);
      expect(fast.pdu).toEqual(slow);
      expect(fast.eventId).toBe(eventIdOf(version, slow));
      expect(fast.size).toBe(canonicalJsonBytes(slow).length);
    });
  }
});
