// The one place the page talks to the daemon's API. Paths are relative to the page, so the dashboard
// also works behind a proxy that serves it under a sub-path.

export const API = 'api/v1/';

/** An API answer that was not 2xx, with the daemon's error code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return undefined;
}

/** Sends the browser to the login page, coming back here afterwards. */
export function toLogin() {
  const next = location.pathname + location.search;
  location.assign(`login?next=${encodeURIComponent(next)}`);
}

/**
 * A JSON request to the API. A 401 means the daemon wants a token this browser does not have: the page
 * goes to the login form. Actions carry the CSRF cookie's value in a header (double submit), which a
 * page on another site cannot read.
 */
export async function request(path, { method = 'GET', body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') {
    const csrf = cookie('shuttle_csrf');
    if (csrf) headers['X-Shuttle-Csrf'] = csrf;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, credentials: 'same-origin' });
  if (res.status === 401) {
    toLogin();
    throw new ApiError(401, 'UNAUTHORIZED', 'a token is needed');
  }
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!res.ok) {
    const e = data?.error;
    throw new ApiError(res.status, e?.code ?? `HTTP_${res.status}`, e?.message ?? (text.slice(0, 200) || res.statusText));
  }
  return data;
}

export const get = (path, signal) => request(path, { signal });
export const post = (path, body) => request(path, { method: 'POST', body });

/** A file's preview, or with `thumb` its thumbnail (small, for tiles); `version` makes a remade one load again. */
export function previewUrl(fileId, version, thumb = false) {
  const query = [thumb ? 'size=thumb' : '', version ? `v=${version}` : ''].filter(Boolean).join('&');
  return `${API}files/${encodeURIComponent(fileId)}/preview${query ? `?${query}` : ''}`;
}
