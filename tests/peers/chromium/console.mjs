// Drives Debian's Chromium (headless, through playwright-core) through the Keyport console for
// the integration tests (tests/integration/console_browser.rs starts Keyport and the OAuth peer
// and runs one scenario per test): `node console.mjs <scenario>`, settings in the environment.
//
// Wherever a scenario authorizes, the browser goes through the OAuth peer's own sign-in and
// consent pages (the peer runs with CONSENT_PAGES=1) and clicks Allow or Deny.
//
// Every scenario also checks, on every screen it visits: no Content-Security-Policy violation,
// no serious or critical axe-core finding, and — where a secret was typed — that it appears in
// no page's HTML, no response to the browser, and no browser storage. It exits non-zero with
// the reason on stderr when anything fails, and prints one JSON line of findings on success.

import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const BASE = env('KEYPORT_URL');
const SCREENSHOTS = process.env.KEYPORT_SCREENSHOTS || null;
const TIMEOUT = 30_000;

function fail(message) {
  throw new Error(message);
}

async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // Playwright gives every launch an empty profile of its own (the --user-data-dir).
    args: [
      '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
    ],
  });
}

// A browser context for one person, with the checks every screen gets.
async function person(browser, label) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const seen = { violations: [], responses: [], errors: [] };
  page.on('console', (message) => {
    const text = message.text();
    if (/Content Security Policy/i.test(text)) seen.violations.push(text);
    if (message.type() === 'error' && !/status of 4\d\d/.test(text)) seen.errors.push(text);
  });
  page.on('pageerror', (error) => seen.errors.push(String(error)));
  page.on('response', async (response) => {
    if (!response.url().startsWith(BASE)) return;
    answered.push(`${response.status()} ${response.request().method()} ${new URL(response.url()).pathname}`);
    try {
      seen.responses.push(await response.text());
    } catch {
      // Redirects have no body.
    }
  });
  return { context, page, seen, label };
}

// The checks of one screen: accessibility, CSP, script errors; a screenshot when asked.
async function checkScreen(who, name) {
  await inspect(who, name);
  if (SCREENSHOTS) {
    mkdirSync(SCREENSHOTS, { recursive: true });
    await who.page.screenshot({ path: `${SCREENSHOTS}/${name}.png`, fullPage: true });
  }
  checked.push(name);
}

// Accessibility, CSP and script errors of the screen shown (Keyport's, or the provider's).
async function inspect(who, name) {
  const { page, seen } = who;
  await page.waitForLoadState('networkidle');
  await page.evaluate(AXE_SOURCE);
  const results = await page.evaluate(() => globalThis.axe.run(document, { resultTypes: ['violations'] }));
  const serious = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (serious.length) {
    fail(`${name}: accessibility: ${serious.map((v) => `${v.id} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`).join('; ')}`);
  }
  if (seen.violations.length) fail(`${name}: Content-Security-Policy violations: ${seen.violations.join(' | ')}`);
  if (seen.errors.length) fail(`${name}: script errors: ${seen.errors.join(' | ')}`);
}

// `secret` must be nowhere the browser keeps or was sent: page HTML, responses, storage.
async function assertNoSecret(who, secret, where) {
  const { page, context, seen } = who;
  const html = await page.content();
  if (html.includes(secret)) fail(`${where}: the secret is in the page's HTML`);
  if (seen.responses.some((body) => body.includes(secret))) fail(`${where}: the secret was in a response to the browser`);
  const storage = await page.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage } }));
  if (storage.includes(secret)) fail(`${where}: the secret is in browser storage`);
  const cookies = JSON.stringify(await context.cookies());
  if (cookies.includes(secret)) fail(`${where}: the secret is in a cookie`);
}

// No page may ever hold a token of a provider: nothing token-shaped in any response body.
function assertNoTokens(who) {
  for (const body of who.seen.responses) {
    if (/"(access_token|refresh_token|id_token)"\s*:/.test(body)) fail(`${who.label}: a response to the browser held a token`);
  }
}

const checked = [];
// Every answer Keyport gave the browser, for the failure report.
const answered = [];

async function signIn(who, link) {
  await who.page.goto(link);
  await who.page.getByText('Signed in as').waitFor();
}

