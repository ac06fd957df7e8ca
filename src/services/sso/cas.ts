/**
 * CAS (Central Authentication Service, protocol v2/v3) as an identity provider, as Synapse's `cas_config`: the user
 * is sent to `{server_url}/login?service=…`, comes back to our ticket endpoint with a `ticket`, and we validate it
 * at `{server_url}/proxyValidate`, whose XML answer names the user and their attributes.
 */
import type { CasConfig } from "../../config/config.js";
import { MatrixError } from "../../errors.js";
import type { OutboundHttp } from "../../outbound/http_client.js";

/** The provider id used in `/login/sso/redirect/{idpId}` and in the external-id mapping. */
export const CAS_IDP_ID = "cas";

const VALIDATE_TIMEOUT_MS = 10_000;
const MAX_RESPONSE_BYTES = 1 << 20;

export interface CasUser {
  user: string;
  /** Attribute name (without namespace prefix) → its values, in document order. */
  attributes: Record<string, string[]>;
}

/** A CAS answer that does not authenticate anyone (or cannot be read): the user sees it on an error page. */
export class CasError extends MatrixError {
  constructor(message: string) {
    super(401, "M_UNAUTHORIZED", message);
  }
}

export class CasProvider {
  constructor(
    readonly config: CasConfig,
    private readonly http: OutboundHttp,
  ) {}

  /** Where to send the user's browser to log in, coming back to `serviceUrl`. */
  loginUrl(serviceUrl: string): string {
    return `${this.config.serverUrl}/login?service=${encodeURIComponent(serviceUrl)}`;
  }

  /** Validates a ticket issued for `serviceUrl`; throws CasError when it does not name a user who may log in. */
  async validate(ticket: string, serviceUrl: string): Promise<CasUser> {
    const url = `${this.config.serverUrl}/proxyValidate?ticket=${encodeURIComponent(ticket)}&service=${encodeURIComponent(serviceUrl)}`;
    let body: string;
    try {
      const res = await this.http.request(url, { method: "GET", timeoutMs: VALIDATE_TIMEOUT_MS, maxResponseBytes: MAX_RESPONSE_BYTES });
      // Some CAS servers answer a failed validation with an error status and an XML body: the body decides.
      body = res.body.toString("utf8");
    } catch {
      throw new MatrixError(502, "M_UNKNOWN", "Could not reach the CAS server");
    }
    const parsed = await parseCasResponse(body);
    for (const [name, required] of Object.entries(this.config.requiredAttributes)) {
      const values = parsed.attributes[name];
      if (!values || (required !== null && !values.includes(required))) throw new CasError("You are not authorised to log in here.");
    }
    return parsed;
  }

  /** The display name a new user gets, from the configured attribute. */
  displayname(user: CasUser): string | undefined {
    const attr = this.config.displaynameAttribute;
    return attr === undefined ? undefined : user.attributes[attr]?.[0];
  }
}

/** Reads `<cas:serviceResponse><cas:authenticationSuccess><cas:user>…` (namespace prefixes ignored). */
export async function parseCasResponse(xml: string): Promise<CasUser> {
  const { Parser } = await import("htmlparser2");
  const path: string[] = [];
  let text = "";
  let user: string | undefined;
  let failure: string | undefined;
  const attributes: Record<string, string[]> = {};
  // Element names without their namespace prefix; the structure is matched case-insensitively, attribute names kept.
  const local = (name: string) => name.slice(name.indexOf(":") + 1);
  const parser = new Parser(
    {
      onopentag(name) {
        path.push(local(name));
        text = "";
      },
      ontext(t) {
        text += t;
      },
      onclosetag() {
        const [root, outcome, field] = path.slice(0, 3).map((p) => p.toLowerCase());
        const attr = path[3];
        if (root === "serviceresponse" && outcome === "authenticationsuccess") {
          if (path.length === 3 && field === "user") user = text.trim();
          if (path.length === 4 && field === "attributes" && attr !== undefined) (attributes[attr] ??= []).push(text.trim());
        }
        if (root === "serviceresponse" && outcome === "authenticationfailure" && path.length === 2) failure = text.trim();
        path.pop();
        text = "";
      },
    },
    { xmlMode: true },
  );
  parser.write(xml);
  parser.end();
  if (failure !== undefined) throw new CasError(`CAS refused the ticket: ${failure || "no reason given"}`);
  if (!user) throw new CasError("The CAS server's answer names no user");
  return { user, attributes };
}
