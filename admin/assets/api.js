// The admin API client (admin/API.md): JSON in and out, the session cookie sent by the browser,
// the CSRF token added to every state-changing request, errors thrown as ApiError.

let csrfToken = null;
let onUnauthorized = () => {};

/** An admin API error: HTTP status, error type and the server's message. */
export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

/** Remember the session's CSRF token (from login or GET /api/session). */
export function setCsrf(token) { csrfToken = token; }

/** Called when any request answers 401 (the session ended): show the login form. */
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

/** Call the admin API: `api('GET', '/api/models')`, `api('POST', '/api/aliases', {...})`. */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  const resp = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 204) return null;
  let data = null;
  const text = await resp.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!resp.ok) {
    const err = data && data.error ? data.error : {};
    if (resp.status === 401 && !path.endsWith('/login')) onUnauthorized();
    throw new ApiError(resp.status, err.type || 'http_' + resp.status, err.message || resp.statusText || 'request failed');
  }
  return data;
}

/** Build a query string from an object, leaving out empty values. */
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') p.set(k, v);
  }
  const s = p.toString();
  return s ? '?' + s : '';
}
