// jose, used the way a Node resource server would use it, verifies Tessera's access
// tokens with keys it finds by itself: the discovery document's jwks_uri, read by
// createRemoteJWKSet. Each refusal below is a check that would let a bad token through
// if it were missing. TESSERA_URL names the running server (interop/run sets it).

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRemoteJWKSet, errors, jwtVerify } from 'jose';

const tesseraUrl = process.env.TESSERA_URL?.replace(/\/$/, '');
// The server's default audience (`audience` in its configuration).
const AUDIENCE = 'tessera';
const PASSWORD = 'correct horse battery';
// Every request to the local server is bounded, so a hung server fails the run.
const TIMEOUT_MS = 10_000;

let discovery;
let keys;

async function call(path, init = {}) {
  return fetch(`${tesseraUrl}${path}`, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS) });
}

// Signs up a new account and logs in with the password grant (RFC 6749 §4.3).
async function freshAccessToken() {
  const username = `node${randomBytes(6).toString('hex')}`;
  const signup = await call('/auth/signup', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: PASSWORD }),
  });
  assert.equal(signup.status, 201, await signup.text());
  const grant = await fetch(discovery.token_endpoint, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'password', username, password: PASSWORD }),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  assert.equal(grant.status, 200, await grant.clone().text());
  return (await grant.json()).access_token;
}

// Signature with the algorithm pinned, issuer, audience, `typ` and times, no leeway.
function verify(token, overrides = {}) {
  return jwtVerify(token, keys, {
    issuer: discovery.issuer,
    audience: AUDIENCE,
    typ: 'at+jwt',
    algorithms: ['EdDSA'],
    requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti'],
    clockTolerance: 0,
    ...overrides,
  });
}

// The token with its claims changed and the original signature kept.
function withClaims(token, changes) {
  const [header, claims, signature] = token.split('.');
  const payload = { ...JSON.parse(Buffer.from(claims, 'base64url')), ...changes };
  return `${header}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${signature}`;
}

before(async () => {
  assert.ok(tesseraUrl, 'TESSERA_URL is not set: run these checks through interop/run');
  discovery = await (await call('/.well-known/openid-configuration')).json();
  keys = createRemoteJWKSet(new URL(discovery.jwks_uri), { timeoutDuration: TIMEOUT_MS });
});

test('jose verifies a Tessera access token with keys from jwks_uri', async () => {
  const token = await freshAccessToken();

  const { payload, protectedHeader } = await verify(token);

  assert.equal(protectedHeader.typ, 'at+jwt');
  assert.equal(protectedHeader.alg, 'EdDSA');
  assert.ok(protectedHeader.kid);
  assert.equal(payload.iss, tesseraUrl);
  assert.equal(payload.aud, AUDIENCE);
  const userinfo = await call('/userinfo', { headers: { authorization: `Bearer ${token}` } });
  assert.equal(userinfo.status, 200);
  assert.equal((await userinfo.json()).sub, payload.sub);
});

test('jose refuses a token whose claims were tampered with', async () => {
  const token = withClaims(await freshAccessToken(), { sub: 'someone-else' });

  await assert.rejects(verify(token), errors.JWSSignatureVerificationFailed);
});

test('jose refuses a token for another audience or issuer', async () => {
  const token = await freshAccessToken();

  for (const [claim, overrides] of [
    ['aud', { audience: 'another-service' }],
    ['iss', { issuer: 'http://127.0.0.1:1' }],
  ]) {
    await assert.rejects(verify(token, overrides),
      (error) => error instanceof errors.JWTClaimValidationFailed && error.claim === claim);
  }
});

test('jose refuses the token when another type or algorithm is required', async () => {
  const token = await freshAccessToken();

  await assert.rejects(verify(token, { typ: 'JWT' }),
    (error) => error instanceof errors.JWTClaimValidationFailed && error.claim === 'typ');
  await assert.rejects(verify(token, { algorithms: ['ES256'] }), errors.JOSEAlgNotAllowed);
});

test('jose refuses the token once it has expired', async () => {
  const token = await freshAccessToken();
  const { payload } = await verify(token);
  // interop/run starts the server with access tokens of a few seconds.
  assert.ok(payload.exp - payload.iat <= 10, 'the server\'s access_ttl is too long for this');

  const untilExpiry = Math.max(0, payload.exp * 1000 - Date.now());
  await new Promise((done) => setTimeout(done, untilExpiry + 1000));

  await assert.rejects(verify(token),
    (error) => error instanceof errors.JWTExpired && error.claim === 'exp');
});
