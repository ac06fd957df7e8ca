/**
 * Push notifications (spec "Push Notifications"): push rules (`/pushrules/…`), pushers (`/pushers`,
 * `/pushers/set`) and the notification list (`/notifications`).
 */
import type { FastifyInstance } from "fastify";
import { PUSH_RULE_KINDS, type PushRuleKind } from "../../core/push/types.js";
import { deleteUserRule, getRule, putUserRule, setRuleActions, setRuleEnabled, PushRuleError } from "../../core/push/index.js";
import { MatrixError } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { stringParam } from "../http/params.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";

/**
 * Push rules live only in the `global` scope; anything else is not a request we know (as Synapse answers). Reads of
 * an unknown kind are unrecognised too; writes leave the kind to core, which refuses it as Synapse does.
 */
function checkScope(scope: string): void {
  if (scope !== "global") throw new MatrixError(400, "M_UNRECOGNIZED", `Unknown push rule scope '${scope}'`);
}

function kindOf(kind: string): PushRuleKind {
  if (!(PUSH_RULE_KINDS as readonly string[]).includes(kind)) throw new MatrixError(400, "M_UNRECOGNIZED", `Unknown push rule kind '${kind}'`);
  return kind as PushRuleKind;
}

/**
 * The request path after `/pushrules`, in segments: [] for `/pushrules`, [""] for `/pushrules/`, ["global", ""] for
 * `/pushrules/global/`. The router ignores trailing slashes; Synapse's reading of these URLs does not.
 */
function pushPath(url: string): string[] {
  const path = url.split("?")[0]!;
  const rest = path.slice(path.indexOf("/pushrules") + "/pushrules".length);
  if (rest === "") return [];
  return rest
    .slice(1)
    .split("/")
    .map((seg) => {
      try {
        return decodeURIComponent(seg);
      } catch {
        return seg;
      }
    });
}

/** As Synapse: the listings are asked for with a trailing slash (`/pushrules/`, `/pushrules/global/`, …). */
function requireTrailingSlash(url: string, segments: number): void {
  const parts = pushPath(url);
  if (parts.length !== segments + 1 || parts[segments] !== "") throw new MatrixError(400, "M_UNRECOGNIZED", "Push rule listings must be requested with a trailing slash");
}

/**
 * What no other push rule route matched: a missing or empty scope, kind or rule id, or an unknown attribute. Synapse
 * answers these 400 M_UNRECOGNIZED (the spec has no such endpoints; its generic answer would be 404).
 */
function malformedPushPath(url: string): never {
  const [scope, kind, ruleId, attr] = pushPath(url);
  if (scope === undefined || scope === "") throw new MatrixError(400, "M_UNRECOGNIZED", "Missing push rule scope");
  checkScope(scope);
  if (kind === undefined || kind === "") throw new MatrixError(400, "M_UNRECOGNIZED", "Missing push rule kind");
  if (ruleId === undefined || ruleId === "") throw new MatrixError(400, "M_UNRECOGNIZED", "Missing or empty push rule id");
  throw new MatrixError(400, "M_UNRECOGNIZED", `Unknown push rule attribute '${attr ?? ""}'`);
}

/** Core's refusals become Matrix errors. */
function asMatrix<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof PushRuleError) throw new MatrixError(e.status, e.errcode, e.message);
    throw e;
  }
}

