// Behaviour of the Tessera page (index.html) in cookie mode: the session state and its
// background renewal (one tab renews under a Web Lock, the others hear of it on a
// BroadcastChannel), the CSRF guard on unsafe calls, and the notes and sessions views.
// Tokens never reach this script: they live in HttpOnly cookies. The one cookie it
// reads is the anti-CSRF token, which it echoes in the X-CSRF-Token header.

const CSRF_COOKIE = '__Host-tessera-csrf';
const UNSAFE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
// Renew when less than a fifth of the lifetime, at most 60 s, remains.
const MAX_RENEWAL_MARGIN_MS = 60_000;
// `exp` is counted in whole seconds, so a token may end up to a second before
// `expires_in` says; the page treats it as ending that much earlier.
const WHOLE_SECOND_MS = 1000;
// After a renewal that failed for want of a network or server, try again this soon.
const RETRY_AFTER_FAILURE_MS = 5000;
// A token whose expiry is this much later than the one known is a renewed one (the
// same token's expiry, read twice in whole seconds, differs by up to a second).
const NEWER_TOKEN_MS = 1500;

const tabs = 'BroadcastChannel' in window ? new BroadcastChannel('tessera') : null;

// What this tab knows of the session: the user, and when the access token ends
// (milliseconds on this machine's clock, shared by every tab).
const session = { user: null, expiresAt: 0, lifetime: 0, timer: 0, renewal: null,
  unreachable: false };

const byId = (id) => document.getElementById(id);

/** A refused API call, carrying the server's error code and safe description. */
class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(body.error_description || body.error || `HTTP ${status}`);
    this.status = status;
    this.code = body.error || '';
    this.retryAfter = retryAfter;
  }
}

// ---------------------------------------------------------------- HTTP

function csrfToken() {
  const pair = document.cookie.split('; ').find((c) => c.startsWith(CSRF_COOKIE + '='));
  return pair ? decodeURIComponent(pair.slice(CSRF_COOKIE.length + 1)) : '';
}

/** One same-origin request with the cookies, and the CSRF header when unsafe. */
async function send(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (UNSAFE_METHODS.has(method)) headers['X-CSRF-Token'] = csrfToken();
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const arrivedAt = Date.now();
  const text = await response.text();
  let answer = {};
  try { answer = text ? JSON.parse(text) : {}; } catch { answer = {}; }
  return { response, answer, arrivedAt };
}

/** An API call for a signed-in user: renews first when the token has run out (a
 *  sleeping laptop), and once more after a 401; the second 401 means signed out. */
async function api(method, path, body) {
  if (session.user && Date.now() >= session.expiresAt) await renew();
  let reply = await send(method, path, body);
  if (reply.response.status === 401 && session.user && (await renew())) {
    reply = await send(method, path, body);
  }
  if (reply.response.status === 401) signedOut('Your session has ended. Please log in again.');
  if (!reply.response.ok) {
    const retryAfter = reply.response.headers.get('Retry-After');
    throw new ApiError(reply.response.status, reply.answer, retryAfter);
  }
  return reply.answer;
}

// ---------------------------------------------------------------- session and renewal

function renewalMargin() {
  return Math.min(session.lifetime / 5, MAX_RENEWAL_MARGIN_MS);
}

/** Takes the server's answer `{user, expires_in}` (or another tab's news) as the state. */
function adopt(user, expiresAt, lifetime) {
  session.user = user;
  session.expiresAt = expiresAt;
  session.lifetime = lifetime;
  scheduleRenewal();
}

function expiryOf({ answer, arrivedAt }) {
  return arrivedAt + answer.expires_in * 1000 - WHOLE_SECOND_MS;
}

function adoptAnswer(reply) {
  const lifetime = Math.max(session.lifetime, reply.answer.expires_in * 1000);
  adopt(reply.answer.user, expiryOf(reply), lifetime);
}

