// The demo page in Debian's chromium against `jobcast serve --coalesce`:
// the bars skip the states a window coalesced, never go back, and end on
// the final snapshot.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, startServe } from './harness.mjs';

let server;
let base;
let browser;

before(async () => {
  ({ base, server } = await startServe(['--coalesce', '300ms']));
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
});

test('a coalesced job moves in fewer steps and ends at 100%', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.addInitScript(() => {
    window.__aria = [];
    new MutationObserver((records) => {
      for (const r of records) window.__aria.push(Number(r.target.getAttribute('aria-valuenow')));
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ['aria-valuenow'] });
  });
  await page.goto(base + '/');
  await page.fill('input[name=steps]', '40');
  await page.fill('input[name=stepMs]', '40');
  await page.fill('input[name=failAt]', '');
  await page.click('#start button[type=submit]');
  await page.waitForSelector('li.job[data-status]', { timeout: 20000 });
  assert.equal(await page.locator('li.job').first().getAttribute('data-status'), 'succeeded');
  const bar = page.locator('li.job [role=progressbar]').first();
  assert.equal(await bar.getAttribute('aria-valuenow'), '100');
  const seen = await page.evaluate(() => window.__aria);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i] >= seen[i - 1], `bar went back: ${seen}`);
  // Forty steps over 1.6 s in 300 ms windows: a handful of states, not 40.
  const distinct = new Set(seen.filter((v) => v > 0));
  assert.ok(distinct.size < 20, `every step was shown: ${[...distinct]}`);
  assert.deepEqual(errors, []);
  await page.close();
});
