// The one way the screens talk to StreetLoop: /api/v1 with a bearer token in the
// Authorization header (never in a URL), JSON or multipart bodies, and errors in the
// API's one format ({code, status, message, errors}) raised as ApiError.

export class ApiError extends Error {
  constructor(status, body, response) {
    super((body && body.message) || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.body = body || {};
    this.errors = (body && body.errors) || {};
    this.response = response;
  }

  /** Every message of the answer in words: the main one, then each field's. */
  get details() {
    const out = [];
    const walk = (prefix, value) => {
      if (Array.isArray(value)) value.forEach((v) => (typeof v === "string" ? out.push(prefix ? `${prefix}: ${v}` : v) : walk(prefix, v)));
      else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) walk(k === "json" || k === "form" || k === "query" ? prefix : k, v);
    };
    walk("", this.errors);
    return out;
  }
}

/** The network failed or was cut off (offline): nothing reached the server. */
export class NetworkError extends Error {
  constructor(cause) {
    super("network unreachable");
    this.name = "NetworkError";
    this.cause = cause;
  }
}

export function idempotencyKey() {
  return crypto.randomUUID();
}

export class Api {
  /**
   * getToken(): the bearer token or null; onUnauthorized(error): called on a 401 of a
   * signed-in request (the token expired or was revoked).
   */
  constructor({ base = "/api/v1", getToken = () => null, onUnauthorized = () => {} } = {}) {
    this.base = base;
    this.getToken = getToken;
    this.onUnauthorized = onUnauthorized;
  }

  url(path, query) {
    // "/plans" is /api/v1/plans; a path the API gave back (a Location, a url field) is used as it is.
    const url = new URL(path.startsWith(this.base + "/") ? path : this.base + path, location.origin);
    for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
    return url.pathname + url.search;
  }

  /**
   * request("POST", "/plans", {json: {...}}) → the decoded JSON (null for 204).
   * Options: json, form (FormData), query, headers, idempotencyKey, signal, raw (return the
   * Response itself, after the status check), token (false: send none).
   */
  async request(method, path, opts = {}) {
    const headers = new Headers(opts.headers || {});
    headers.set("Accept", "application/json");
    const token = opts.token === false ? null : await this.getToken();
    if (token) headers.set("Authorization", `Bearer ${token}`);
    if (opts.idempotencyKey) headers.set("Idempotency-Key", opts.idempotencyKey);
    let body;
    if (opts.json !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(opts.json);
    } else if (opts.form) body = opts.form;
    let response;
    try {
      response = await fetch(this.url(path, opts.query), { method, headers, body, signal: opts.signal, credentials: "omit", cache: "no-store" });
    } catch (err) {
      if (err && err.name === "AbortError" && opts.signal && opts.signal.aborted) throw err;
      throw new NetworkError(err);
    }
    if (!response.ok && response.status !== 304) {
      let data = null;
      try {
        data = await response.json();
      } catch {
        data = null;
      }
      const error = new ApiError(response.status, data, response);
      if (response.status === 401 && token) this.onUnauthorized(error);
      throw error;
    }
    if (opts.raw) return response;
    if (response.status === 204 || response.status === 304) return null;
    const type = response.headers.get("Content-Type") || "";
    return type.includes("json") ? response.json() : response.text();
  }

  get(path, opts) { return this.request("GET", path, opts); }
  post(path, opts) { return this.request("POST", path, opts); }
  put(path, opts) { return this.request("PUT", path, opts); }
  patch(path, opts) { return this.request("PATCH", path, opts); }
  delete(path, opts) { return this.request("DELETE", path, opts); }
}

/** The city's settings (time zone, map) from /api/v1/app-config; needs no token. */
let configPromise = null;
export function loadConfig() {
  // A failure (offline at start) is not kept: the next call asks again.
  configPromise ??= new Api().get("/app-config", { token: false }).catch((err) => {
    configPromise = null;
    throw err;
  });
  return configPromise;
}