function scheduleRenewal(delay) {
  clearTimeout(session.timer);
  if (!session.user) return;
  // Jitter spreads the renewals of many tabs and many users over time.
  const jitter = Math.random() * renewalMargin() * 0.25;
  const due = session.expiresAt - renewalMargin() - jitter - Date.now();
  session.timer = setTimeout(backgroundRenewal, delay ?? Math.max(0, due));
}

async function backgroundRenewal() {
  try {
    await renew();
    if (session.unreachable) showStatus('');
    session.unreachable = false;
  } catch {
    // No network or a server error: the refresh token is still good, try again soon.
    session.unreachable = true;
    showStatus('Cannot reach the server; retrying…', 'error');
    if (session.user) scheduleRenewal(RETRY_AFTER_FAILURE_MS);
  }
}

/** Renews the access token; true when there is a session afterwards. One renewal
 *  at a time in this tab, and the `tessera-renewal` lock makes it one across tabs. */
function renew() {
  const knownExpiry = session.expiresAt;
  session.renewal ??= withRenewalLock(() => renewHoldingLock(knownExpiry))
    .finally(() => { session.renewal = null; });
  return session.renewal;
}

function withRenewalLock(work) {
  return navigator.locks ? navigator.locks.request('tessera-renewal', work) : work();
}

async function renewHoldingLock(knownExpiry) {
  // Another tab renewed while this one waited for the lock, and said so.
  if (session.user && session.expiresAt > knownExpiry) return true;

  // Or renewed without the news having arrived yet: the cookies are shared, so ask
  // the server about the current token before spending the refresh token. (It
  // renews by itself when the access cookie has gone.)
  const current = await send('GET', '/auth/browser/session');
  if (current.response.ok && expiryOf(current) > knownExpiry + NEWER_TOKEN_MS) {
    adoptAnswer(current);
    tell({ type: 'renewed' });
    return true;
  }

  if (!csrfToken()) return signedOut('Your session has ended. Please log in again.');
  const renewed = await send('POST', '/auth/browser/refresh');
  if (renewed.response.status >= 500) throw new ApiError(renewed.response.status, renewed.answer);
  if (!renewed.response.ok) return signedOut('Your session has ended. Please log in again.');
  adoptAnswer(renewed);
  tell({ type: 'renewed' });
  return true;
}

/** Leaves the signed-in state once, however many calls find out at the same time. */
function signedOut(message) {
  const wasSignedIn = session.user !== null;
  session.user = null;
  session.lifetime = 0;
  clearTimeout(session.timer);
  showSignedOut();
  if (wasSignedIn && message) showStatus(message, 'error');
  return false;
}

function tell(news) {
  tabs?.postMessage({ ...news, user: session.user, expiresAt: session.expiresAt,
    lifetime: session.lifetime });
}

tabs?.addEventListener('message', ({ data }) => {
  if (data.type === 'renewed' && session.user) {
    adopt(data.user, data.expiresAt, data.lifetime);
  } else if (data.type === 'login' && session.user?.sub !== data.user.sub) {
    adopt(data.user, data.expiresAt, data.lifetime);
    showSignedIn();
  } else if (data.type === 'logout' && session.user) {
    signedOut('');
    showStatus('You logged out in another tab.', 'ok');
  }
});

// Timers sleep with the laptop: on waking, renew at once if the token ran out.
function checkAfterSleep() {
  if (document.visibilityState !== 'visible' || !session.user) return;
  if (session.expiresAt - Date.now() <= renewalMargin()) backgroundRenewal();
}
document.addEventListener('visibilitychange', checkAfterSleep);
window.addEventListener('online', checkAfterSleep);
window.addEventListener('pageshow', checkAfterSleep);

// ---------------------------------------------------------------- log in, sign up, log out

