// Managing a team and the platform in the dashboard (test/e2e/dashboard_test.go runs
// it; the environment: lib.mjs): an owner changes a member's role, renames the team and
// removes the member; a platform administrator turns BYOC on and off for the team, and
// force-deletes a host with a sandbox on it; the audit log pages as it is scrolled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { csrf, newPage, shot, signIn, signUp } from './lib.mjs';

const admin = { email: 'admin@e2e.test', password: 'correct horse battery' };
const owner = `mgr-owner-${Date.now()}@web.test`;
const member = `mgr-member-${Date.now()}@web.test`;
const busyHost = process.env.WRENN_WEB_BUSY_HOST;
const busySandbox = process.env.WRENN_WEB_BUSY_SANDBOX;

let pageO; // the owner's browser, kept across the tests
let team; // the owner's team: { id, name }

// until polls fn (an API read) until it returns true: the page acts, then the API
// has to agree.
async function until(fn, what, timeout = 10_000) {
  const end = Date.now() + timeout;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) assert.fail(`never: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function json(page, path) {
  const res = await page.request.get(path);
  assert.equal(res.status(), 200, `GET ${path}`);
  return res.json();
}

const roleOf = async (page, email) => (await json(page, `/v1/teams/${team.id}/members`)).members.find((m) => m.email === email)?.role;

test("an owner changes a member's role both ways, renames the team and removes the member", async () => {
  pageO = await newPage();
  const page = pageO;
  await signUp(page, owner);
  const me = await json(page, '/v1/me');
  team = { id: me.current_team_id, name: me.teams.find((t) => t.id === me.current_team_id).name };
  const pageM = await newPage();
  await signUp(pageM, member);
  const add = await page.request.post(`/v1/teams/${team.id}/members`, { data: { email: member, role: 'member' }, headers: { 'X-CSRF-Token': await csrf(page) } });
  assert.equal(add.status(), 201);

  await page.goto('/team');
  const role = page.getByLabel(`Role of ${member}`);
  assert.equal(await role.inputValue(), 'member');
  for (const r of ['admin', 'member']) {
    await role.selectOption(r);
    await until(async () => (await roleOf(page, member)) === r, `${member} is ${r}`);
    await page.reload();
    assert.equal(await role.inputValue(), r, 'the page shows the role it set');
  }
  await shot(page, 'team-roles');

  // Rename: the heading and the team switcher say the new name, for the member too.
  const name = `Renamed ${Date.now() % 100000}`;
  await page.getByRole('button', { name: 'Rename' }).click();
  await page.getByRole('dialog').getByLabel('Name').fill(name);
  await page.getByRole('dialog').getByRole('button', { name: 'Rename' }).click();
  await page.getByTestId('team-name').filter({ hasText: name }).waitFor();
  assert.equal((await page.locator(`#team option[value="${team.id}"]`).textContent()).trim(), name);
  assert.equal((await json(page, `/v1/teams/${team.id}`)).name, name);
  team.name = name;
  await pageM.reload();
  await pageM.locator(`#team option[value="${team.id}"]`, { hasText: name }).waitFor({ state: 'attached' });

  // Remove, confirmed: gone from the list, the API, and the member's own view.
  const row = page.getByRole('row').filter({ hasText: member });
  await row.getByRole('button', { name: `Remove ${member}` }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Remove' }).click();
  await row.waitFor({ state: 'detached' });
  assert.equal(await roleOf(page, member), undefined);
  await pageM.reload();
  await pageM.locator('#team option').first().waitFor({ state: 'attached' });
  assert.equal(await pageM.locator(`#team option[value="${team.id}"]`).count(), 0, 'the removed member still sees the team');
  assert.ok(!(await json(pageM, '/v1/me')).teams.some((t) => t.id === team.id));
  assert.deepEqual(page.errors, []);
  assert.deepEqual(pageM.errors, []);
  await pageM.context().close();
});

