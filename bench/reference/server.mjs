// The reference OpenID provider for bench/compare.sh: panva's oidc-provider
// (OpenID Certified) on 127.0.0.1, configured as the broker is measured:
// its own in-memory store, refresh-token rotation on every use, an ID token
// on every refresh (the scope has openid), opaque access tokens (its default),
// client "bench" with client_secret_basic.
//
// Environment: PORT, ALG (RS256 | ES256), CHAINS (refresh-token chains to seed),
// SECRET (the client's secret), TOKENS_OUT (file that receives one refresh
// token per chain, a line each, before it prints "ready").
//
// The store is the provider's own in-memory adapter, with its LRU sized so
// nothing live is evicted (its default keeps 1,000 entries, which drops grants
// of running chains: those refreshes fail with invalid_grant).
//
// Grants are seeded directly through the provider's models, as bench_seed
// seeds the broker's database: one account and one grant per chain, scope
// "openid offline_access".
import crypto from 'node:crypto';
import fs from 'node:fs';
import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

const port = Number(process.env.PORT || 18444);
const alg = process.env.ALG || 'RS256';
const chains = Number(process.env.CHAINS || 64);
const secret = process.env.SECRET || 'bench-secret-0123456789abcdef';
const tokensOut = process.env.TOKENS_OUT;

function signingKey() {
  const pair = alg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...pair.privateKey.export({ format: 'jwk' }), kid: 'bench', alg, use: 'sig' };
}

const issuer = `http://127.0.0.1:${port}`;
const storage = new LRU({ maxSize: 10_000_000 });
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'bench',
    client_secret: secret,
    token_endpoint_auth_method: 'client_secret_basic',
    redirect_uris: ['https://bench.example/cb'],
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token'],
    id_token_signed_response_alg: alg,
  }],
  adapter: (model) => new MemoryAdapter(model, storage),
  jwks: { keys: [signingKey()] },
  cookies: { keys: ['idbridge-bench-reference-cookie-key'] },
  scopes: ['openid', 'offline_access'],
  features: { devInteractions: { enabled: false } },
  issueRefreshToken: async () => true,
  rotateRefreshToken: true,
  async findAccount(_ctx, id) {
    return { accountId: id, claims: async () => ({ sub: id }) };
  },
  ttl: { AccessToken: 3600, IdToken: 3600, RefreshToken: 30 * 86400, Grant: 30 * 86400 },
});

const now = Math.floor(Date.now() / 1000);
const client = await provider.Client.find('bench');
const tokens = [];
for (let i = 0; i < chains; i += 1) {
  const accountId = `user-${i}`;
  const grant = new provider.Grant({ clientId: 'bench', accountId });
  grant.addOIDCScope('openid offline_access');
  const grantId = await grant.save();
  const rt = new provider.RefreshToken({
    accountId,
    client,
    grantId,
    scope: 'openid offline_access',
    gty: 'authorization_code',
    authTime: now,
    iiat: now,
  });
  tokens.push(await rt.save());
}
if (tokensOut) fs.writeFileSync(tokensOut, `${tokens.join('\n')}\n`);

provider.listen(port, '127.0.0.1').on('listening', () => {
  process.stdout.write('ready\n');
});
process.on('SIGTERM', () => process.exit(0));
