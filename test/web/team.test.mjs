// The dashboard's API keys, team and audit pages, as two users meet them, in Debian's
// Chromium driven by playwright-core (test/e2e/dashboard_test.go runs it; see
// dashboard.test.mjs for the environment). User A makes a key, sees it once, uses it
// and revokes it; A adds user B to A's team, B switches to it and leaves it; A's audit
// log shows all of it and narrows by action from the URL. B deletes B's own team.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newPage, shot, signUp } from './lib.mjs';

const userA = `keys-a-${Date.now()}@web.test`;
const userB = `keys-b-${Date.now()}@web.test`;

let pageA; // A's browser, kept across the tests (its session cookie)
let pageB; // B's, another context
let teamA; // A's team: { id, name }

test('an API key is shown once, in both forms, works, and stops working when revoked', async () => {
  pageA = await newPage();
  const page = pageA;
  await signUp(page, userA);
  const me = await (await page.request.get('/v1/me')).json();
  const t = me.teams.find((x) => x.id === me.current_team_id);
  teamA = { id: t.id, name: t.name };

  await page.getByRole('link', { name: 'API keys' }).click();
  await page.waitForURL(/\/api-keys$/);
  await page.getByRole('heading', { name: 'No API keys yet' }).waitFor();
  await shot(page, 'api-keys-empty');

  await page.getByRole('button', { name: 'New API key' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel(/name/i).fill('ci-runner');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await dialog.getByText("you won't see it again").waitFor();
  const key = await dialog.locator('#key-wrn').inputValue();
  const e2bKey = await dialog.locator('#key-e2b').inputValue();
  assert.match(key, /^wrn_[0-9a-f]{32}$/);
  assert.match(e2bKey, /^e2b_[0-9a-f]{32}$/);
  assert.equal(key.slice(4), e2bKey.slice(4));
  // Copy: the clipboard (a secure context) or, over plain http here, the key selected.
  await dialog.getByRole('button', { name: 'Copy' }).first().click();
  await dialog.getByText(/Copied to the clipboard|the key is selected/).waitFor();
  await shot(page, 'api-keys-created');
  await dialog.getByRole('button', { name: 'Done' }).click();
  await dialog.waitFor({ state: 'hidden' });

  // Listed without its secret, and never shown again.
  const row = page.getByRole('row').filter({ hasText: 'ci-runner' });
  await row.waitFor();
  assert.ok((await row.textContent()).includes(key.slice(0, 10)), 'the row shows the key prefix');
  assert.equal(await page.getByText(key).count(), 0);
  await shot(page, 'api-keys');

  // The key works, in both forms.
  for (const k of [key, e2bKey]) {
    const res = await page.request.get('/v1/sandboxes', { headers: { 'X-API-Key': k } });
    assert.equal(res.status(), 200, `GET /v1/sandboxes with ${k.slice(0, 4)}…`);
  }

  // Revoke, confirmed; then it is refused.
  await row.getByRole('button', { name: /revoke/i }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
  await row.waitFor({ state: 'detached' });
  await page.getByRole('heading', { name: 'No API keys yet' }).waitFor();
  const res = await page.request.get('/v1/sandboxes', { headers: { 'X-API-Key': key } });
  assert.equal(res.status(), 401);
  assert.deepEqual(page.errors, []);
});

test('A adds B to the team; B switches to it, sees it current, and leaves it', async () => {
  pageB = await newPage();
  await signUp(pageB, userB);
  const meB = await (await pageB.request.get('/v1/me')).json();
  const teamB = meB.teams.find((x) => x.id === meB.current_team_id);

  const page = pageA;
  await page.goto('/team');
  await page.getByTestId('team-name').filter({ hasText: teamA.name }).waitFor();
  await page.getByLabel('Email').fill(userB);
  await page.getByLabel('Role', { exact: true }).selectOption('member');
  await page.getByRole('button', { name: 'Add member' }).click();
  await page.getByRole('status').filter({ hasText: userB }).waitFor();
  const rowB = page.getByRole('row').filter({ hasText: userB });
  await rowB.waitFor();
  assert.equal(await rowB.getByLabel(`Role of ${userB}`).inputValue(), 'member');
  await shot(page, 'team');

  // B reloads: A's team is in the switcher; switching makes it current.
  await pageB.reload();
  const switcher = pageB.locator('#team');
  await switcher.locator(`option[value="${teamA.id}"]`).waitFor({ state: 'attached' });
  await pageB.goto('/team');
  await pageB.getByTestId('team-name').filter({ hasText: teamB.name }).waitFor();
  await switcher.selectOption(teamA.id);
  await pageB.getByTestId('team-name').filter({ hasText: teamA.name }).waitFor();
  await pageB.getByText(/You are a member/).waitFor();
  const me = await (await pageB.request.get('/v1/me')).json();
  assert.equal(me.current_team_id, teamA.id);
  // A member manages nothing: no add form, no role selects, no delete.
  assert.equal(await pageB.getByRole('button', { name: 'Add member' }).count(), 0);
  assert.equal(await pageB.getByRole('button', { name: 'Delete team' }).count(), 0);
  assert.equal(await pageB.getByRole('combobox', { name: /^Role of/ }).count(), 0);
  await shot(pageB, 'team-as-member');

  // B leaves: the session moves back to B's own team first, and stays usable.
  await pageB.getByRole('button', { name: 'Leave team' }).click();
  await pageB.getByRole('dialog').getByRole('button', { name: 'Leave' }).click();
  await pageB.getByTestId('team-name').filter({ hasText: teamB.name }).waitFor();
  const after = await (await pageB.request.get('/v1/me')).json();
  assert.equal(after.current_team_id, teamB.id);
  assert.ok(!after.teams.some((x) => x.id === teamA.id), 'B is still in A\'s team');
  await pageB.goto('/api-keys');
  await pageB.getByRole('heading', { name: 'No API keys yet' }).waitFor();

  // B deletes B's own team, its only one, confirmed by typing its name: with no team
  // left the session ends and the browser is at the login page.
  await pageB.goto('/team');
  await pageB.getByRole('button', { name: 'Delete team' }).click();
  const del = pageB.getByRole('dialog');
  const go = del.getByRole('button', { name: 'Delete team' });
  await del.getByLabel(/type the team's name/i).fill(teamB.name + 'x');
  assert.ok(await go.isDisabled(), 'a wrong name deletes');
  await del.getByLabel(/type the team's name/i).fill(teamB.name);
  await shot(pageB, 'team-delete-dialog');
  await go.click();
  await pageB.waitForURL(/\/login/);
  assert.equal((await pageB.request.get('/v1/me')).status(), 401);

  // A sees B gone.
  await page.reload();
  await page.getByRole('row').filter({ hasText: userA }).waitFor();
  assert.equal(await page.getByRole('row').filter({ hasText: userB }).count(), 0);
  assert.deepEqual(pageB.errors, []);
  assert.deepEqual(page.errors, []);
  await pageB.context().close();
});

test("A's audit log shows what happened and narrows by action in the URL", async () => {
  const page = pageA;
  await page.goto('/audit');
  const rows = page.locator('tbody tr');
  for (const action of ['api_key.create', 'api_key.revoke', 'member.add', 'member.leave']) {
    await rows.filter({ hasText: action }).first().waitFor();
  }
  // Newest first: the leave is above the add, the revoke above the create.
  const actions = await page.locator('tbody tr td:nth-child(2) button').allTextContents();
  assert.ok(actions.indexOf('member.leave') < actions.indexOf('member.add'), actions.join(','));
  assert.ok(actions.indexOf('api_key.revoke') < actions.indexOf('api_key.create'), actions.join(','));
  await shot(page, 'audit');

  // A filter in the URL narrows the list, and shows in the form.
  await page.goto('/audit?action=api_key.revoke');
  await rows.first().waitFor();
  await page.getByText('One entry: that is all.').waitFor();
  assert.deepEqual((await page.locator('tbody tr td:nth-child(2) button').allTextContents()).map((s) => s.trim()), ['api_key.revoke']);
  assert.equal(await page.getByLabel('Action').inputValue(), 'api_key.revoke');
  await shot(page, 'audit-filtered');

  // The form writes the URL.
  await page.getByLabel('Action').fill('member.add');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/[?&]action=member\.add/);
  await page.waitForFunction(() => {
    const b = [...document.querySelectorAll('tbody tr td:nth-child(2) button')].map((x) => x.textContent.trim());
    return b.length === 1 && b[0] === 'member.add';
  });
  // A filter nothing matches says so.
  await page.goto('/audit?action=team.delete');
  await page.getByRole('heading', { name: 'No entries match' }).waitFor();
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
