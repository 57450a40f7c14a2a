// What the browser tests share: the environment test/e2e/dashboard_test.go sets, one
// Chromium per test file, and the steps every file takes (a page that records errors,
// screenshots at two widths, signing up and in, a sandbox made in the UI, a drawn chart).
//   WRENN_WEB_URL          the control plane (its gateway address in the namespace)
//   WRENN_WEB_CHROMIUM     the browser binary
//   WRENN_WEB_SHOTS        where screenshots of each page go (desktop and phone width)
//   WRENN_WEB_ADMIN_TOKEN  a platform administrator's bearer token (admin@e2e.test)
//   WRENN_WEB_GITHUB_EMAIL the address of the account signed in at the stand-in GitHub
//   WRENN_WEB_BUSY_HOST    a host with a sandbox on it (WRENN_WEB_BUSY_SANDBOX), to delete
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const base = process.env.WRENN_WEB_URL;
export const shots = process.env.WRENN_WEB_SHOTS;
export const adminToken = process.env.WRENN_WEB_ADMIN_TOKEN;
export const desktop = { width: 1280, height: 800 };
export const phone = { width: 390, height: 844 };
export const password = 'correct horse battery staple';

let browser;
before(async () => {
  assert.ok(base && shots, 'WRENN_WEB_URL and WRENN_WEB_SHOTS are set by dashboard_test.go');
  mkdirSync(shots, { recursive: true });
  // As root in a test namespace: Chromium's own sandbox needs user namespaces it
  // cannot have here; the namespace without a route is this test's fence.
  browser = await chromium.launch({ executablePath: process.env.WRENN_WEB_CHROMIUM, args: ['--no-sandbox'] });
});
after(async () => { await browser?.close(); });

// newContext is a fresh browser context (its own cookies) on the control plane.
export function newContext(options = {}) {
  return browser.newContext({ baseURL: base, ...options });
}

// newPage opens a page in a fresh context that records console errors and page
// errors, which every test asserts are none; with httpErrors also every answer of
// 400 or more (which request failed, for a console error that names only its status).
export async function newPage({ downloads = false, httpErrors = false } = {}) {
  const context = await newContext({ viewport: desktop, acceptDownloads: downloads });
  const page = await context.newPage();
  page.errors = [];
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => page.errors.push(`page error: ${e.message}`));
  if (httpErrors) {
    page.on('response', (r) => { if (r.status() >= 400) page.errors.push(`http ${r.status()} ${r.request().method()} ${r.url()}`); });
  }
  return page;
}

// shot saves the page at desktop and phone width.
export async function shot(page, name) {
  await page.setViewportSize(desktop);
  await page.screenshot({ path: join(shots, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(phone);
  await page.screenshot({ path: join(shots, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(desktop);
}

export async function signUp(page, email) {
  await page.goto('/signup');
  await page.getByLabel(/email/i).fill(email);
  await page.getByLabel(/^password/i).fill(password);
  await page.getByRole('button', { name: /sign up|create account/i }).click();
  await page.waitForURL(/\/sandboxes/);
}

export async function signIn(page, email, pw = password) {
  await page.goto('/login');
  await page.getByLabel(/email/i).fill(email);
  await page.getByLabel(/^password/i).fill(pw);
  await page.getByRole('button', { name: /sign in/i }).click();
  await page.waitForURL(/\/sandboxes/);
}

// createSandbox makes a sandbox with the sandboxes page's dialog and waits for its row
// to read running; before is called with the dialog open (a screenshot).
export async function createSandbox(page, before = async () => {}) {
  await page.getByRole('button', { name: 'New sandbox' }).click();
  await before();
  await page.getByRole('dialog').getByRole('button', { name: 'Create' }).click();
  const row = page.getByRole('row').filter({ hasText: 'running' });
  await row.first().waitFor({ timeout: 120_000 });
  const id = (await row.first().getByRole('link').textContent()).trim();
  assert.match(id, /^sb[0-9a-z]+$/);
  return { row, id };
}

// drawn tells, in the page, whether a canvas has any pixel that is not transparent.
function drawn(c) {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
  return false;
}

// canvasDrawn tells whether the canvas has been drawn on.
export async function canvasDrawn(locator) {
  return locator.evaluate(drawn);
}

// waitDrawn waits until the canvas has been drawn on.
export async function waitDrawn(page, locator, timeout) {
  await page.waitForFunction(drawn, await locator.elementHandle(), { timeout });
}

// csrf is the page's CSRF token (the readable wrenn_csrf cookie).
export async function csrf(page) {
  return (await page.context().cookies()).find((c) => c.name === 'wrenn_csrf')?.value ?? '';
}
