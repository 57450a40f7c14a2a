// The sandbox Files tab, team Stats, Hosts and Admin pages, in Debian's Chromium driven
// by playwright-core (run by test/e2e/dashboard_test.go, as dashboard.test.mjs)
// (the environment it sets: test/web/lib.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { adminToken, canvasDrawn, createSandbox, csrf, newPage, shot, shots, signIn, signUp, waitDrawn } from './lib.mjs';

const user = `files-${Date.now()}@web.test`;
// test/e2e/cluster_test.go cp.admin: signed up with this password, then `wrenn admin grant`.
const admin = { email: 'admin@e2e.test', password: 'correct horse battery' };

test('a sandbox\'s files: upload (input and drop), list, read back, download, new folder, delete', async () => {
  const page = await newPage({ downloads: true, httpErrors: true });
  await signUp(page, user);
  // The tab lists, makes and deletes through the files routes, never a shell command.
  const execs = [];
  page.on('request', (r) => {
    if (/\/v1\/sandboxes\/[^/]+\/exec/.test(new URL(r.url()).pathname)) execs.push(r.url());
  });

  const { row, id } = await createSandbox(page);

  try {
    await row.first().getByRole('link').click();
    await page.waitForURL(new RegExp(`/sandboxes/${id}`));
    await page.getByRole('tab', { name: 'Files' }).click();
    const files = page.getByRole('region', { name: 'Files' });
    await files.getByRole('button', { name: 'Upload files' }).waitFor();
    await files.locator('[aria-current="location"]', { hasText: 'user' }).waitFor({ timeout: 60_000 });

    // Upload through the file input: 3 MiB of random bytes.
    const content = randomBytes(3 << 20);
    const local = join(tmpdir(), `wrenn-upload-${Date.now()}.bin`);
    writeFileSync(local, content);
    await files.getByLabel('Files to upload').setInputFiles(local);
    const name = local.split('/').pop();
    const listed = files.getByRole('row').filter({ hasText: name });
    await listed.waitFor({ timeout: 60_000 });
    assert.match(await listed.textContent(), /3\.0 MiB/);

    // Read back through the API, byte-identical.
    const res = await page.request.get(`/v1/sandboxes/${id}/files/read?path=${encodeURIComponent('/home/user/' + name)}`);
    assert.equal(res.status(), 200);
    assert.ok(Buffer.compare(await res.body(), content) === 0, 'the file read back differs from the upload');

    // Upload through a synthetic drop.
    await files.evaluate((el) => {
      const dt = new DataTransfer();
      dt.items.add(new File(['dropped with care\n'], 'dropped.txt', { type: 'text/plain' }));
      el.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    await files.getByRole('row').filter({ hasText: 'dropped.txt' }).waitFor({ timeout: 60_000 });
    const dropped = await page.request.get(`/v1/sandboxes/${id}/files/read?path=/home/user/dropped.txt`);
    assert.equal(await dropped.text(), 'dropped with care\n');
    await shot(page, 'sandbox-files');

    // Download.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      listed.getByRole('link', { name: `Download ${name}` }).click()
    ]);
    assert.equal(download.suggestedFilename(), name);
    const saved = join(tmpdir(), `wrenn-download-${Date.now()}.bin`);
    await download.saveAs(saved);
    assert.ok(Buffer.compare(readFileSync(saved), content) === 0, 'the downloaded file differs');

    // Delete, confirmed.
    await listed.getByRole('button', { name: `Delete ${name}` }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
    await listed.waitFor({ state: 'detached', timeout: 60_000 });
    const gone = await page.request.get(`/v1/sandboxes/${id}/files/read?path=${encodeURIComponent('/home/user/' + name)}`);
    assert.equal(gone.status(), 404);

    // A new folder: made, listed as a folder, entered (empty), deleted with its content.
    await files.getByRole('button', { name: 'New folder' }).click();
    await files.getByLabel(/New folder name/).fill('made here');
    await files.getByRole('form', { name: 'New folder' }).getByRole('button', { name: 'Create' }).click();
    const folder = files.getByRole('row').filter({ hasText: 'made here/' });
    await folder.waitFor({ timeout: 30_000 });
    assert.match(await folder.textContent(), /folder/);
    const listing = await page.request.get(`/v1/sandboxes/${id}/files/list?path=/home/user`);
    assert.equal(listing.status(), 200);
    const made = (await listing.json()).entries.find((e) => e.name === 'made here');
    assert.equal(made?.type, 'dir', 'the new folder is a directory in the sandbox');
    await folder.getByRole('button', { name: 'made here/' }).click();
    await files.locator('[aria-current="location"]', { hasText: 'made here' }).waitFor();
    await files.getByText('This directory is empty').waitFor();
    await files.getByRole('button', { name: '..' }).click();
    await folder.waitFor();
    await page.request.post(`/v1/sandboxes/${id}/files/write?path=${encodeURIComponent('/home/user/made here/inner.txt')}`, {
      headers: { 'X-CSRF-Token': await csrf(page), 'Content-Type': 'application/octet-stream' },
      data: Buffer.from('inside')
    });
    await folder.getByRole('button', { name: 'Delete made here' }).click();
    const dialog = page.getByRole('dialog');
    assert.match(await dialog.textContent(), /and everything in it/);
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await folder.waitFor({ state: 'detached', timeout: 30_000 });
    const folderGone = await page.request.get(`/v1/sandboxes/${id}/files/list?path=${encodeURIComponent('/home/user/made here')}`);
    assert.equal(folderGone.status(), 404);
    assert.deepEqual(execs, [], 'the Files tab ran commands');

    // Into a directory and back by the breadcrumb.
    await files.getByRole('button', { name: '..' }).click();
    await files.locator('[aria-current="location"]', { hasText: 'home' }).waitFor();
    await files.getByRole('button', { name: 'user/' }).click();
    await files.getByRole('row').filter({ hasText: 'dropped.txt' }).waitFor();
    // The page polls the sandbox: browsing stays where it went.
    await page.waitForTimeout(6000);
    await files.getByRole('row').filter({ hasText: 'dropped.txt' }).waitFor({ timeout: 1000 });

    // Destroy it from the list, as a user would.
    await page.goto('/sandboxes');
    const mine = page.getByRole('row').filter({ hasText: id });
    await mine.getByRole('button', { name: 'Destroy' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Destroy' }).click();
    await mine.waitFor({ state: 'detached', timeout: 60_000 });
  } catch (e) {
    await page.screenshot({ path: join(shots, 'files-failure.png'), fullPage: true }).catch(() => {});
    console.log('files test failed; requests and console:', page.errors);
    throw e;
  } finally {
    // Whatever happened above, nothing is left running.
    const del = await page.request.delete(`/v1/sandboxes/${id}`, { headers: { 'X-CSRF-Token': await csrf(page) } });
    assert.ok(del.status() < 300 || del.status() === 404 || del.status() === 409, `destroy: ${del.status()}`);
  }
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('team stats: now and peak, charts drawn, the range kept in the URL', async () => {
  const page = await newPage({ downloads: true, httpErrors: true });
  await signIn(page, user);
  await page.goto('/stats');
  await page.getByText('Running sandboxes', { exact: true }).first().waitFor();
  await page.getByRole('button', { name: '24h' }).click();
  await page.waitForURL(/\/stats\?range=24h/);
  const canvas = page.locator('canvas').first();
  await waitDrawn(page, canvas, 30_000);
  for (const c of await page.locator('canvas').all()) assert.ok(await canvasDrawn(c), 'a stats chart is blank');
  await page.reload();
  await page.getByRole('button', { name: '24h' }).and(page.locator('[aria-pressed="true"]')).waitFor();
  await page.getByLabel('Running sandboxes now').waitFor();
  await shot(page, 'stats');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('hosts: a regular team is told why it adds no hosts; admin is for administrators only', async () => {
  const page = await newPage({ downloads: true, httpErrors: true });
  await signIn(page, user);
  await page.goto('/hosts');
  await page.getByRole('heading', { name: 'Hosts' }).waitFor();
  await page.getByTestId('hosts-why').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Add host' }).count(), 0);
  assert.match(await page.getByTestId('hosts-why').textContent(), /BYOC/);
  await shot(page, 'hosts-member');

  // The nav has no Admin link; the URL opened by hand says so, with no data.
  assert.equal(await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Admin' }).count(), 0);
  await page.goto('/admin');
  await page.getByText(/platform administrators only/i).waitFor();
  assert.equal(await page.getByRole('table').count(), 0);
  const api = await page.request.get('/v1/admin/teams');
  assert.equal(api.status(), 403);
  await shot(page, 'admin-member');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a platform administrator sees the hosts, teams and users', async () => {
  assert.ok(adminToken, 'WRENN_WEB_ADMIN_TOKEN is set by dashboard_test.go');
  const page = await newPage({ downloads: true, httpErrors: true });
  await signIn(page, admin.email, admin.password);

  await page.goto('/hosts');
  const hostRow = page.getByRole('row').filter({ hasText: 'online' });
  await hostRow.first().waitFor({ timeout: 30_000 });
  await page.getByRole('button', { name: 'Add host' }).click();
  await page.getByRole('dialog').getByLabel('Name').fill(`web-${Date.now() % 100000}`);
  await page.getByRole('dialog').getByRole('button', { name: 'Add' }).click();
  const cmd = page.getByTestId('agent-command');
  await cmd.waitFor();
  assert.match(await cmd.textContent(), /^wrenn agent --server http:\/\/\S+ --token \S+ --advertise ADDRESS:50051$/);
  await shot(page, 'hosts-add');
  await page.keyboard.press('Escape');
  await page.getByRole('dialog').waitFor({ state: 'hidden' });
  // The new (pending) host: tag it, untag it, delete it.
  const pending = page.getByRole('row').filter({ hasText: 'pending' }).first();
  await pending.waitFor();
  await pending.getByRole('button', { name: '+ tag' }).click();
  await pending.getByLabel('New tag').fill('webtest');
  await pending.getByRole('button', { name: 'Add', exact: true }).click();
  await pending.getByRole('list').getByText('webtest').waitFor();
  await pending.getByRole('button', { name: /Remove tag webtest/ }).click();
  await pending.getByRole('list').getByText('webtest').waitFor({ state: 'detached' });
  await shot(page, 'hosts-admin');
  await pending.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await pending.waitFor({ state: 'detached' });

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Admin' }).click();
  await page.waitForURL(/\/admin/);
  const teams = page.getByRole('tabpanel');
  await teams.getByRole('table').waitFor();
  assert.ok(await teams.getByRole('row').count() > 1, 'no teams listed');
  await shot(page, 'admin-teams');
  await page.getByRole('tab', { name: 'Users' }).click();
  await page.waitForURL(/tab=users/);
  await page.getByRole('row').filter({ hasText: admin.email }).waitFor();
  await page.getByRole('row').filter({ hasText: user }).waitFor();
  await shot(page, 'admin-users');
  await page.getByRole('tab', { name: 'Sandboxes' }).click();
  await page.getByRole('tabpanel').getByText(/Nothing here|team /).first().waitFor();
  await page.getByRole('tab', { name: 'Templates' }).click();
  await page.getByRole('tabpanel').getByRole('table').or(page.getByText('Nothing here.')).waitFor();
  await shot(page, 'admin-templates');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
