/**
 * Which IP addresses outbound federation may connect to. Any server on the internet can make us connect to a name
 * it controls (a remote server's name, a notary query, a `.well-known` redirect), so without this filter they could
 * point us at services on our own network. Synapse's keys and defaults: `ip_range_blacklist` (default below, plus
 * 0.0.0.0 and :: always) minus `ip_range_whitelist`; the older `federation_ip_range_blacklist`, when set, replaces
 * both (Synapse then ignores the whitelist).
 */
import { BlockList, isIP } from "node:net";

/** Synapse's DEFAULT_IP_RANGE_BLOCKLIST: loopback, private, CGNAT, link-local, documentation, multicast ranges. */
export const DEFAULT_IP_RANGE_BLACKLIST: readonly string[] = [
  "127.0.0.0/8",
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "100.64.0.0/10",
  "192.0.0.0/24",
  "169.254.0.0/16",
  "192.88.99.0/24",
  "198.18.0.0/15",
  "192.0.2.0/24",
  "198.51.100.0/24",
  "203.0.113.0/24",
  "224.0.0.0/4",
  "::1/128",
  "fe80::/10",
  "fc00::/7",
  "2001:db8::/32",
  "ff00::/8",
  "fec0::/10",
];

/** "Unspecified" addresses connect to ourselves on most systems: always blocked, as in Synapse. */
const ALWAYS_BLOCKED = ["0.0.0.0", "::"];

export interface IpRange {
  address: string;
  prefix: number;
  family: "ipv4" | "ipv6";
}

/** Parses `a.b.c.d[/n]` or `x:y::z[/n]`; null when it is neither. */
export function parseIpRange(text: string): IpRange | null {
  const [address = "", prefixText, ...rest] = text.trim().split("/");
  if (rest.length > 0) return null;
  const v = isIP(address);
  if (v === 0) return null;
  const max = v === 4 ? 32 : 128;
  let prefix = max;
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText)) return null;
    prefix = Number(prefixText);
    if (prefix > max) return null;
  }
  return { address, prefix, family: v === 4 ? "ipv4" : "ipv6" };
}

function ipv4Hex(address: string): [string, string] {
  const b = address.split(".").map(Number);
  const hex = (x: number, y: number) => ((x << 8) | y).toString(16);
  return [hex(b[0]!, b[1]!), hex(b[2]!, b[3]!)];
}

function addRange(list: BlockList, range: IpRange): void {
  list.addSubnet(range.address, range.prefix, range.family);
  if (range.family === "ipv4") {
    // As Synapse's generate_ip_set: an IPv4 range also covers the IPv6 addresses that embed it — IPv4-mapped
    // (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and 6to4 (2002:aabb:ccdd::/48).
    const [hi, lo] = ipv4Hex(range.address);
    list.addSubnet(`::ffff:${hi}:${lo}`, 96 + range.prefix, "ipv6");
    list.addSubnet(`::${hi}:${lo}`, 96 + range.prefix, "ipv6");
    list.addSubnet(`2002:${hi}:${lo}::`, 16 + range.prefix, "ipv6");
  }
}

function toList(ranges: readonly string[]): BlockList {
  const list = new BlockList();
  for (const text of ranges) {
    const range = parseIpRange(text);
    if (!range) throw new Error(`"${text}" is not an IP address or CIDR range`);
    addRange(list, range);
  }
  return list;
}

export class IpRangeFilter {
  private readonly blocked: BlockList;
  private readonly allowed: BlockList;

  /** Throws when a range does not parse (config.ts checks them first, with the config key in the message). */
  constructor(blacklist: readonly string[], whitelist: readonly string[] = []) {
    this.blocked = toList([...blacklist, ...ALWAYS_BLOCKED]);
    this.allowed = toList(whitelist);
  }

  /** Whether we may connect to this address: not blacklisted, or whitelisted. Non-addresses are refused. */
  isAllowed(address: string): boolean {
    const ip = address.replace(/%.*$/, ""); // an IPv6 zone id does not change the address's range
    const v = isIP(ip);
    if (v === 0) return false;
    const family = v === 4 ? "ipv4" : "ipv6";
    return !this.blocked.check(ip, family) || this.allowed.check(ip, family);
  }
}