test('an administrator turns BYOC on for a team, whose owner may then add hosts, and off again', async () => {
  const pageA = await newPage();
  await signIn(pageA, admin.email, admin.password);
  await pageA.goto('/admin');
  const toggle = pageA.getByLabel(`BYOC for ${team.name}`);
  const byoc = async () => (await json(pageO, '/v1/me')).teams.find((t) => t.id === team.id).is_byoc;
  assert.equal(await toggle.isChecked(), false);

  await pageO.goto('/hosts');
  await pageO.getByTestId('hosts-why').filter({ hasText: 'BYOC' }).waitFor();
  assert.equal(await pageO.getByRole('button', { name: 'Add host' }).count(), 0);

  await toggle.check();
  await until(byoc, 'the team is BYOC');
  await shot(pageA, 'admin-byoc-on');
  await pageO.reload();
  await pageO.getByRole('button', { name: 'Add host' }).waitFor();
  assert.equal(await pageO.getByTestId('hosts-why').count(), 0);
  await shot(pageO, 'hosts-byoc');

  await toggle.uncheck();
  await until(async () => !(await byoc()), 'the team is not BYOC');
  await pageO.reload();
  await pageO.getByTestId('hosts-why').filter({ hasText: 'BYOC' }).waitFor();
  assert.equal(await pageO.getByRole('button', { name: 'Add host' }).count(), 0);
  // And the administrator's page, loaded afresh, says off.
  await pageA.reload();
  assert.equal(await pageA.getByLabel(`BYOC for ${team.name}`).isChecked(), false);
  assert.deepEqual(pageA.errors, []);
  assert.deepEqual(pageO.errors, []);
  await pageA.context().close();
});

test('deleting a host with a sandbox on it shows what would be lost; force deletes it', async () => {
  assert.ok(busyHost && busySandbox, 'WRENN_WEB_BUSY_HOST and WRENN_WEB_BUSY_SANDBOX are set by dashboard_test.go');
  const page = await newPage();
  await signIn(page, admin.email, admin.password);
  assert.equal((await json(page, `/v1/sandboxes/${busySandbox}`)).status !== 'stopped', true);
  await page.goto('/hosts');
  const row = page.getByRole('row').filter({ hasText: busyHost });
  await row.getByRole('button', { name: 'Delete' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByRole('button', { name: 'Delete' }).click();
  // The 409: what runs there, and the way on.
  const lost = dialog.getByRole('list', { name: 'Sandboxes on the host' });
  await lost.waitFor();
  assert.deepEqual((await lost.getByRole('listitem').allTextContents()).map((s) => s.trim()), [busySandbox]);
  await dialog.getByText(/destroys these sandboxes/).waitFor();
  assert.equal((await page.request.get(`/v1/hosts/${busyHost}`)).status(), 200, 'the refused delete deleted');
  await shot(page, 'hosts-force-delete');

  await dialog.getByRole('button', { name: 'Force delete' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await row.waitFor({ state: 'detached' });
  assert.equal((await page.request.get(`/v1/hosts/${busyHost}`)).status(), 404);
  assert.equal((await json(page, `/v1/sandboxes/${busySandbox}`)).status, 'stopped');
  // The one console error is the browser's record of the 409.
  assert.deepEqual(page.errors.filter((e) => !/status of 409/.test(e)), []);
  assert.equal(page.errors.length, 1, page.errors.join('\n'));
  await page.context().close();
});

test('the audit log appends older pages as it is scrolled, without repeats, down to the oldest', async () => {
  const page = pageO;
  // More renames than a page holds (the page asks for 50).
  const n = 60;
  const names = Array.from({ length: n }, (_, i) => `audit-${String(i + 1).padStart(3, '0')}`);
  const token = await csrf(page);
  for (const name of names) {
    const res = await page.request.patch(`/v1/teams/${team.id}`, { data: { name }, headers: { 'X-CSRF-Token': token } });
    assert.equal(res.status(), 200, `rename to ${name}`);
  }
  await page.goto('/audit?action=team.rename');
  const rows = page.locator('tbody tr');
  await rows.nth(49).waitFor();
  assert.equal(await rows.count(), 50, 'the first page is not 50 entries');
  await shot(page, 'audit-first-page');

  // Scrolling to the end loads the rest.
  await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
  const all = n + 1; // and the rename the first test made
  await page.getByText(`${all} entries: that is all.`).waitFor();
  const details = await page.locator('tbody tr td:nth-child(5)').allTextContents();
  const shown = details.map((d) => d.match(/name: (.*)/)?.[1].trim());
  assert.equal(new Set(shown).size, shown.length, 'an entry is listed twice');
  assert.deepEqual(shown, [...names].reverse().concat([team.name]), 'not newest to oldest');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
