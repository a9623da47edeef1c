// OAuth 2.0 / OpenID Connect authorization server (oidc-provider) for Keyport's integration tests.
//
// Listens on 127.0.0.1:$PORT (0 = any free port), prints one line `READY <port>` to stdout once
// it accepts connections, then writes nothing else to stdout. Diagnostics go to stderr and never
// contain secrets, codes or tokens. Exits when its stdin reaches end-of-file.
// See README.md for the environment variables, clients and the request log.

import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';

import {
  DEFAULT_ACCOUNT,
  LOOPBACK_IMPLICIT_CODES,
  PASSWORD_SECRET,
  PASSWORD_USER,
  SCOPES,
  baseConfiguration,
} from './config.mjs';

// stdout carries the READY line only: oidc-provider prints notices with console.info.
console.log = console.error;
console.info = console.error;

const log = (...args) => console.error('[oidc-peer]', ...args);

const { default: Provider, errors, interactionPolicy } = await import('oidc-provider');

function fail(message) {
  log(message);
  process.exit(2);
}

const portText = process.env.PORT ?? '0';
if (!/^\d+$/.test(portText) || Number(portText) > 65535) fail(`PORT must be 0..65535, got ${JSON.stringify(portText)}`);

let configuration;
try {
  configuration = baseConfiguration(process.env, errors);
} catch (err) {
  fail(`bad configuration: ${err.message}`);
}

// The harness keeps our stdin open; end-of-file (the test process exited) stops the peer.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(portText), '127.0.0.1', resolve);
}).catch((err) => fail(`cannot listen on 127.0.0.1:${portText}: ${err.message}`));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

// Fresh signing key and cookie key per run: nothing persists between test runs.
const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
configuration.jwks = { keys: [{ ...signingKey, kid: 'peer-rs256', use: 'sig', alg: 'RS256' }] };
configuration.cookies.keys = [randomBytes(32).toString('hex')];

// Log in again when the authorization request names (login_hint) an account other than the
// one the session cookie belongs to, so one cookie jar can walk flows for several accounts.
const policy = interactionPolicy.base();
policy.get('login').checks.push(new interactionPolicy.Check(
  'login_hint_mismatch',
  'login_hint names another account than the current session',
  (ctx) => {
    const hint = ctx.oidc.params.login_hint;
    const current = ctx.oidc.session.accountId;
    return Boolean(hint && current && hint !== current);
  },
));
configuration.interactions.policy = policy;

const clientIds = configuration.clients.map((c) => c.client_id);
const provider = new Provider(issuer, configuration);

// TEST-ONLY (oidc-provider's recipe "Allowing HTTP and/or localhost for implicit response type
// web clients"): the hybrid client's loopback http redirect URI is accepted. Every other
// refusal of client metadata stands. Clients are validated on first use, so this is in time.
const { invalidate } = provider.Client.Schema.prototype;
provider.Client.Schema.prototype.invalidate = function invalidateUnlessLoopbackImplicit(message, code) {
  if (LOOPBACK_IMPLICIT_CODES.has(code)) return;
  invalidate.call(this, message, code);
};

for (const event of ['authorization.error', 'grant.error', 'revocation.error', 'introspection.error', 'server_error']) {
  provider.on(event, (_ctx, err) => {
    log(`${event}: ${err.error ?? err.name}${err.error_description ? ` (${err.error_description})` : ''}`);
    if (event === 'server_error') log(err.stack);
  });
}

// ---------------------------------------------------------------------------------------------
// Password grant (RFC 6749 §4.3). oidc-provider has none built in.

const staticScopes = new Set(SCOPES);

