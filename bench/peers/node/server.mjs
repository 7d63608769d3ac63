// The express + jose peer of bench/run: a resource server checking Tessera's access
// tokens as a Node team would write it. The issuer's JWKS is read once at start from the
// file bench/run writes; `GET /auth/verify` answers as Tessera's forward-auth route does
// (200 with X-Tessera-User, or 401 with the RFC 6750 challenge), `GET /healthz` is open.
// One process per worker (node:cluster), so that it can use every core as Tessera does.
//
//   node server.mjs HOST:PORT JWKS_FILE ISSUER AUDIENCE [WORKERS, default: cores]

import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import express from 'express';
import { createLocalJWKSet, jwtVerify } from 'jose';

const [listen, jwksFile, issuer, audience, workersArg] = process.argv.slice(2);
const workers = Number(workersArg ?? availableParallelism());

if (cluster.isPrimary && workers > 1) {
  for (let index = 0; index < workers; index += 1) cluster.fork();
  // One worker gone means the measurement is wrong: stop everything.
  cluster.on('exit', () => process.exit(1));
} else {
  serve();
}

function serve() {
  const keys = createLocalJWKSet(JSON.parse(readFileSync(jwksFile, 'utf8')));
  const options = {
    issuer,
    audience,
    // The algorithm is pinned here, not taken from the token's header.
    algorithms: ['EdDSA'],
    typ: 'at+jwt',
    // Tessera's allowance for clock skew, so both sides accept the same tokens.
    clockTolerance: 10,
    requiredClaims: ['exp', 'nbf', 'iat', 'sub'],
  };
  const refuse = (response) =>
    response.status(401).set('WWW-Authenticate', 'Bearer error="invalid_token"').end();

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.get('/healthz', (request, response) => response.json({ status: 'ok' }));
  app.get('/auth/verify', async (request, response) => {
    const header = request.get('authorization') ?? '';
    if (!header.startsWith('Bearer ')) return refuse(response);
    try {
      const { payload } = await jwtVerify(header.slice('Bearer '.length), keys, options);
      return response.status(200).set('X-Tessera-User', payload.sub).end();
    } catch {
      return refuse(response);
    }
  });
  const separator = listen.lastIndexOf(':');
  app.listen(Number(listen.slice(separator + 1)), listen.slice(0, separator));
}
