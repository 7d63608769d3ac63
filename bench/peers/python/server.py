"""The FastAPI + PyJWT peer of bench/run: a resource server checking Tessera's access
tokens as a Python team would write it. The issuer's JWKS is read once at start from the
file bench/run writes; `GET /auth/verify` answers as Tessera's forward-auth route does
(200 with X-Tessera-User, or 401 with the RFC 6750 challenge), `GET /healthz` is open.

Run by uvicorn (settings from the environment, since each worker imports this module):
BENCH_JWKS_FILE, BENCH_ISSUER, BENCH_AUDIENCE.
"""

import json
import os

import jwt
from fastapi import FastAPI, Header, Response

ISSUER = os.environ["BENCH_ISSUER"]
AUDIENCE = os.environ["BENCH_AUDIENCE"]
# Tessera's allowance for clock skew, so both sides accept the same tokens.
LEEWAY_SECS = 10

with open(os.environ["BENCH_JWKS_FILE"], encoding="utf-8") as jwks_file:
    KEYS = {key.key_id: key for key in jwt.PyJWKSet.from_dict(json.load(jwks_file)).keys}

REFUSAL_HEADERS = {"WWW-Authenticate": 'Bearer error="invalid_token"'}

app = FastAPI()


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


@app.get("/auth/verify")
async def verify(authorization: str | None = Header(default=None)):
    if not authorization or not authorization.startswith("Bearer "):
        return Response(status_code=401, headers=REFUSAL_HEADERS)
    token = authorization[len("Bearer "):]
    try:
        header = jwt.get_unverified_header(token)
        # RFC 9068 section 4: an access token says so in `typ`.
        if header.get("typ") not in ("at+jwt", "application/at+jwt"):
            return Response(status_code=401, headers=REFUSAL_HEADERS)
        key = KEYS.get(header.get("kid"))
        if key is None:
            return Response(status_code=401, headers=REFUSAL_HEADERS)
        # The algorithm is pinned here, not taken from the token's header.
        claims = jwt.decode(
            token,
            key,
            algorithms=["EdDSA"],
            issuer=ISSUER,
            audience=AUDIENCE,
            leeway=LEEWAY_SECS,
            options={"require": ["exp", "nbf", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError:
        return Response(status_code=401, headers=REFUSAL_HEADERS)
    return Response(status_code=200, headers={"X-Tessera-User": claims["sub"]})