export function registerPushRoutes(app: FastifyInstance, services: Services): void {
  const { pushRules, pushers, notifications } = services;

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/pushrules/"),
    handler: async (ctx) => {
      requireTrailingSlash(ctx.req.url, 0);
      return { global: await pushRules.ruleset(requester(ctx).userId) };
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/pushrules/:scope/"),
    handler: async (ctx) => {
      checkScope(ctx.params.scope!);
      requireTrailingSlash(ctx.req.url, 1);
      return pushRules.ruleset(requester(ctx).userId);
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/pushrules/:scope/:kind/"),
    handler: async (ctx) => {
      checkScope(ctx.params.scope!);
      const kind = kindOf(ctx.params.kind!);
      requireTrailingSlash(ctx.req.url, 2);
      return (await pushRules.ruleset(requester(ctx).userId))[kind];
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/pushrules/:scope/:kind/:ruleId"),
    handler: async (ctx) => {
      checkScope(ctx.params.scope!);
      const kind = kindOf(ctx.params.kind!);
      const rule = getRule(await pushRules.ruleset(requester(ctx).userId), kind, ctx.params.ruleId!);
      if (!rule) throw new MatrixError(404, "M_NOT_FOUND", "The push rule was not found.");
      return rule;
    },
  });

  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/pushrules/:scope/:kind/:ruleId"),
    handler: async (ctx) => {
      checkScope(ctx.params.scope!);
      const kind = ctx.params.kind!;
      const before = stringParam(ctx.query, "before");
      const after = stringParam(ctx.query, "after");
      await pushRules.update(requester(ctx).userId, (stored) => asMatrix(() => putUserRule(stored, kind, ctx.params.ruleId!, ctx.req.body, { before, after })));
      return {};
    },
  });

  defineRoute(app, services, {
    method: "DELETE",
    paths: clientPaths("/pushrules/:scope/:kind/:ruleId"),
    handler: async (ctx) => {
      checkScope(ctx.params.scope!);
      const kind = ctx.params.kind!;
      await pushRules.update(requester(ctx).userId, (stored) => asMatrix(() => deleteUserRule(stored, kind, ctx.params.ruleId!)));
      return {};
    },
  });

  for (const attr of ["enabled", "actions"] as const) {
    defineRoute(app, services, {
      method: "GET",
      paths: clientPaths(`/pushrules/:scope/:kind/:ruleId/${attr}`),
      handler: async (ctx) => {
        checkScope(ctx.params.scope!);
        const kind = kindOf(ctx.params.kind!);
        const rule = getRule(await pushRules.ruleset(requester(ctx).userId), kind, ctx.params.ruleId!);
        if (!rule) throw new MatrixError(404, "M_NOT_FOUND", "The push rule was not found.");
        return attr === "enabled" ? { enabled: rule.enabled } : { actions: rule.actions };
      },
    });
  }

  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/pushrules/:scope/:kind/:ruleId/enabled"),
    handler: async (ctx) => {
      checkScope(ctx.params.scope!);
      const kind = ctx.params.kind!;
      const enabled = (ctx.req.body as { enabled?: unknown } | null)?.enabled;
      const me = requester(ctx).userId;
      await pushRules.update(me, (stored) => asMatrix(() => setRuleEnabled(stored, me, kind, ctx.params.ruleId!, enabled)));
      return {};
    },
  });

  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/pushrules/:scope/:kind/:ruleId/actions"),
    handler: async (ctx) => {
      checkScope(ctx.params.scope!);
      const kind = ctx.params.kind!;
      const body = ctx.req.body as { actions?: unknown } | null;
      const me = requester(ctx).userId;
      await pushRules.update(me, (stored) => asMatrix(() => setRuleActions(stored, me, kind, ctx.params.ruleId!, body?.actions)));
      return {};
    },
  });

  defineRoute(app, services, {
    method: ["GET", "PUT", "DELETE"],
    paths: clientPaths("/pushrules/*"),
    handler: (ctx) => malformedPushPath(ctx.req.url),
  });
  defineRoute(app, services, {
    method: ["PUT", "DELETE"],
    paths: clientPaths("/pushrules/"),
    handler: (ctx) => malformedPushPath(ctx.req.url),
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/pushers"),
    handler: async (ctx) => ({ pushers: await pushers.list(requester(ctx).userId) }),
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/pushers/set"),
    handler: async (ctx) => {
      const body = ctx.req.body;
      if (typeof body !== "object" || body === null || Array.isArray(body)) throw new MatrixError(400, "M_NOT_JSON", "Content must be a JSON object.");
      await pushers.set(requester(ctx), body as Record<string, unknown>);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/notifications"),
    handler: async (ctx) =>
      notifications.list(requester(ctx).userId, { from: stringParam(ctx.query, "from"), limit: stringParam(ctx.query, "limit"), only: stringParam(ctx.query, "only") }),
  });
}
