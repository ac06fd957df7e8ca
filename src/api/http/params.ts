/** Query parameter parsing with Matrix errors: a malformed value is 400 M_INVALID_PARAM, a missing one M_MISSING_PARAM. */
import { MatrixError } from "../../errors.js";

type Query = Record<string, string | string[] | undefined>;

export function stringParam(q: Query, name: string): string | undefined {
  const v = q[name];
  if (Array.isArray(v)) return v[v.length - 1];
  return v;
}

export function requireStringParam(q: Query, name: string): string {
  const v = stringParam(q, name);
  if (v === undefined) throw new MatrixError(400, "M_MISSING_PARAM", `Missing ${name} query parameter`);
  return v;
}

export function intParam(q: Query, name: string, def: number, min?: number, max?: number): number;
export function intParam(q: Query, name: string, def: undefined, min?: number, max?: number): number | undefined;
export function intParam(q: Query, name: string, def: number | undefined, min = -Infinity, max = Infinity): number | undefined {
  const v = stringParam(q, name);
  if (v === undefined) return def;
  if (!/^-?\d+$/.test(v)) throw new MatrixError(400, "M_INVALID_PARAM", `Query parameter ${name} must be an integer`);
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new MatrixError(400, "M_INVALID_PARAM", `Query parameter ${name} is out of range`);
  return n;
}

export function boolParam(q: Query, name: string, def: boolean): boolean {
  const v = stringParam(q, name);
  if (v === undefined) return def;
  if (v === "true") return true;
  if (v === "false") return false;
  throw new MatrixError(400, "M_INVALID_PARAM", `Query parameter ${name} must be true or false`);
}
