// The demo page in Debian's chromium, against a real `jobcast serve`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, launchChromium, root, startServe } from './harness.mjs';

let server;
let base;
let browser;

before(async () => {
  // A kind of the user's own: a worker written with clients/node, run per job.
  const worker = path.join(mkdtempSync(path.join(tmpdir(), 'jobcast-demo-')), 'export-worker.mjs');
  writeFileSync(worker, `import { Job } from ${JSON.stringify(path.join(root, 'clients/node/index.js'))};
const job = await Job.fromEnv();
const rows = job.input.rows ?? 5;
for (let n = 1; n <= rows; n += 1) {
  await new Promise((r) => setTimeout(r, 100));
  await job.progress({ percent: (100 * n) / rows, message: \`row \${n} of \${rows}\` });
}
await job.succeed({ rows });
`);
  const exporter = path.join(root, 'clients/python/examples/export_csv.py');
  ({ base, server } = await startServe([
    '--kind', `export=command:${process.execPath} ${worker}`,
    '--kind', `report=command:python3 ${exporter}`,
  ]));
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
});

/** A page that records console errors and every aria-valuenow each bar shows. */
async function openPage() {
  const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.addInitScript(() => {
    window.__aria = {};
    new MutationObserver((records) => {
      for (const r of records) {
        const li = r.target.closest?.('li.job');
        if (!li) continue;
        (window.__aria[li.dataset.jobId] ??= []).push(Number(r.target.getAttribute('aria-valuenow')));
      }
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ['aria-valuenow'] });
  });
  await page.goto(base + '/');
  return { page, errors };
}

async function startJob(page, { steps, stepMs, failAt }) {
  const before = await page.locator('li.job').count();
  await page.fill('input[name=steps]', String(steps));
  await page.fill('input[name=stepMs]', String(stepMs));
  await page.fill('input[name=failAt]', failAt ? String(failAt) : '');
  await page.click('#start button[type=submit]');
  await page.waitForFunction((n) => document.querySelectorAll('li.job').length > n, before);
  return page.locator('li.job').first().getAttribute('data-job-id');
}

const job = (page, id) => page.locator(`li.job[data-job-id="${id}"]`);

async function finalStatus(page, id, timeout = 20000) {
  await page.waitForSelector(`li.job[data-job-id="${id}"][data-status]`, { timeout });
  return job(page, id).getAttribute('data-status');
}

/** The lines a job's output shows under its bar. */
async function logLines(page, id) {
  const text = (await job(page, id).locator('.log').textContent()) ?? '';
  return text.split('\n').filter((l) => l !== '');
}

/** What a demo job of `steps` steps logs, each line once, in order. */
function demoLog(steps) {
  return [...Array.from({ length: steps }, (_, k) => `step ${k + 1}/${steps}`), 'done'];
}

function assertNeverBackwards(values, label) {
  for (let i = 1; i < values.length; i++) {
    assert.ok(values[i] >= values[i - 1], `${label}: bar went from ${values[i - 1]} to ${values[i]} (${values})`);
  }
}

test('a job runs to 100% and shows its result', async () => {
  const { page, errors } = await openPage();
  const id = await startJob(page, { steps: 5, stepMs: 100 });
  assert.equal(await finalStatus(page, id), 'succeeded');
  const bar = job(page, id).locator('[role=progressbar]');
  assert.equal(await bar.getAttribute('aria-valuenow'), '100');
  assert.match(await job(page, id).locator('.outcome').textContent(), /"steps": 5/);
  assert.equal(await page.textContent('#connection'), 'idle');
  assertNeverBackwards(await page.evaluate((i) => window.__aria[i], id), id);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a job of your own kind, run by a worker made with clients/node, is watched live', async () => {
  const { page, errors } = await openPage();
  await page.fill('#start-own input[name=kind]', 'export');
  await page.fill('#start-own input[name=input]', '{"rows": 6}');
  await page.click('#start-own button[type=submit]');
  await page.waitForSelector('li.job');
  const id = await page.locator('li.job').first().getAttribute('data-job-id');
  await page.waitForFunction((i) => (window.__aria[i] ?? []).some((v) => v > 0 && v < 100), id);
  assert.equal(await finalStatus(page, id), 'succeeded');
  assert.match(await job(page, id).locator('.outcome').textContent(), /"rows": 6/);
  const seen = await page.evaluate((i) => window.__aria[i], id);
  assertNeverBackwards(seen, id);
  assert.ok(seen.filter((v) => v > 0 && v < 100).length >= 2, `bar moved in steps: ${seen}`);
  // An unknown kind is refused with the server's reason.
  await page.fill('#start-own input[name=kind]', 'import');
  await page.click('#start-own button[type=submit]');
  await page.waitForSelector('#form-error:not([hidden])');
  assert.match(await page.textContent('#form-error'), /export/);
  assert.deepEqual(errors.filter((e) => !/400/.test(e)), []);
  await page.close();
});