async function logIn(username, password) {
  const reply = await send('POST', '/auth/browser/login', { username, password });
  if (!reply.response.ok) {
    const retryAfter = reply.response.headers.get('Retry-After');
    throw new ApiError(reply.response.status, reply.answer, retryAfter);
  }
  session.lifetime = 0;
  adoptAnswer(reply);
  tell({ type: 'login' });
  showSignedIn();
}

async function logOut(scope) {
  try {
    await api('POST', '/auth/browser/logout' + (scope ? `?scope=${scope}` : ''));
  } catch {
    // Already over on the server, or unreachable: the page forgets the session anyway.
  }
  signedOut('');
  tell({ type: 'logout' });
  showStatus(scope === 'global' ? 'Logged out on every device.' : 'Logged out.', 'ok');
}

function describeFailure(error) {
  if (error instanceof ApiError) {
    if (error.status === 429 || error.status === 503) {
      const wait = error.retryAfter ? ` in ${error.retryAfter} s` : ' later';
      return `Too many attempts. Please try again${wait}.`;
    }
    if (error.code === 'invalid_grant') return 'Wrong username or password.';
    if (error.status === 409) return 'That username is taken.';
    return error.message;
  }
  return 'Cannot reach the server. Check your connection and try again.';
}

function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

async function onLogin(event) {
  event.preventDefault();
  const { username, password } = formValues(event.target);
  if (!username || !password) return showStatus('Enter your username and password.', 'error');
  try {
    await logIn(username, password);
    event.target.reset();
  } catch (error) {
    showStatus(describeFailure(error), 'error');
  }
}

async function onSignup(event) {
  event.preventDefault();
  const { username, password } = formValues(event.target);
  if (!username) return showStatus('Choose a username.', 'error');
  if (password.length < 8) return showStatus('The password needs at least 8 characters.', 'error');
  try {
    await api('POST', '/auth/signup', { username, password });
    await logIn(username, password);
    event.target.reset();
    showStatus(`Welcome, ${username}.`, 'ok');
  } catch (error) {
    showStatus(describeFailure(error), 'error');
  }
}

// ---------------------------------------------------------------- views

function showStatus(text, kind = '') {
  const status = byId('status');
  status.textContent = text;
  status.className = text ? `status ${kind}` : 'status';
}

function showSignedOut() {
  byId('loading-view').hidden = true;
  byId('signed-in-view').hidden = true;
  byId('signed-in-bar').hidden = true;
  byId('signed-out-view').hidden = false;
  byId('notes-list').replaceChildren();
  byId('sessions-list').replaceChildren();
  resetNoteForm();
}

function showSignedIn() {
  showStatus('');
  byId('loading-view').hidden = true;
  byId('signed-out-view').hidden = true;
  byId('current-username').textContent = session.user.username;
  byId('signed-in-bar').hidden = false;
  byId('signed-in-view').hidden = false;
  byId('note-title').focus();
  refreshLists();
}

function refreshLists() {
  return Promise.all([loadNotes(), loadSessions()]).catch((error) => {
    if (session.user) showStatus(describeFailure(error), 'error');
  });
}

