#!/usr/bin/env python3
"""PKCE and OAuth grants with authlib's client, through authward to a test authorization server.

    pkce_authlib.py AUTHWARD_URL

Prints one JSON line with each case's outcome; tests/integration/policies.rs makes the assertions.
"""
import json
import sys

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

REDIRECT = "https://app.example/cb"


def main():
    base = sys.argv[1].rstrip("/")
    authorize_url, token_url = base + "/oauth2/authorize", base + "/oauth2/token"

    def session(scope="openid email", method="S256"):
        return OAuth2Session(
            "web",
            redirect_uri=REDIRECT,
            scope=scope,
            code_challenge_method=method,
            token_endpoint_auth_method="none",
        )

    def authorize(s, verifier=None):
        kwargs = {"code_verifier": verifier} if verifier else {}
        uri, _state = s.create_authorization_url(authorize_url, **kwargs)
        r = requests.get(uri, allow_redirects=False, timeout=10)
        outcome = {"status": r.status_code, "location": r.headers.get("location")}
        if r.status_code >= 400:
            outcome["error"] = r.json().get("error")
        return outcome

    def fetch(s, **kwargs):
        try:
            s.fetch_token(token_url, **kwargs)
        except OAuthError as e:
            return {"error": e.error}
        return {"token": True}

    out = {}
    verifier = generate_token(64)
    s = session()
    first = authorize(s, verifier)
    out["pkce_flow"] = fetch(s, authorization_response=first["location"], code_verifier=verifier)
    # The same verifier again means the same code_challenge: a static verifier is refused.
    out["replayed_challenge"] = authorize(session(), verifier)
    out["no_pkce"] = authorize(session(method=None))
    out["plain_method"] = authorize(session(method="plain"), generate_token(64))
    s = session()
    flow = authorize(s, generate_token(64))
    out["missing_verifier"] = fetch(s, authorization_response=flow["location"])
    s = session()
    flow = authorize(s, generate_token(64))
    out["wrong_verifier"] = fetch(s, authorization_response=flow["location"], code_verifier=generate_token(64))
    out["scope_not_allowed"] = authorize(session(scope="openid aws.cognito.signin.user.admin"), generate_token(64))
    out["password_grant"] = fetch(session(), username="alice", password="Tulip-Meadow-Lantern-42")
    out["client_credentials"] = fetch(session(), grant_type="client_credentials")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
