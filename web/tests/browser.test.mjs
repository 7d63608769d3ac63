// Real-browser tests of the Tessera page (cookie mode) and of tessera.js (bearer mode):
// each run starts its own Tessera server with five-second access tokens, two small
// HTTP servers on other origins (an attacker, and a single-page app allowed by CORS),
// and a headless Chromium. Run with `npm test`; TESSERA_BIN names the server binary.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const tesseraBin = process.env.TESSERA_BIN
  ? resolve(process.env.TESSERA_BIN)
  : resolve(here, '../../target/debug/tessera');
const chromiumBin = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const screenshots = join(here, 'screenshots');
const PASSWORD = 'correct horse battery';

// Chromium may talk to nothing but the servers started here.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu',
  '--disable-background-networking', '--disable-component-update', '--no-first-run',
  '--disable-sync', '--disable-quic'];

let tessera; // { process, url, dataDir, log }
let attacker; // an origin Tessera knows nothing of
let spaOrigin; // an origin in --cors-origins, where tessera.js runs
let browser;

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
let userCount = 0;
const newUsername = (role) => `${role}${Date.now() % 100000}${++userCount}`;

// ---------------------------------------------------------------- servers

function startOrigin(routes) {
  const server = createServer(async (request, response) => {
    const route = routes[new URL(request.url, 'http://x').pathname];
    if (!route) return response.writeHead(404).end();
    const [type, body] = await route();
    response.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-store' }).end(body);
  });
  return new Promise((done) => server.listen(0, '127.0.0.1', () => {
    done({ server, url: `http://127.0.0.1:${server.address().port}` });
  }));
}

async function startTessera(corsOrigin) {
  const dataDir = await mkdtemp(join(tmpdir(), 'tessera-browser-'));
  const child = spawn(tesseraBin, ['server', '--listen', '127.0.0.1:0', '--data-dir', dataDir,
    '--access-ttl', '5s', '--leeway', '0s', '--cors-origins', corsOrigin],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const port = await new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`no start-up line:\n${log}`)), 30_000);
    child.on('error', fail);
    child.on('exit', (code) => fail(new Error(`server exited (${code}):\n${log}`)));
    child.stderr.on('data', (chunk) => {
      log += chunk;
      const found = log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (found) { clearTimeout(timer); done(found[1]); }
    });
  });
  // Chromium keeps Secure cookies on localhost, not necessarily on 127.0.0.1.
  return { process: child, url: `http://localhost:${port}`, dataDir, log: () => log };
}

function attackerPages(target) {
  // The classic forgery: a form that posts JSON-looking text/plain to the API.
  const form = `<!doctype html><title>Win a prize</title>
    <form method="POST" action="${target}/api/notes" enctype="text/plain">
      <input name='{"title":"forged by a form","body":"' value='x"}'>
    </form>
    <script>document.forms[0].submit()</script>`;
  return {
    '/': async () => ['text/html', '<!doctype html><title>Elsewhere</title><p>other origin'],
    '/form': async () => ['text/html', form],
    '/tessera.js': async () => ['text/javascript', await readFile(join(here, '../tessera.js'))],
  };
}

before(async () => {
  await mkdir(screenshots, { recursive: true });
  // The ports of the other origins must be known before Tessera starts; their pages
  // learn Tessera's URL afterwards, when they are asked.
  const routes = {};
  attacker = await startOrigin(routes);
  spaOrigin = await startOrigin(routes);
  tessera = await startTessera(spaOrigin.url);
  Object.assign(routes, attackerPages(tessera.url));
  for (const file of ['index.html', 'app.js', 'app.css', 'tessera.js']) {
    const served = await (await fetch(`${tessera.url}/${file === 'index.html' ? '' : file}`)).text();
    const source = await readFile(join(here, '..', file), 'utf8');
    assert.equal(served, source, `the server embeds an older web/${file}: rebuild it`);
  }
  browser = await chromium.launch({ executablePath: chromiumBin, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  tessera?.process.kill('SIGTERM');
  attacker?.server.close();
  spaOrigin?.server.close();
  if (tessera) await rm(tessera.dataDir, { recursive: true, force: true });
});

// Also when the run is cut short.
process.on('exit', () => tessera?.process.kill('SIGKILL'));

// ---------------------------------------------------------------- page helpers

async function openPage(context) {
  const page = await (context ?? await browser.newContext()).newPage();
  page.on('pageerror', (error) => { page.scriptErrors.push(String(error)); });
  page.scriptErrors = [];
  await page.goto(`${tessera.url}/`);
  await page.locator('#loading-view').waitFor({ state: 'hidden' });
  return page;
}

async function signUp(page, username) {
  await page.locator('#signup-username').fill(username);
  await page.locator('#signup-password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up and log in' }).click();
  await page.locator('#signed-in-bar').waitFor();
}

async function logIn(page, username) {
  await page.locator('#login-username').fill(username);
  await page.locator('#login-password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in', exact: true }).click();
  await page.locator('#signed-in-bar').waitFor();
}

