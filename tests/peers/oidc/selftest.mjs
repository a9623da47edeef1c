// Self-check of the OAuth test peer: `node selftest.mjs` starts server.mjs on a free port and
// walks every flow the Rust integration tests rely on with plain fetch. Exits 0 when all pass.

import { spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes, randomUUID, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { CLIENT_SECRET, DEFAULT_REDIRECT_URI, HYBRID_CLIENT_ID, PASSWORD_SECRET, PASSWORD_USER } from './config.mjs';

const ACCESS_TOKEN_TTL = 300;
const results = [];
const b64url = (buf) => Buffer.from(buf).toString('base64url');
const sha256hex = (s) => createHash('sha256').update(s, 'utf8').digest('hex');

function check(name, condition, detail = '') {
  if (!condition) throw new Error(`FAILED: ${name}${detail ? ` — ${detail}` : ''}`);
  results.push(name);
}

// application/x-www-form-urlencoded encoding of one value (RFC 6749 §2.3.1 / Appendix B).
const formEncode = (value) => new URLSearchParams({ v: value }).toString().slice(2);
const basic = (id, secret) => `Basic ${Buffer.from(`${formEncode(id)}:${formEncode(secret)}`).toString('base64')}`;

// ----- start the peer -------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), 'oidc-peer-selftest-'));
const requestLog = join(dir, 'requests.jsonl');
const jwtKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwtPublic = { ...jwtKey.publicKey.export({ format: 'jwk' }), kid: 'selftest', alg: 'ES256', use: 'sig' };

// Starts server.mjs with `env` added; resolves once it printed READY.
async function startPeer(env) {
  const peer = spawn(process.execPath, [new URL('./server.mjs', import.meta.url).pathname], {
    env: { ...process.env, PORT: '0', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const started = { child: peer, stderr: '', stdoutLines: [] };
  peer.stderr.on('data', (d) => { started.stderr += d; });
  started.port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not print READY within 15s')), 15000);
    createInterface({ input: peer.stdout }).on('line', (line) => {
      started.stdoutLines.push(line);
      const m = /^READY (\d+)$/.exec(line);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    peer.on('exit', (code) => reject(new Error(`server exited early with ${code}\n${started.stderr}`)));
  });
  return started;
}

const main = await startPeer({
  REQUEST_LOG: requestLog,
  ACCESS_TOKEN_TTL: String(ACCESS_TOKEN_TTL),
  JWT_CLIENT_JWKS: JSON.stringify({ keys: [jwtPublic] }),
});
const { child, stdoutLines } = main;
const issuer = `http://127.0.0.1:${main.port}`;

function stop() {
  child.stdin.end(); // closing stdin is how the harness stops the peer
}

// ----- helpers ------------------------------------------------------------------------------

class CookieJar {
  #cookies = new Map();
  store(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*expires=/i.test(a) && Date.parse(a.split('=')[1]) < Date.now());
      if (!value || expired) this.#cookies.delete(name); else this.#cookies.set(name, value);
    }
  }
  header() {
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

// Walks the authorization redirects by hand, like the Rust harness: no automatic redirects.
async function authorize(params, jar = new CookieJar()) {
  let url = `${issuer}/auth?${new URLSearchParams(params)}`;
  const visited = [];
  for (let hop = 0; hop < 10; hop += 1) {
    visited.push(new URL(url).pathname);
    const res = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } });
    jar.store(res);
    const location = res.headers.get('location');
    if (![302, 303].includes(res.status) || !location) {
      throw new Error(`hop ${hop} to ${new URL(url).pathname}: status ${res.status}, body ${await res.text()}`);
    }
    const next = new URL(location, url);
    if (next.href.startsWith(params.redirect_uri)) {
      return { query: Object.fromEntries(next.searchParams), visited, jar };
    }
    url = next.href;
  }
  throw new Error('too many redirects');
}

async function token(form, headers = {}) {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form),
  });
  return { status: res.status, body: await res.json() };
}

async function introspect(tokenValue) {
  const res = await fetch(`${issuer}/token/introspection`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic('keyport-basic', CLIENT_SECRET) },
    body: new URLSearchParams({ token: tokenValue }),
  });
  return res.json();
}

