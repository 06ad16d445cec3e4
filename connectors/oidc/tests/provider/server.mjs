// A real, independent OpenID provider for the oidc connector's tests: panva's
// oidc-provider (certified by the OpenID Foundation) on 127.0.0.1, with a small
// config. Started by connectors/oidc/src/test_provider.rs, which passes the
// config as JSON in OIDC_TEST_CONFIG:
//   { "port": 0, "redirect_uris": [...], "client_secret": "...", "alg": "RS256",
//     "host": "127.0.0.1", "interactive": false }
// ("host": the name in its issuer, e.g. localhost: it always listens on
// 127.0.0.1; "interactive": a person signs in and consents on pages.mjs's pages,
// for the browser tests, instead of the self-approving interactions below).
// It prints one JSON line when it listens: { "issuer", "client_key_pem" }.
//
// Clients: "idbridge" (client_secret_basic), "idbridge-post"
// (client_secret_post), "idbridge-jwt" (private_key_jwt, with a key made at
// start whose private half is printed). Every client may use the code and
// refresh token grants; PKCE is required; a refresh token is always issued.
//
// Without "interactive", interactions approve themselves, so a plain HTTP client with cookies can
// sign in: login_hint "refuse" answers access_denied; login_hint naming an
// account signs that account in; anything else signs in alice. Consent is
// implied (loadExistingGrant grants what was asked).
//
// Test hooks: POST /test/disable/<account> makes the account unknown (its
// refresh tokens then fail with invalid_grant).
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import { interaction } from './pages.mjs';

const cfg = JSON.parse(process.env.OIDC_TEST_CONFIG || '{}');
const alg = cfg.alg || 'RS256';
const interactive = cfg.interactive === true;

const accounts = {
  alice: {
    name: 'Alice Liddell',
    given_name: 'Alice',
    family_name: 'Liddell',
    preferred_username: 'alice',
    picture: 'https://pictures.example.test/alice.png',
    locale: 'en',
    email: 'alice@example.test',
    email_verified: true,
    phone_number: '+8613800138000',
    phone_number_verified: false,
    groups: ['staff', 'admins'],
  },
  bob: {
    name: 'Bob Builder',
    preferred_username: 'bob',
    email: 'bob@example.test',
    email_verified: false,
    groups: 'builders',
  },
};
const disabled = new Set();

function signingKey() {
  const kid = crypto.randomBytes(8).toString('hex');
  let pair;
  if (alg === 'ES256') pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  else if (alg === 'EdDSA') pair = crypto.generateKeyPairSync('ed25519');
  else pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...pair.privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

const client = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const clientJwk = { ...client.publicKey.export({ format: 'jwk' }), kid: 'idbridge-client-key', alg: 'RS256', use: 'sig' };
const clientPem = client.privateKey.export({ format: 'pem', type: 'pkcs8' });

// Consent implied: a signed-in person is granted what the client asks for.
async function loadExistingGrant(ctx) {
  const accountId = ctx.oidc.session.accountId;
  if (!accountId) return undefined;
  const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId });
  grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
  await grant.save();
  return grant;
}

const server = http.createServer();
server.listen(cfg.port || 0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://${cfg.host || '127.0.0.1'}:${port}`;
  const common = {
    redirect_uris: cfg.redirect_uris || [],
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token'],
    id_token_signed_response_alg: alg,
  };
  const provider = new Provider(issuer, {
    clients: [
      { ...common, client_id: 'idbridge', client_secret: cfg.client_secret, token_endpoint_auth_method: 'client_secret_basic' },
      { ...common, client_id: 'idbridge-post', client_secret: cfg.client_secret, token_endpoint_auth_method: 'client_secret_post' },
      { ...common, client_id: 'idbridge-jwt', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [clientJwk] } },
    ],
    jwks: { keys: [signingKey()] },
    cookies: { keys: ['idbridge-oidc-test-cookie-key'] },
    claims: {
      openid: ['sub'],
      profile: ['name', 'given_name', 'family_name', 'preferred_username', 'picture', 'locale'],
      email: ['email', 'email_verified'],
      phone: ['phone_number', 'phone_number_verified'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'phone', 'groups'],
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    issueRefreshToken: async (_ctx, c) => c.grantTypeAllowed('refresh_token'),
    // A person consents on the interactive pages; otherwise what was asked is granted.
    ...(interactive ? {} : { loadExistingGrant }),
    async findAccount(_ctx, id) {
      if (!accounts[id] || disabled.has(id)) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...accounts[id] }) };
    },
    ttl: { AccessToken: 3600, IdToken: 3600, RefreshToken: 86400, Session: 86400, Interaction: 600, Grant: 86400 },
    renderError(ctx, out) {
      ctx.type = 'text/plain';
      ctx.body = `${out.error}: ${out.error_description || ''}`;
    },
  });
  const callback = provider.callback();
  server.on('request', async (req, res) => {
    try {
      if (interactive && (await interaction(provider, accounts, req, res))) return;
      const selfApproving = req.url.match(/^\/interaction\/([^/?]+)/);
      if (selfApproving) {
        const details = await provider.interactionDetails(req, res);
        const hint = details.params.login_hint;
        if (hint === 'refuse') {
          await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the person said no' }, { mergeWithLastSubmission: false });
          return;
        }
        if (details.prompt.name === 'login') {
          const accountId = accounts[hint] ? hint : 'alice';
          await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
          return;
        }
        const grant = new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
        grant.addOIDCScope(details.params.scope);
        const grantId = await grant.save();
        await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
        return;
      }
      const disable = req.url.match(/^\/test\/disable\/([a-z]+)$/);
      if (disable && req.method === 'POST') {
        disabled.add(disable[1]);
        res.end('ok');
        return;
      }
      callback(req, res);
    } catch (e) {
      res.statusCode = 500;
      res.end(String(e && e.stack || e));
    }
  });
  process.stdout.write(`${JSON.stringify({ issuer, client_key_pem: clientPem })}\n`);
});

process.on('SIGTERM', () => process.exit(0));
