# PyJWT, used the way a Python resource server would use it, verifies Tessera's access
# tokens with keys it finds by itself: the discovery document's jwks_uri, read by
# PyJWKClient. Each refusal below is a check that would let a bad token through if it
# were missing.

import base64
import json
import time

import jwt
import pytest
import requests

from conftest import TIMEOUT_SECS

# The server's default audience (`audience` in its configuration).
AUDIENCE = "tessera"
# Tessera's default signing algorithm, pinned here: never taken from the token.
ALGORITHMS = ["EdDSA"]
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"]
# Every claim Tessera documents (README, "Tokens"); it adds no others.
DOCUMENTED_CLAIMS = {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "scope", "roles"}


@pytest.fixture(scope="module")
def jwks_client(discovery):
    return jwt.PyJWKClient(discovery["jwks_uri"], timeout=TIMEOUT_SECS)


def verify(token, jwks_client, *, issuer, audience=AUDIENCE, algorithms=ALGORITHMS):
    """Verifies signature, issuer, audience and times with no leeway, then the header's
    `typ` (RFC 9068 §2.1), which PyJWT leaves to its caller."""
    key = jwks_client.get_signing_key_from_jwt(token)
    decoded = jwt.decode_complete(
        token,
        key,
        algorithms=algorithms,
        issuer=issuer,
        audience=audience,
        leeway=0,
        options={"require": REQUIRED_CLAIMS},
    )
    if decoded["header"].get("typ") != "at+jwt":
        raise jwt.InvalidTokenError("not an access token (typ is not at+jwt)")
    return decoded


def with_claims(token, **changes):
    """The token with some claims changed and the original signature kept."""
    header, claims, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    payload.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=")
    return f"{header}.{forged.decode()}.{signature}"


def test_pyjwt_verifies_a_tessera_access_token_with_keys_from_jwks_uri(
    tessera_url, discovery, tokens, jwks_client
):
    assert discovery["jwks_uri"].startswith(discovery["issuer"])

    decoded = verify(tokens["access_token"], jwks_client, issuer=discovery["issuer"])

    header, claims = decoded["header"], decoded["payload"]
    assert header["typ"] == "at+jwt" and header["alg"] == "EdDSA" and header["kid"]
    assert claims["iss"] == discovery["issuer"] == tessera_url
    assert claims["aud"] == AUDIENCE
    assert claims["exp"] - claims["iat"] == tokens["expires_in"]
    assert set(claims) <= DOCUMENTED_CLAIMS
    userinfo = requests.get(
        f"{tessera_url}/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=TIMEOUT_SECS,
    )
    assert userinfo.status_code == 200 and userinfo.json()["sub"] == claims["sub"]


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ("tampered claims", jwt.InvalidSignatureError),
        ("another audience", jwt.InvalidAudienceError),
        ("another issuer", jwt.InvalidIssuerError),
        ("another algorithm pinned", jwt.InvalidAlgorithmError),
    ],
)
def test_pyjwt_refuses_a_token_that_fails_a_check(
    discovery, tokens, jwks_client, change, refusal
):
    token, options = tokens["access_token"], {"issuer": discovery["issuer"]}
    if change == "tampered claims":
        token = with_claims(token, sub="someone-else")
    elif change == "another audience":
        options["audience"] = "another-service"
    elif change == "another issuer":
        options["issuer"] = "http://127.0.0.1:1"
    else:
        options["algorithms"] = ["ES256"]

    with pytest.raises(refusal):
        verify(token, jwks_client, **options)


def test_pyjwt_refuses_the_token_once_it_has_expired(discovery, tokens, jwks_client):
    token = tokens["access_token"]
    # interop/run starts the server with access tokens of a few seconds.
    assert tokens["expires_in"] <= 10, "the server's access_ttl is too long for this check"
    expires_at = verify(token, jwks_client, issuer=discovery["issuer"])["payload"]["exp"]

    time.sleep(max(0.0, expires_at - time.time()) + 1)

    with pytest.raises(jwt.ExpiredSignatureError):
        verify(token, jwks_client, issuer=discovery["issuer"])
