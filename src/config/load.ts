import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { parseConfig, type ConfigEnv, type ParsedConfig } from "./config.js";
import { ConfigError } from "./reader.js";

/** Reads and validates homeserver.yaml; relative paths in it are resolved against its directory. */
export function loadConfigFile(path: string, env: ConfigEnv = process.env): ParsedConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(e as Error).message}`);
  }
  return parseConfig(doc, dirname(resolve(path)), env);
}
