// An OAuth 2.0 / OpenID authorization server for tokenwarden's interoperability tests:
// panva's oidc-provider (OpenID Certified), pinned in package.json, on 127.0.0.1 and a free
// port. It prints one line of JSON when it listens (the token endpoint and a fresh refresh
// token), then serves until its process is killed.
//
// Usage: node server.mjs <client secret> <access token lifetime in seconds> [<DPoP jkt>]
//
// DPoP (RFC 9449) is on, with nonces required: a request with a proof gets
// `use_dpop_nonce` until its proof carries the server's nonce. Client `cc-dpop` must use DPoP;
// given a key thumbprint, the public client `rt-dpop` gets a refresh token bound to that key.

import http from 'node:http';

import Provider from 'oidc-provider';
import { createPublicKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

const [secret, ttlArg, dpopJkt] = process.argv.slice(2);
const ttl = Number(ttlArg ?? 5);
const listener = http.createServer();
await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve));
const { port } = listener.address();
const issuer = `http://127.0.0.1:${port}`;

const resource = 'urn:tokenwarden:api';
// The public half of tests/fixtures/rsa_private.pem, for the private_key_jwt client.
const fixtures = new URL('../fixtures/', import.meta.url);
const publicJwk = {
  ...createPublicKey(readFileSync(new URL('rsa_public.pem', fixtures))).export({ format: 'jwk' }),
  kid: 'tokenwarden-test',
  alg: 'RS256',
  use: 'sig',
};
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'cc-basic',
      client_secret: secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'cc-post',
      client_secret: secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_post',
    },
    {
      client_id: 'cc-pkjwt',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'RS256',
      jwks: { keys: [publicJwk] },
    },
    {
      client_id: 'cc-dpop',
      client_secret: secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      dpop_bound_access_tokens: true,
    },
    {
      client_id: 'rt-dpop',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
      token_endpoint_auth_method: 'none',
      dpop_bound_access_tokens: true,
    },
    {
      client_id: 'rt-client',
      client_secret: secret,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    devInteractions: { enabled: false },
    dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api',
        accessTokenFormat: 'jwt',
        accessTokenTTL: ttl,
      }),
    },
  },
  scopes: ['openid', 'offline_access', 'api'],
  ttl: { RefreshToken: 24 * 3600, Grant: 24 * 3600 },
  // Every refresh rotates the refresh token; reusing a rotated one revokes the grant.
  rotateRefreshToken: true,
});

// A grant and its first refresh token, as an authorization-code login would leave them.
const grant = new provider.Grant({ accountId: 'user-1', clientId: 'rt-client' });
grant.addOIDCScope('openid offline_access');
grant.addResourceScope(resource, 'api');
const grantId = await grant.save();
const client = await provider.Client.find('rt-client');
const refreshToken = await new provider.RefreshToken({
  accountId: 'user-1',
  client,
  grantId,
  gty: 'authorization_code',
  scope: 'openid offline_access',
  resource,
  iiat: Math.floor(Date.now() / 1000),
}).save();

// A refresh token of the public client, bound to the test's DPoP key.
let dpopRefreshToken;
if (dpopJkt) {
  const dpopGrant = new provider.Grant({ accountId: 'user-2', clientId: 'rt-dpop' });
  dpopGrant.addOIDCScope('openid offline_access');
  dpopGrant.addResourceScope(resource, 'api');
  const dpopGrantId = await dpopGrant.save();
  dpopRefreshToken = await new provider.RefreshToken({
    accountId: 'user-2',
    client: await provider.Client.find('rt-dpop'),
    grantId: dpopGrantId,
    gty: 'authorization_code',
    scope: 'openid offline_access',
    resource,
    iiat: Math.floor(Date.now() / 1000),
    jkt: dpopJkt,
  }).save();
}

listener.on('request', provider.callback());
console.log(JSON.stringify({
  issuer,
  token_endpoint: `${issuer}/token`,
  introspection_endpoint: `${issuer}/token/introspection`,
  refresh_token: refreshToken,
  dpop_refresh_token: dpopRefreshToken,
}));
