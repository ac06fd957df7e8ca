/**
 * The HTTP server for one listener: Matrix JSON in and out, CORS, errors rendered once as Matrix errors, and the
 * resources (client, federation, media, keys, health…) the listener serves.
 */
import { randomBytes } from "node:crypto";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply } from "fastify";
import type { ListenerConfig } from "../../config/config.js";
import { JsonSyntaxError, parseJson } from "../../core/json/parse.js";
import { MatrixError, notJson, tooLarge, unrecognized } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { registerClientApi } from "../client/index.js";
import { registerAdminApi } from "../admin/index.js";
import { registerMediaApi } from "../client/media.js";
import { registerStaticPages } from "./static.js";
import { registerMetrics } from "./metrics.js";
import { CORS_HEADERS, HTTP_SERVER_OPTIONS, answerClientError } from "./door.js";
import { registerFederationApi, registerKeyApi } from "../federation/index.js";
import { registerLegacyUrlPreviewRoutes } from "../client/url_preview.js";

/** Request ids for logs: a per-process prefix and a counter (cheaper than random bytes per request). */
const REQ_PREFIX = randomBytes(3).toString("hex") + "-";
let reqCounter = 0;

/** JSON bodies larger than this are refused with 413 M_TOO_LARGE (events themselves are capped at 64 KiB). */
const MAX_JSON_BODY = 10 * 1024 * 1024;

declare module "fastify" {
  interface FastifyRequest {
    /** Whether the JSON body had floats, exponents or out-of-range integers (rejected in strict room versions). */
    nonCanonicalNumbers?: boolean;
    /** The body's text, kept only when it had such numbers (a federation request's signature covers them as sent). */
    rawJsonText?: string;
  }
}

export interface AppOptions {
  /** Serve HTTPS with this certificate and key (a listener with `tls: true`). */
  https?: { cert: Buffer; key: Buffer };
  /** Extra routes, registered after the listener's resources. */
  routes?: (app: FastifyInstance, services: Services) => void;
}

const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true });