async function passwordGrant(ctx) {
  const { client, params } = ctx.oidc;
  if (params.username !== PASSWORD_USER || params.password !== PASSWORD_SECRET) {
    throw new errors.InvalidGrant('invalid resource owner credentials');
  }
  const scopes = [...new Set((params.scope ?? '').split(' ').filter(Boolean))];
  for (const scope of scopes) {
    if (!staticScopes.has(scope)) throw new errors.InvalidScope('requested scope is not supported', scope);
  }
  if (client.scope) {
    const allowed = new Set(client.scope.split(' '));
    for (const scope of scopes) {
      if (!allowed.has(scope)) throw new errors.InvalidScope('requested scope is not allowed', scope);
    }
  }
  const scope = scopes.join(' ') || undefined;
  const accountId = PASSWORD_USER;

  const grant = new provider.Grant({ accountId, clientId: client.clientId });
  if (scope) grant.addOIDCScope(scope);
  const grantId = await grant.save();

  const at = new provider.AccessToken({ accountId, client, grantId, gty: 'password', scope });
  ctx.oidc.entity('AccessToken', at);
  const accessToken = await at.save();

  let refreshToken;
  if (scopes.includes('offline_access') && client.grantTypeAllowed('refresh_token')) {
    const rt = new provider.RefreshToken({ accountId, client, grantId, gty: 'password', scope, rotations: 0 });
    ctx.oidc.entity('RefreshToken', rt);
    refreshToken = await rt.save();
  }

  ctx.body = {
    access_token: accessToken,
    token_type: at.tokenType,
    expires_in: at.expiration,
    ...(scope ? { scope } : {}),
    ...(refreshToken ? { refresh_token: refreshToken } : {}),
  };
}

provider.registerGrantType('password', passwordGrant, ['username', 'password', 'scope']);

// ---------------------------------------------------------------------------------------------
// Request log: one JSON line per token / revocation request, written before the response goes
// out. Values of secrets, codes, tokens and assertions are never written; a presented refresh
// token (or revoked token) appears only as its SHA-256 hex.

const requestLog = process.env.REQUEST_LOG;
const loggedPaths = new Set([provider.pathFor('token'), provider.pathFor('revocation')]);
const sha256 = (value) => createHash('sha256').update(value, 'utf8').digest('hex');

function basicClientId(header) {
  const match = /^basic\s+(\S+)$/i.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return undefined;
  try {
    return decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, '%20'));
  } catch {
    return undefined;
  }
}