test('a job\'s file shows as a link when it succeeds, and the browser downloads its exact bytes', async () => {
  const { page, errors } = await openPage();
  await page.fill('#start-own input[name=kind]', 'report');
  await page.fill('#start-own input[name=input]', '{"rows": 3000}');
  await page.click('#start-own button[type=submit]');
  await page.waitForSelector('li.job');
  const id = await page.locator('li.job').first().getAttribute('data-job-id');
  assert.equal(await finalStatus(page, id), 'succeeded');
  const link = job(page, id).locator('.files a');
  await link.waitFor();
  assert.equal(await link.textContent(), 'export.csv');
  const href = await link.getAttribute('href');
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  assert.equal(download.suggestedFilename(), 'export.csv');
  const { readFileSync } = await import('node:fs');
  const got = readFileSync(await download.path());
  const expected = Buffer.from(await (await fetch(href)).arrayBuffer());
  assert.ok(got.equals(expected), 'the downloaded bytes are the stored ones');
  const lines = got.toString('utf8').trim().split(/\r?\n/);
  assert.equal(lines[0], 'id,name,amount');
  assert.equal(lines.length, 3001);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a reload keeps the tab\'s jobs and follows them again', async () => {
  const { page, errors } = await openPage();
  assert.equal(await page.textContent('#connection'), 'idle', 'an idle page does not look failed');
  const done = await startJob(page, { steps: 2, stepMs: 10 });
  assert.equal(await finalStatus(page, done), 'succeeded');
  const running = await startJob(page, { steps: 30, stepMs: 100 });
  await page.waitForFunction((i) => document.querySelector(`li.job[data-job-id="${i}"] .log`).textContent.includes('step 3/30'), running);
  await page.reload();
  assert.equal(await finalStatus(page, done), 'succeeded');
  assert.equal(await finalStatus(page, running), 'succeeded');
  assert.equal(await page.locator('li.job').count(), 2);
  // The output survives the reload: every line from the start, once.
  await page.waitForFunction((i) => document.querySelector(`li.job[data-job-id="${i}"] .log`).textContent.includes('done'), running);
  assert.deepEqual(await logLines(page, running), demoLog(30));
  assert.deepEqual(await logLines(page, done), demoLog(2));
  assert.deepEqual(errors, []);
  await page.close();
});

test('failAt shows the failure', async () => {
  const { page, errors } = await openPage();
  const id = await startJob(page, { steps: 5, stepMs: 50, failAt: 3 });
  assert.equal(await finalStatus(page, id), 'failed');
  assert.match(await job(page, id).locator('.outcome').textContent(), /demo_failure/);
  // Coloured by state, and said in text too.
  const fill = await job(page, id).locator('.fill').evaluate((e) => getComputedStyle(e).backgroundColor);
  assert.equal(fill, 'rgb(153, 27, 27)');
  assert.equal(await job(page, id).locator('.badge').textContent(), 'failed');
  assert.deepEqual(errors, []);
  await page.close();
});

test('cancel ends the job cancelled', async () => {
  const { page, errors } = await openPage();
  const id = await startJob(page, { steps: 100, stepMs: 200 });
  await page.waitForSelector('#connection[data-state=live]');
  await job(page, id).locator('button.cancel').click();
  assert.equal(await finalStatus(page, id), 'cancelled');
  assert.deepEqual(errors, []);
  await page.close();
});

test('three jobs at once each end correctly, over one connection', async () => {
  const { page, errors } = await openPage();
  const a = await startJob(page, { steps: 6, stepMs: 80 });
  const b = await startJob(page, { steps: 4, stepMs: 120, failAt: 2 });
  const c = await startJob(page, { steps: 3, stepMs: 60 });
  assert.equal(await finalStatus(page, a), 'succeeded');
  assert.equal(await finalStatus(page, b), 'failed');
  assert.equal(await finalStatus(page, c), 'succeeded');
  const aria = await page.evaluate(() => window.__aria);
  for (const id of [a, b, c]) assertNeverBackwards(aria[id], id);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a socket closed by the server (DELETE @connections) reconnects and finishes', async () => {
  const { page, errors } = await openPage();
  // Proxy the page's WebSocket to learn its connection id, as a back end would.
  let askId;
  const ids = [];
  await page.routeWebSocket(/\/dev$/, (ws) => {
    const upstream = ws.connectToServer();
    askId = () => upstream.send(JSON.stringify({ action: 'ping' }));
    upstream.onMessage((m) => {
      try {
        const msg = JSON.parse(m);
        if (msg.type === 'pong') ids.push(msg.connectionId);
      } catch {}
      ws.send(m);
    });
    ws.onMessage((m) => upstream.send(m));
  });
  const id = await startJob(page, { steps: 30, stepMs: 100 });
  await page.waitForFunction((i) => Number(document.querySelector(`li.job[data-job-id="${i}"] [role=progressbar]`).getAttribute('aria-valuenow')) >= 20, id);
  askId();
  for (let i = 0; i < 50 && ids.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(ids.length, 1, 'learned the connection id');
  const res = await fetch(`${base}/dev/@connections/${encodeURIComponent(ids[0])}`, { method: 'DELETE' });
  assert.equal(res.status, 204);
  assert.equal(await finalStatus(page, id), 'succeeded');
  assert.equal(await job(page, id).locator('[role=progressbar]').getAttribute('aria-valuenow'), '100');
  assertNeverBackwards(await page.evaluate((i) => window.__aria[i], id), id);
  // Across the forced reconnect the log resumed where it was: nothing lost, nothing twice.
  await page.waitForFunction((i) => document.querySelector(`li.job[data-job-id="${i}"] .log`).textContent.includes('done'), id);
  assert.deepEqual(await logLines(page, id), demoLog(30));
  assert.deepEqual(errors, []);
  await page.close();
});

test('with WebSockets unreachable the page polls to the end and says so', async () => {
  const { page, errors } = await openPage();
  // The jobs API points the page at a WebSocket endpoint nobody answers.
  const dead = await freePort();
  await page.route('**/jobs', async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    body.websocketUrl = `ws://127.0.0.1:${dead}/dev`;
    await route.fulfill({ response, json: body });
  });
  const states = [];
  await page.exposeFunction('__state', (s) => states.push(s));
  await page.evaluate(() => new MutationObserver(() => window.__state(document.getElementById('connection').textContent))
    .observe(document.getElementById('connection'), { childList: true, characterData: true, subtree: true }));
  const id = await startJob(page, { steps: 4, stepMs: 500 });
  await page.waitForSelector('#connection[data-state=polling]', { timeout: 15000 });
  assert.equal(await finalStatus(page, id, 30000), 'succeeded');
  assert.ok(states.includes('polling'), String(states));
  // The output came through the streams endpoint while polling.
  assert.deepEqual(await logLines(page, id), demoLog(4));
  assertNeverBackwards(await page.evaluate((i) => window.__aria[i], id), id);
  // The browser reports each refused WebSocket itself; nothing else may be logged.
  assert.deepEqual(errors.filter((e) => !/WebSocket connection to .* failed/.test(e)), []);
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });
  await page.close();
});

