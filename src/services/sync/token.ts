/**
 * Sync tokens: one position per stream,
 * `s<events>_<account_data>_<receipts>_<typing>_<presence>_<to_device>_<device_lists>_<peeks>`.
 * Opaque to clients; new streams append a field (older tokens then read 0 for it).
 */
import { MatrixError } from "../../errors.js";

export interface SyncToken {
  events: number;
  accountData: number;
  receipts: number;
  typing: number;
  presence: number;
  toDevice: number;
  deviceLists: number;
  /** Peeks (MSC2753): those newer than the token come in full. */
  peeks: number;
}

const FIELDS: (keyof SyncToken)[] = ["events", "accountData", "receipts", "typing", "presence", "toDevice", "deviceLists", "peeks"];

export const ZERO_TOKEN: SyncToken = { events: 0, accountData: 0, receipts: 0, typing: 0, presence: 0, toDevice: 0, deviceLists: 0, peeks: 0 };

export function formatSyncToken(t: SyncToken): string {
  return `s${FIELDS.map((f) => t[f]).join("_")}`;
}

export function parseSyncToken(s: string): SyncToken {
  const m = /^s(-?\d+(?:_\d+)*)$/.exec(s);
  if (!m) throw new MatrixError(400, "M_INVALID_PARAM", `Invalid sync token: ${s}`);
  const parts = m[1]!.split("_").map(Number);
  const out = { ...ZERO_TOKEN };
  FIELDS.forEach((f, i) => {
    if (parts[i] !== undefined && Number.isSafeInteger(parts[i])) out[f] = parts[i]!;
  });
  return out;
}

/** Whether anything moved between two tokens. */
export function tokenAdvanced(since: SyncToken, now: SyncToken): boolean {
  return FIELDS.some((f) => now[f] > since[f]);
}
