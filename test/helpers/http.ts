/** Raw HTTP against a test server, for asserting exact statuses, errcodes and shapes. */
export interface Response<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export interface RequestOptions {
  token?: string;
  /** A JSON value, or a string sent as is. */
  body?: unknown;
  headers?: Record<string, string>;
}

export class Client {
  constructor(readonly baseUrl: string) {}

  async request<T = Record<string, unknown>>(method: string, path: string, opts: RequestOptions = {}): Promise<Response<T>> {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
      headers["content-type"] ??= "application/json";
    }
    const res = await fetch(this.baseUrl + path, { method, headers, body });
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: res.headers, body: parsed as T, text };
  }

  get<T = Record<string, unknown>>(path: string, opts?: RequestOptions) {
    return this.request<T>("GET", path, opts);
  }
  post<T = Record<string, unknown>>(path: string, body?: unknown, opts?: RequestOptions) {
    return this.request<T>("POST", path, { ...opts, body: body ?? {} });
  }
  put<T = Record<string, unknown>>(path: string, body?: unknown, opts?: RequestOptions) {
    return this.request<T>("PUT", path, { ...opts, body: body ?? {} });
  }
  delete<T = Record<string, unknown>>(path: string, body?: unknown, opts?: RequestOptions) {
    return this.request<T>("DELETE", path, { ...opts, body });
  }
}

export interface TestUser {
  userId: string;
  accessToken: string;
  deviceId: string;
  password: string;
}

let counter = 0;
/** A unique localpart for this test run. */
export function uniqueName(prefix = "user"): string {
  counter++;
  return `${prefix}${counter}_${Math.random().toString(36).slice(2, 8)}`;
}

/** Registers a user through the dummy UIA stage, as clients do. */
export async function registerUser(client: Client, username = uniqueName(), password = "correct horse battery"): Promise<TestUser> {
  const first = await client.post("/_matrix/client/v3/register", { username, password });
  if (first.status !== 401) throw new Error(`register: expected 401, got ${first.status} ${first.text}`);
  const session = first.body.session as string;
  const res = await client.post("/_matrix/client/v3/register", { username, password, auth: { type: "m.login.dummy", session } });
  if (res.status !== 200) throw new Error(`register: ${res.status} ${res.text}`);
  return { userId: res.body.user_id as string, accessToken: res.body.access_token as string, deviceId: res.body.device_id as string, password };
}

export async function login(client: Client, user: string, password: string, extra: Record<string, unknown> = {}): Promise<Response> {
  return client.post("/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user }, password, ...extra });
}

/** Asserts a Matrix error and returns the body. */
export function expectError(res: Response, status: number, errcode: string): Record<string, unknown> {
  if (res.status !== status || res.body?.errcode !== errcode) {
    throw new Error(`expected ${status} ${errcode}, got ${res.status} ${res.text}`);
  }
  if (typeof res.body.error !== "string") throw new Error(`error response without an 'error' string: ${res.text}`);
  return res.body;
}
