/** `GET /` and `/_matrix/static/`: a small page saying the server runs (as Synapse shows); `/health` answers OK. */
import type { FastifyInstance } from "fastify";

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Myelin is running</title>
<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}</style></head>
<body><h1>It works! Myelin is running</h1>
<p>Your Matrix homeserver is up. Use a Matrix client such as Element to connect to it.</p></body></html>
`;

export function registerStaticPages(app: FastifyInstance, resources: ReadonlySet<string>): void {
  const page = async (_req: unknown, reply: { type(t: string): { send(b: string): unknown } }) => reply.type("text/html; charset=utf-8").send(PAGE);
  if (resources.has("client") || resources.has("static")) {
    app.get("/", page);
    app.get("/_matrix/static/", page);
  }
  app.get("/health", async (_req, reply) => reply.type("text/plain; charset=utf-8").send("OK"));
}
