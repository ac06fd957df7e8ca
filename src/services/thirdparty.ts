/**
 * Third-party networks (spec "Third-party Networks"): the protocols bridges offer and lookups of third-party
 * locations and users. Application services answer all of it; this service asks the registered ones and merges
 * their answers, as Synapse does. Until application services exist (a later issue), there are no sources: no
 * protocols (`{}`), no protocol metadata (404), and every lookup finds nothing (`[]`, which is what Synapse answers
 * with no application service, not the spec's 404).
 *
 * The seam: the application-services issue registers one `ThirdPartySource` per application service that declares
 * `protocols` in its registration, wrapping its `/_matrix/app/v1/thirdparty/*` endpoints.
 */
import { notFound } from "../errors.js";

/** Spec "Protocol" (`definitions/protocol.yaml`): `user_fields`, `location_fields`, `icon`, `field_types`, `instances`. */
export type ProtocolInfo = Record<string, unknown>;

/** A location (`alias`, `protocol`, `fields`) or a user (`userid`, `protocol`, `fields`). */
export type ThirdPartyResult = Record<string, unknown>;

export type ThirdPartyKind = "location" | "user";

/** Query parameters of a lookup, passed on to the application services (minus the access token). */
export type ThirdPartyFields = Record<string, string[]>;

/** One application service that bridges third-party networks. */
export interface ThirdPartySource {
  /** The protocols its registration declares. */
  readonly protocols: readonly string[];
  /** Its metadata for `protocol`; undefined when it does not answer (usefully). */
  protocol(protocol: string): Promise<ProtocolInfo | undefined>;
  /**
   * Its matches for a lookup: by protocol and fields (`protocol` set), or the reverse lookup by `alias` / `userid`
   * in `fields` (`protocol` undefined).
   */
  query(kind: ThirdPartyKind, protocol: string | undefined, fields: ThirdPartyFields): Promise<ThirdPartyResult[]>;
}

export class ThirdPartyService {
  /** `sources` is read on every call, so application services registered later are seen. */
  constructor(private readonly sources: () => readonly ThirdPartySource[] = () => []) {}

  /** Every protocol some source declares and describes, its `instances` merged across sources (other fields: the first answer's). */
  async protocols(only?: string): Promise<Record<string, ProtocolInfo>> {
    const infos = new Map<string, ProtocolInfo[]>();
    for (const source of this.sources()) {
      for (const p of source.protocols) {
        if (only !== undefined && p !== only) continue;
        const info = await source.protocol(p).catch(() => undefined);
        if (!info) continue;
        let list = infos.get(p);
        if (!list) infos.set(p, (list = []));
        list.push(info);
      }
    }
    const out: Record<string, ProtocolInfo> = {};
    for (const [p, [first, ...rest]] of infos) {
      out[p] = { ...first!, instances: [first!, ...rest].flatMap(instancesOf) };
    }
    return out;
  }

  async protocol(protocol: string): Promise<ProtocolInfo> {
    const info = (await this.protocols(protocol))[protocol];
    if (!info) throw notFound("Unknown protocol");
    return info;
  }

  /** Matches from every source interested in the protocol; a source that fails contributes nothing. */
  async query(kind: ThirdPartyKind, protocol: string | undefined, fields: ThirdPartyFields): Promise<ThirdPartyResult[]> {
    const interested = this.sources().filter((s) => protocol === undefined || s.protocols.includes(protocol));
    const results = await Promise.allSettled(interested.map((s) => s.query(kind, protocol, fields)));
    return results.flatMap((r) => (r.status === "fulfilled" ? r.value : []));
  }
}

function instancesOf(info: ProtocolInfo): unknown[] {
  return Array.isArray(info.instances) ? (info.instances as unknown[]) : [];
}
