/**
 * Application service registrations (spec "Application Service API", "Registration"): the YAML files Synapse's
 * `app_service_config_files` lists. Each is read and checked at start-up; a mistake stops the server with a message
 * naming the file and the key, as Synapse does.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { isValidUserLocalpart } from "../core/ids/ids.js";
import { ConfigError } from "./reader.js";

/** One entry of a namespace list: `{exclusive, regex}`; the regex is compiled to match at the start, as Python's `re.match`. */
export interface Namespace {
  exclusive: boolean;
  regex: string;
  matcher: RegExp;
}

export interface AppServiceRegistration {
  /** The file it came from (for messages). */
  file: string;
  id: string;
  /** Where the homeserver reaches the application service; null: it receives nothing (a "bot-only" registration). */
  url: string | null;
  asToken: string;
  hsToken: string;
  senderLocalpart: string;
  namespaces: { users: Namespace[]; aliases: Namespace[]; rooms: Namespace[] };
  /** Its users are rate-limited (Synapse's default: true; the sender is never). */
  rateLimited: boolean;
  protocols: string[];
  /** MSC2409: typing, receipts and presence in transactions (`receive_ephemeral` or `de.sorunome.msc2409.push_ephemeral`). */
  receiveEphemeral: boolean;
  /** MSC2409's to-device messages (`de.sorunome.msc2409.to_device` / MSC4203 `org.matrix.msc4203.to_device`... read as a flag). */
  receiveToDevice: boolean;
  /** MSC3202 (`org.matrix.msc3202`): device lists and key counts; accepted, not acted on beyond the flag. */
  msc3202: boolean;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Python's `re.match` anchors at the start only: a sticky JS regex does the same. */
export function compileNamespaceRegex(regex: string): RegExp {
  return new RegExp(regex, "y");
}

export function matchesAtStart(re: RegExp, s: string): boolean {
  re.lastIndex = 0;
  return re.test(s);
}

function readNamespaces(file: string, doc: Obj): AppServiceRegistration["namespaces"] {
  const fail = (msg: string): never => {
    throw new ConfigError(`application service registration ${file}: ${msg}`);
  };
  const raw = doc.namespaces;
  if (raw === undefined || raw === null) return { users: [], aliases: [], rooms: [] };
  if (!isObj(raw)) fail('"namespaces" must be a mapping');
  const ns = raw as Obj;
  const read = (key: "users" | "aliases" | "rooms"): Namespace[] => {
    const list = ns[key];
    if (list === undefined || list === null) return [];
    if (!Array.isArray(list)) fail(`"namespaces.${key}" must be a list`);
    return (list as unknown[]).map((entry, i) => {
      const where = `namespaces.${key}[${i}]`;
      if (!isObj(entry)) fail(`"${where}" must be a mapping with "exclusive" and "regex"`);
      const e = entry as Obj;
      if (typeof e.regex !== "string") fail(`"${where}.regex" must be a string`);
      if (typeof e.exclusive !== "boolean") fail(`"${where}.exclusive" must be true or false`);
      let matcher: RegExp;
      try {
        matcher = compileNamespaceRegex(e.regex as string);
      } catch (err) {
        return fail(`"${where}.regex" is not a valid regular expression: ${(err as Error).message}`);
      }
      return { exclusive: e.exclusive as boolean, regex: e.regex as string, matcher };
    });
  };
  return { users: read("users"), aliases: read("aliases"), rooms: read("rooms") };
}

/** Validates one registration document (already parsed from YAML). */
export function parseAppServiceRegistration(doc: unknown, file: string): AppServiceRegistration {
  const fail = (msg: string): never => {
    throw new ConfigError(`application service registration ${file}: ${msg}`);
  };
  if (!isObj(doc)) fail("must be a mapping of keys to values");
  const d = doc as Obj;
  const requireString = (key: string): string => {
    const v = d[key];
    if (typeof v !== "string" || v === "") fail(`"${key}" is required (a non-empty string)`);
    return v as string;
  };
  const id = requireString("id");
  const asToken = requireString("as_token");
  const hsToken = requireString("hs_token");
  const senderLocalpart = requireString("sender_localpart");
  if (!isValidUserLocalpart(senderLocalpart)) fail(`"sender_localpart" ${JSON.stringify(senderLocalpart)} is not a valid user localpart`);
  let url: string | null = null;
  if (d.url !== undefined && d.url !== null) {
    if (typeof d.url !== "string") fail('"url" must be a string or null');
    try {
      const u = new URL(d.url as string);
      if (u.protocol !== "http:" && u.protocol !== "https:") fail('"url" must be an http or https URL');
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      fail(`"url" ${JSON.stringify(d.url)} is not a valid URL`);
    }
    url = (d.url as string).replace(/\/+$/, "");
  }
  const bool = (key: string, def: boolean): boolean => {
    const v = d[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== "boolean") fail(`"${key}" must be true or false`);
    return v as boolean;
  };
  let protocols: string[] = [];
  if (d.protocols !== undefined && d.protocols !== null) {
    if (!Array.isArray(d.protocols) || d.protocols.some((p) => typeof p !== "string")) fail('"protocols" must be a list of strings');
    protocols = d.protocols as string[];
  }
  return {
    file,
    id,
    url,
    asToken,
    hsToken,
    senderLocalpart,
    namespaces: readNamespaces(file, d),
    rateLimited: bool("rate_limited", true),
    protocols,
    receiveEphemeral: bool("receive_ephemeral", false) || bool("de.sorunome.msc2409.push_ephemeral", false),
    receiveToDevice: bool("de.sorunome.msc2409.to_device", false) || bool("org.matrix.msc2409.to_device", false),
    msc3202: bool("org.matrix.msc3202", false),
  };
}

/** Reads every file of `app_service_config_files`; duplicate ids or as_tokens stop start-up, as in Synapse. */
export function loadAppServiceRegistrations(files: readonly string[]): AppServiceRegistration[] {
  const out: AppServiceRegistration[] = [];
  const ids = new Map<string, string>();
  const tokens = new Map<string, string>();
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      throw new ConfigError(`cannot read application service registration ${file}: ${(e as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      throw new ConfigError(`application service registration ${file} is not valid YAML: ${(e as Error).message}`);
    }
    const reg = parseAppServiceRegistration(doc, file);
    const sameId = ids.get(reg.id);
    if (sameId !== undefined) throw new ConfigError(`application services ${sameId} and ${file} have the same id ${JSON.stringify(reg.id)}`);
    const sameToken = tokens.get(reg.asToken);
    if (sameToken !== undefined) throw new ConfigError(`application services ${sameToken} and ${file} have the same as_token`);
    ids.set(reg.id, file);
    tokens.set(reg.asToken, file);
    out.push(reg);
  }
  return out;
}
