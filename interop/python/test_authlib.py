# authlib's OAuth 2 client, as a Python app would use it against Tessera: it logs in with
# the password grant, calls a protected route, and when the access token has expired
# renews it through the refresh_token grant by itself before the next call.

import time

import requests
from authlib.integrations.requests_client import OAuth2Session

from conftest import PASSWORD, TIMEOUT_SECS


def test_authlib_renews_an_expired_access_token_by_itself(tessera_url, discovery, username):
    token_endpoint = discovery["token_endpoint"]
    renewals = []

    def remember_renewal(token, refresh_token=None, access_token=None):
        renewals.append({"token": dict(token), "spent_refresh_token": refresh_token})

    # A public first-party client: no secret (token_endpoint_auth_method "none"). authlib
    # renews 60 s before expiry by default; with leeway 0 it waits for the expiry itself,
    # so the first call below is made with the first token.
    session = OAuth2Session(
        client_id="interop-authlib",
        token_endpoint=token_endpoint,
        token_endpoint_auth_method="none",
        update_token=remember_renewal,
        leeway=0,
        default_timeout=TIMEOUT_SECS,
    )
    first = session.fetch_token(
        token_endpoint, grant_type="password", username=username, password=PASSWORD
    )
    first_access, first_refresh = first["access_token"], first["refresh_token"]
    # interop/run starts the server with access tokens of a few seconds.
    assert first["expires_in"] <= 10, "the server's access_ttl is too long for this check"

    before_expiry = session.get(f"{tessera_url}/userinfo")
    assert before_expiry.status_code == 200, before_expiry.text
    assert before_expiry.json()["username"] == username
    assert renewals == []

    # Past the expiry as authlib reckons it, and as the server does: it runs with no
    # leeway, so the first access token is refused from now on.
    time.sleep(max(0.0, first["expires_at"] - time.time()) + 1.5)
    stale = requests.get(
        f"{tessera_url}/userinfo",
        headers={"Authorization": f"Bearer {first_access}"},
        timeout=TIMEOUT_SECS,
    )
    assert stale.status_code == 401

    after_expiry = session.get(f"{tessera_url}/userinfo")

    assert after_expiry.status_code == 200, after_expiry.text
    assert after_expiry.json()["username"] == username
    assert len(renewals) == 1
    renewed = renewals[0]
    assert renewed["spent_refresh_token"] == first_refresh
    assert renewed["token"]["refresh_token"] != first_refresh
    assert renewed["token"]["access_token"] != first_access
    assert session.token["access_token"] == renewed["token"]["access_token"]
