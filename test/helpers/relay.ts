/**
 * A TCP relay on a fixed loopback port to a test server's current port: a server keeps its address across a restart
 * (TestServer.restart() picks a new port, and other servers cache discovery answers), and a stopped server's relay
 * refuses connections, as a server that is down does.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { TestNetwork, startFederatedServer } from "./federation.js";
import type { TestServer } from "./server.js";

export class Relay {
  /** Where connections go; undefined refuses them. */
  target: number | undefined;
  port = 0;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor() {
    this.server = createServer((inbound) => {
      if (this.target === undefined) {
        inbound.destroy();
        return;
      }
      const outbound = connect(this.target, "127.0.0.1");
      for (const s of [inbound, outbound]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
      }
      inbound.on("error", () => outbound.destroy());
      outbound.on("error", () => inbound.destroy());
      inbound.on("close", () => outbound.destroy());
      outbound.on("close", () => inbound.destroy());
      inbound.pipe(outbound).pipe(inbound);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    const addr = this.server.address();
    this.port = typeof addr === "object" && addr ? addr.port : 0;
    return this.port;
  }

  /** Refuses new connections and cuts those in flight. */
  cut(): void {
    this.target = undefined;
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}

/** Servers of a TestNetwork reached through relays, so that a test can stop and restart them. */
export class RelayedServers {
  private readonly relays = new Map<string, Relay>();

  constructor(private readonly network: TestNetwork) {}

  /** hs1.test and hs2.test on a new network, each behind its relay. */
  static async pair(): Promise<{ relayed: RelayedServers; hs1: TestServer; hs2: TestServer }> {
    const network = new TestNetwork();
    const relayed = new RelayedServers(network);
    const hs1 = await relayed.up("hs1.test", await startFederatedServer(network, "hs1.test"));
    const hs2 = await relayed.up("hs2.test", await startFederatedServer(network, "hs2.test"));
    return { relayed, hs1, hs2 };
  }

  /** Points `name`'s relay (the address the network gives the name) at a running server. */
  async up(name: string, s: TestServer): Promise<TestServer> {
    let relay = this.relays.get(name);
    if (!relay) {
      relay = new Relay();
      this.relays.set(name, relay);
      await relay.listen();
    }
    relay.target = s.tlsPort;
    this.network.register(name, relay.port);
    return s;
  }

  /** Stops a server; its relay is cut first, so no connection from another server holds the shutdown. */
  async down(name: string, s: TestServer): Promise<void> {
    this.relays.get(name)!.cut();
    await s.stop();
  }

  /** Down, then up again on the same data (a new port behind the same relay). */
  async restart(name: string, s: TestServer): Promise<TestServer> {
    await this.down(name, s);
    return this.up(name, await s.restart());
  }

  async close(): Promise<void> {
    await Promise.all([...this.relays.values()].map((r) => r.close()));
  }
}
