import type { ParsedConfig } from "../config/config.js";
import { startServer } from "../server.js";

/** Runs until SIGTERM/SIGINT, then shuts down gracefully (in-flight requests finish, the database closes). */
export async function startCommand({ config, warnings }: ParsedConfig): Promise<number> {
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