async function addNote(page, title) {
  await page.getByLabel('Title').fill(title);
  await page.getByLabel('Text').fill(`body of ${title}`);
  await page.getByRole('button', { name: 'Add note' }).click();
  await page.locator('#notes-list .note-title', { hasText: title }).waitFor({ timeout: 10_000 });
}

async function noteTitles(page) {
  return page.locator('#notes-list .note-title').allTextContents();
}

async function signUpThroughApi(username) {
  const response = await fetch(`${tessera.url}/auth/signup`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password: PASSWORD }),
  });
  assert.equal(response.status, 201, await response.text());
}

const shot = (page, name) => page.screenshot({ path: join(screenshots, `${name}.png`) });

// ---------------------------------------------------------------- tests

test('a visitor signs up, is logged in, and can log out and in again', async () => {
  const page = await openPage();
  await shot(page, '01-signed-out');
  const username = newUsername('ann');

  await signUp(page, username);
  await addNote(page, 'first note');
  await page.locator('#sessions-list tr').first().waitFor();
  await shot(page, '02-signed-in');
  await page.getByRole('button', { name: 'Log out', exact: true }).first().click();
  await page.locator('#signed-out-view').waitFor();
  await logIn(page, username);

  assert.equal(await page.locator('#current-username').textContent(), username);
  assert.deepEqual(await noteTitles(page), ['first note']);
  assert.match(await page.locator('#sessions-list').textContent(), /this device/);
  assert.deepEqual(page.scriptErrors, []);
  await page.context().close();
});

test('a reload keeps the user logged in, also after the access token expired', async () => {
  const context = await browser.newContext();
  const page = await openPage(context);
  await signUp(page, newUsername('bo'));

  await page.reload();
  await page.locator('#signed-in-bar').waitFor({ timeout: 10_000 });
  await page.close();
  await sleep(6000); // no page runs: the access cookie's token expires meanwhile
  const later = await openPage(context);

  assert.equal(await later.locator('#signed-in-bar').isVisible(), true);
  assert.equal(await later.locator('#signed-out-view').isVisible(), false);
  await context.close();
});

test('the page renews in the background: notes work across several expiries', async () => {
  const page = await openPage();
  const refused = [];
  let renewals = 0;
  page.on('response', (response) => {
    const path = new URL(response.url()).pathname;
    if (path.startsWith('/api/') && response.status() >= 400) refused.push(response.status());
    if (path === '/auth/browser/refresh' && response.status() === 200) renewals += 1;
  });
  await signUp(page, newUsername('cy'));

  const started = Date.now();
  const titles = [];
  for (let i = 1; Date.now() - started < 12_000; i += 1) {
    titles.push(`note ${i}`);
    await addNote(page, `note ${i}`);
    assert.notEqual(await page.locator('#status').getAttribute('class'), 'status error');
    await sleep(1500);
  }
  await page.getByRole('button', { name: 'Reload the list' }).click();
  await page.locator('#notes-list .note-title', { hasText: titles.at(-1) }).waitFor();

  assert.deepEqual((await noteTitles(page)).sort(), titles.sort());
  assert.deepEqual(refused, [], 'no API call was refused');
  assert.ok(renewals >= 2, `renewed ${renewals} times in 12 s of five-second tokens`);
  assert.equal(await page.locator('#signed-in-bar').isVisible(), true);
  await page.context().close();
});