function pkce() {
  const verifier = b64url(randomBytes(32));
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

const secrets = []; // every secret/token/code value seen, to prove none reaches the request log

// ----- the checks ---------------------------------------------------------------------------

async function run() {
  check('stdout holds only the READY line so far', stdoutLines.length === 1);

  // Discovery
  const disc = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  check('discovery issuer', disc.issuer === issuer, disc.issuer);
  check('discovery endpoints', disc.token_endpoint === `${issuer}/token`
    && disc.revocation_endpoint === `${issuer}/token/revocation`
    && disc.introspection_endpoint === `${issuer}/token/introspection`);
  check('discovery grant types', ['authorization_code', 'refresh_token', 'client_credentials', 'password']
    .every((g) => disc.grant_types_supported.includes(g)));
  check('discovery scopes', ['api:read', 'api:write', 'offline_access'].every((s) => disc.scopes_supported.includes(s)));

  // Authorization code + PKCE (keyport-pkce), walking the redirects headlessly.
  const { verifier, challenge } = pkce();
  const state = b64url(randomBytes(12));
  const auth = await authorize({
    client_id: 'keyport-pkce',
    response_type: 'code',
    redirect_uri: DEFAULT_REDIRECT_URI,
    scope: 'openid api:read api:write',
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    login_hint: 'bob',
  });
  check('redirect walk /auth -> /interaction -> /auth/<uid> -> redirect_uri',
    auth.visited.length === 3 && auth.visited[1].startsWith('/interaction/') && auth.visited[2].startsWith('/auth/'),
    auth.visited.join(' -> '));
  check('callback carries code, state, iss', auth.query.code && auth.query.state === state && auth.query.iss === issuer,
    JSON.stringify(Object.keys(auth.query)));
  secrets.push(auth.query.code, verifier);

  const rawSecretBasic = `Basic ${Buffer.from(`keyport-pkce:${CLIENT_SECRET}`).toString('base64')}`;
  const bad = await token({ grant_type: 'authorization_code', code: auth.query.code, redirect_uri: DEFAULT_REDIRECT_URI, code_verifier: verifier },
    { authorization: rawSecretBasic });
  check('basic auth without form-encoding the secret is rejected', bad.status === 400 && bad.body.error === 'invalid_request', JSON.stringify(bad.body));

  const exch = await token({ grant_type: 'authorization_code', code: auth.query.code, redirect_uri: DEFAULT_REDIRECT_URI, code_verifier: verifier },
    { authorization: basic('keyport-pkce', CLIENT_SECRET) });
  check('code exchange (client_secret_basic, form-encoded)', exch.status === 200 && exch.body.access_token && exch.body.refresh_token && exch.body.id_token,
    JSON.stringify({ status: exch.status, error: exch.body.error, keys: Object.keys(exch.body) }));
  check('code exchange scope and lifetime', exch.body.scope === 'openid api:read api:write' && exch.body.expires_in === ACCESS_TOKEN_TTL,
    `${exch.body.scope} / ${exch.body.expires_in}`);
  const idPayload = JSON.parse(Buffer.from(exch.body.id_token.split('.')[1], 'base64url'));
  check('login_hint picks the account', idPayload.sub === 'bob', idPayload.sub);
  secrets.push(exch.body.access_token, exch.body.refresh_token, exch.body.id_token);

  const noPkce = await authorize({ client_id: 'keyport-pkce', response_type: 'code', redirect_uri: DEFAULT_REDIRECT_URI, scope: 'openid', state: 's' });
  check('keyport-pkce without code_challenge is refused', noPkce.query.error === 'invalid_request', JSON.stringify(noPkce.query));

  // Refresh with rotation, then reuse detection.
  const rt1 = exch.body.refresh_token;
  const ref = await token({ grant_type: 'refresh_token', refresh_token: rt1 }, { authorization: basic('keyport-pkce', CLIENT_SECRET) });
  check('refresh succeeds', ref.status === 200 && ref.body.access_token, JSON.stringify(ref.body.error));
  check('refresh rotates the refresh token', ref.body.refresh_token && ref.body.refresh_token !== rt1);
  check('refreshed scope kept', ref.body.scope === 'openid api:read api:write', ref.body.scope);
  secrets.push(ref.body.access_token, ref.body.refresh_token, ref.body.id_token);
  check('rotated access token is active', (await introspect(ref.body.access_token)).active === true);

  const reuse = await token({ grant_type: 'refresh_token', refresh_token: rt1 }, { authorization: basic('keyport-pkce', CLIENT_SECRET) });
  check('reusing the rotated refresh token fails with invalid_grant', reuse.status === 400 && reuse.body.error === 'invalid_grant', JSON.stringify(reuse.body));
  const afterReuse = await token({ grant_type: 'refresh_token', refresh_token: ref.body.refresh_token }, { authorization: basic('keyport-pkce', CLIENT_SECRET) });
  check('reuse revoked the whole grant (new refresh token dead too)', afterReuse.body.error === 'invalid_grant', JSON.stringify(afterReuse.body));
  check('reuse revoked the grant\'s access tokens', (await introspect(ref.body.access_token)).active === false);

  // Plain authorization code without PKCE for keyport-basic and keyport-post; same cookie jar,
  // the second one for another account through login_hint.
  const plain = await authorize({ client_id: 'keyport-basic', response_type: 'code', redirect_uri: DEFAULT_REDIRECT_URI, scope: 'api:read', state: 'p1' });
  const plainEx = await token({ grant_type: 'authorization_code', code: plain.query.code, redirect_uri: DEFAULT_REDIRECT_URI },
    { authorization: basic('keyport-basic', CLIENT_SECRET) });
  check('keyport-basic code flow without PKCE, refresh token without offline_access',
    plainEx.status === 200 && plainEx.body.refresh_token && plainEx.body.scope === 'api:read' && !plainEx.body.id_token, JSON.stringify(plainEx.body.error ?? plainEx.body.scope));
  const plainIntro = await introspect(plainEx.body.access_token);
  check('no login_hint logs in test-user', plainIntro.sub === 'test-user', plainIntro.sub);
  secrets.push(plain.query.code, plainEx.body.access_token, plainEx.body.refresh_token);
  const replay = await token({ grant_type: 'authorization_code', code: plain.query.code, redirect_uri: DEFAULT_REDIRECT_URI },
    { authorization: basic('keyport-basic', CLIENT_SECRET) });
  check('code is single use', replay.status === 400 && replay.body.error === 'invalid_grant', JSON.stringify(replay.body));
  check('code replay revoked the grant\'s tokens', (await introspect(plainEx.body.access_token)).active === false);

  const again = await authorize({ client_id: 'keyport-post', response_type: 'code', redirect_uri: DEFAULT_REDIRECT_URI, scope: 'openid offline_access', state: 'p2', login_hint: 'carol', prompt: 'consent' }, plain.jar);
  const againEx = await token({
    grant_type: 'authorization_code', code: again.query.code, redirect_uri: DEFAULT_REDIRECT_URI, client_id: 'keyport-post', client_secret: CLIENT_SECRET,
  });
  check('keyport-post code flow (client_secret_post), login_hint switches account in a reused jar',
    againEx.status === 200 && againEx.body.refresh_token && (await introspect(againEx.body.access_token)).sub === 'carol', JSON.stringify(againEx.body.error));
  check('offline_access kept in scope with prompt=consent', againEx.body.scope === 'openid offline_access', againEx.body.scope);
  secrets.push(again.query.code, againEx.body.access_token, againEx.body.refresh_token, againEx.body.id_token);

  // client_credentials with client_secret_post.
  const cc = await token({ grant_type: 'client_credentials', scope: 'api:read', client_id: 'keyport-post', client_secret: CLIENT_SECRET });
  check('client_credentials (client_secret_post)', cc.status === 200 && cc.body.access_token && cc.body.scope === 'api:read'
    && !cc.body.refresh_token && cc.body.expires_in === ACCESS_TOKEN_TTL, JSON.stringify({ ...cc.body, access_token: undefined }));
  const ccIntro = await introspect(cc.body.access_token);
  check('client_credentials token introspects active', ccIntro.active === true && ccIntro.client_id === 'keyport-post' && ccIntro.scope === 'api:read');
  secrets.push(cc.body.access_token);

  // client_credentials with private_key_jwt (keyport-jwt).
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'ES256', kid: 'selftest', typ: 'JWT' }));
  const payload = b64url(JSON.stringify({ iss: 'keyport-jwt', sub: 'keyport-jwt', aud: `${issuer}/token`, jti: randomUUID(), iat: now, exp: now + 60 }));
  const signature = b64url(sign('sha256', Buffer.from(`${header}.${payload}`), { key: jwtKey.privateKey, dsaEncoding: 'ieee-p1363' }));
  const assertion = `${header}.${payload}.${signature}`;
  const jwtCc = await token({
    grant_type: 'client_credentials', scope: 'api:write', client_id: 'keyport-jwt',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion,
  });
  check('client_credentials (private_key_jwt)', jwtCc.status === 200 && jwtCc.body.scope === 'api:write', JSON.stringify(jwtCc.body.error_description ?? jwtCc.body.error));
  secrets.push(assertion, jwtCc.body.access_token);

  // Password grant.
  const badPw = await token({ grant_type: 'password', username: PASSWORD_USER, password: 'nope', scope: 'api:read' },
    { authorization: basic('keyport-basic', CLIENT_SECRET) });
  check('password grant rejects wrong password', badPw.status === 400 && badPw.body.error === 'invalid_grant', JSON.stringify(badPw.body));
  const pw = await token({ grant_type: 'password', username: PASSWORD_USER, password: PASSWORD_SECRET, scope: 'api:read offline_access' },
    { authorization: basic('keyport-basic', CLIENT_SECRET) });
  check('password grant', pw.status === 200 && pw.body.access_token && pw.body.refresh_token && pw.body.scope === 'api:read offline_access',
    JSON.stringify(pw.body.error ?? pw.body.scope));
  check('password grant token belongs to alice', (await introspect(pw.body.access_token)).sub === PASSWORD_USER);
  const pwNoOffline = await token({ grant_type: 'password', username: PASSWORD_USER, password: PASSWORD_SECRET, scope: 'api:read' },
    { authorization: basic('keyport-basic', CLIENT_SECRET) });
  check('password grant without offline_access: no refresh token', pwNoOffline.status === 200 && !pwNoOffline.body.refresh_token);
  secrets.push(pw.body.access_token, pw.body.refresh_token, pwNoOffline.body.access_token);

  const pwRef = await token({ grant_type: 'refresh_token', refresh_token: pw.body.refresh_token }, { authorization: basic('keyport-basic', CLIENT_SECRET) });
  check('password grant refresh token refreshes', pwRef.status === 200 && pwRef.body.refresh_token, JSON.stringify(pwRef.body.error_description ?? pwRef.body.error));
  secrets.push(pwRef.body.access_token, pwRef.body.refresh_token);

  // Revocation (RFC 7009) of a refresh token: revokes its grant.
  const rev = await fetch(`${issuer}/token/revocation`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic('keyport-basic', CLIENT_SECRET) },
    body: new URLSearchParams({ token: pwRef.body.refresh_token, token_type_hint: 'refresh_token' }),
  });
  check('revocation returns 200', rev.status === 200);
  const afterRev = await token({ grant_type: 'refresh_token', refresh_token: pwRef.body.refresh_token }, { authorization: basic('keyport-basic', CLIENT_SECRET) });
  check('revoked refresh token fails with invalid_grant', afterRev.body.error === 'invalid_grant', JSON.stringify(afterRev.body));
  check('revoking the refresh token killed its grant\'s access token', (await introspect(pwRef.body.access_token)).active === false);

  // Request log.
  const lines = readFileSync(requestLog, 'utf8').trim().split('\n');
  const entries = lines.map((l) => JSON.parse(l));
  const text = readFileSync(requestLog, 'utf8');
  check('request log never holds secrets, codes, tokens or assertions',
    !text.includes(CLIENT_SECRET) && !text.includes(PASSWORD_SECRET) && secrets.filter(Boolean).every((s) => !text.includes(s)));
  check('request log: one line per token/revocation request', entries.length === 16, String(entries.length));
  check('request log: auth methods seen on the wire', entries.some((e) => e.client_auth === 'basic' && e.client_id === 'keyport-pkce')
    && entries.some((e) => e.client_auth === 'post' && e.grant_type === 'client_credentials')
    && entries.some((e) => e.client_auth === 'jwt' && e.client_id === 'keyport-jwt'));
  const rtUses = entries.filter((e) => e.refresh_token_sha256 === sha256hex(rt1));
  check('request log: refresh token hash (first use ok, reuse invalid_grant)', rtUses.length === 2 && rtUses[0].status === 200 && rtUses[1].error === 'invalid_grant');
  const revLine = entries.find((e) => e.path === '/token/revocation');
  check('request log: revocation line', revLine && revLine.token_sha256 === sha256hex(pwRef.body.refresh_token) && revLine.client_auth === 'basic');

  check('stdout still holds only the READY line', stdoutLines.length === 1, JSON.stringify(stdoutLines.slice(1)));
}