// At the provider (the oidc-provider peer's pages), in the same browser page Keyport sent it
// to: sign in as `login`, read the consent page (it must name the client and every scope
// asked for), then click `decision` (Allow or Deny). The provider's pages get the same
// accessibility, CSP and script checks, without counting as Keyport's screens.
async function atProvider(who, { login, client, scopes, decision }) {
  const { page } = who;
  await page.waitForURL((url) => url.href.startsWith(`${env('OIDC_ISSUER')}/`));
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await inspect(who, 'the provider\'s sign-in page');
  await page.getByLabel('Login').fill(login);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Authorize access' }).waitFor();
  const named = (await page.locator('#client').textContent()).trim();
  if (named !== client) fail(`the consent page names ${named}, not ${client}`);
  const listed = await page.locator('#scopes li').allTextContents();
  const missing = scopes.filter((scope) => !listed.includes(scope));
  if (missing.length) fail(`the consent page does not list ${missing.join(', ')} (it lists ${listed.join(', ')})`);
  await inspect(who, 'the provider\'s consent page');
  await page.getByRole('button', { name: decision, exact: true }).click();
  await page.waitForURL((url) => url.href.startsWith(`${BASE}/`));
}

// The connections ask for openid, offline_access and api:read; oidc-provider drops
// offline_access from a request without prompt=consent (OpenID Connect Core §11), so its
// consent page lists the other two.
const SCOPES = ['openid', 'api:read'];

// ---- scenarios ----------------------------------------------------------------------------

