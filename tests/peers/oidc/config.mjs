// Configuration of the OAuth test peer: clients, scopes, lifetimes and oidc-provider options.
// Everything tests may depend on is exported so that the README, server.mjs and selftest.mjs
// agree on one set of values.

import { readFileSync } from 'node:fs';

// Shared secret of the confidential clients. It is full of characters that are reserved in
// URLs and in the Basic scheme (':' '+' '/' '=' '%' '&' '?' '#'), so a client that does not
// form-url-encode the credentials before base64 (RFC 6749 §2.3.1) fails against this peer.
export const CLIENT_SECRET = 's3cr:t+/=%&x?#y';

export const DEFAULT_REDIRECT_URI = 'http://127.0.0.1:8080/oauth/callback';

// Account logged in by the headless interaction when the request carries no login_hint.
export const DEFAULT_ACCOUNT = 'test-user';

// The only resource-owner credentials the password grant accepts.
export const PASSWORD_USER = 'alice';
export const PASSWORD_SECRET = 'wonderland';

export const SCOPES = ['openid', 'offline_access', 'profile', 'email', 'api:read', 'api:write'];

export const GRANT_TYPES = ['authorization_code', 'refresh_token', 'client_credentials', 'password'];

// The Keyport console's sign-in client: present only when CONSOLE_REDIRECT_URIS says where it
// sends people back (the console's /console/signin/callback).
export const CONSOLE_CLIENT_ID = 'keyport-console';

// The claim that lists an account's roles, in the ID tokens issued to the console's client
// only (the other clients' tokens stay as they were).
export const ROLES_CLAIM = 'roles';

// Each account's roles at the console; accounts not named have none.
export const CONSOLE_ROLES = { 'test-user': ['keyport-admins', 'bots'], bea: ['sales'] };

// The OpenID Connect hybrid-flow client (`response_type=code id_token`, answered with
// `response_mode=form_post`): its ID token arrives in the front channel beside the code.
export const HYBRID_CLIENT_ID = 'keyport-hybrid';

// oidc-provider refuses http and localhost redirect URIs for web clients that use the implicit
// grant, which `id_token` in response_types adds. TEST-ONLY: server.mjs ignores exactly these
// two refusals (oidc-provider's documented development recipe), so the hybrid client keeps
// exact redirect matching on the loopback callback. Never do this in production.
export const LOOPBACK_IMPLICIT_CODES = new Set(['implicit-force-https', 'implicit-forbid-localhost']);

// Clients whose authorization requests must carry an S256 PKCE challenge.
export const PKCE_REQUIRED_CLIENTS = new Set(['keyport-pkce', CONSOLE_CLIENT_ID]);

function positiveInt(name, value, fallback) {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) {
    throw new Error(`${name} must be a positive integer number of seconds, got ${JSON.stringify(value)}`);
  }
  return n;
}

export function redirectUris(env = process.env) {
  if (!env.REDIRECT_URIS) return [DEFAULT_REDIRECT_URI];
  const uris = env.REDIRECT_URIS.split(',').map((s) => s.trim()).filter(Boolean);
  if (uris.length === 0) throw new Error('REDIRECT_URIS is set but holds no URI');
  return uris;
}

export function defaultClients(env = process.env) {
  const common = {
    grant_types: GRANT_TYPES,
    response_types: ['code'],
    redirect_uris: redirectUris(env),
    // 'web' (the default) accepts http redirect URIs as long as the implicit grant is not
    // used; 'native' would relax redirect URI matching, which is not what a server-side
    // confidential client gets in production.
    application_type: 'web',
  };
  const clients = [
    { ...common, client_id: 'keyport-basic', client_secret: CLIENT_SECRET, token_endpoint_auth_method: 'client_secret_basic' },
    { ...common, client_id: 'keyport-post', client_secret: CLIENT_SECRET, token_endpoint_auth_method: 'client_secret_post' },
    { ...common, client_id: 'keyport-pkce', client_secret: CLIENT_SECRET, token_endpoint_auth_method: 'client_secret_basic' },
    {
      ...common,
      client_id: HYBRID_CLIENT_ID,
      client_secret: CLIENT_SECRET,
      token_endpoint_auth_method: 'client_secret_basic',
      // `implicit` is added by oidc-provider for the id_token in the front channel.
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code id_token'],
    },
  ];
  if (env.CONSOLE_REDIRECT_URIS) {
    const uris = env.CONSOLE_REDIRECT_URIS.split(',').map((s) => s.trim()).filter(Boolean);
    if (uris.length === 0) throw new Error('CONSOLE_REDIRECT_URIS is set but holds no URI');
    clients.push({
      client_id: CONSOLE_CLIENT_ID,
      client_secret: CLIENT_SECRET,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: uris,
      application_type: 'web',
    });
  }
  if (env.JWT_CLIENT_JWKS) {
    let jwks;
    try {
      jwks = JSON.parse(env.JWT_CLIENT_JWKS);
    } catch (err) {
      throw new Error(`JWT_CLIENT_JWKS is not valid JSON: ${err.message}`);
    }
    if (!jwks || !Array.isArray(jwks.keys)) throw new Error('JWT_CLIENT_JWKS must be a JWKS: {"keys":[...]}');
    for (const key of jwks.keys) {
      if (key.d !== undefined || key.k !== undefined) throw new Error('JWT_CLIENT_JWKS must hold public keys only');
    }
    clients.push({ ...common, client_id: 'keyport-jwt', token_endpoint_auth_method: 'private_key_jwt', jwks });
  }
  return clients;
}

