import { describe, expect, it } from "vitest";
import { decodeBase64, encodeBase64, encodeBase64Url } from "../../../src/core/json/base64.js";

const hex = (b: Buffer | null): string | null => (b ? b.toString("hex") : null);

describe("unpadded base64", () => {
  it("encodes the spec's examples without padding", () => {
    const cases: [string, string][] = [["", ""], ["f", "Zg"], ["fo", "Zm8"], ["foo", "Zm9v"], ["foob", "Zm9vYg"], ["fooba", "Zm9vYmE"], ["foobar", "Zm9vYmFy"]];
    for (const [plain, encoded] of cases) {
      expect(encodeBase64(Buffer.from(plain))).toBe(encoded);
      expect(decodeBase64(encoded)?.toString()).toBe(plain);
    }
  });

  it("encodes only the bytes of a view into a larger buffer", () => {
    const big = Buffer.from("xxfooxx");
    expect(encodeBase64(big.subarray(2, 5))).toBe("Zm9v");
  });

  it("uses - and _ in the URL-safe alphabet", () => {
    const bytes = Buffer.from([0xfb, 0xff, 0xbf]);
    expect(encodeBase64(bytes)).toBe("+/+/");
    expect(encodeBase64Url(bytes)).toBe("-_-_");
    expect(encodeBase64Url(Buffer.from("f"))).toBe("Zg");
  });

  it("decodes padded, unpadded and URL-safe input", () => {
    expect(hex(decodeBase64("Zg=="))).toBe("66");
    expect(hex(decodeBase64("Zg"))).toBe("66");
    expect(hex(decodeBase64("Zm8="))).toBe("666f");
    expect(hex(decodeBase64("Zm8"))).toBe("666f");
    expect(hex(decodeBase64("-_-_"))).toBe("fbffbf");
    expect(hex(decodeBase64("+/+/"))).toBe("fbffbf");
    expect(hex(decodeBase64("-_8"))).toBe("fbff");
    expect(hex(decodeBase64(""))).toBe("");
  });

  it("returns null for input that is not base64", () => {
    for (const bad of ["Z", "Zm9vY", "Zg=", "Zg===", "Z=g=", "=", "Zm8==", "+_8", "Zm9v\n", " Zm9v", "Zm 9v", "Zm9v!", "é"]) {
      expect(decodeBase64(bad), JSON.stringify(bad)).toBeNull();
    }
  });
});
