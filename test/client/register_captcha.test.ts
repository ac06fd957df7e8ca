/**
 * Registration with a CAPTCHA (spec "Google ReCaptcha", Synapse's `enable_registration_captcha` and `recaptcha_*`
 * keys): the flow starts with m.login.recaptcha, the params carry the site key, and the client's response is
 * checked with the siteverify API — here a fake one on 127.0.0.1.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, uniqueName } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const REGISTER = "/_matrix/client/v3/register";

let verify: Server;
let verifyUrl: string;
/** The forms the fake siteverify API received. */
const received: URLSearchParams[] = [];
let answer: () => { status: number; body: string } = () => ({ status: 200, body: JSON.stringify({ success: true }) });

beforeAll(async () => {
  verify = createServer((req, res) => {
    let data = "";
    req.on("data", (d: Buffer) => (data += d.toString()));
    req.on("end", () => {
      const form = new URLSearchParams(data);
      received.push(form);
      const ok = form.get("secret") === "the-private-key" && form.get("response") === "good-response";
      const a = ok ? answer() : { status: 200, body: JSON.stringify({ success: false, "error-codes": ["invalid-input-response"] }) };
      res.writeHead(a.status, { "content-type": "application/json" }).end(a.body);
    });
  });
  await new Promise<void>((r) => verify.listen(0, "127.0.0.1", r));
  verifyUrl = `http://127.0.0.1:${(verify.address() as AddressInfo).port}/recaptcha/api/siteverify`;
});
afterAll(async () => {
  await new Promise((r) => verify.close(r));
});

const captchaConfig = () => ({
  enable_registration_captcha: true,
  recaptcha_public_key: "the-site-key",
  recaptcha_private_key: "the-private-key",
  recaptcha_siteverify_api: verifyUrl,
});

describe("enable_registration_captcha", () => {
  let ts: TestServer;
  let c: Client;
  beforeAll(async () => {
    ts = await startTestServer({ config: captchaConfig() });
    c = new Client(ts.baseUrl);
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("the flow starts with m.login.recaptcha, with the site key in params", async () => {
    const res = await c.post(REGISTER, { username: uniqueName(), password: "pw" });
    expect(res.status).toBe(401);
    expect(res.body.flows).toEqual([{ stages: ["m.login.recaptcha", "m.login.dummy"] }]);
    expect(res.body.params).toEqual({ "m.login.recaptcha": { public_key: "the-site-key" } });
  });

  it("a good response completes the stage (the secret and response are sent as a form); then dummy registers", async () => {
    const first = await c.post(REGISTER, { username: uniqueName("cap"), password: "pw" });
    const session = first.body.session as string;
    const before = received.length;
    const captcha = await c.post(REGISTER, { auth: { type: "m.login.recaptcha", response: "good-response", session } });
    expect(captcha.status).toBe(401);
    expect(captcha.body.completed).toEqual(["m.login.recaptcha"]);
    expect(received.length).toBe(before + 1);
    expect(received.at(-1)!.get("secret")).toBe("the-private-key");
    const done = await c.post(REGISTER, { auth: { type: "m.login.dummy", session } });
    expect(done.status, done.text).toBe(200);
    expect(typeof done.body.access_token).toBe("string");
  });

  it("the dummy stage alone does not register", async () => {
    const first = await c.post(REGISTER, { username: uniqueName(), password: "pw" });
    const res = await c.post(REGISTER, { auth: { type: "m.login.dummy", session: first.body.session } });
    expect(res.status).toBe(401);
    expect(res.body.completed).toEqual(["m.login.dummy"]);
  });

  it("a response the API refuses: 401 M_UNAUTHORIZED within UIA, stage not completed", async () => {
    const res = await c.post(REGISTER, { username: uniqueName(), password: "pw", auth: { type: "m.login.recaptcha", response: "bad-response" } });
    expect(res.status).toBe(401);
    expect(res.body.errcode).toBe("M_UNAUTHORIZED");
    expect(res.body.completed).toEqual([]);
  });

  it("a missing response: 400 M_CAPTCHA_NEEDED; an API that fails: 401 M_UNAUTHORIZED, never a 5xx", async () => {
    const missing = await c.post(REGISTER, { username: uniqueName(), password: "pw", auth: { type: "m.login.recaptcha" } });
    expect(missing.status).toBe(400);
    expect(missing.body.errcode).toBe("M_CAPTCHA_NEEDED");
    answer = () => ({ status: 500, body: "oops" });
    try {
      const failing = await c.post(REGISTER, { username: uniqueName(), password: "pw", auth: { type: "m.login.recaptcha", response: "good-response" } });
      expect(failing.status).toBe(401);
      expect(failing.body.errcode).toBe("M_UNAUTHORIZED");
    } finally {
      answer = () => ({ status: 200, body: JSON.stringify({ success: true }) });
    }
  });
});

describe("recaptcha keys set, captcha not required (as Synapse: the stage can still be completed)", () => {
  let ts: TestServer;
  let c: Client;
  beforeAll(async () => {
    const { enable_registration_captcha: _, ...keys } = captchaConfig();
    ts = await startTestServer({ config: keys });
    c = new Client(ts.baseUrl);
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("flows are the usual ones; a recaptcha stage is validated and listed as completed", async () => {
    const res = await c.post(REGISTER, { username: uniqueName(), password: "pw", auth: { type: "m.login.recaptcha", response: "good-response" } });
    expect(res.status).toBe(401);
    expect(res.body.flows).toEqual([{ stages: ["m.login.dummy"] }]);
    expect(res.body.params).toEqual({});
    expect(res.body.completed).toEqual(["m.login.recaptcha"]);
  });
});

describe("config", () => {
  it("enable_registration_captcha without recaptcha_private_key stops start-up with a message", async () => {
    await expect(startTestServer({ config: { enable_registration_captcha: true } })).rejects.toThrow(/recaptcha_private_key/);
  });
});
