// The session and every call to /api/v1. The access token lives in memory and in sessionStorage (this tab
// only, gone when the tab closes); it is refreshed a minute before it expires and once more on a 401. A
// refresh token is single use: one refresh at a time, shared by every caller waiting for it.
export const API = "/api/v1";
const KEY = "medtwin.session";

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && (body.detail || body.title);
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.errors = Array.isArray(this.body.errors) ? this.body.errors : [];
  }
}

let session = null;
try { session = JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch { session = null; }
let refreshing = null;
let refreshTimer = null;
const listeners = new Set();

export const signedIn = () => session !== null;
export const accessToken = () => (session ? session.access : null);
export function onSession(callback) { listeners.add(callback); return () => listeners.delete(callback); }
function emit(reason) { for (const callback of listeners) callback(session, reason); }

function store(body) {
  session = { access: body.access_token, refresh: body.refresh_token, scope: body.scope,
              expiresAt: Date.now() + body.expires_in * 1000 };
  sessionStorage.setItem(KEY, JSON.stringify(session));
  schedule();
}

function schedule() {
  clearTimeout(refreshTimer);
  if (!session) return;
  const wait = Math.max(5_000, session.expiresAt - Date.now() - 60_000);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), wait);
}

async function tokenRequest(form) {
  const response = await fetch(`${API}/auth/token`, { method: "POST", body: new URLSearchParams(form) });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export async function login(username, password) {
  store(await tokenRequest({ grant_type: "password", username, password }));
  emit("signed-in");
}

/** Exchange the refresh token for a new pair (single flight); signs out when the family is gone. */
export function refresh() {
  if (!session) return Promise.reject(new ApiError(401, { detail: "not signed in" }));
  if (!refreshing) {
    const token = session.refresh;
    refreshing = tokenRequest({ grant_type: "refresh_token", refresh_token: token })
      .then((body) => { store(body); emit("refreshed"); })
      .catch((error) => {  // a refused refresh token ends the session; a network error does not
        if (error instanceof ApiError && error.status === 400 && session && session.refresh === token) clear("expired");
        throw error;
      })
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

function clear(reason) {
  clearTimeout(refreshTimer);
  session = null;
  sessionStorage.removeItem(KEY);
  emit(reason);
}

export async function signOut() {
  const token = session && session.refresh;
  clear("signed-out");
  if (token) await fetch(`${API}/auth/revoke`, { method: "POST", body: new URLSearchParams({ token }) }).catch(() => {});
}

async function fresh() {
  if (refreshing) await refreshing.catch(() => {});
  if (session && session.expiresAt - Date.now() < 30_000) await refresh().catch(() => {});
  if (!session) throw new ApiError(401, { detail: "Your session has ended: sign in again." });
}

function url(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) params.append(key, String(item));
  }
  const text = params.toString();
  return API + path + (text ? (path.includes("?") ? "&" : "?") + text : "");
}

/** fetch() with the bearer token: one refresh-and-retry on 401. Returns the Response. */
export async function authFetch(path, { query, headers, ...options } = {}) {
  await fresh();
  const send = () => fetch(url(path, query), {
    ...options, headers: { ...(headers || {}), Authorization: `Bearer ${session.access}` } });
  let response = await send();
  if (response.status === 401 && session) {
    await refresh().catch(() => {});
    if (!session) throw new ApiError(401, { detail: "Your session has ended: sign in again." });
    response = await send();
    if (response.status === 401) { clear("expired"); throw new ApiError(401, { detail: "Your session has ended." }); }
  }
  return response;
}

/** JSON call: ``body`` is sent as JSON; problem+json errors become ApiError (with ``errors`` per field). */
export async function call(path, { body, method, query, signal } = {}) {
  const options = { method: method || (body === undefined ? "GET" : "POST"), query, signal };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers = { "Content-Type": "application/json" };
  }
  const response = await authFetch(path, options);
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** GET that answers null on 404 (no such data yet: no forecast, no fitted twin ...). */
export async function maybe(path, options) {
  try { return await call(path, options); } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 405)) return null;
    throw error;
  }
}

/** Download a guarded file (a report): fetch with the token, then save it under ``filename``. */
export async function download(path, filename) {
  const response = await authFetch(path);
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  return blob;
}

export function errorText(error) {
  if (!(error instanceof ApiError)) return error && error.message ? error.message : String(error);
  // a field the detail already names ("patient.cyp2c9: ...") is not repeated
  const fields = error.errors.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`)
    .filter((text) => !error.message.includes(text));
  return fields.length ? `${error.message} (${fields.join("; ")})` : error.message;
}

if (session) schedule();
