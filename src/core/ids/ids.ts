/**
 * Identifier grammar (spec appendix "Identifier Grammar"): server names, user ids, room ids, room aliases,
 * event ids. Parsing is strict where we create identifiers and tolerant (historical user ids) where we
 * only receive them.
 */

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const IPV6 = /^\[([0-9A-Fa-f:.]{2,45})\]$/;
const DNS_NAME = /^[A-Za-z0-9.-]{1,255}$/;

export interface ServerName {
  host: string;
  port?: number;
  kind: "ipv4" | "ipv6" | "dns";
}

/** Parses `hostname [ ":" port ]`; null when it does not match the grammar. */
export function parseServerName(name: string): ServerName | null {
  if (name.length === 0 || name.length > 255) return null;
  let host = name;
  let port: number | undefined;
  const m = /^(.*?)(?::(\d{1,5}))?$/.exec(name);
  if (m && m[2] !== undefined && !(m[1]!.startsWith("[") && !m[1]!.endsWith("]"))) {
    host = m[1]!;
    port = Number(m[2]);
    if (port < 1 || port > 65535) return null;
  }
  if (host.startsWith("[")) {
    if (!IPV6.test(host)) return null;
    return port === undefined ? { host, kind: "ipv6" } : { host, port, kind: "ipv6" };
  }
  const v4 = IPV4.exec(host);
  if (v4) {
    if (v4.slice(1).some((o) => Number(o) > 255)) return null;
    return port === undefined ? { host, kind: "ipv4" } : { host, port, kind: "ipv4" };
  }
  if (!DNS_NAME.test(host)) return null;
  return port === undefined ? { host, kind: "dns" } : { host, port, kind: "dns" };
}

export function isValidServerName(name: string): boolean {
  return parseServerName(name) !== null;
}

/** Splits `&localpart:domain` at the first colon; null when there is no colon or the sigil is wrong. */
function splitId(id: string, sigil: string): { localpart: string; domain: string } | null {
  if (!id.startsWith(sigil)) return null;
  const colon = id.indexOf(":");
  if (colon < 0) return null;
  return { localpart: id.slice(1, colon), domain: id.slice(colon + 1) };
}

const COMPLIANT_LOCALPART = /^[a-z0-9._=\-/+]+$/;

/** Localpart characters a server may assign to a new user (spec v1.8+). */
export function isValidUserLocalpart(localpart: string): boolean {
  return COMPLIANT_LOCALPART.test(localpart);
}

function byteLength(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

/** A user id that is fully compliant with the current grammar. */
export function isValidUserId(id: string): boolean {
  const p = splitId(id, "@");
  return !!p && isValidUserLocalpart(p.localpart) && isValidServerName(p.domain) && byteLength(id) <= 255;
}

/** A user id acceptable in an event: the historical grammar (any code points except `:` and NUL). */
export function isHistoricalUserId(id: string): boolean {
  const p = splitId(id, "@");
  return !!p && !p.localpart.includes("\u0000") && isValidServerName(p.domain) && byteLength(id) <= 255;
}

export function userIdDomain(id: string): string | null {
  return splitId(id, "@")?.domain ?? null;
}

export function userIdLocalpart(id: string): string | null {
  return splitId(id, "@")?.localpart ?? null;
}

/** Domain of any `&localpart:domain` identifier (user, room alias, v1-v11 room id, v1-v2 event id). */
export function idDomain(id: string): string | null {
  const colon = id.indexOf(":");
  return colon < 0 ? null : id.slice(colon + 1);
}

export function isValidRoomAlias(alias: string): boolean {
  const p = splitId(alias, "#");
  return !!p && !p.localpart.includes("\u0000") && isValidServerName(p.domain) && byteLength(alias) <= 255;
}

/** A room id of either form: `!opaque:domain` (v1-v11) or `!<hash>` (v12). */
export function isValidRoomId(id: string): boolean {
  if (!id.startsWith("!") || byteLength(id) > 255 || id.includes("\u0000")) return false;
  const colon = id.indexOf(":");
  if (colon < 0) return /^![A-Za-z0-9_\-+/]{43}$/.test(id);
  return colon > 1 && isValidServerName(id.slice(colon + 1));
}

export function isValidEventId(id: string): boolean {
  return id.startsWith("$") && id.length > 1 && byteLength(id) <= 255 && !id.includes("\u0000");
}

/** Common Namespaced Identifier Grammar. */
export function isNamespacedIdentifier(id: string): boolean {
  return id.length >= 1 && id.length <= 255 && /^[a-z][a-z0-9._-]*$/.test(id);
}