test('two tabs share one renewal, and logging out in one logs out the other', async () => {
  const context = await browser.newContext();
  let renewals = 0;
  context.on('request', (request) => {
    if (new URL(request.url()).pathname === '/auth/browser/refresh') renewals += 1;
  });
  const first = await openPage(context);
  await signUp(first, newUsername('di'));
  const second = await openPage(context);
  await second.locator('#signed-in-bar').waitFor();

  renewals = 0;
  await sleep(8000);
  const renewalsIn8s = renewals;
  await first.getByRole('button', { name: 'Log out', exact: true }).first().click();
  await second.locator('#signed-out-view').waitFor({ timeout: 10_000 });
  await shot(second, '04-logged-out-by-other-tab');

  // One tab renews about every 3 s of a 5 s token; two tabs without the lock twice that.
  assert.ok(renewalsIn8s >= 1 && renewalsIn8s <= 3, `${renewalsIn8s} renewals in 8 s`);
  assert.equal(await second.locator('#status').textContent(), 'You logged out in another tab.');
  await context.close();
});

test('a session ended from another device shows the login form once', async () => {
  const username = newUsername('ed');
  const laptop = await openPage();
  await signUp(laptop, username);
  const phone = await openPage();
  await logIn(phone, username);
  let refreshes = 0;
  laptop.on('request', (request) => {
    if (new URL(request.url()).pathname === '/auth/browser/refresh') refreshes += 1;
  });

  await phone.locator('#sessions-list button', { hasText: 'End' }).click();
  await phone.locator('#status', { hasText: 'Session ended.' }).waitFor();
  await laptop.locator('#signed-out-view').waitFor({ timeout: 10_000 });
  const refreshesWhenShown = refreshes;
  await sleep(4000);

  assert.equal(refreshes, refreshesWhenShown, 'no renewal after the session ended');
  assert.ok(refreshes <= 1);
  assert.match(await laptop.locator('#status').textContent(), /session has ended/);
  await laptop.context().close();
  await phone.context().close();
});

test('a forged cross-site form post and credentialed fetches are refused', async () => {
  const context = await browser.newContext();
  const page = await openPage(context);
  await signUp(page, newUsername('fay'));
  await addNote(page, 'genuine');

  const victim = await context.newPage();
  const forged = victim.waitForResponse((r) => r.url().startsWith(`${tessera.url}/api/notes`));
  await victim.goto(`${attacker.url}/form`);
  const formAnswer = await forged;
  await victim.waitForLoadState();
  await shot(victim, '05-forged-form-refused');

  const fetchOutcomes = [];
  for (const origin of [attacker.url, spaOrigin.url]) {
    await victim.goto(`${origin}/`);
    fetchOutcomes.push(await victim.evaluate(async (target) => {
      const init = { method: 'POST', credentials: 'include',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ title: 'forged by fetch', body: '' }) };
      const tries = [
        fetch(`${target}/api/notes`, init),
        fetch(`${target}/api/notes`, { ...init, mode: 'no-cors', headers: {} }),
        fetch(`${target}/api/notes`, { credentials: 'include' }),
      ];
      return (await Promise.allSettled(tries)).map((t) => t.status === 'fulfilled'
        ? `${t.value.type} ${t.value.status}` : 'failed');
    }, tessera.url));
  }
  await page.reload();
  await page.locator('#notes-list .note-title').first().waitFor();

  assert.ok(formAnswer.status() >= 400, `form post answered ${formAnswer.status()}`);
  for (const [cors, noCors, read] of fetchOutcomes) {
    assert.equal(cors, 'failed', 'a credentialed CORS post fails');
    assert.equal(noCors, 'opaque 0', 'a no-cors post gets nothing back');
    assert.equal(read, 'failed', 'a credentialed read fails');
  }
  assert.deepEqual(await noteTitles(page), ['genuine']);
  await context.close();
});