const scenarios = {
  // An administrator creates a connection in the four steps, saves its login credentials
  // through the provider in the same browser, and invites a role.
  async 'admin-creates-a-connection'(browser) {
    const admin = await person(browser, 'admin');
    const { page } = admin;
    const secret = env('CLIENT_SECRET');
    await signIn(admin, env('ADMIN_LINK'));
    await page.getByText('No connections yet — create one.').waitFor();
    await checkScreen(admin, 'connections-empty');
    await page.getByRole('link', { name: 'Create a connection' }).click();
    // Step 1.
    await page.getByLabel('Provider', { exact: true }).selectOption('custom');
    await page.getByLabel('Name', { exact: true }).fill(env('CONNECTION_NAME'));
    await page.getByLabel('Description').fill('The CRM the sales bots read');
    const callback = await page.getByLabel('Callback URL to register at the provider').inputValue();
    if (callback !== `${BASE}/oauth/callback`) fail(`the callback URL shown is ${callback}`);
    await checkScreen(admin, 'create-step-1');
    await page.getByRole('button', { name: 'Next: authentication' }).click();
    // Step 2: first a mistake the API refuses, shown beside its field.
    await page.getByLabel('Grant type').selectOption('authorization_code_pkce');
    await page.getByLabel('Client id').fill(env('CLIENT_ID'));
    await page.getByLabel('Client secret').fill(secret);
    await page.getByLabel('Issuer (its endpoints are discovered)').fill('ftp://not-an-issuer');
    await page.getByLabel('Scopes').fill('openid,offline_access,api:read');
    await page.getByRole('button', { name: 'Create the connection' }).click();
    const fieldError = page.locator('#error-issuer');
    await fieldError.waitFor({ state: 'visible' });
    if (!(await fieldError.textContent()).trim()) fail('the issuer error is empty');
    if ((await page.getByLabel('Client secret').inputValue()) !== '') fail('the secret stayed in the form');
    await checkScreen(admin, 'create-step-2-error');
    await page.getByLabel('Issuer (its endpoints are discovered)').fill(env('OIDC_ISSUER'));
    await page.getByLabel('Client secret').fill(secret);
    await page.getByRole('button', { name: 'Create the connection' }).click();
    // Step 3.
    await page.getByRole('button', { name: 'Test the connection' }).click();
    await page.getByText(/Test (passed|failed)/).waitFor();
    await checkScreen(admin, 'create-step-3');
    await assertNoSecret(admin, secret, 'step 3');
    await page.getByRole('button', { name: 'Save login credentials' }).click();
    // Through the provider's sign-in and consent pages, Keyport's callback and the console's
    // completion, back on the connection's page.
    await atProvider(admin, { login: 'ada', client: env('CLIENT_ID'), scopes: SCOPES, decision: 'Allow' });
    await page.getByText('Connected: Keyport holds the token.').waitFor();
    await page.locator('.badge', { hasText: 'Valid' }).first().waitFor();
    // Step 4: invite the role and an application.
    await page.getByLabel('Invited roles').fill(env('ROLE'));
    await page.getByLabel('Invited applications').fill('reporting-app');
    await page.getByRole('button', { name: 'Save the invitations' }).click();
    await page.waitForLoadState('networkidle');
    await page.getByLabel('Invited roles').waitFor();
    if ((await page.getByLabel('Invited roles').inputValue()) !== env('ROLE')) fail('the invited role was not kept');
    if ((await page.getByLabel('Invited applications').inputValue()) !== 'reporting-app') fail('the invited application was not kept');
    await checkScreen(admin, 'connection-page');
    await assertNoSecret(admin, secret, 'connection page');
    await page.getByRole('link', { name: 'Connections' }).first().click();
    await page.getByRole('link', { name: env('CONNECTION_NAME') }).waitFor();
    await page.getByText('app reporting-app').first().waitFor();
    await checkScreen(admin, 'connections-list');
    await assertNoSecret(admin, secret, 'connections list');
    assertNoTokens(admin);
    const id = new URL(await page.getByRole('link', { name: env('CONNECTION_NAME') }).evaluate((a) => a.href)).pathname.split('/').pop();
    return { connection_id: id };
  },

  // A person whose role is invited connects their own token from My connections.
  async 'user-connects'(browser) {
    const user = await person(browser, 'user');
    const { page } = user;
    await signIn(user, env('USER_LINK'));
    const name = env('CONNECTION_NAME');
    await page.getByRole('heading', { name: 'My connections' }).waitFor();
    if (await page.getByRole('link', { name: 'Connections', exact: true }).count()) fail('a person without the permission sees the admin screens');
    await checkScreen(user, 'my-connections');
    await page.getByRole('button', { name: `Connect ${name}` }).click();
    await atProvider(user, { login: 'bea', client: env('CLIENT_ID'), scopes: SCOPES, decision: 'Allow' });
    await page.getByRole('heading', { name: 'My connections' }).waitFor();
    await page.getByRole('button', { name: `Disconnect ${name}` }).waitFor();
    const card = page.locator('.card', { hasText: name });
    await card.locator('.badge', { hasText: 'Valid' }).waitFor();
    await checkScreen(user, 'my-connections-connected');
    assertNoTokens(user);
    return {};
  },

  // A person whose role is invited starts to connect, and declines at the provider's consent
  // page: the console says so calmly, and their slot stays empty.
  async 'user-declines'(browser) {
    const user = await person(browser, 'user');
    const { page } = user;
    await signIn(user, env('USER_LINK'));
    const name = env('CONNECTION_NAME');
    await page.getByRole('button', { name: `Connect ${name}` }).click();
    await atProvider(user, { login: 'bea', client: env('CLIENT_ID'), scopes: SCOPES, decision: 'Deny' });
    await page.getByRole('heading', { name: 'Authorization declined' }).waitFor();
    await page.getByText('You declined at the provider, so Keyport was given no access and nothing has changed.').waitFor();
    if (await page.locator('.problem, [role=alert]').count()) fail('declining is shown as a problem');
    if (new URL(page.url()).search) fail(`the address bar kept the callback's query: ${page.url()}`);
    await checkScreen(user, 'authorization-declined');
    await page.getByRole('link', { name: 'Back' }).click();
    await page.getByRole('heading', { name: 'My connections' }).waitFor();
    const card = page.locator('.card', { hasText: name });
    await card.locator('.badge', { hasText: 'Not authorized' }).waitFor();
    await page.getByRole('button', { name: `Connect ${name}` }).waitFor();
    assertNoTokens(user);
    return {};
  },

  // An administrator sees who used a connection's tokens: each caller, the rule that let it,
  // and the token's fingerprint, never the token.
  async 'admin-sees-who-used-tokens'(browser) {
    const admin = await person(browser, 'admin');
    const { page } = admin;
    await signIn(admin, env('ADMIN_LINK'));
    await page.goto(`${BASE}/console/connections/${env('CONNECTION_ID')}`);
    await page.getByRole('heading', { name: 'Used by' }).waitFor();
    const bot = page.locator('#used-by tbody tr', { hasText: env('BOT') });
    await bot.getByText('invited_role:').waitFor();
    if (!(await bot.textContent()).includes(env('BOT_FINGERPRINT'))) fail(`the bot's row: ${await bot.textContent()}`);
    const app = page.locator('#used-by tbody tr', { hasText: env('APP') });
    await app.getByText('invited_application (keyport/tokens.read)').waitFor();
    await checkScreen(admin, 'connection-used-by');
    for (const token of env('TOKENS').split(' ')) await assertNoSecret(admin, token, 'used by');
    assertNoTokens(admin);
    return {};
  },

  // An administrator subscribes a webhook receiver to one event type from the Notifications
  // page: the signing secret is shown once (in no storage), the subscription listed.
  async 'admin-subscribes-a-webhook'(browser) {
    const admin = await person(browser, 'admin');
    const { page } = admin;
    await signIn(admin, env('ADMIN_LINK'));
    await page.getByRole('link', { name: 'Notifications' }).click();
    await page.getByText('No webhook yet.').waitFor();
    await page.getByLabel('Receiver URL').fill(env('RECEIVER_URL'));
    await page.getByLabel('Description').fill('the on-call channel');
    await page.getByLabel('A role is invited to a connection').check();
    await page.getByRole('button', { name: 'Subscribe' }).click();
    const shown = page.locator('#webhook-secret code');
    await shown.waitFor();
    const secret = (await shown.textContent()).trim();
    if (!secret.startsWith('whsec_')) fail(`the secret shown: ${secret}`);
    const row = page.locator('tbody tr', { hasText: env('RECEIVER_URL') });
    await row.getByText('Nothing sent yet').waitFor();
    await row.getByText('A role is invited to a connection').waitFor();
    await checkScreen(admin, 'notifications');
    const storage = await page.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage } }));
    if (storage.includes(secret)) fail('the webhook secret is in browser storage');
    // Once: the list the page reads again never carries it.
    await page.reload();
    await row.getByText('Nothing sent yet').waitFor();
    if ((await page.content()).includes(secret)) fail('the secret is shown again');
    return { secret };
  },

  // The same administrator sees the delivery Keyport made, in colour and words.
  async 'admin-sees-a-delivery'(browser) {
    const admin = await person(browser, 'admin');
    const { page } = admin;
    await signIn(admin, env('ADMIN_LINK'));
    await page.goto(`${BASE}/console/notifications`);
    const row = page.locator('tbody tr', { hasText: env('RECEIVER_URL') });
    await row.locator('.badge', { hasText: 'Delivered' }).waitFor();
    await checkScreen(admin, 'notifications-delivered');
    return {};
  },

  // A person without an invited role sees no connection, and no admin screen.
  async 'no-role'(browser) {
    const user = await person(browser, 'outsider');
    const { page } = user;
    await signIn(user, env('USER_LINK'));
    await page.getByText('No connection is shared with your roles yet.').waitFor();
    if (await page.getByRole('link', { name: 'Connections', exact: true }).count()) fail('the admin navigation is shown');
    await checkScreen(user, 'my-connections-empty');
    await page.goto(`${BASE}/console/connections`);
    await page.getByRole('heading', { name: 'Not available' }).waitFor();
    await checkScreen(user, 'not-available');
    return {};
  },

  // An administrator sees a person's own token among the connection's user tokens and
  // disconnects it; then edits the connection: the description with the secret left blank,
  // an endpoint without the secret (said before saving, refused beside the secret field,
  // nothing changed), then with it.
  async 'admin-manages-user-tokens-and-edits'(browser) {
    const name = env('CONNECTION_NAME');
    const id = env('CONNECTION_ID');
    const subject = env('USER_SUBJECT');
    const secret = env('CLIENT_SECRET');
    const user = await person(browser, 'user');
    await signIn(user, env('USER_LINK'));
    await user.page.getByRole('button', { name: `Connect ${name}` }).click();
    await atProvider(user, { login: subject, client: env('CLIENT_ID'), scopes: SCOPES, decision: 'Allow' });
    await user.page.getByRole('button', { name: `Disconnect ${name}` }).waitFor();

    const admin = await person(browser, 'admin');
    const { page } = admin;
    await signIn(admin, env('ADMIN_LINK'));
    await page.goto(`${BASE}/console/connections/${id}`);
    const row = page.locator('#user-tokens tbody tr', { hasText: subject });
    await row.locator('.badge', { hasText: 'Valid' }).waitFor();
    if ((await row.locator('td').nth(1).textContent()) === '—') fail('the user token shows no expiry');
    await checkScreen(admin, 'connection-user-tokens');
    page.once('dialog', (dialog) => dialog.accept());
    await row.getByRole('button', { name: `Disconnect ${subject}` }).click();
    await page.getByText(`Disconnected ${subject}'s token.`).waitFor();
    await page.getByText('Nobody has connected their own token yet.').waitFor();
    await user.page.goto(`${BASE}/console/me`);
    await user.page.locator('.card', { hasText: name }).locator('.badge', { hasText: 'Not authorized' }).waitFor();
    await user.page.getByRole('button', { name: `Connect ${name}` }).waitFor();

    // The connection as the API has it, read through the console's own API.
    const stored = () => page.evaluate(async (id) => (await fetch(`/console/api/connections/${id}`)).json(), id);
    const first = await stored();
    if (!first.client_secret_set) fail('the connection has no secret to keep');

    // The description alone: the secret field left blank keeps the secret.
    const description = env('NEW_DESCRIPTION');
    await page.getByLabel('Description').fill(description);
    if (await page.locator('#needs-secret').textContent()) fail('a description change is said to need the secret');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByText(`Saved (version ${first.version + 1}).`).waitFor();
    if ((await page.getByLabel('Description').inputValue()) !== description) fail('the description was not kept');
    await page.getByText('A client secret is set (never shown).').waitFor();
    const described = await stored();
    if (described.description !== description || !described.client_secret_set) fail(`after the description: ${JSON.stringify(described)}`);

    // An endpoint without the secret: the form says so first, the API refuses it beside the
    // secret field, and nothing changes.
    const moved = env('NEW_TOKEN_URL');
    await page.getByLabel('Token URL').fill(moved);
    await page.locator('#needs-secret', { hasText: 'token URL' }).waitFor();
    await page.getByRole('button', { name: 'Save changes' }).click();
    const secretError = page.locator('#error-client_secret');
    await secretError.waitFor({ state: 'visible' });
    if (!/must be given again/.test(await secretError.textContent())) fail(`the secret field's error says ${await secretError.textContent()}`);
    if ((await page.getByLabel('Client secret').getAttribute('aria-invalid')) !== 'true') fail('the secret field is not marked invalid');
    await checkScreen(admin, 'connection-edit-needs-secret');
    const refused = await stored();
    if (refused.token_url !== described.token_url || refused.version !== described.version) fail(`a refused change changed the connection: ${JSON.stringify(refused)}`);

    // With the secret.
    await page.getByLabel('Client secret').fill(secret);
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByText(`Saved (version ${described.version + 1}).`).waitFor();
    if ((await page.getByLabel('Token URL').inputValue()) !== moved) fail('the token URL shown is not the new one');
    if ((await page.getByLabel('Client secret').inputValue()) !== '') fail('the secret stayed in the form');
    await checkScreen(admin, 'connection-edited');
    await assertNoSecret(admin, secret, 'the connection page after the edit');
    assertNoTokens(admin);
    assertNoTokens(user);
    return {};
  },

  // An administrator downloads the export, adds a connection and changes another in the
  // file, uploads it, reads the dry run's table, and confirms.
  async 'admin-exports-and-imports'(browser) {
    const admin = await person(browser, 'admin');
    const { page } = admin;
    await signIn(admin, env('ADMIN_LINK'));
    await page.getByRole('link', { name: 'Export / import' }).click();
    await page.getByRole('heading', { name: 'Export / import' }).waitFor();
    await checkScreen(admin, 'transfer');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download the export' }).click(),
    ]);
    const exported = JSON.parse(readFileSync(await download.path(), 'utf8'));
    const existing = exported.connections.find((c) => c.name === env('CONNECTION_NAME'));
    if (!existing) fail(`the export has no ${env('CONNECTION_NAME')}: ${JSON.stringify(exported)}`);
    if (JSON.stringify(exported).includes(env('CLIENT_SECRET'))) fail('the export holds the client secret');
    existing.description = env('NEW_DESCRIPTION');
    const added = { ...existing, name: env('NEW_NAME'), description: '', client_secret: env('NEW_SECRET') };
    exported.connections.push(added);
    const file = `${process.env.TMPDIR || '/tmp'}/keyport-import-${process.pid}.json`;
    writeFileSync(file, JSON.stringify(exported));
    await page.getByLabel('Export file').setInputFiles(file);
    await page.getByText('A dry run: nothing is applied until you confirm.').waitFor();
    const rows = await page.locator('#import-plan tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
    const expected = [[env('CONNECTION_NAME'), 'Change', 'description'], [env('NEW_NAME'), 'Create', '']];
    if (JSON.stringify(rows) !== JSON.stringify(expected)) fail(`the plan shows ${JSON.stringify(rows)}`);
    await checkScreen(admin, 'import-plan');
    await page.getByRole('button', { name: 'Apply this import' }).click();
    await page.getByText('Imported: every change in the table is applied.').waitFor();
    await page.getByRole('table', { name: 'Applied' }).waitFor();
    await checkScreen(admin, 'import-applied');
    await assertNoSecret(admin, env('NEW_SECRET'), 'the import page');
    await assertNoSecret(admin, env('CLIENT_SECRET'), 'the import page');
    assertNoTokens(admin);
    return {};
  },

  // The phishing sequence: the attacker starts an authorization of their own slot and sends
  // the provider link to the victim, who consents in their own signed-in browser. The
  // completion is confirmed as the victim, not the attacker: refused, and no slot is filled.
  async phishing(browser) {
    const attacker = await person(browser, 'attacker');
    await signIn(attacker, env('ATTACKER_LINK'));
    const id = env('CONNECTION_ID');
    const started = await attacker.page.evaluate(async ({ id }) => {
      const session = await (await fetch('/console/api/session')).json();
      const back = new URL('/console/complete', location.origin);
      back.searchParams.set('then', '/console/me');
      const answer = await fetch(`/console/api/connections/${id}/authorize`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-keyport-csrf': session.csrf_token },
        body: JSON.stringify({ owner: 'user', redirect_after: back.toString() }),
      });
      return { status: answer.status, body: await answer.json() };
    }, { id });
    if (started.status !== 200) fail(`the attacker's authorization did not start: ${JSON.stringify(started.body)}`);
    const victim = await person(browser, 'victim');
    await signIn(victim, env('VICTIM_LINK'));
    await victim.page.goto(started.body.authorization_url);
    // The victim signs in at the provider and consents, as phished people do.
    await atProvider(victim, { login: 'alice', client: env('CLIENT_ID'), scopes: SCOPES, decision: 'Allow' });
    await victim.page.getByRole('heading', { name: 'Authorization not completed' }).waitFor();
    await checkScreen(victim, 'phishing-refused');
    await victim.page.goto(`${BASE}/console/me`);
    const card = victim.page.locator('.card', { hasText: env('CONNECTION_NAME') });
    await card.locator('.badge', { hasText: 'Not authorized' }).waitFor();
    await attacker.page.goto(`${BASE}/console/me`);
    const attackerCard = attacker.page.locator('.card', { hasText: env('CONNECTION_NAME') });
    await attackerCard.locator('.badge', { hasText: 'Not authorized' }).waitFor();
    return {};
  },
};

const name = process.argv[2];
const scenario = scenarios[name];
if (!scenario) {
  console.error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}
const browser = await launch();
try {
  const found = await scenario(browser);
  console.log(JSON.stringify({ scenario: name, screens: checked, ...found }));
} catch (error) {
  // Where it stopped: the screen's address and text, to read in the test's failure.
  const pages = browser.contexts().flatMap((c) => c.pages());
  const where = await Promise.all(pages.map(async (p) => `${p.url()}: ${(await p.locator('body').innerText().catch(() => '')).slice(0, 400)}`));
  console.error(`${name}: ${error.message.split('\n').slice(0, 12).join('\n')}\n${where.join('\n')}\nanswers: ${answered.slice(-12).join(', ')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
