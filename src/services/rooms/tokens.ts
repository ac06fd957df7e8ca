/**
 * Pagination tokens. A topological token `t<depth>-<stream>` names the position just after the event with that
 * (depth, stream ordering): /messages going backwards returns events at or before it, forwards strictly after.
 * Sync tokens (services/sync) are accepted too: they name a stream position.
 */
import { MatrixError } from "../../errors.js";

export interface TopoPosition {
  depth: number;
  stream: number;
}

export const START: TopoPosition = { depth: Number.MIN_SAFE_INTEGER, stream: Number.MIN_SAFE_INTEGER };
export const END: TopoPosition = { depth: Number.MAX_SAFE_INTEGER, stream: Number.MAX_SAFE_INTEGER };

export function formatTopo(p: TopoPosition): string {
  return `t${p.depth}-${p.stream}`;
}

/** The position just before an event: what a backwards paginator continues from after returning it. */
export function before(p: TopoPosition): TopoPosition {
  return { depth: p.depth, stream: p.stream - 1 };
}

export type PaginationToken = { kind: "topo"; pos: TopoPosition } | { kind: "stream"; stream: number };

export function parsePaginationToken(token: string): PaginationToken {
  const t = /^t(-?\d+)-(-?\d+)$/.exec(token);
  if (t) return { kind: "topo", pos: { depth: Number(t[1]), stream: Number(t[2]) } };
  const s = /^s(-?\d+)(?:_|$)/.exec(token);
  if (s) return { kind: "stream", stream: Number(s[1]) };
  throw new MatrixError(400, "M_INVALID_PARAM", `Invalid pagination token: ${token}`);
}