test('in cookie mode no script-readable place holds a token', async () => {
  const context = await browser.newContext();
  const page = await openPage(context);
  await signUp(page, newUsername('gil'));
  await addNote(page, 'to make a few requests');

  const readable = await page.evaluate(() => ({
    cookies: document.cookie,
    stored: [localStorage, sessionStorage].flatMap((s) => Object.entries(s)).join('\n'),
  }));
  const cookies = Object.fromEntries((await context.cookies()).map((c) => [c.name, c]));
  const access = cookies['__Host-tessera-access'];
  const refresh = cookies['__Secure-tessera-refresh'];
  const csrf = cookies['__Host-tessera-csrf'];

  assert.deepEqual(readable.cookies.split('; ').map((c) => c.split('=')[0]),
    ['__Host-tessera-csrf']);
  assert.ok(access && access.httpOnly && access.secure && access.sameSite === 'Lax');
  assert.equal(access.path, '/');
  assert.ok(refresh && refresh.httpOnly && refresh.secure && refresh.sameSite === 'Strict');
  assert.equal(refresh.path, '/auth/browser');
  assert.ok(csrf && !csrf.httpOnly && csrf.secure && csrf.sameSite === 'Strict');
  for (const secret of [access.value, refresh.value]) {
    assert.ok(!readable.cookies.includes(secret));
    assert.ok(!readable.stored.includes(secret));
  }
  assert.doesNotMatch(readable.stored, /eyJ[\w-]+\.[\w-]+\./, 'no JWT in Web Storage');
  await context.close();
});

test('tessera.js logs in from another origin and renews with one refresh call', async () => {
  const username = newUsername('hal');
  await signUpThroughApi(username);
  const page = await (await browser.newContext()).newPage();
  let tokenCalls = 0;
  page.on('request', (request) => {
    if (request.url() === `${tessera.url}/oauth/token`) tokenCalls += 1;
  });
  await page.goto(`${spaOrigin.url}/`);

  const outcome = await page.evaluate(async ({ issuer, username, password }) => {
    const { Tessera } = await import('/tessera.js');
    const auth = Tessera.create({ issuer, clientId: 'browser-test-spa' });
    const changes = [];
    auth.onChange((state) => changes.push(state.loggedIn));
    await auth.login(username, password);
    const me = await (await auth.fetch(`${issuer}/userinfo`)).json();
    await new Promise((done) => setTimeout(done, 5500)); // the access token expires
    const later = await Promise.all([1, 2, 3, 4, 5].map(() => auth.fetch(`${issuer}/userinfo`)));
    let strangerRefused = false;
    try { await auth.fetch('https://stranger.invalid/'); } catch { strangerRefused = true; }
    await auth.logout();
    let afterLogout = '';
    try { await auth.fetch(`${issuer}/userinfo`); } catch (e) { afterLogout = e.code; }
    return { me, laterStatuses: later.map((r) => r.status), changes, strangerRefused,
      afterLogout, stored: Object.keys(localStorage).concat(Object.keys(sessionStorage)) };
  }, { issuer: tessera.url, username, password: PASSWORD });
  await page.evaluate((text) => { document.body.textContent = text; },
    `tessera.js on ${spaOrigin.url} signed in as ${outcome.me.username}`);
  await shot(page, '06-tessera-js-other-origin');

  assert.equal(outcome.me.username, username);
  assert.deepEqual(outcome.laterStatuses, [200, 200, 200, 200, 200]);
  assert.equal(tokenCalls, 2, 'one login and one refresh shared by five requests');
  assert.deepEqual(outcome.changes, [true, true, false]);
  assert.equal(outcome.strangerRefused, true, 'no token sent to another origin');
  assert.equal(outcome.afterLogout, 'login_required');
  assert.deepEqual(outcome.stored, [], 'memory mode stores nothing');
  await page.context().close();
});

test('the login form works from the keyboard alone', async () => {
  const username = newUsername('ivy');
  await signUpThroughApi(username);
  const page = await openPage();

  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => document.activeElement.id);
  await page.keyboard.type(username);
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await shot(page, '03-keyboard-login');
  await page.keyboard.press('Enter');
  await page.locator('#signed-in-bar').waitFor({ timeout: 10_000 });

  assert.equal(focused, 'login-username');
  assert.equal(await page.locator('#current-username').textContent(), username);
  await page.context().close();
});
