// tessera.js: sign-in for single-page apps on other origins, in bearer mode. It logs in
// with the password grant, keeps the tokens (memory, sessionStorage or localStorage),
// attaches `Authorization: Bearer` to requests for the issuer's origin, renews before
// expiry with one refresh call however many requests wait, retries once after a 401,
// and logs out. An ES module without dependencies:
//
//   import { Tessera } from 'https://auth.example/tessera.js';
//   const auth = Tessera.create({ issuer: 'https://auth.example', clientId: 'my-app' });
//   await auth.login(username, password);
//   const notes = await (await auth.fetch('https://auth.example/api/notes')).json();

// Renew when less than a fifth of the lifetime, at most 60 s, remains.
const MAX_RENEWAL_MARGIN_MS = 60_000;
// `exp` is counted in whole seconds: a token may end up to a second before `expires_in`.
const WHOLE_SECOND_MS = 1000;

/** A refusal from the issuer: `code` is its OAuth error (`invalid_grant`, …). */
export class TesseraError extends Error {
  constructor(status, body = {}) {
    super(body.error_description || body.error || `HTTP ${status}`);
    this.name = 'TesseraError';
    this.status = status;
    this.code = body.error || '';
  }
}

// Where tokens are kept. Memory is lost on reload; the two Web Storage modes survive
// it but are readable by any script that runs on the page (see the README).
function tokenStore(mode, key) {
  if (mode === 'memory') {
    let kept = null;
    return { load: () => kept, save: (t) => { kept = t; }, clear: () => { kept = null; } };
  }
  const storage = { session: window.sessionStorage, local: window.localStorage }[mode];
  if (!storage) throw new TypeError(`storage must be memory, session or local, not ${mode}`);
  return {
    load: () => JSON.parse(storage.getItem(key) || 'null'),
    save: (t) => storage.setItem(key, JSON.stringify(t)),
    clear: () => storage.removeItem(key),
  };
}

function create({ issuer, storage = 'memory', clientId } = {}) {
  const issuerUrl = new URL(issuer);
  const base = issuerUrl.href.replace(/\/+$/, '');
  const storageKey = `tessera:${base}`;
  const store = tokenStore(storage, storageKey);
  const listeners = new Set();
  let tokens = store.load(); // { access, refresh, expiresAt, lifetime } or null
  let refreshing = null;

  function remember(next) {
    tokens = next;
    if (next) store.save(next); else store.clear();
    const state = { loggedIn: Boolean(next), expiresAt: next ? next.expiresAt : null };
    for (const listener of listeners) listener(state);
  }

  // Another tab of the same app renewed or logged out (only localStorage is shared).
  if (storage === 'local') {
    window.addEventListener('storage', (event) => {
      if (event.key === storageKey) remember(store.load());
    });
  }

  async function tokenRequest(grant) {
    const response = await fetch(`${base}/oauth/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      credentials: 'omit',
      body: JSON.stringify({ ...grant, client_id: clientId }),
    });
    const arrivedAt = Date.now();
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new TesseraError(response.status, answer);
    const lifetime = answer.expires_in * 1000;
    remember({
      access: answer.access_token,
      refresh: answer.refresh_token,
      expiresAt: arrivedAt + lifetime - WHOLE_SECOND_MS,
      lifetime,
    });
  }

  // One refresh call, shared by every request that waits for it.
  function refresh() {
    refreshing ??= (async () => {
      if (!tokens) throw new TesseraError(401, { error: 'login_required' });
      try {
        await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh });
      } catch (error) {
        // The session is over (expired, logged out elsewhere): forget it.
        if (error.status === 400 || error.status === 401) remember(null);
        throw error;
      }
    })().finally(() => { refreshing = null; });
    return refreshing;
  }

  function dueForRenewal() {
    const margin = Math.min(tokens.lifetime / 5, MAX_RENEWAL_MARGIN_MS);
    return tokens.expiresAt - Date.now() < margin;
  }

  async function send(url, init, access) {
    const headers = new Headers(init.headers);
    headers.set('Authorization', `Bearer ${access}`);
    return fetch(url, { ...init, headers, credentials: 'omit' });
  }

  // RFC 6750 §3.1. A cross-origin answer hides WWW-Authenticate unless the server
  // exposes it, so an unreadable 401 counts as an expired token too (retried once).
  function tokenRefused(response) {
    if (response.status !== 401) return false;
    const challenge = response.headers.get('WWW-Authenticate');
    return challenge === null || /error="invalid_token"/.test(challenge);
  }

  return {
    async login(username, password) {
      await tokenRequest({ grant_type: 'password', username, password });
    },

    /** `fetch` with the access token. Only URLs on the issuer's origin get it, so the
     *  token never leaks to a third party. Bodies must be replayable (not streams). */
    async fetch(url, init = {}) {
      const target = new URL(url, window.location.href);
      if (target.origin !== issuerUrl.origin) {
        throw new TypeError(`tessera.js sends tokens only to ${issuerUrl.origin}`);
      }
      if (!tokens) throw new TesseraError(401, { error: 'login_required' });
      if (dueForRenewal()) await refresh();
      const response = await send(target, init, tokens.access);
      if (!tokenRefused(response)) return response;
      await refresh();
      return send(target, init, tokens.access);
    },

    async logout() {
      try {
        if (tokens && dueForRenewal()) await refresh();
        if (tokens) {
          await send(`${base}/auth/logout`, { method: 'POST' }, tokens.access);
        }
      } catch (error) {
        // A session that had already ended is logged out all the same.
        if (!(error instanceof TesseraError)) throw error;
      } finally {
        remember(null);
      }
    },

    /** Calls `listener({loggedIn, expiresAt})` on every change; returns an unsubscribe. */
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    get loggedIn() {
      return tokens !== null;
    },
  };
}

export const Tessera = { create, TesseraError };
export default Tessera;
