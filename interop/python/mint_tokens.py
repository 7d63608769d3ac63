# Mints access tokens in Tessera's shape with PyJWT and `cryptography`, as another issuer
# written in Python would, for the Rust guard to verify
# (crates/tessera-guard/tests/foreign_tokens.rs runs this script).
#
# Prints one JSON object: `jwks`, the public keys of a fresh ES256 and a fresh EdDSA
# (Ed25519) key pair with `kid`, `alg` and `use: sig`; `tokens`, one access token signed
# by each, keyed by algorithm; and `unpublished_key`, a token that names the published
# ES256 `kid` but is signed by a key the JWKS does not hold.

import argparse
import json
import secrets
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

# The subject and session every minted token names; the Rust test expects them.
SUBJECT = "interop-user"
SESSION = "interop-session"
LIFETIME_SECS = 300


def public_jwk(algorithm, private_key, kid):
    jwk = jwt.get_algorithm_by_name(algorithm).to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}


def access_token(algorithm, private_key, kid, issuer, audience, **extra_claims):
    """Signs Tessera's claims; `typ: at+jwt` and `kid` in the header (RFC 9068 §2.1)."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": SUBJECT,
        "aud": audience,
        "exp": now + LIFETIME_SECS,
        "iat": now,
        "nbf": now,
        "jti": secrets.token_urlsafe(16),
        "sid": SESSION,
        **extra_claims,
    }
    headers = {"typ": "at+jwt", "kid": kid}
    return jwt.encode(claims, private_key, algorithm=algorithm, headers=headers)


def main():
    parser = argparse.ArgumentParser(description="Mint access tokens in Tessera's shape.")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    args = parser.parse_args()

    es256 = ec.generate_private_key(ec.SECP256R1())
    eddsa = ed25519.Ed25519PrivateKey.generate()
    stranger = ec.generate_private_key(ec.SECP256R1())
    # Key ids of the issuer's own choosing: Tessera must not expect its thumbprints.
    es256_kid, eddsa_kid = "python-es256", "python-eddsa"
    for_guard = {"issuer": args.issuer, "audience": args.audience}

    minted = {
        "jwks": {
            "keys": [
                public_jwk("ES256", es256, es256_kid),
                public_jwk("EdDSA", eddsa, eddsa_kid),
            ]
        },
        "tokens": {
            # The optional claims, on one of the two.
            "ES256": access_token(
                "ES256", es256, es256_kid, **for_guard, scope="notes:read", roles=["admin"]
            ),
            "EdDSA": access_token("EdDSA", eddsa, eddsa_kid, **for_guard),
        },
        "unpublished_key": access_token("ES256", stranger, es256_kid, **for_guard),
    }
    print(json.dumps(minted))


if __name__ == "__main__":
    main()
