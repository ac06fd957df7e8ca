import { setFlagsFromString } from "node:v8";
import type { ParsedConfig } from "../config/config.js";
import { startServer } from "../server.js";

/**
 * V8 grows its old generation to up to 4× what the last full collection left live when collecting is fast, which a
 * server's steady allocation always makes it: with ~55 MB live under load, the heap ran to ~240 MB of mostly
 * garbage (docs/benchmarks.md, soak). A fixed factor of 1.5 keeps it near 100 MB for a few percent more collections.
 * V8 reads the flag at every collection, so setting it here works however the process was started; an engine
 * without the flag ignores it.
 */
export const HEAP_GROWING_PERCENT = 50;

/** Runs until SIGTERM/SIGINT, then shuts down gracefully (in-flight requests finish, the database closes). */
export async function startCommand({ config, warnings }: ParsedConfig): Promise<number> {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  const server = await startServer(config, { warnings });
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      resolve();
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
  await server.close();
  return 0;
}
