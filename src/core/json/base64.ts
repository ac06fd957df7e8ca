/**
 * Unpadded Base64 (spec appendix "Unpadded Base64"): standard alphabet without `=` padding,
 * and the URL-safe alphabet used for v4+ event ids. Decoding accepts padded and unpadded input.
 */
export function encodeBase64(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64").replace(/=+$/, "");
}

export function encodeBase64Url(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64url");
}

const STD = /^[A-Za-z0-9+/]*={0,2}$/;
const URLSAFE = /^[A-Za-z0-9_-]*={0,2}$/;

/** Decodes standard or URL-safe base64, padded or not; returns null when the input is not base64. */
export function decodeBase64(text: string): Buffer | null {
  const std = STD.test(text);
  if (!std && !URLSAFE.test(text)) return null;
  const body = text.replace(/=+$/, "");
  // A lone trailing sextet encodes no whole byte; when padding is present it must complete a 4-character group
  // (Buffer.from would silently accept "Zg=" or "Zg===").
  if (body.length % 4 === 1) return null;
  if (body.length !== text.length && text.length % 4 !== 0) return null;
  return Buffer.from(body, std ? "base64" : "base64url");
}
