#!/usr/bin/env python3
"""The real boto3 Cognito client through authward to moto's Cognito server (tests/integration/policies.rs).

    cognito_moto.py setup MOTO_URL                  makes a pool, a client with a secret and a public one
    cognito_moto.py run AUTHWARD_URL MOTO_URL IDS   runs the cases through authward

Each command prints one JSON line; the Rust test makes the assertions. AWS credentials and the region
come from the environment (dummy values: moto checks no signature).
"""
import base64
import hashlib
import hmac
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

PASSWORD = "Tulip-Meadow-Lantern-42"


def cognito(url):
    return boto3.client(
        "cognito-idp",
        endpoint_url=url,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def secret_hash(secret, username, client_id):
    """As AWS documents it: Base64(HMAC-SHA256(key=client secret, message=username + client id))."""
    digest = hmac.new(secret.encode(), (username + client_id).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def call(fn, **kwargs):
    try:
        response = fn(**kwargs)
    except ClientError as e:
        return {
            "ok": False,
            "code": e.response["Error"]["Code"],
            "message": e.response["Error"].get("Message", ""),
            "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
        }
    return {"ok": True, "authenticated": "AuthenticationResult" in response}


def setup(moto_url):
    c = cognito(moto_url)
    pool = c.create_user_pool(PoolName="authward")["UserPool"]["Id"]
    flows = ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
    confidential = c.create_user_pool_client(
        UserPoolId=pool, ClientName="web", GenerateSecret=True, ExplicitAuthFlows=flows
    )["UserPoolClient"]
    public = c.create_user_pool_client(UserPoolId=pool, ClientName="mobile", ExplicitAuthFlows=flows)[
        "UserPoolClient"
    ]
    return {
        "pool": pool,
        "confidential": confidential["ClientId"],
        "secret": confidential["ClientSecret"],
        "public": public["ClientId"],
    }


def run(authward_url, moto_url, ids):
    aw, moto = cognito(authward_url), cognito(moto_url)
    pool, cid, secret, pub = ids["pool"], ids["confidential"], ids["secret"], ids["public"]
    email = [{"Name": "email", "Value": "carol@example.com"}]
    out = {
        "sign_up_right_hash": call(
            aw.sign_up,
            ClientId=cid,
            SecretHash=secret_hash(secret, "carol", cid),
            Username="carol",
            Password=PASSWORD,
            UserAttributes=email,
        ),
        "sign_up_wrong_hash": call(
            aw.sign_up,
            ClientId=cid,
            SecretHash=secret_hash("not-the-secret", "dave", cid),
            Username="dave",
            Password=PASSWORD,
        ),
        "sign_up_no_hash": call(aw.sign_up, ClientId=cid, Username="erin", Password=PASSWORD),
        "sign_up_closed": call(aw.sign_up, ClientId=pub, Username="frank", Password=PASSWORD),
    }
    out["moto_users"] = sorted(u["Username"] for u in moto.list_users(UserPoolId=pool)["Users"])
    moto.admin_confirm_sign_up(UserPoolId=pool, Username="carol")

    def sign_in(client_id, hash_for):
        params = {"USERNAME": "carol", "PASSWORD": PASSWORD}
        if hash_for:
            params["SECRET_HASH"] = secret_hash(secret, hash_for, client_id)
        return call(aw.initiate_auth, ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH", AuthParameters=params)

    out["sign_in_right_hash"] = sign_in(cid, "carol")
    out["sign_in_wrong_hash"] = sign_in(cid, "mallory")
    out["unknown_client"] = sign_in("0unknownclient0000000000000", None)
    return out


def main():
    if sys.argv[1] == "setup":
        result = setup(sys.argv[2])
    else:
        result = run(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
