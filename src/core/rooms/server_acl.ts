/**
 * Server ACLs (`m.room.server_acl`, spec "Server Access Control Lists (ACLs) for rooms"): whether a server may take
 * part in a room, decided from the ACL event's content in the order the spec gives:
 *   1. no m.room.server_acl event in the room state → allow;
 *   2. an IP literal server name while `allow_ip_literals` is false → deny;
 *   3. a match in `deny` → deny;
 *   4. a match in `allow` → allow;
 *   5. otherwise deny.
 * Entries are case-insensitive glob expressions (`*`, `?`) matched against the server name "excluding any port
 * information". Malformed fields are read as their defaults (allow_ip_literals true, lists empty), and non-string
 * entries never match, as Synapse does.
 */
import { isJsonObject } from "../json/types.js";
import { parseServerName } from "../ids/ids.js";

/** `undefined` (or null) means the room has no m.room.server_acl event. */
export function serverAllowedByAcl(aclContent: unknown, serverName: string): boolean {
  if (aclContent === undefined || aclContent === null) return true;
  const content = isJsonObject(aclContent) ? aclContent : {};
  const parsed = parseServerName(serverName);
  const host = parsed?.host ?? serverName.replace(/:\d+$/, "");
  const allowIpLiterals = typeof content.allow_ip_literals === "boolean" ? content.allow_ip_literals : true;
  if (!allowIpLiterals && (parsed?.kind === "ipv4" || parsed?.kind === "ipv6" || host.startsWith("["))) return false;
  if (anyMatch(content.deny, host)) return false;
  return anyMatch(content.allow, host);
}

function anyMatch(list: unknown, host: string): boolean {
  if (!Array.isArray(list)) return false;
  return list.some((entry) => typeof entry === "string" && globRegex(entry).test(host));
}

const compiled = new Map<string, RegExp>();

/** Glob-style matching (spec appendix): `*` is zero or more characters, `?` exactly one; everything else literal. */
export function globRegex(glob: string): RegExp {
  let re = compiled.get(glob);
  if (!re) {
    const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
    re = new RegExp(`^${body}$`, "is");
    // ACL lists are small and shared by every room that copies them; the cap only guards against abuse.
    if (compiled.size >= 10_000) compiled.clear();
    compiled.set(glob, re);
  }
  return re;
}
