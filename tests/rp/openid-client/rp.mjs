// node openid-client 6, used as an app uses it, against an idbridge broker.
//
// crates/idbridge/tests/e2e/rp_libraries.rs starts the broker and this script,
// and plays the browser: for each authorization URL the script prints
// (`AUTHORIZE {"purpose", "url"}`), it signs in and answers with the URL the
// broker sent the browser back to (`CALLBACK url`). Everything else is the
// library's own work: discovery, PKCE, state, nonce, RFC 9207 `iss`, ID token
// validation against the JWKS, userinfo, refresh, introspection, revocation and
// the end-session URL. The last line is `RESULT {...}`, what the test asserts.
// Settings come from RP_CONFIG (JSON: issuer, client_id, client_secret,
// redirect_uri, post_logout_redirect_uri).
import * as client from "openid-client";
import { createInterface } from "node:readline";

const cfg = JSON.parse(process.env.RP_CONFIG);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function browse(purpose, url) {
  console.log(`AUTHORIZE ${JSON.stringify({ purpose, url: url.href })}`);
  const { value, done } = await lines.next();
  if (done || !value.startsWith("CALLBACK ")) throw new Error(`no callback for ${purpose}`);
  return new URL(value.slice("CALLBACK ".length));
}

// What a library error says: the OAuth error code when there is one.
function failure(e) {
  return { name: e.name, code: e.code, error: e.error ?? e.cause?.error ?? null };
}

const result = {};
// Loopback http issuers are refused unless the app allows them (the only option set).
const config = await client.discovery(
  new URL(cfg.issuer),
  cfg.client_id,
  undefined,
  client.ClientSecretBasic(cfg.client_secret),
  { execute: [client.allowInsecureRequests] },
);
result.issuer = config.serverMetadata().issuer;

// Code flow with PKCE, state and nonce.
const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const authorizeUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: cfg.redirect_uri,
  scope: "openid profile email offline_access",
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: "S256",
  state,
  nonce,
});
const back = await browse("sign_in", authorizeUrl);
const tokens = await client.authorizationCodeGrant(config, back, {
  pkceCodeVerifier: verifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
});
const claims = tokens.claims();
result.id_token = { sub: claims.sub, name: claims.name, aud: claims.aud, email: claims.email ?? null };
result.token_type = tokens.token_type;
result.scope = tokens.scope;
result.has_refresh_token = typeof tokens.refresh_token === "string";

const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
result.userinfo = { sub: userinfo.sub, name: userinfo.name ?? null };

// Refresh: a new refresh token, an ID token for the same person.
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
result.refresh = {
  rotated: refreshed.refresh_token !== tokens.refresh_token,
  sub: refreshed.claims()?.sub ?? null,
};

result.introspection_before = (await client.tokenIntrospection(config, refreshed.access_token)).active;
await client.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: "refresh_token" });
result.introspection_after = (await client.tokenIntrospection(config, refreshed.access_token)).active;
try {
  await client.refreshTokenGrant(config, refreshed.refresh_token);
  result.refresh_after_revoke = { refused: false };
} catch (e) {
  result.refresh_after_revoke = { refused: true, ...failure(e) };
}

// A silent request without a session: the library reads the error response
// (with its state and iss) and reports the OAuth error.
const silentState = client.randomState();
const silentUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: cfg.redirect_uri,
  scope: "openid",
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: "S256",
  state: silentState,
  prompt: "none",
});
const silentBack = await browse("silent_without_session", silentUrl);
try {
  await client.authorizationCodeGrant(config, silentBack, { pkceCodeVerifier: verifier, expectedState: silentState });
  result.silent = { refused: false };
} catch (e) {
  result.silent = { refused: true, ...failure(e) };
}

// Pushed authorization request (RFC 9126): the library pushes the request and
// sends the browser with only client_id and request_uri.
const parState = client.randomState();
const parNonce = client.randomNonce();
const parUrl = await client.buildAuthorizationUrlWithPAR(config, {
  redirect_uri: cfg.redirect_uri,
  scope: "openid profile",
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: "S256",
  state: parState,
  nonce: parNonce,
});
result.par_browser_params = [...parUrl.searchParams.keys()].sort();
const parBack = await browse("pushed_sign_in", parUrl);
const parTokens = await client.authorizationCodeGrant(config, parBack, {
  pkceCodeVerifier: verifier,
  expectedState: parState,
  expectedNonce: parNonce,
  idTokenExpected: true,
});
result.par_sub = parTokens.claims().sub;

// RP-initiated logout: the URL the library builds, for the test's browser to follow.
result.end_session_url = client.buildEndSessionUrl(config, {
  id_token_hint: tokens.id_token,
  post_logout_redirect_uri: cfg.post_logout_redirect_uri,
  state: "rp-bye",
}).href;

console.log(`RESULT ${JSON.stringify(result)}`);
process.exit(0);