if (requestLog) {
  provider.use(async (ctx, next) => {
    if (ctx.method !== 'POST' || !loggedPaths.has(ctx.path)) return next();
    try {
      await next();
    } finally {
      const body = ctx.oidc?.body ?? {};
      const str = (v) => (typeof v === 'string' ? v : undefined);
      const auth = [];
      if (/^basic\s/i.test(ctx.get('authorization'))) auth.push('basic');
      if (body.client_secret !== undefined) auth.push('post');
      if (body.client_assertion !== undefined) auth.push('jwt');
      const entry = {
        path: ctx.path,
        grant_type: str(body.grant_type) ?? null,
        client_auth: auth.join('+') || 'none',
        client_id: ctx.oidc?.client?.clientId ?? basicClientId(ctx.get('authorization')) ?? str(body.client_id) ?? null,
        status: ctx.status,
        error: (ctx.body && typeof ctx.body === 'object' && ctx.body.error) || null,
      };
      if (body.grant_type === 'refresh_token' && str(body.refresh_token)) {
        entry.refresh_token_sha256 = sha256(body.refresh_token);
      }
      if (ctx.path === provider.pathFor('revocation')) {
        entry.token_type_hint = str(body.token_type_hint) ?? null;
        if (str(body.token)) entry.token_sha256 = sha256(body.token);
      }
      try {
        appendFileSync(requestLog, `${JSON.stringify(entry)}\n`);
      } catch (err) {
        log(`cannot append to REQUEST_LOG: ${err.message}`);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Interactions. Headless (the default): GET /interaction/:uid logs the account in (login_hint,
// else the current session's account, else test-user), grants everything requested, and
// 303-redirects back to the authorization endpoint, which then redirects to redirect_uri with
// code, state and iss. With CONSENT_PAGES=1 a person walks them instead, in a browser: a sign-in
// page, then a consent page naming the client and the scopes, with Allow and Deny.

const consentPages = process.env.CONSENT_PAGES === '1';

function requestedClaims(claimsParam) {
  if (!claimsParam) return [];
  try {
    const parsed = typeof claimsParam === 'string' ? JSON.parse(claimsParam) : claimsParam;
    return [...new Set([...Object.keys(parsed.id_token ?? {}), ...Object.keys(parsed.userinfo ?? {})])];
  } catch {
    return [];
  }
}

// The grant for everything the interaction asks for, the same whether consented headlessly or
// by a click: every requested scope (offline_access included) and claim.
async function grantEverythingRequested(details, accountId) {
  const { params, prompt } = details;
  let grant;
  if (details.grantId) {
    grant = await provider.Grant.find(details.grantId);
    if (grant && grant.accountId !== accountId) grant = undefined;
  }
  grant ??= new provider.Grant({ accountId, clientId: params.client_id });

  if (params.scope) grant.addOIDCScope(params.scope);
  const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details ?? {};
  if (missingOIDCScope?.length) grant.addOIDCScope(missingOIDCScope.join(' '));
  const claims = [...requestedClaims(params.claims), ...(missingOIDCClaims ?? [])];
  if (claims.length) grant.addOIDCClaims(claims);
  for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return grant.save();
}

// Switching accounts: oidc-provider would answer the resume with a logout form to POST. Instead
// end the old session server-side and detach it from this interaction; the resume then starts
// a fresh session (its cookie replaces the old one).
async function switchAccount(details, accountId) {
  const { session } = details;
  if (!session?.accountId || session.accountId === accountId) return;
  const old = session.uid ? await provider.Session.findByUid(session.uid) : undefined;
  if (old) await old.destroy();
  details.session = undefined;
  await details.save(details.exp - Math.floor(Date.now() / 1000));
}

async function headlessInteraction(ctx, details) {
  const { params, prompt, session } = details;
  const accountId = params.login_hint || session?.accountId || DEFAULT_ACCOUNT;
  await switchAccount(details, accountId);
  const grantId = await grantEverythingRequested(details, accountId);
  log(`interaction ${prompt.name}: client ${params.client_id} logged in as ${accountId}, granted "${params.scope ?? ''}"`);
  const returnTo = await provider.interactionResult(
    ctx.req,
    ctx.res,
    { login: { accountId }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
  ctx.status = 303;
  ctx.redirect(returnTo);
}

// ---- the pages (CONSENT_PAGES=1): plain HTML, no script, no style, every control labelled.

const ACCOUNT_PATTERN = /^[A-Za-z0-9._@+-]{1,64}$/;

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function sendPage(ctx, status, title, body) {
  ctx.status = status;
  ctx.type = 'html';
  // Nothing is loaded and nothing runs; form-action is left open on purpose: the consent
  // form's answer redirects on to the client's redirect_uri, on another origin.
  ctx.set('content-security-policy', "default-src 'none'; base-uri 'none'; frame-ancestors 'none'");
  ctx.set('referrer-policy', 'no-referrer');
  ctx.body = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)} · Test provider</title></head>
<body>
<header><p>Test provider (oidc-provider)</p></header>
<main>
<h1>${escapeHtml(title)}</h1>
${body}
</main>
</body>
</html>
`;
}

function signInPage(ctx, details, { login, problem } = {}) {
  const { uid, params, session } = details;
  const value = login ?? params.login_hint ?? session?.accountId ?? DEFAULT_ACCOUNT;
  sendPage(ctx, problem ? 400 : 200, 'Sign in', `<p>Sign in to continue to <strong>${escapeHtml(params.client_id)}</strong>. This test provider knows every login and asks for no password.</p>
${problem ? `<p id="login-problem">${escapeHtml(problem)}</p>\n` : ''}<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<p><label for="login">Login</label>
<input id="login" name="login" type="text" autocomplete="username" required value="${escapeHtml(value)}"${problem ? ' aria-invalid="true" aria-describedby="login-problem"' : ''}></p>
<p><button type="submit">Sign in</button></p>
</form>`);
}

function consentPage(ctx, details) {
  const { uid, params, session } = details;
  const scopes = [...new Set((params.scope ?? '').split(' ').filter(Boolean))];
  const list = scopes.length
    ? `<ul id="scopes">${scopes.map((s) => `<li>${escapeHtml(s)}</li>`).join('')}</ul>`
    : '<p id="scopes">No scopes: only that you signed in.</p>';
  sendPage(ctx, 200, 'Authorize access', `<p>Signed in as <strong>${escapeHtml(session?.accountId ?? '')}</strong>.</p>
<p><strong id="client">${escapeHtml(params.client_id)}</strong> asks for access to your account with these scopes:</p>
${list}
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm">
<p><button type="submit">Allow</button></p>
</form>
<form method="post" action="/interaction/${escapeHtml(uid)}/abort">
<p><button type="submit">Deny</button></p>
</form>`);
}

// The posted form (application/x-www-form-urlencoded, small): oidc-provider parses only its
// own endpoints' bodies.
async function readForm(ctx) {
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > 8192) return undefined;
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interactionByPerson(ctx, details, action) {
  const { params, prompt } = details;
  if (ctx.method === 'GET' && !action) {
    if (prompt.name === 'login') return signInPage(ctx, details);
    if (prompt.name === 'consent') return consentPage(ctx, details);
  }
  if (ctx.method !== 'POST' || !action) {
    ctx.status = 405;
    ctx.body = { error: 'method_not_allowed' };
    return undefined;
  }
  if (action === 'abort') {
    log(`interaction ${prompt.name}: client ${params.client_id} denied`);
    return provider.interactionFinished(ctx.req, ctx.res, {
      error: 'access_denied',
      error_description: 'The user declined the authorization.',
    }, { mergeWithLastSubmission: false });
  }
  if (action === 'login' && prompt.name === 'login') {
    const login = (await readForm(ctx))?.get('login')?.trim() ?? '';
    if (!ACCOUNT_PATTERN.test(login)) {
      return signInPage(ctx, details, { login, problem: 'A login is 1 to 64 letters, digits or . _ @ + -.' });
    }
    await switchAccount(details, login);
    log(`interaction login: client ${params.client_id} signed in as ${login}`);
    return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  }
  if (action === 'confirm' && prompt.name === 'consent' && details.session?.accountId) {
    const grantId = await grantEverythingRequested(details, details.session.accountId);
    log(`interaction consent: client ${params.client_id} granted "${params.scope ?? ''}" by ${details.session.accountId}`);
    return provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  ctx.status = 400;
  ctx.body = { error: 'invalid_request', error_description: `this interaction asks for ${prompt.name}, not ${action}` };
  return undefined;
}

provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?\/?$/.exec(ctx.path);
  if (!match) return next();
  const [, uid, action] = match;
  ctx.set('cache-control', 'no-store');
  if (!consentPages && (ctx.method !== 'GET' || action)) {
    ctx.status = ctx.method !== 'GET' ? 405 : 404;
    ctx.body = { error: ctx.method !== 'GET' ? 'method_not_allowed' : 'not_found' };
    return undefined;
  }
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    ctx.status = err.statusCode ?? 400;
    ctx.body = { error: err.error ?? 'invalid_request', error_description: err.error_description ?? 'interaction not found (missing or expired _interaction cookie)' };
    return undefined;
  }
  if (details.uid !== uid) {
    ctx.status = 400;
    ctx.body = { error: 'invalid_request', error_description: 'interaction cookie does not match the URL' };
    return undefined;
  }
  if (consentPages) return interactionByPerson(ctx, details, action);
  return headlessInteraction(ctx, details);
});

// oidc-provider validates static clients lazily; fail at startup instead of mid-test.
for (const clientId of clientIds) {
  try {
    if (!await provider.Client.find(clientId)) throw new Error('not found');
  } catch (err) {
    fail(`client ${clientId} is invalid: ${err.error_description ?? err.message}`);
  }
}

server.on('request', provider.callback());
process.stdout.write(`READY ${port}\n`);
log(`listening on ${issuer}`);
