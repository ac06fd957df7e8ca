/**
 * Server-side search (spec "Server Side Search"): POST /search. The body is validated here into typed criteria;
 * missing required fields are 400 M_MISSING_PARAM, wrong types M_BAD_JSON, unknown orderings or group keys
 * M_INVALID_PARAM, and a `next_batch` this server did not issue M_UNKNOWN (as Synapse: "Invalid batch").
 */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { FilterError, parseRoomEventFilter, type RoomEventFilter } from "../../core/filters/index.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { badJson, invalidParam, missingParam } from "../../errors.js";
import type { GroupKey, RoomEventsCriteria } from "../../services/search.js";
import { SEARCH_KEYS, type SearchKey } from "../../services/search_index.js";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";
import { stringParam } from "../http/params.js";

const AnyObject = Type.Object({}, { additionalProperties: true });
const ALL_KEYS = Object.keys(SEARCH_KEYS) as SearchKey[];
/** Context around a result: Synapse's default of 5 each way; more than this is refused. */
const MAX_CONTEXT = 100;

export function registerSearchRoutes(app: FastifyInstance, services: Services): void {
  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/search"),
    body: AnyObject,
    handler: async (ctx) => {
      const criteria = parseCriteria(ctx.body);
      const roomEvents = await services.search.roomEvents(requester(ctx), criteria, stringParam(ctx.query, "next_batch"));
      return { search_categories: { room_events: roomEvents } };
    },
  });
}

/** `search_categories.room_events` of the request body, validated. */
export function parseCriteria(body: JsonObject): RoomEventsCriteria {
  if (body.search_categories === undefined) throw missingParam("Missing search_categories");
  if (!isJsonObject(body.search_categories)) throw badJson("search_categories must be an object");
  const cat = body.search_categories.room_events;
  if (cat === undefined) throw missingParam("Missing search_categories.room_events");
  if (!isJsonObject(cat)) throw badJson("room_events must be an object");
  if (cat.search_term === undefined) throw missingParam("Missing search_term");
  if (typeof cat.search_term !== "string") throw badJson("search_term must be a string");

  let keys = ALL_KEYS;
  if (cat.keys !== undefined) {
    if (!Array.isArray(cat.keys) || !cat.keys.every((k) => typeof k === "string")) throw badJson("keys must be a list of strings");
    const unknown = cat.keys.filter((k) => !(ALL_KEYS as string[]).includes(k));
    if (unknown.length > 0) throw invalidParam(`Unknown search keys: ${unknown.join(", ")}`);
    keys = cat.keys as SearchKey[];
  }

  let filter: RoomEventFilter = {};
  if (cat.filter !== undefined && cat.filter !== null) {
    try {
      filter = parseRoomEventFilter(cat.filter);
    } catch (e) {
      if (e instanceof FilterError) throw badJson(e.message);
      throw e;
    }
  }

  const orderBy = cat.order_by ?? "rank";
  if (orderBy !== "rank" && orderBy !== "recent") throw invalidParam(`Invalid order_by: ${JSON.stringify(orderBy)}`);

  const criteria: RoomEventsCriteria = { searchTerm: cat.search_term, keys, filter, orderBy, includeState: false, groupBy: [] };
  if (cat.include_state !== undefined) {
    if (typeof cat.include_state !== "boolean") throw badJson("include_state must be a boolean");
    criteria.includeState = cat.include_state;
  }
  if (cat.event_context !== undefined && cat.event_context !== null) {
    const ec = cat.event_context;
    if (!isJsonObject(ec)) throw badJson("event_context must be an object");
    const limit = (name: string) => {
      const v = ec[name] ?? 5;
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > MAX_CONTEXT) throw badJson(`event_context.${name} must be an integer from 0 to ${MAX_CONTEXT}`);
      return v;
    };
    if (ec.include_profile !== undefined && typeof ec.include_profile !== "boolean") throw badJson("event_context.include_profile must be a boolean");
    criteria.eventContext = { beforeLimit: limit("before_limit"), afterLimit: limit("after_limit"), includeProfile: ec.include_profile === true };
  }
  if (cat.groupings !== undefined && cat.groupings !== null) {
    const g = cat.groupings;
    if (!isJsonObject(g)) throw badJson("groupings must be an object");
    const by = g.group_by ?? [];
    if (!Array.isArray(by)) throw badJson("groupings.group_by must be a list");
    const keysSeen = new Set<GroupKey>();
    for (const entry of by) {
      if (!isJsonObject(entry) || typeof entry.key !== "string") throw badJson("Each group_by entry must be an object with a string key");
      if (entry.key !== "room_id" && entry.key !== "sender") throw invalidParam(`Invalid group by key: ${entry.key}`);
      keysSeen.add(entry.key);
    }
    criteria.groupBy = [...keysSeen];
  }
  return criteria;
}
