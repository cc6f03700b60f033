// The node's HTTP API, as the JS SDK calls it: same paths, same `Authorization: TOKEN` header,
// PocketBase's error JSON. Every request goes to this page's own origin, never elsewhere.

const STORE_KEY = 'syncbase_dashboard_auth';

/** An error answer: `status`, `message`, and `data` (field → {code, message}). */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `Request failed (${status}).`);
    this.status = status;
    this.data = body?.data && typeof body.data === 'object' ? body.data : {};
  }
}

function decodePayload(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}

/** The signed-in superuser (token and record), kept in localStorage like the SDK's store. */
export const auth = {
  token: '',
  record: null,
  load() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORE_KEY) || '{}');
      this.token = saved.token || '';
      this.record = saved.record || null;
    } catch {
      this.clear();
    }
  },
  save(token, record) {
    this.token = token;
    this.record = record;
    localStorage.setItem(STORE_KEY, JSON.stringify({ token, record }));
  },
  clear() {
    this.token = '';
    this.record = null;
    localStorage.removeItem(STORE_KEY);
  },
  /** True while the token has not expired (the server still decides). */
  isValid() {
    if (!this.token) return false;
    const exp = decodePayload(this.token).exp;
    return typeof exp === 'number' && exp * 1000 > Date.now();
  },
  expiresIn() {
    const exp = decodePayload(this.token).exp || 0;
    return exp * 1000 - Date.now();
  },
};

export { decodePayload };

let onUnauthorized = () => {};
/** What to do when the server says the session is gone (401): the app goes to the login. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/**
 * Calls the API. `body` is sent as JSON unless it is FormData or a Blob; `query` becomes the
 * query string; `token` overrides the session's (the first-run form uses the install token).
 * Resolves with the parsed JSON (or null for 204), rejects with ApiError.
 */
export async function api(method, path, { body, query, token, raw = false } = {}) {
  let url = path;
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') qs.set(k, v);
    }
    const s = qs.toString();
    if (s) url += (url.includes('?') ? '&' : '?') + s;
  }
  const headers = {};
  const bearer = token ?? auth.token;
  if (bearer) headers.Authorization = bearer;
  let payload;
  if (body instanceof FormData || body instanceof Blob) {
    payload = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, { method, headers, body: payload, credentials: 'same-origin' });
  } catch (e) {
    throw new ApiError(0, { message: `The node did not answer: ${e.message}` });
  }
  if (raw) return res;
  const text = await res.text();
  let json = null;
  if (text) {
    try { json = JSON.parse(text); } catch { json = { message: text }; }
  }
  if (!res.ok) {
    if (res.status === 401 && token === undefined && auth.token) onUnauthorized();
    throw new ApiError(res.status, json);
  }
  return json;
}

/** Signs in as a superuser and keeps the session. */
export async function login(email, password) {
  const out = await api('POST', '/api/collections/_superusers/auth-with-password', {
    body: { identity: email, password },
    token: '',
  });
  auth.save(out.token, out.record);
  return out;
}

/** Renews the session token (superuser tokens are refreshable); clears it when refused. */
export async function refresh() {
  const out = await api('POST', '/api/collections/_superusers/auth-refresh');
  auth.save(out.token, out.record);
  return out;
}

/** Every collection (the list endpoint pages; the dashboard wants them all). */
export async function allCollections() {
  const out = await api('GET', '/api/collections', { query: { perPage: 1000 } });
  return out.items;
}

/** `'x'` → a filter string literal. */
export function quote(s) {
  return `'${String(s).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
