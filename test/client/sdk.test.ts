/**
 * The "done when", through a real client library (matrix-js-sdk): register with the dummy stage, log in,
 * whoami, devices, profile, account data; then restart the server on the same database and find everything kept.
 */
import * as sdk from "matrix-js-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uniqueName } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer();
});
afterAll(async () => {
  await ts?.close();
});

/** The SDK logs every request at debug level; keep the test output to warnings and errors. */
const quietLogger: NonNullable<sdk.ICreateClientOpts["logger"]> = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: (...msg: unknown[]) => console.warn(...msg),
  error: (...msg: unknown[]) => console.error(...msg),
  getChild: () => quietLogger,
};

function createClient(opts: sdk.ICreateClientOpts): sdk.MatrixClient {
  return sdk.createClient({ ...opts, logger: quietLogger });
}

/** The 401 of a first /register request carries the UIA session in the error's data. */
async function uiaChallenge(request: Promise<unknown>): Promise<{ session: string; flows: { stages: string[] }[] }> {
  try {
    await request;
  } catch (e) {
    expect(e).toBeInstanceOf(sdk.MatrixError);
    const err = e as sdk.MatrixError;
    expect(err.httpStatus).toBe(401);
    return err.data as unknown as { session: string; flows: { stages: string[] }[] };
  }
  throw new Error("expected a 401 User-Interactive Authentication challenge");
}

describe("matrix-js-sdk", () => {
  it("registers, logs in, manages devices, profile and account data, and keeps it all across a restart", async () => {
    const username = uniqueName("sdk");
    const password = "sdk password 123";
    const userId = `@${username}:test.local`;
    const direct = { "@friend:test.local": ["!dm:test.local"] };

    // Register: the first call without auth gives the session, the second completes the dummy stage.
    const anon = createClient({ baseUrl: ts.baseUrl });
    const challenge = await uiaChallenge(anon.registerRequest({ username, password, initial_device_display_name: "SDK phone" }));
    expect(challenge.flows).toEqual([{ stages: ["m.login.dummy"] }]);
    const reg = await anon.registerRequest({ username, password, initial_device_display_name: "SDK phone", auth: { type: "m.login.dummy", session: challenge.session } });
    expect(reg.user_id).toBe(userId);
    expect(reg.access_token).toEqual(expect.any(String));
    const phoneDevice = reg.device_id!;

    // Log in with the password: a second device.
    const flows = await anon.loginFlows();
    expect(flows.flows.map((f) => f.type)).toContain("m.login.password");
    const loginRes = await anon.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: username }, password, initial_device_display_name: "SDK laptop" });
    expect(loginRes.user_id).toBe(userId);
    const client = createClient({ baseUrl: ts.baseUrl, accessToken: loginRes.access_token, userId, deviceId: loginRes.device_id });

    expect(await client.whoami()).toEqual({ user_id: userId, device_id: loginRes.device_id, is_guest: false });

    // Devices.
    const { devices } = await client.getDevices();
    expect(devices.map((d) => d.device_id).sort()).toEqual([phoneDevice, loginRes.device_id].sort());
    expect(devices.find((d) => d.device_id === phoneDevice)?.display_name).toBe("SDK phone");
    await client.setDeviceDetails(phoneDevice, { display_name: "Renamed phone" });
    expect((await client.getDevice(phoneDevice)).display_name).toBe("Renamed phone");

    // Profile.
    expect((await client.getProfileInfo(userId)).displayname).toBe(username);
    await client.setDisplayName("SDK User");
    await client.setAvatarUrl("mxc://test.local/avatar");
    expect(await client.getProfileInfo(userId)).toEqual({ displayname: "SDK User", avatar_url: "mxc://test.local/avatar" });
    expect(await client.getProfileInfo(userId, "displayname")).toEqual({ displayname: "SDK User" });

    // Account data.
    expect(await client.getAccountDataFromServer(sdk.EventType.Direct)).toBeNull();
    await client.setAccountData(sdk.EventType.Direct, direct);
    expect(await client.getAccountDataFromServer(sdk.EventType.Direct)).toEqual(direct);

    // Restart on the same database.
    ts = await ts.restart();
    const after = createClient({ baseUrl: ts.baseUrl });

    // The session from before the restart still works.
    const oldSession = createClient({ baseUrl: ts.baseUrl, accessToken: loginRes.access_token, userId, deviceId: loginRes.device_id });
    expect((await oldSession.whoami()).device_id).toBe(loginRes.device_id);

    // Log in again: everything is kept.
    const again = await after.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password });
    expect(again.user_id).toBe(userId);
    const client2 = createClient({ baseUrl: ts.baseUrl, accessToken: again.access_token, userId, deviceId: again.device_id });
    expect(await client2.getProfileInfo(userId)).toEqual({ displayname: "SDK User", avatar_url: "mxc://test.local/avatar" });
    expect(await client2.getAccountDataFromServer(sdk.EventType.Direct)).toEqual(direct);
    const devicesAfter = (await client2.getDevices()).devices;
    expect(devicesAfter.map((d) => d.device_id).sort()).toEqual([phoneDevice, loginRes.device_id, again.device_id].sort());
    expect(devicesAfter.find((d) => d.device_id === phoneDevice)?.display_name).toBe("Renamed phone");
    expect(devicesAfter.find((d) => d.device_id === loginRes.device_id)?.display_name).toBe("SDK laptop");

    // A wrong password is still refused, as a Matrix error the SDK understands.
    const wrong = await after.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password: "nope" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(wrong).toBeInstanceOf(sdk.MatrixError);
    expect((wrong as sdk.MatrixError).errcode).toBe("M_FORBIDDEN");
    expect((wrong as sdk.MatrixError).httpStatus).toBe(403);
  });
});
