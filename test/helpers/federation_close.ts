/**
 * Shutting down several federated test servers at once. A server's close waits for its open connections, and
 * node's http server keeps a connection alive after answering a request that was in flight when close began: the
 * peer's pooled keep-alive socket then holds the close until the peer's agent times it out (60 s). So outbound
 * federation stops first on every server (sender and pooled connections), and only then do the servers close.
 */
import type { TestServer } from "./server.js";

export async function closeFederatedServers(servers: readonly (TestServer | undefined)[]): Promise<void> {
  const running = servers.filter((s): s is TestServer => s !== undefined);
  for (const s of running) {
    s.server.services.federationSender.close();
    s.server.services.federationClient.close();
  }
  await Promise.all(running.map((s) => s.close()));
}
