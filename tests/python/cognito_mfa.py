"""Cognito end to end: the real boto3 client signs in through authward to moto's Cognito server.

Run by tests/integration/cognito.rs with: COGNITO_URL (moto), AUTHWARD_URL (the proxy in front of it),
ADMIN_URL and ADMIN_TOKEN (authward's admin API). Sets up a user pool, an app client and a user in
moto, enrolls a TOTP factor through authward's admin API, then signs in through authward: the sign-in
is stepped up (SOFTWARE_TOKEN_MFA), a wrong code is a CodeMismatchException, and the right code,
computed here (RFC 6238 by hand), gets the tokens that moto issued; then an unknown user and a wrong
password are told the same. Prints one JSON line of results.
"""

import base64
import hashlib
import hmac
import json
import os
import struct
import sys
import time
import urllib.request

import boto3
from botocore.exceptions import ClientError

USER = "alice"
PASSWORD = "Correct-Horse-Battery-9"


def client(url):
    return boto3.client(
        "cognito-idp",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def totp(secret_b32, at=None, step=30, digits=6):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8), casefold=True)
    counter = int((time.time() if at is None else at) // step)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def enroll(admin_url, token, user):
    req = urllib.request.Request(
        f"{admin_url}/admin/v1/users/{user}/mfa/totp",
        method="PUT",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["secret"]


def main():
    cognito = client(os.environ["COGNITO_URL"])
    through = client(os.environ["AUTHWARD_URL"])
    pool = cognito.create_user_pool(PoolName="authward-test")["UserPool"]["Id"]
    app = cognito.create_user_pool_client(
        UserPoolId=pool,
        ClientName="web",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    cognito.admin_create_user(UserPoolId=pool, Username=USER, MessageAction="SUPPRESS")
    cognito.admin_set_user_password(UserPoolId=pool, Username=USER, Password=PASSWORD, Permanent=True)
    secret = enroll(os.environ["ADMIN_URL"], os.environ["ADMIN_TOKEN"], USER)

    def sign_in():
        return through.initiate_auth(
            AuthFlow="USER_PASSWORD_AUTH",
            ClientId=app,
            AuthParameters={"USERNAME": USER, "PASSWORD": PASSWORD},
        )

    def respond(session, code):
        return through.respond_to_auth_challenge(
            ClientId=app,
            ChallengeName="SOFTWARE_TOKEN_MFA",
            Session=session,
            ChallengeResponses={"USERNAME": USER, "SOFTWARE_TOKEN_MFA_CODE": code},
        )

    out = {}
    first = sign_in()
    out["challenge"] = first.get("ChallengeName")
    out["tokens_before_mfa"] = "AuthenticationResult" in first
    session = first["Session"]
    code = totp(secret)
    wrong = str((int(code) + 500000) % 1000000).zfill(6)
    try:
        respond(session, wrong)
        out["wrong_code"] = "accepted"
    except ClientError as e:
        out["wrong_code"] = e.response["Error"]["Code"]
    done = respond(session, code)
    tokens = done["AuthenticationResult"]
    out["token_type"] = tokens.get("TokenType")
    # The tokens are moto's own: the access token names the pool and the user.
    claims = json.loads(base64.urlsafe_b64decode(tokens["AccessToken"].split(".")[1] + "=="))
    out["issuer_is_pool"] = claims.get("iss", "").endswith(pool)
    out["username"] = claims.get("username")
    cognito_user = cognito.get_user(AccessToken=tokens["AccessToken"])
    out["moto_accepts_the_token"] = cognito_user["Username"] == USER
    try:
        respond(session, code)
        out["replay"] = "accepted"
    except ClientError as e:
        out["replay"] = e.response["Error"]["Code"]
    # No user enumeration: an unknown user and a wrong password get the same error.
    for name, user, password in [("unknown_user", "nobody", PASSWORD), ("wrong_password", USER, "Wrong-Pa55")]:
        try:
            through.initiate_auth(
                AuthFlow="USER_PASSWORD_AUTH",
                ClientId=app,
                AuthParameters={"USERNAME": user, "PASSWORD": password},
            )
            out[name] = "accepted"
        except ClientError as e:
            out[name] = f'{e.response["Error"]["Code"]}: {e.response["Error"]["Message"]}'
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
