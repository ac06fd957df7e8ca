/**
 * `GET /_synapse/metrics` (Synapse's path, what its Grafana dashboards scrape) and `/metrics` on listeners with the
 * `metrics` resource, and the per-route request metrics, when `enable_metrics` is on.
 */
import type { FastifyInstance } from "fastify";
import { notFound } from "../../errors.js";
import type { Services } from "../../services/services.js";

export function registerMetrics(app: FastifyInstance, services: Services, resources: ReadonlySet<string>): void {
  const metrics = services.metrics;
  if (metrics) {
    // A callback hook, added only when metrics are on: nothing on the request path otherwise.
    app.addHook("onResponse", (req, reply, done) => {
      const route = req.routeOptions.url ?? "unmatched";
      metrics.httpRequests.inc({ method: req.method, route, code: reply.statusCode });
      metrics.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
      done();
    });
  }
  if (!resources.has("metrics")) return;
  for (const url of ["/_synapse/metrics", "/metrics"]) {
    app.get(url, async (_req, reply) => {
      if (!metrics) throw notFound("Metrics are off (enable_metrics: false)");
      return reply.type(metrics.contentType).send(await metrics.text());
    });
  }
}
