/** Logging: pino (structured JSON lines to stdout). Synapse's `log_config` file is read for its root level only. */
import { readFileSync } from "node:fs";
import { pino, type Logger } from "pino";
import { parse as parseYaml } from "yaml";
import type { Config } from "./config/config.js";

const PY_LEVELS: Record<string, string> = { DEBUG: "debug", INFO: "info", WARNING: "warn", WARN: "warn", ERROR: "error", CRITICAL: "fatal" };

export function logLevelOf(config: Pick<Config, "logLevel" | "logConfig">): { level: string; note?: string } {
  if (!config.logConfig) return { level: config.logLevel };
  try {
    const doc = parseYaml(readFileSync(config.logConfig, "utf8")) as { root?: { level?: unknown } } | null;
    const lvl = doc?.root?.level;
    if (typeof lvl === "string" && PY_LEVELS[lvl.toUpperCase()]) {
      return { level: PY_LEVELS[lvl.toUpperCase()]!, note: `log level ${lvl} taken from log_config ${config.logConfig} (handlers and formatters there are not used)` };
    }
  } catch (e) {
    return { level: config.logLevel, note: `could not read log_config ${config.logConfig}: ${(e as Error).message}; using log_level` };
  }
  return { level: config.logLevel };
}

export function createLogger(level: string): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}
