// Signed in on the demo page (serve --dev-tokens), in Debian's chromium:
// the user's jobs are listed on load, and a job started elsewhere (here with
// fetch, as curl would) appears and runs live; another user's never shows.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bin, launchChromium, startServe } from './harness.mjs';

let server;
let base;
let browser;
// A development key of the test's own, so no real user's key is touched.
const env = { JOBCAST_DEV_KEY: path.join(mkdtempSync(path.join(tmpdir(), 'jobcast-owners-')), 'dev-key.pem') };

function token(sub) {
  return execFileSync(bin, ['token', 'issue', '--sub', sub], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'ignore'] })
    .toString()
    .trim();
}

/** Starts a demo job as `bearer`, outside the page; its id. */
async function startElsewhere(bearer, input = { steps: 10, stepMs: 150 }) {
  const res = await fetch(`${base}/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` },
    body: JSON.stringify({ kind: 'demo', input }),
  });
  assert.equal(res.status, 202);
  return (await res.json()).jobId;
}

before(async () => {
  ({ base, server } = await startServe(['--dev-tokens'], env));
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
});

async function signedInPage(jwt) {
  const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(base);
  await page.fill('#signin-form input[name=token]', jwt);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#who:not([hidden])');
  return { page, errors };
}

const row = (page, id) => `li.job[data-job-id="${id}"]`;

test('signed in, the page lists the user\'s jobs and shows one started elsewhere live', async () => {
  const alice = token('alice');
  const bob = token('bob');
  const earlier = await startElsewhere(alice, { steps: 1, stepMs: 10 });
  const bobs = await startElsewhere(bob);
  // Let the earlier one finish, so the list shows a finished job too.
  await new Promise((r) => setTimeout(r, 500));

  const { page, errors } = await signedInPage(alice);
  assert.equal(await page.textContent('#who-name'), 'alice');
  await page.waitForSelector(`${row(page, earlier)}[data-status="succeeded"]`);
  await page.waitForFunction(() => document.querySelector('#connection').dataset.state === 'live');

  // Started with fetch, as curl would: it appears and runs to the end.
  const live = await startElsewhere(alice);
  await page.waitForSelector(row(page, live), { timeout: 10000 });
  await page.waitForFunction((sel) => {
    const v = Number(document.querySelector(`${sel} .bar`)?.getAttribute('aria-valuenow'));
    return v > 0 && v < 100;
  }, row(page, live));
  await page.waitForSelector(`${row(page, live)}[data-status="succeeded"]`, { timeout: 20000 });

  // Another user's jobs never show.
  await startElsewhere(bob, { steps: 1, stepMs: 10 });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await page.locator(row(page, bobs)).count(), 0);
  assert.equal(await page.locator('li.job').count(), 2);

  // A job started on the page is the owner's too, and cancel uses the owner's token.
  await page.fill('input[name=steps]', '100');
  await page.fill('input[name=stepMs]', '200');
  await page.click('#start button[type=submit]');
  await page.waitForFunction(() => document.querySelectorAll('li.job').length === 3);
  const mine = await page.locator('li.job').first().getAttribute('data-job-id');
  await page.click(`${row(page, mine)} .cancel`);
  await page.waitForSelector(`${row(page, mine)}[data-status="cancelled"]`);
  assert.deepEqual(errors, []);

  // A reload keeps the sign-in and the same jobs.
  await page.reload();
  await page.waitForSelector('#who:not([hidden])');
  for (const id of [earlier, live, mine]) await page.waitForSelector(row(page, id));
  assert.equal(await page.locator('li.job').count(), 3);
  await page.close();
});

test('a refused token says why and leaves the page signed out', async () => {
  const page = await browser.newPage();
  await page.goto(base);
  await page.fill('#signin-form input[name=token]', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJldmUifQ.');
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#form-error:not([hidden])');
  assert.match(await page.textContent('#form-error'), /refused/);
  assert.equal(await page.isHidden('#who'), true);
  await page.close();
});