export function loadClients(env = process.env) {
  if (!env.CLIENTS_FILE) return defaultClients(env);
  const clients = JSON.parse(readFileSync(env.CLIENTS_FILE, 'utf8'));
  if (!Array.isArray(clients)) throw new Error('CLIENTS_FILE must hold a JSON array of client metadata objects');
  return clients;
}

export function accessTokenTtl(env = process.env) {
  return positiveInt('ACCESS_TOKEN_TTL', env.ACCESS_TOKEN_TTL, 3600);
}

// Claims returned for every account: the account id is the subject. The console's client also
// gets the account's roles.
export function accountClaims(id, clientId) {
  const claims = { sub: id, email: `${id}@example.test`, email_verified: true, name: id };
  if (clientId === CONSOLE_CLIENT_ID) claims[ROLES_CLAIM] = CONSOLE_ROLES[id] ?? [];
  return claims;
}

// oidc-provider options that do not depend on the running instance (issuer, keys, policy
// objects and hooks that need the provider are added by server.mjs). `errors` is oidc-provider's
// errors export, passed in so this module does not load oidc-provider itself.
export function baseConfiguration(env, errors) {
  const atTtl = accessTokenTtl(env);
  return {
    clients: loadClients(env),
    scopes: SCOPES,
    responseTypes: ['code', 'code id_token'],
    claims: {
      // The roles claim is only ever in the console client's tokens (accountClaims).
      openid: ['sub', ROLES_CLAIM],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // Any authenticated client may introspect any token (tests check grants with one client).
      introspection: { enabled: true, allowedPolicy: async () => true },
      // A client may revoke only its own tokens (oidc-provider's default, made explicit).
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx, client, token) => {
          if (token.clientId !== client.clientId) {
            throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
          }
          return true;
        },
      },
      // Every scope above is a static scope, so access tokens are opaque, audience-less and carry
      // exactly the granted scopes; no resource indicator is needed for client_credentials.
      resourceIndicators: { enabled: false },
    },
    pkce: {
      // S256 is the only method oidc-provider v9 implements. When a client sends a challenge it
      // is always verified; this only decides whether a request without one is refused.
      required: (_ctx, client) => PKCE_REQUIRED_CLIENTS.has(client.clientId),
    },
    // Our clients get a refresh token from every authorization code (and from the password
    // grant when offline_access is asked for), whether or not offline_access was requested.
    issueRefreshToken: async (ctx, client, source) => {
      if (!client.grantTypeAllowed('refresh_token')) return false;
      if (ctx.oidc.params.grant_type === 'authorization_code') return true;
      return source.scopes.has('offline_access');
    },
    // Every refresh rotates; presenting a consumed refresh token fails with invalid_grant and
    // revokes the whole grant (oidc-provider's reuse detection).
    rotateRefreshToken: true,
    ttl: {
      AccessToken: atTtl,
      ClientCredentials: atTtl,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 24 * 3600,
      Grant: 24 * 3600,
      Session: 24 * 3600,
      Interaction: 600,
    },
    // A session does not end when its access tokens do: refresh tokens must outlive sessions.
    expiresWithSession: async () => false,
    // http on loopback: koa only marks cookies Secure on https requests, so nothing to change
    // there; sameSite lax works for a client walking redirects with a cookie jar.
    cookies: {
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    interactions: {
      url: async (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    findAccount: async (ctx, id) => ({
      accountId: id,
      claims: async () => accountClaims(id, ctx?.oidc?.client?.clientId),
    }),
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  };
}
