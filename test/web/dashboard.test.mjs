// The dashboard as a user meets it, in Debian's Chromium driven by playwright-core.
// test/e2e/dashboard_test.go runs this inside a network namespace with no route out,
// against a real control plane, agent and VMs
// (the environment it sets: test/web/lib.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canvasDrawn, createSandbox, newContext, newPage, shot, signIn, signUp, waitDrawn } from './lib.mjs';

const owner = `owner-${Date.now()}@web.test`;

test('the app loads under a strict CSP, and a signed-out visit goes to the login page', async () => {
  const page = await newPage();
  const res = await page.goto('/sandboxes');
  const csp = res.headers()['content-security-policy'] ?? '';
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /script-src[^;]*'unsafe-(inline|eval)'/);
  assert.match(csp, /frame-ancestors 'none'/);
  await page.waitForURL(/\/login\?next=%2Fsandboxes/);
  // What a first visit costs: bytes over the wire (gzip) and time to the load event.
  const cost = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const res = performance.getEntriesByType('resource');
    return { loadMs: Math.round(nav.loadEventEnd), bytes: nav.transferSize + res.reduce((n, r) => n + r.transferSize, 0), files: res.length + 1 };
  });
  console.log(`first load: ${(cost.bytes / 1024).toFixed(1)} KiB in ${cost.files} responses, load event at ${cost.loadMs} ms`);
  assert.ok(cost.bytes < 250 * 1024, `first load ${cost.bytes} bytes, over the 250 KiB budget`);
  await shot(page, 'login');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('sign up, then a state change without the CSRF header is refused', async () => {
  const page = await newPage();
  await signUp(page, owner);
  await shot(page, 'sandboxes-empty');
  // The session cookie rides along, the CSRF header does not: refused.
  const res = await page.request.post('/v1/sandboxes', { data: { template: 'base' } });
  assert.equal(res.status(), 403);
  assert.equal((await res.json()).error.code, 'csrf');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a sandbox from its creation to its terminal, charts, pause and resume', async () => {
  const page = await newPage();
  await signIn(page, owner);

  const { row, id } = await createSandbox(page, () => shot(page, 'sandboxes-create-dialog'));
  await shot(page, 'sandboxes');

  // Its page: the charts draw; the terminal runs what is typed in it.
  await row.first().getByRole('link').click();
  await page.waitForURL(new RegExp(`/sandboxes/${id}`));
  const canvas = page.locator('canvas').first();
  await canvas.waitFor();
  await waitDrawn(page, canvas, 60_000);
  assert.ok(await canvasDrawn(canvas), 'the CPU chart is blank');
  await shot(page, 'sandbox-metrics');

  await page.getByRole('tab', { name: 'Terminal' }).click();
  const screen = page.locator('.xterm-rows');
  await screen.waitFor({ timeout: 60_000 });
  await page.locator('.xterm').click();
  await page.keyboard.type('echo hello-$((6*7))\n');
  await page.waitForFunction(() => document.querySelector('.xterm-rows')?.textContent.includes('hello-42'), null, { timeout: 60_000 });
  await shot(page, 'sandbox-terminal');

  // Pause and resume from the list, each confirmed in a dialog.
  await page.goto('/sandboxes');
  const mine = page.getByRole('row').filter({ hasText: id });
  await mine.getByRole('button', { name: 'Pause' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Pause' }).click();
  await mine.filter({ hasText: 'paused' }).waitFor({ timeout: 120_000 });
  await mine.getByRole('button', { name: 'Resume' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Resume' }).click();
  await mine.filter({ hasText: 'running' }).waitFor({ timeout: 120_000 });
  const api = await page.request.get(`/v1/sandboxes/${id}`);
  assert.equal((await api.json()).status, 'running');

  await mine.getByRole('button', { name: 'Destroy' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Destroy' }).click();
  await mine.waitFor({ state: 'detached', timeout: 60_000 });
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('sign out ends the session: the old cookie is refused', async () => {
  const page = await newPage();
  await signIn(page, owner);
  const cookies = await page.context().cookies();
  await page.getByRole('button', { name: /sign out/i }).click();
  await page.waitForURL(/\/login/);
  // The cookie from before sign-out, sent again, is refused: it was revoked.
  const other = await newContext();
  await other.addCookies(cookies);
  const res = await other.request.get('/v1/me');
  assert.equal(res.status(), 401);
  await other.close();
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