// The hybrid flow (response_type=code id_token, response_mode=form_post): the last hop is a
// page whose form posts code, id_token and state to the redirect URI; the ID token's c_hash is
// the left half of SHA-256 of the code (RS256), base64url.
async function hybridRun() {
  const jar = new CookieJar();
  const nonce = b64url(randomBytes(16));
  const state = b64url(randomBytes(12));
  let url = `${issuer}/auth?${new URLSearchParams({
    client_id: HYBRID_CLIENT_ID,
    response_type: 'code id_token',
    response_mode: 'form_post',
    redirect_uri: DEFAULT_REDIRECT_URI,
    scope: 'openid api:read',
    state,
    nonce,
  })}`;
  let page;
  for (let hop = 0; hop < 10 && !page; hop += 1) {
    const res = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } });
    jar.store(res);
    const location = res.headers.get('location');
    if ([302, 303].includes(res.status) && location) {
      url = new URL(location, url).href;
    } else {
      check('hybrid: the last hop is a 200 form_post page', res.status === 200, `${res.status}`);
      page = await res.text();
    }
  }
  const action = /<form method="post" action="([^"]*)">/.exec(page)?.[1];
  check('hybrid: the form posts to the redirect URI', action === DEFAULT_REDIRECT_URI, action);
  const fields = Object.fromEntries([...page.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"\/>/g)]
    .map(([, name, value]) => [name, value.replace(/&#39;/g, "'").replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&')]));
  check('hybrid: the form carries code, id_token and state', fields.code && fields.id_token && fields.state === state,
    JSON.stringify(Object.keys(fields)));
  const claims = JSON.parse(Buffer.from(fields.id_token.split('.')[1], 'base64url'));
  const digest = createHash('sha256').update(fields.code, 'ascii').digest();
  check('hybrid: the ID token carries the nonce and the code\'s c_hash',
    claims.nonce === nonce && claims.c_hash === b64url(digest.subarray(0, 16)) && claims.aud === HYBRID_CLIENT_ID,
    JSON.stringify({ nonce: claims.nonce === nonce, c_hash: claims.c_hash, aud: claims.aud }));
  const exch = await token({ grant_type: 'authorization_code', code: fields.code, redirect_uri: DEFAULT_REDIRECT_URI },
    { authorization: basic(HYBRID_CLIENT_ID, CLIENT_SECRET) });
  check('hybrid: the code exchanges for tokens with the same subject',
    exch.status === 200 && exch.body.access_token
      && JSON.parse(Buffer.from(exch.body.id_token.split('.')[1], 'base64url')).sub === claims.sub,
    JSON.stringify({ status: exch.status, error: exch.body.error }));
}

// With CONSENT_PAGES=1 a person signs in and consents on pages; walked here with forms posted
// by hand, as a browser would.
async function consentPagesRun() {
  const peer = await startPeer({ CONSENT_PAGES: '1' });
  const base = `http://127.0.0.1:${peer.port}`;
  const jar = new CookieJar();
  const go = async (url, init = {}) => {
    const res = await fetch(new URL(url, base), { redirect: 'manual', ...init, headers: { cookie: jar.header(), ...init.headers } });
    jar.store(res);
    return res;
  };
  const post = (url, form) => go(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  });
  // Follows redirects from `res` until a page (200/400) or the redirect_uri.
  const follow = async (res) => {
    for (let hop = 0; hop < 10; hop += 1) {
      const location = res.headers.get('location');
      if (![302, 303].includes(res.status) || !location) return { res, html: await res.text() };
      const next = new URL(location, base);
      if (next.href.startsWith(DEFAULT_REDIRECT_URI)) return { query: Object.fromEntries(next.searchParams) };
      res = await go(next.href);
    }
    throw new Error('too many redirects');
  };
  const start = (params) => go(`/auth?${new URLSearchParams({
    response_type: 'code', redirect_uri: DEFAULT_REDIRECT_URI, client_id: 'keyport-basic', ...params,
  })}`);
  try {
    const signIn = await follow(await start({ scope: 'openid api:read', state: 'c1', login_hint: 'dora' }));
    const loginAction = /<form method="post" action="(\/interaction\/[^/"]+\/login)"/.exec(signIn.html)?.[1];
    check('consent pages: a sign-in page with a login form', signIn.res?.status === 200 && loginAction
      && /<label for="login">Login<\/label>/.test(signIn.html) && /<button type="submit">Sign in<\/button>/.test(signIn.html), signIn.html);
    check('consent pages: the login is prefilled from login_hint', signIn.html.includes('value="dora"'));
    check('consent pages: no script, strict CSP, no-store', !/<script|<style| style=/i.test(signIn.html)
      && /default-src 'none'/.test(signIn.res.headers.get('content-security-policy') ?? '') && signIn.res.headers.get('cache-control') === 'no-store');

    const refused = await post(loginAction, { login: '<dora>' });
    const refusedHtml = await refused.text();
    check('consent pages: a malformed login is refused on the page', refused.status === 400 && refusedHtml.includes('aria-invalid="true"')
      && refusedHtml.includes('&lt;dora&gt;') && !refusedHtml.includes('<dora>'));

    const consent = await follow(await post(loginAction, { login: 'dora' }));
    const confirmAction = /<form method="post" action="(\/interaction\/[^/"]+\/confirm)"/.exec(consent.html)?.[1];
    check('consent pages: signing in leads to a consent page naming the client and the scopes', consent.res?.status === 200 && confirmAction
      && /<strong id="client">keyport-basic<\/strong>/.test(consent.html) && consent.html.includes('<li>openid</li><li>api:read</li>')
      && />Allow<\/button>/.test(consent.html) && />Deny<\/button>/.test(consent.html), consent.html);

    const allowed = await follow(await post(confirmAction, {}));
    check('consent pages: Allow sends the code to the redirect_uri', allowed.query?.code && allowed.query.state === 'c1' && allowed.query.iss === base,
      JSON.stringify(allowed.query));
    const exchanged = await fetch(`${base}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic('keyport-basic', CLIENT_SECRET) },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: allowed.query.code, redirect_uri: DEFAULT_REDIRECT_URI }),
    }).then((r) => r.json());
    const claims = JSON.parse(Buffer.from(exchanged.id_token.split('.')[1], 'base64url'));
    check('consent pages: the grant is the signed-in account\'s, with the scopes consented to',
      claims.sub === 'dora' && exchanged.scope === 'openid api:read' && exchanged.refresh_token, JSON.stringify({ sub: claims.sub, scope: exchanged.scope }));

    // The same session, more scopes: straight to the consent page, and Deny.
    const more = await follow(await start({ scope: 'openid api:write', state: 'c2' }));
    const abortAction = /<form method="post" action="(\/interaction\/[^/"]+\/abort)"/.exec(more.html)?.[1];
    check('consent pages: a signed-in session asking for more sees only the consent page', more.res?.status === 200 && abortAction
      && more.html.includes('<li>api:write</li>'), more.html);
    const denied = await follow(await post(abortAction, {}));
    check('consent pages: Deny sends access_denied to the redirect_uri', denied.query?.error === 'access_denied' && denied.query.state === 'c2'
      && !denied.query.code, JSON.stringify(denied.query));
  } catch (err) {
    console.error(peer.stderr);
    throw err;
  } finally {
    peer.child.stdin.end();
  }
  const headless = await fetch(`${issuer}/interaction/nothing`, { method: 'POST' });
  check('headless (the default): POST to an interaction is 405', headless.status === 405);
}

let ok = false;
try {
  await run();
  await hybridRun();
  await consentPagesRun();
  ok = true;
} catch (err) {
  console.error(err.message);
  console.error('--- server stderr ---');
  console.error(main.stderr);
} finally {
  stop();
  const exited = child.exitCode !== null || await Promise.race([
    new Promise((resolve) => child.once('exit', () => resolve(true))),
    new Promise((resolve) => setTimeout(() => resolve(false), 5000)),
  ]);
  if (!exited) {
    console.error('server did not exit after stdin closed');
    child.kill('SIGKILL');
    ok = false;
  } else {
    results.push('server exits when stdin closes');
  }
  rmSync(dir, { recursive: true, force: true });
}

for (const r of results) console.log(`ok  ${r}`);
console.log(ok ? `selftest passed: ${results.length} checks` : `selftest FAILED after ${results.length} passing checks`);
process.exit(ok ? 0 : 1);