function formatTime(value) {
  if (value === null || value === undefined) return '';
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

// ---------------------------------------------------------------- notes

async function loadNotes() {
  const notes = await api('GET', '/api/notes');
  const items = notes.map((note) => {
    const item = byId('note-template').content.firstElementChild.cloneNode(true);
    item.dataset.id = note.id;
    item.querySelector('.note-title').textContent = note.title;
    item.querySelector('.note-body').textContent = note.body || '';
    item.querySelector('.note-time').textContent = `Updated ${formatTime(note.updated_at)}`;
    item.querySelector('.note-edit').addEventListener('click', () => editNote(note));
    item.querySelector('.note-edit').setAttribute('aria-label', `Edit “${note.title}”`);
    item.querySelector('.note-delete').addEventListener('click', () => deleteNote(note));
    item.querySelector('.note-delete').setAttribute('aria-label', `Delete “${note.title}”`);
    return item;
  });
  byId('notes-list').replaceChildren(...items);
  byId('notes-empty').hidden = items.length > 0;
}

function editNote(note) {
  byId('note-id').value = note.id;
  byId('note-title').value = note.title;
  byId('note-body').value = note.body || '';
  byId('note-save').textContent = 'Save changes';
  byId('note-cancel').hidden = false;
  byId('note-title').focus();
}

function resetNoteForm() {
  byId('note-form').reset();
  byId('note-id').value = '';
  byId('note-save').textContent = 'Add note';
  byId('note-cancel').hidden = true;
}

async function onSaveNote(event) {
  event.preventDefault();
  const id = byId('note-id').value;
  const note = { title: byId('note-title').value.trim(), body: byId('note-body').value };
  if (!note.title) {
    byId('note-title').focus();
    return showStatus('A note needs a title.', 'error');
  }
  try {
    if (id) await api('PUT', `/api/notes/${encodeURIComponent(id)}`, note);
    else await api('POST', '/api/notes', note);
    resetNoteForm();
    showStatus(id ? 'Note saved.' : 'Note added.', 'ok');
    await loadNotes();
    byId('note-title').focus();
  } catch (error) {
    if (session.user) showStatus(describeFailure(error), 'error');
  }
}

async function deleteNote(note) {
  try {
    await api('DELETE', `/api/notes/${encodeURIComponent(note.id)}`);
    if (byId('note-id').value === String(note.id)) resetNoteForm();
    showStatus('Note deleted.', 'ok');
    await loadNotes();
    byId('note-title').focus();
  } catch (error) {
    if (session.user) showStatus(describeFailure(error), 'error');
  }
}

// ---------------------------------------------------------------- sessions

async function loadSessions() {
  const sessions = await api('GET', '/auth/sessions');
  const rows = sessions.map((device) => {
    const row = document.createElement('tr');
    const label = document.createElement('td');
    label.textContent = device.device || device.client_id || device.user_agent || 'Unknown';
    if (device.current) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = 'this device';
      label.append(badge);
    }
    const ip = document.createElement('td');
    ip.textContent = device.ip || '';
    const lastUsed = document.createElement('td');
    lastUsed.textContent = formatTime(device.last_used_at || device.created_at);
    const action = document.createElement('td');
    const end = document.createElement('button');
    end.type = 'button';
    end.className = 'danger';
    end.textContent = device.current ? 'Log out' : 'End';
    end.setAttribute('aria-label', device.current
      ? 'Log out on this device' : `End the session of ${label.firstChild.textContent}`);
    end.addEventListener('click', () => endSession(device));
    action.append(end);
    row.append(label, ip, lastUsed, action);
    return row;
  });
  byId('sessions-list').replaceChildren(...rows);
}

async function endSession(device) {
  if (device.current) return logOut();
  try {
    await api('DELETE', `/auth/sessions/${encodeURIComponent(device.id)}`);
    showStatus('Session ended.', 'ok');
    await loadSessions();
  } catch (error) {
    if (session.user) showStatus(describeFailure(error), 'error');
  }
}

// ---------------------------------------------------------------- start

async function start() {
  byId('login-form').addEventListener('submit', onLogin);
  byId('signup-form').addEventListener('submit', onSignup);
  byId('note-form').addEventListener('submit', onSaveNote);
  byId('note-cancel').addEventListener('click', () => { resetNoteForm(); showStatus(''); });
  byId('logout-here').addEventListener('click', () => logOut());
  byId('logout-everywhere').addEventListener('click', () => logOut('global'));
  byId('sessions-refresh').addEventListener('click', () => refreshLists());

  try {
    // The access cookie may have run out while the refresh cookie still holds.
    if (await renew()) showSignedIn();
  } catch {
    showSignedOut();
    showStatus('Cannot reach the server. Reload the page to try again.', 'error');
  }
}

start();
