// Calls to the hub's API with the visitor's query token. The token lives in sessionStorage
// only (gone when the tab closes) and travels as `Authorization: Bearer`, as the API expects.

const TOKEN_KEY = 'falconer.queryToken';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** The API answered 401: a token is needed, or the one given is not accepted. */
export class AuthRequired extends Error {
  constructor(message) {
    super(message);
    this.name = 'AuthRequired';
  }
}

/** Any other answer that is not a success; `message` is the API's own error text. */
export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.field = field;
  }
}

/** Builds `path?k=v&…`, leaving out empty values. */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== '') query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  const current = token();
  if (current) headers.Authorization = `Bearer ${current}`;
  // Every POST says JSON, with or without a body: the hub refuses a POST that does not.
  if (body !== undefined || method === 'POST') headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, `The hub cannot be reached (${e.message}).`);
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (response.status === 401) {
    throw new AuthRequired(current ? 'That token was not accepted.' : 'This hub needs a query token.');
  }
  if (!response.ok && !(data && 'delivered' in data)) {
    const message = data && typeof data.error === 'string' ? data.error : `HTTP ${response.status}`;
    throw new ApiError(response.status, message, data && data.field);
  }
  return data;
}
