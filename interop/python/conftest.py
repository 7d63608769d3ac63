# What the Python interop checks share: the running Tessera server that `interop/run`
# started (its URL in TESSERA_URL), its discovery document, and fresh accounts on it.

import os
import secrets

import pytest
import requests

PASSWORD = "correct horse battery"
# Every request to the local server is bounded, so a hung server fails the run instead of
# stalling it.
TIMEOUT_SECS = 10


@pytest.fixture(scope="session")
def tessera_url():
    url = os.environ.get("TESSERA_URL")
    if not url:
        pytest.fail("TESSERA_URL is not set: run these checks through interop/run")
    return url.rstrip("/")


@pytest.fixture(scope="session")
def discovery(tessera_url):
    response = requests.get(
        f"{tessera_url}/.well-known/openid-configuration", timeout=TIMEOUT_SECS
    )
    response.raise_for_status()
    return response.json()


@pytest.fixture
def username(tessera_url):
    """A new account on the server; its password is PASSWORD."""
    name = f"py{secrets.token_hex(6)}"
    response = requests.post(
        f"{tessera_url}/auth/signup",
        json={"username": name, "password": PASSWORD},
        timeout=TIMEOUT_SECS,
    )
    assert response.status_code == 201, response.text
    return name


@pytest.fixture
def tokens(discovery, username):
    """A fresh login of a new account: the token endpoint's answer to the password grant
    (RFC 6749 §4.3), form-encoded as the RFC has it."""
    response = requests.post(
        discovery["token_endpoint"],
        data={"grant_type": "password", "username": username, "password": PASSWORD},
        timeout=TIMEOUT_SECS,
    )
    assert response.status_code == 200, response.text
    return response.json()
