/** Outbound IP range filtering: Synapse's default blacklist, IPv6 forms of IPv4 addresses, and the whitelist. */
import { describe, expect, it } from "vitest";
import { DEFAULT_IP_RANGE_BLACKLIST, IpRangeFilter, parseIpRange } from "../../../src/federation/ip_filter.js";

describe("IpRangeFilter with Synapse's default blacklist", () => {
  const filter = new IpRangeFilter(DEFAULT_IP_RANGE_BLACKLIST);

  it("refuses loopback, private, link-local, CGNAT, documentation and multicast addresses", () => {
    for (const ip of ["127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1", "169.254.169.254", "192.0.2.1", "224.0.0.1", "::1", "fe80::1", "fe80::1%eth0", "fd00::1", "fc00::1", "2001:db8::1", "ff02::1", "fec0::1"]) {
      expect(filter.isAllowed(ip), ip).toBe(false);
    }
  });

  it("always refuses the unspecified addresses", () => {
    expect(filter.isAllowed("0.0.0.0")).toBe(false);
    expect(filter.isAllowed("::")).toBe(false);
    expect(new IpRangeFilter([]).isAllowed("0.0.0.0")).toBe(false);
  });

  it("refuses IPv6 addresses that embed a blocked IPv4 address (mapped, compatible, 6to4)", () => {
    for (const ip of ["::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:10.0.0.1", "::7f00:1", "2002:7f00:1::1", "2002:c0a8:101::"]) {
      expect(filter.isAllowed(ip), ip).toBe(false);
    }
  });

  it("allows public addresses", () => {
    for (const ip of ["8.8.8.8", "1.1.1.1", "172.32.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"]) {
      expect(filter.isAllowed(ip), ip).toBe(true);
    }
  });

  it("refuses anything that is not an IP address", () => {
    expect(filter.isAllowed("localhost")).toBe(false);
    expect(filter.isAllowed("")).toBe(false);
  });
});

describe("IpRangeFilter whitelist", () => {
  it("lets whitelisted ranges through the blacklist, and only those", () => {
    const filter = new IpRangeFilter(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.0/8", "10.1.0.0/16"]);
    expect(filter.isAllowed("127.0.0.1")).toBe(true);
    expect(filter.isAllowed("::ffff:127.0.0.1")).toBe(true);
    expect(filter.isAllowed("10.1.2.3")).toBe(true);
    expect(filter.isAllowed("10.2.0.1")).toBe(false);
    expect(filter.isAllowed("::1")).toBe(false);
  });
});

describe("parseIpRange", () => {
  it("reads addresses and CIDR ranges of both families", () => {
    expect(parseIpRange("10.0.0.0/8")).toEqual({ address: "10.0.0.0", prefix: 8, family: "ipv4" });
    expect(parseIpRange("1.2.3.4")).toEqual({ address: "1.2.3.4", prefix: 32, family: "ipv4" });
    expect(parseIpRange("fe80::/10")).toEqual({ address: "fe80::", prefix: 10, family: "ipv6" });
  });

  it("rejects anything else", () => {
    for (const bad of ["10.0.0.0/33", "::/129", "10.0.0/8", "example.org", "10.0.0.0/8/8", "10.0.0.0/", "10.0.0.0/-1", "1.2.3.4/a"]) {
      expect(parseIpRange(bad), bad).toBeNull();
    }
  });
});