test('the page mid-job (screenshot when SCREENSHOT_MIDJOB is set)', async () => {
  const { page, errors } = await openPage();
  await page.setViewportSize({ width: 820, height: 640 });
  const a = await startJob(page, { steps: 40, stepMs: 150 });
  await startJob(page, { steps: 10, stepMs: 100, failAt: 4 });
  await startJob(page, { steps: 60, stepMs: 120 });
  await page.waitForFunction((i) => Number(document.querySelector(`li.job[data-job-id="${i}"] [role=progressbar]`).getAttribute('aria-valuenow')) >= 35, a);
  if (process.env.SCREENSHOT_MIDJOB) await page.screenshot({ path: process.env.SCREENSHOT_MIDJOB });
  // Keyboard: the form and the cancel buttons are reachable with Tab.
  await page.focus('input[name=steps]');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.name), 'stepMs');
  assert.deepEqual(errors, []);
  await page.close();
});

test('usable at phone width: nothing overflows sideways', async () => {
  const { page, errors } = await openPage();
  await page.setViewportSize({ width: 360, height: 740 });
  const id = await startJob(page, { steps: 3, stepMs: 50 });
  assert.equal(await finalStatus(page, id), 'succeeded');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the screen`);
  for (const form of ['#start', '#start-own']) {
    const box = await page.locator(`${form} button[type=submit]`).boundingBox();
    assert.ok(box.width >= 44 || box.height >= 36, `${form}: the start button stays a usable target`);
  }
  assert.deepEqual(errors, []);
  await page.close();
});
