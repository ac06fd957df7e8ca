/**
 * The Policy Server step (spec v1.18 "Policy Servers"; "Checks performed on receipt of a PDU", step 7). When the
 * room's current state designates a Policy Server with a joined user:
 *   - a local event is sent to it for a signature before it is persisted (stage 2, after authorise); a refusal
 *     fails the send with the Policy Server's error;
 *   - a received event without a valid signature gets one more chance (a fresh signature is asked for, outside the
 *     room lock: the Policy Server's key may have rotated), then is soft-failed if it still has none.
 * The decisions are core/rooms/policy_server.ts; asking the Policy Server is an injected `ask` (the federation
 * client's POST /_matrix/policy/v1/sign, services/federation/policy_server.ts).
 */
import type { Logger } from "pino";
import type { Event } from "../../../core/events/event.js";
import { redactPdu } from "../../../core/events/redaction.js";
import { hasValidPolicyServerSignature, memberEventsOfServer, needsPolicyServerSignature, policyServerFromContent, POLICY_STATE_KEY, recommendedForInclusion, roomPolicyServer, type PolicyServer } from "../../../core/rooms/policy_server.js";
import type { RoomVersion } from "../../../core/rooms/versions.js";
import type { EventCache } from "../event_cache.js";
import type { RoomHead } from "./build.js";

/** Asks a Policy Server to sign an event: the event with the signature added, or a MatrixError saying why not. */
export type AskPolicyServer = (ps: PolicyServer, version: RoomVersion, event: Event) => Promise<Event>;

/** At most this many (state group, server) answers to "has a joined user" are kept. */
const JOINED_CACHE_MAX = 4096;
/**
 * After a Policy Server failed to answer (5xx, unreachable, a bad signature), received events are not sent to it
 * again for this long: each would wait out the request's timeout, holding up the rest of their transaction. They
 * are soft-failed meanwhile, as they would be after the failed request. Local sends always ask (their client hears
 * why at once).
 */
const RECEIVED_RETRY_MS = 30_000;

export class PolicyServerStage {
  /** Set at start-up once the federation client exists; without it, nothing is asked (tests of the core alone). */
  ask?: AskPolicyServer;
  /** `${stateGroup} ${server}` → whether that server has a joined user in that state. State groups never change. */
  private readonly joined = new Map<string, boolean>();
  /** Policy Server → until when received events are not sent to it (see RECEIVED_RETRY_MS). */
  private readonly failing = new Map<string, number>();

  constructor(
    private readonly serverName: string,
    private readonly events: EventCache,
    private readonly log: Logger,
  ) {}

  /**
   * The room's Policy Server per the head's current state, if it uses one. Myelin is not a Policy Server: a room
   * naming this server uses none (as Synapse), since there is nobody to ask.
   */
  async policyServerOf(head: RoomHead): Promise<PolicyServer | undefined> {
    const id = head.state.get(POLICY_STATE_KEY);
    if (id === undefined) return undefined;
    const stored = await this.events.get(id);
    if (!stored || stored.rejected) return undefined;
    // A redacted m.room.policy keeps no content (it is not among the keys redaction preserves): no Policy Server.
    const content = stored.redactedBy ? redactPdu(stored.version, stored.event.pdu).content : stored.event.content;
    const candidate = policyServerFromContent(content);
    if (!candidate || candidate.serverName === this.serverName) return undefined;
    const joined = await this.hasJoinedUser(head, candidate.serverName);
    return roomPolicyServer(content, () => joined);
  }

  /**
   * A local event, authorised and about to be persisted: signed by the room's Policy Server when it needs to be.
   * Throws the Policy Server's refusal (or why it could not be asked): the event is then discarded.
   */
  async signLocal(head: RoomHead, event: Event): Promise<Event> {
    if (!this.ask || !needsPolicyServerSignature(event)) return event;
    const ps = await this.policyServerOf(head);
    if (!ps || hasValidPolicyServerSignature(head.version, event.pdu, ps)) return event;
    return this.ask(ps, head.version, event);
  }

  /**
   * A received event, before the room lock: "If the Policy Server's signature is invalid or missing, the
   * homeserver SHOULD ask for a new signature". Returns the event with that signature, or as it was when the
   * Policy Server refuses or cannot be asked (it is then soft-failed by `recommended`).
   */
  async refreshReceived(head: RoomHead | undefined, version: RoomVersion, event: Event): Promise<Event> {
    if (!this.ask || !head || !needsPolicyServerSignature(event)) return event;
    const ps = await this.policyServerOf(head);
    if (!ps || hasValidPolicyServerSignature(version, event.pdu, ps)) return event;
    if ((this.failing.get(ps.serverName) ?? 0) > Date.now()) return event;
    try {
      const signed = await this.ask(ps, version, event);
      this.failing.delete(ps.serverName);
      return signed;
    } catch (err) {
      // A refusal (4xx) is an answer; anything else says the Policy Server is not answering properly.
      const status = (err as { status?: unknown }).status;
      if (!(typeof status === "number" && status >= 400 && status < 500)) this.failing.set(ps.serverName, Date.now() + RECEIVED_RETRY_MS);
      this.log.info({ err: (err as Error).message, eventId: event.event_id, policyServer: ps.serverName }, "the Policy Server did not sign a received event");
      return event;
    }
  }

  /** Step 7, under the room lock: whether the event is recommended for inclusion per current state. */
  async recommended(head: RoomHead, version: RoomVersion, event: Event): Promise<boolean> {
    if (!needsPolicyServerSignature(event)) return true;
    return recommendedForInclusion(version, event, await this.policyServerOf(head));
  }

  private async hasJoinedUser(head: RoomHead, serverName: string): Promise<boolean> {
    const key = `${head.stateGroup} ${serverName}`;
    const cached = this.joined.get(key);
    if (cached !== undefined) return cached;
    const members = await this.events.getMany(memberEventsOfServer(head.state, serverName));
    const joined = [...members.values()].some((m) => !m.rejected && m.event.content.membership === "join");
    if (this.joined.size >= JOINED_CACHE_MAX) this.joined.clear();
    this.joined.set(key, joined);
    return joined;
  }
}
