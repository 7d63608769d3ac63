// Mints access tokens in Tessera's shape with jose, as another issuer written for Node
// would, for the Rust guard to verify (crates/tessera-guard/tests/foreign_tokens.rs runs
// this script).
//
// Prints one JSON object: `jwks`, the public keys of a fresh ES256 and a fresh EdDSA
// (Ed25519) key pair with `kid`, `alg` and `use: sig`; `tokens`, one access token signed
// by each, keyed by algorithm; and `unpublished_key`, a token that names the published
// ES256 `kid` but is signed by a key the JWKS does not hold.
//
// Usage: node mint-tokens.mjs --issuer URL --audience NAME

import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';

// The subject and session every minted token names; the Rust test expects them.
const SUBJECT = 'interop-user';
const SESSION = 'interop-session';
const LIFETIME_SECS = 300;

const { values: args } = parseArgs({
  options: { issuer: { type: 'string' }, audience: { type: 'string' } },
});
if (!args.issuer || !args.audience) {
  console.error('usage: node mint-tokens.mjs --issuer URL --audience NAME');
  process.exit(2);
}

// A key pair and its published form; the kid is the RFC 7638 thumbprint, as Tessera's own.
async function keyPair(alg) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { privateKey, kid, jwk: { ...jwk, kid, alg, use: 'sig' } };
}

// Tessera's claims; `typ: at+jwt` (unless told otherwise) and `kid` in the header (RFC
// 9068 §2.1).
function accessToken(alg, privateKey, kid, options = {}) {
  const { audience = args.audience, typ = 'at+jwt', ...extraClaims } = options;
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sid: SESSION, ...extraClaims })
    .setProtectedHeader({ alg, typ, kid })
    .setIssuer(args.issuer)
    .setSubject(SUBJECT)
    .setAudience(audience)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + LIFETIME_SECS)
    .setJti(randomBytes(16).toString('base64url'))
    .sign(privateKey);
}

const es256 = await keyPair('ES256');
const eddsa = await keyPair('EdDSA');
const stranger = await keyPair('ES256');

const minted = {
  jwks: { keys: [es256.jwk, eddsa.jwk] },
  tokens: {
    // The optional claims on one of the two. On the other, `aud` as an array (RFC 7519
    // §4.1.3) and `typ` as the full media type, which RFC 9068 §4 tells verifiers to take.
    ES256: await accessToken('ES256', es256.privateKey, es256.kid,
      { scope: 'notes:read', roles: ['admin'] }),
    EdDSA: await accessToken('EdDSA', eddsa.privateKey, eddsa.kid,
      { audience: [args.audience, 'another-service'], typ: 'application/at+jwt' }),
  },
  unpublished_key: await accessToken('ES256', stranger.privateKey, es256.kid),
};
console.log(JSON.stringify(minted));
