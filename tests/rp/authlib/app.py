"""A Flask app signing people in through idbridge with Authlib's Flask client,
written the way Authlib's documentation shows, with nothing of Authlib changed.

crates/idbridge/tests/e2e/rp_libraries.rs starts it and plays the browser:
the app listens on 127.0.0.1 (a free port, printed as `LISTENING port`), then
reads one line of JSON from stdin (issuer, client_id, client_secret: the test
starts the broker once it knows the app's redirect URI) and serves:

- /login: Authlib's authorize_redirect (state and nonce in the Flask session,
  PKCE S256); extra query parameters (prompt) are passed on.
- /callback: authorize_access_token (state, code exchange with
  client_secret_basic, the ID token validated against the JWKS with the
  nonce, at_hash and issuer), then userinfo, a refresh, introspection,
  revocation and a refresh after it; answers JSON for the test to assert.
- /logout: logout_redirect (RP-initiated logout with the ID token as hint);
  /signed-out: validate_logout_response (the state comes back).
"""

import json
import os
import sys

from authlib.integrations.flask_client import OAuth, OAuthError
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask, jsonify, request, session
from werkzeug.serving import make_server

app = Flask(__name__)
app.secret_key = os.urandom(24)
server = make_server("127.0.0.1", 0, app)
base = f"http://127.0.0.1:{server.server_port}"
print(f"LISTENING {server.server_port}", flush=True)
cfg = json.loads(sys.stdin.readline())

oauth = OAuth(app)
oauth.register(
    "idbridge",
    client_id=cfg["client_id"],
    client_secret=cfg["client_secret"],
    server_metadata_url=cfg["issuer"] + "/.well-known/openid-configuration",
    client_kwargs={
        "scope": "openid profile email offline_access",
        "code_challenge_method": "S256",
        "token_endpoint_auth_method": "client_secret_basic",
    },
)
idb = oauth.idbridge


def plain_session():
    # Introspection and revocation are not part of the Flask client: the
    # requests session Authlib provides for them.
    return OAuth2Session(
        cfg["client_id"],
        cfg["client_secret"],
        token_endpoint_auth_method="client_secret_basic",
    )


@app.get("/login")
def login():
    return idb.authorize_redirect(base + "/callback", **request.args.to_dict())


@app.get("/callback")
def callback():
    try:
        token = idb.authorize_access_token()
    except OAuthError as e:
        return jsonify(refused=True, error=e.error), 400
    result = {"refused": False, "iss_param": request.args.get("iss")}
    claims = token["userinfo"]  # the validated ID token's claims
    result["id_token"] = {"sub": claims["sub"], "name": claims.get("name"), "aud": claims["aud"]}
    result["has_refresh_token"] = "refresh_token" in token
    result["userinfo"] = dict(idb.userinfo(token=token))

    refreshed = idb.fetch_access_token(grant_type="refresh_token", refresh_token=token["refresh_token"])
    result["refresh"] = {
        "rotated": refreshed["refresh_token"] != token["refresh_token"],
        "sub": dict(idb.parse_id_token(refreshed, nonce=None) or {}).get("sub"),
    }
    metadata = idb.load_server_metadata()
    with plain_session() as s:
        active = s.introspect_token(metadata["introspection_endpoint"], token=refreshed["access_token"])
        result["introspection_before"] = active.json()["active"]
        s.revoke_token(metadata["revocation_endpoint"], token=refreshed["refresh_token"], token_type_hint="refresh_token")
        after = s.introspect_token(metadata["introspection_endpoint"], token=refreshed["access_token"])
        result["introspection_after"] = after.json()["active"]
    try:
        idb.fetch_access_token(grant_type="refresh_token", refresh_token=refreshed["refresh_token"])
        result["refresh_after_revoke"] = {"refused": False}
    except OAuthError as e:
        result["refresh_after_revoke"] = {"refused": True, "error": e.error}
    session["id_token"] = token["id_token"]
    return jsonify(result)


@app.get("/logout")
def logout():
    return idb.logout_redirect(base + "/signed-out", id_token_hint=session["id_token"])


@app.get("/signed-out")
def signed_out():
    try:
        idb.validate_logout_response()
    except OAuthError as e:
        return jsonify(signed_out=False, error=e.description), 400
    return jsonify(signed_out=True)


server.serve_forever()