export async function buildApp(services: Services, listener: Pick<ListenerConfig, "resources" | "xForwarded">, options: AppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    // Node's parser limits and the exact JSON Content-Type (door.ts), on HTTP and HTTPS alike.
    ...(options.https ? { https: { ...options.https, ...HTTP_SERVER_OPTIONS } } : { http: HTTP_SERVER_OPTIONS }),
    // Requests Node's parser refuses (431, malformed request line, bad framing) are Matrix errors too.
    clientErrorHandler: answerClientError,
    loggerInstance: services.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: listener.xForwarded,
    bodyLimit: MAX_JSON_BODY,
    genReqId: () => `${REQ_PREFIX}${(reqCounter++).toString(36)}`,
    routerOptions: { ignoreTrailingSlash: true, ignoreDuplicateSlashes: true, maxParamLength: 2048 },
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    return503OnClosing: false,
    // Errors Fastify answers before routing (bad percent-encoding, over-long parameters) are Matrix errors too.
    frameworkErrors: (error, _req, reply) => {
      let err: MatrixError;
      // A path parameter past maxParamLength (far beyond any Matrix identifier's 255 bytes): an over-large request, as Synapse's M_TOO_LARGE.
      if (error.code === "FST_ERR_MAX_PARAM_LENGTH") err = new MatrixError(414, "M_TOO_LARGE", "Path parameter too long");
      // Bad percent-encoding in the path (FST_ERR_BAD_URL) and the rest: 400 M_UNKNOWN, Synapse's errcode for an undecodable parameter.
      else err = new MatrixError(error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400, "M_UNKNOWN", error.message);
      void (reply as FastifyReply).code(err.status).headers(CORS_HEADERS).send(err.toJSON());
    },
  });

  // Every body is parsed as JSON whatever its Content-Type (clients vary), except where a plugin overrides it.
  app.removeAllContentTypeParsers();
  // Read as bytes and decoded strictly: JSON is UTF-8 (RFC 8259), and invalid UTF-8 is 400 M_NOT_JSON (as Synapse)
  // rather than text with U+FFFD in it.
  app.addContentTypeParser("*", { parseAs: "buffer" }, (req, body, done) => {
    let text: string;
    try {
      text = STRICT_UTF8.decode(body as Buffer);
    } catch {
      return done(notJson("Content not JSON: invalid UTF-8."), undefined);
    }
    if (text.trim() === "") return done(null, {});
    try {
      const parsed = parseJson(text);
      req.nonCanonicalNumbers = parsed.hasNonCanonicalNumbers;
      if (parsed.hasNonCanonicalNumbers) req.rawJsonText = text;
      done(null, parsed.value);
    } catch (e) {
      done(e instanceof JsonSyntaxError ? notJson("Content not JSON.") : (e as Error), undefined);
    }
  });

  // Callback-style hooks: on every request, an async hook would cost a promise for nothing.
  app.addHook("onRequest", (_req, reply, done) => {
    reply.headers(CORS_HEADERS);
    done();
  });
  if (services.log.isLevelEnabled("debug")) {
    app.addHook("onResponse", (req, reply, done) => {
      req.log.debug({ method: req.method, url: redactUrl(req.url), status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, "request");
      done();
    });
  }

  // Which paths exist under which methods, so an unknown method on a known path is 405 rather than 404.
  const routes: { method: string; pattern: RegExp }[] = [];
  app.addHook("onRoute", (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const pattern = new RegExp(`^${route.url.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/:[A-Za-z0-9_]+/g, "[^/]+").replace(/\*/g, ".*")}/?$`);
    for (const m of methods) routes.push({ method: m, pattern });
  });

  app.options("*", async (_req, reply) => reply.code(200).send({}));

  app.setNotFoundHandler(async (req, reply) => {
    const path = req.url.split("?")[0]!;
    const known = routes.some((r) => r.method !== "OPTIONS" && r.pattern.test(path));
    const err = known ? new MatrixError(405, "M_UNRECOGNIZED", "Unrecognized request") : unrecognized();
    return reply.code(err.status).send(err.toJSON());
  });

  app.setErrorHandler(async (error: FastifyError | MatrixError | Error, req, reply) => {
    let err: MatrixError;
    if (error instanceof MatrixError) {
      err = error;
    } else if ((error as FastifyError).validation) {
      err = new MatrixError(400, "M_BAD_JSON", describeValidation(error as FastifyError));
    } else {
      const code = (error as FastifyError).code;
      const status = (error as FastifyError).statusCode;
      if (code === "FST_ERR_CTP_BODY_TOO_LARGE") err = tooLarge();
      else if (code === "FST_ERR_CTP_INVALID_MEDIA_TYPE" || code === "FST_ERR_CTP_EMPTY_JSON_BODY") err = notJson();
      else if (code === "FST_ERR_BAD_URL" || code === "FST_ERR_CTP_INVALID_CONTENT_LENGTH") err = new MatrixError(400, "M_UNKNOWN", error.message);
      else if (status !== undefined && status >= 400 && status < 500) err = new MatrixError(status, "M_UNKNOWN", error.message);
      else {
        req.log.error({ err: error, method: req.method, url: redactUrl(req.url) }, "request failed");
        err = new MatrixError(500, "M_UNKNOWN", "Internal server error");
      }
    }
    return reply.code(err.status).headers(err.headers).send(err.toJSON());
  });

  const resources = listener.resources;
  registerMetrics(app, services, resources);
  registerStaticPages(app, resources);
  if (resources.has("client")) {
    registerClientApi(app, services);
    registerAdminApi(app, services);
  }
  // The content repository: on a listener with either resource (a media worker's listener has only `media`).
  if (resources.has("client") || resources.has("media")) registerMediaApi(app, services);
  // As Synapse: the key endpoints come with either resource.
  if (resources.has("keys") || resources.has("federation")) registerKeyApi(app, services);
  if (resources.has("federation")) registerFederationApi(app, services);
  // With the rest of the content repository: on a listener with the client or the media resource.
  if (resources.has("client") || resources.has("media")) registerLegacyUrlPreviewRoutes(app, services);
  options.routes?.(app, services);
  await app.ready();
  return app;
}

/** The body failed its schema: say where, as Synapse does ("… must be a string"). */
function describeValidation(error: FastifyError): string {
  const v = error.validation?.[0];
  if (!v) return "Invalid request body";
  const where = v.instancePath ? v.instancePath.slice(1).replace(/\//g, ".") : "";
  if (v.keyword === "required") return `Missing required key: '${(v.params as { missingProperty?: string }).missingProperty}'`;
  if (v.keyword === "type" && where === "") return "Content must be a JSON object.";
  return `${where ? `'${where}' ` : ""}${v.message ?? "is invalid"}`;
}

function redactUrl(url: string): string {
  return url.replace(/([?&]access_token=)[^&]*/g, "$1<redacted>");
}
