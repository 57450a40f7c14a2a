// Signing in other than with a password, and coming back after a session ends
// (test/e2e/dashboard_test.go runs it; the environment: lib.mjs). GitHub is the
// stand-in of internal/server/auth/oauth/oauthtest, on the namespace's gateway, with
// one account signed in at it (WRENN_WEB_GITHUB_EMAIL).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adminToken, csrf, newContext, newPage, password, shot, signUp } from './lib.mjs';

const githubEmail = process.env.WRENN_WEB_GITHUB_EMAIL;

// expected401 drops the console's record of the 401 a dead session answers (the
// browser logs every failed request): that one is the point of the test; any other
// error still fails it.
const unexpected = (errors) => errors.filter((e) => !/status of 401/.test(e));

// accounts is how many accounts have the email, as a platform administrator sees them.
async function accounts(email) {
  const ctx = await newContext({ extraHTTPHeaders: { Authorization: `Bearer ${adminToken}` } });
  const res = await ctx.request.get('/v1/admin/users', { params: { email } });
  assert.equal(res.status(), 200);
  const users = (await res.json()).users.filter((u) => u.email === email);
  await ctx.close();
  return users.length;
}

test('"Sign in with GitHub" makes a new GitHub user an account and lands on the page asked for', async () => {
  assert.ok(githubEmail, 'WRENN_WEB_GITHUB_EMAIL is set by dashboard_test.go');
  assert.equal(await accounts(githubEmail), 0, 'the GitHub user has an account before signing in');
  const page = await newPage({ httpErrors: true });
  await page.goto('/login?next=/stats');
  await page.getByRole('link', { name: 'Sign in with GitHub' }).click();
  // Wrenn → the stand-in GitHub → Wrenn's callback → the page asked for.
  await page.waitForURL((u) => u.pathname === '/stats');
  await page.getByRole('heading', { name: /stats/i }).first().waitFor();
  const cookies = await page.context().cookies();
  assert.ok(cookies.some((c) => c.name === 'wrenn_session' && c.httpOnly), 'no HttpOnly session cookie');
  assert.ok(cookies.some((c) => c.name === 'wrenn_csrf'), 'no CSRF cookie');
  const me = await (await page.request.get('/v1/me')).json();
  assert.equal(me.user.email, githubEmail);
  assert.equal(me.teams.length, 1, 'a new account has its own team');
  assert.equal(await accounts(githubEmail), 1);
  // The session does what a password session does: a state change with its CSRF token.
  const res = await page.request.post('/v1/api-keys', { data: { name: 'from-github' }, headers: { 'X-CSRF-Token': await csrf(page) } });
  assert.equal(res.status(), 201);
  await shot(page, 'github-signed-in');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a session that ends while on a page comes back to that page, query and all, after signing in', async () => {
  const email = `expiry-${Date.now()}@web.test`;
  const page = await newPage();
  await signUp(page, email);
  const me = await (await page.request.get('/v1/me')).json();
  const teamPath = `/v1/teams/${me.current_team_id}`;
  // Something for the filter to find: a rename is a team.rename entry.
  const renamed = await page.request.patch(teamPath, { data: { name: `expiry team` }, headers: { 'X-CSRF-Token': await csrf(page) } });
  assert.equal(renamed.status(), 200);
  const want = '/audit?action=team.rename';
  await page.goto(want);
  await page.getByText('One entry: that is all.').waitFor();

  // The session is revoked server-side, from elsewhere (another context with the same
  // cookies), as an expiry or a sign-out on another tab would: the page does not know.
  const other = await newContext();
  await other.addCookies(await page.context().cookies());
  const out = await other.request.delete('/v1/auth/session', { headers: { 'X-CSRF-Token': await csrf(page) } });
  assert.equal(out.status(), 204);
  await other.close();
  assert.equal(page.url().replace(/^https?:\/\/[^/]+/, ''), want);

  // Acting in the page (filtering again) meets the 401: to the login page, which
  // remembers where the user was.
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL((u) => u.pathname === '/login');
  assert.equal(new URL(page.url()).searchParams.get('next'), want);
  await shot(page, 'login-after-expiry');

  await page.getByLabel(/email/i).fill(email);
  await page.getByLabel(/^password/i).fill(password);
  await page.getByRole('button', { name: /sign in/i }).click();
  await page.waitForURL((u) => u.pathname + u.search === want);
  await page.getByText('One entry: that is all.').waitFor();
  assert.equal(await page.getByLabel('Action').inputValue(), 'team.rename');
  assert.equal((await page.request.get('/v1/me')).status(), 200);
  assert.deepEqual(unexpected(page.errors), []);
  await page.context().close();
});
