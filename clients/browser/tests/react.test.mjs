// useJob and useJobs in Debian's chromium: a React 18 page (StrictMode,
// bundled by esbuild) against a live `jobcast serve`, the job's worker
// played by this test through POST /jobs/{id}/updates.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.resolve(here, '..');
const root = path.resolve(pkg, '../..');
const bin = process.env.JOBCAST_BIN ?? path.join(root, 'target/debug/jobcast');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function until(what, check, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** `jobcast serve` on a free port with `args`; once /healthz answers. */
async function startServe(args, env = {}) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`, ...args], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, ...env },
  });
  let exited = null;
  child.once('exit', (code) => (exited = code));
  await until('serve', async () => {
    if (exited !== null) throw new Error(`serve exited with ${exited}`);
    return (await fetch(`${url}/healthz`).catch(() => null))?.ok;
  });
  return { serve: child, base: url };
}

let work;
let serve;
let base;
let inbox;
let browser;
let pageUrl;
let pages;

before(async () => {
  assert.ok(existsSync(bin), `${bin} is missing: cargo build (or set JOBCAST_BIN)`);
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing: apt-get install chromium`);
  // The page, bundled as an app would bundle it: the package by its name.
  work = mkdtempSync(path.join(tmpdir(), 'jobcast-react-'));
  await esbuild.build({
    entryPoints: [path.join(here, 'react/page.jsx')],
    bundle: true,
    outfile: path.join(work, 'bundle.js'),
    format: 'iife',
    jsx: 'automatic',
    define: { 'process.env.NODE_ENV': '"development"' },
    alias: { '@jobcast/client': pkg },
    logLevel: 'error',
  });
  copyFileSync(path.join(here, 'react/index.html'), path.join(work, 'index.html'));
  pages = http.createServer((req, res) => {
    const file = req.url.startsWith('/bundle.js') ? 'bundle.js' : 'index.html';
    res.writeHead(200, { 'content-type': file.endsWith('.js') ? 'text/javascript' : 'text/html' });
    res.end(readFileSync(path.join(work, file)));
  });
  await new Promise((r) => pages.listen(0, '127.0.0.1', r));
  pageUrl = `http://127.0.0.1:${pages.address().port}/`;

  // The worker's inbox: serve hands each job of kind `manual` to it.
  const jobs = [];
  inbox = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      jobs.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  inbox.jobs = jobs;
  await new Promise((r) => inbox.listen(0, '127.0.0.1', r));

  // http targets are signed (contract section 8).
  ({ serve, base } = await startServe(['--kind', `manual=http://127.0.0.1:${inbox.address().port}/work`], {
    JOBCAST_WEBHOOK_SECRET: 'react-tests-0123456789abcdef0123456789',
  }));
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  serve?.kill('SIGTERM');
  inbox?.close();
  pages?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A job of kind `manual`, and the worker's side of it. */
async function createJob() {
  const res = await fetch(`${base}/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'manual', input: {} }),
  });
  assert.equal(res.status, 202);
  const created = await res.json();
  const message = await until('the job at its worker', () => inbox.jobs.find((j) => j.jobId === created.jobId));
  const ref = {
    jobId: created.jobId,
    token: created.token,
    websocketUrl: `ws://127.0.0.1:${new URL(base).port}/dev`,
    statusUrl: `${base}/jobs/${created.jobId}`,
  };
  const update = async (body) => {
    const r = await fetch(message.updateUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${message.workerToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await r.text();
    assert.equal(r.status, 200, text);
    return JSON.parse(text);
  };
  return { ref, update };
}

async function openPage() {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  await page.goto(pageUrl);
  await page.waitForFunction(() => window.app);
  return { page, errors };
}

const attr = (page, name) => page.locator('#job').getAttribute(`data-${name}`);
const waitAttr = (page, name, value, timeout = 10_000) =>
  page.waitForFunction(([n, v]) => document.querySelector('#job')?.getAttribute(`data-${n}`) === v, [name, String(value)], { timeout });
const openSockets = (page) => page.evaluate(() => window.sockets.filter((s) => s.socket.readyState <= 1).length);

test('useJob shows progress across a forced reconnect and a reload, then ends done with no socket left', async () => {
  const { page, errors } = await openPage();
  const { ref, update } = await createJob();
  await page.evaluate((job) => window.app.setJob(job), ref);
  await waitAttr(page, 'state', 'live');
  await update({ percent: 10, message: 'first', append: { log: ['a'] } });
  await waitAttr(page, 'percent', 10);
  await waitAttr(page, 'log', 'a');

  // StrictMode mounted the hook twice: the first connection is closed.
  assert.equal(await openSockets(page), 1, 'one socket, not one per effect run');

  // The server drops the connection (DELETE @connections, as a deploy or
  // API Gateway's limits would): the hook reconnects on its own.
  const id = await until('the connection id', () => page.evaluate(() => window.sockets.at(-1).connectionId));
  const del = await fetch(`${base}/dev/@connections/${encodeURIComponent(id)}`, { method: 'DELETE' });
  assert.equal(del.status, 204);
  await until('a new connection', () =>
    page.evaluate((gone) => window.sockets.some((s) => s.connectionId && s.connectionId !== gone), id));
  await update({ percent: 50, message: 'after the drop', append: { log: ['b'] } });
  await waitAttr(page, 'percent', 50);
  await waitAttr(page, 'log', 'a|b');
  assert.equal(await attr(page, 'state'), 'live');

  // A reload: a fresh page picks the job up where it is.
  await page.reload();
  await page.waitForFunction(() => window.app);
  await page.evaluate((job) => window.app.setJob(job), ref);
  await waitAttr(page, 'percent', 50);
  await waitAttr(page, 'log', 'a|b');
  await update({ status: 'succeeded', result: { ok: true }, append: { log: ['c'] } });
  await waitAttr(page, 'done', 'true');
  assert.equal(await attr(page, 'status'), 'succeeded');
  assert.equal(await attr(page, 'state'), 'done');
  assert.equal(await attr(page, 'log'), 'a|b|c');
  const completions = await page.evaluate(() => window.completions);
  assert.deepEqual(completions, [{ jobId: ref.jobId, status: 'succeeded', log: ['a', 'b', 'c'] }], 'onComplete once, with the whole log');
  await until('every socket closed after done', async () => (await openSockets(page)) === 0);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a job that ended before the hook mounted: its final snapshot and whole stream, done, nothing kept open', async () => {
  const { page, errors } = await openPage();
  const { ref, update } = await createJob();
  await update({ percent: 30, append: { log: ['one', 'two'] } });
  await update({ status: 'succeeded', append: { log: ['three'] } });
  await page.evaluate((job) => window.app.setJob(job), ref);
  await waitAttr(page, 'done', 'true');
  assert.equal(await attr(page, 'status'), 'succeeded');
  assert.equal(await attr(page, 'log'), 'one|two|three');
  await until('no socket left open', async () => (await openSockets(page)) === 0);
  const opened = await page.evaluate(() => window.sockets.length);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await page.evaluate(() => window.sockets.length), opened, 'no connection after done');
  const completions = await page.evaluate(() => window.completions);
  assert.equal(completions.length, 1);
  assert.deepEqual(completions[0].log, ['one', 'two', 'three'], 'onComplete did not fire before the stream was whole');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a changed job prop never shows the previous job, not even for one render', async () => {
  const { page, errors } = await openPage();
  const a = await createJob();
  const b = await createJob();
  await a.update({ percent: 30, message: 'job a' });
  await b.update({ percent: 70, message: 'job b' });
  await page.evaluate((job) => window.app.setJob(job), a.ref);
  await waitAttr(page, 'percent', 30);
  await page.evaluate((job) => window.app.setJob(job), b.ref);
  await waitAttr(page, 'percent', 70);
  // And back, then to no job at all.
  await page.evaluate((job) => window.app.setJob(job), a.ref);
  await waitAttr(page, 'percent', 30);
  await page.evaluate(() => window.app.setJob(null));
  await waitAttr(page, 'state', 'idle');
  const renders = await page.evaluate(() => window.renders);
  const stale = renders.filter((r) => r.shown !== null && r.shown !== r.job);
  assert.deepEqual(stale, [], 'renders that showed another job than the one given');
  assert.equal(await attr(page, 'job'), '');
  await until('no socket left open', async () => (await openSockets(page)) === 0);
  assert.deepEqual(errors, []);
  await page.close();
});

test('unmounted while reconnecting: no socket is opened afterwards', async () => {
  const { page, errors } = await openPage();
  const dead = await freePort();
  await page.evaluate((url) => {
    window.app.setOptions({ streams: [], client: { backoff: { baseMs: 200, capMs: 400 } } });
    window.app.setJob({ jobId: 'job_nowhere', token: 't', websocketUrl: url });
  }, `ws://127.0.0.1:${dead}/dev`);
  await waitAttr(page, 'state', 'reconnecting');
  await until('a few attempts', () => page.evaluate(() => window.sockets.length >= 3));
  await page.evaluate(() => window.app.setMounted(false));
  const attempts = await page.evaluate(() => window.sockets.length);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await page.evaluate(() => window.sockets.length), attempts, 'a socket was opened after unmount');
  assert.deepEqual(errors.filter((e) => !e.includes('WebSocket connection')), []);
  await page.close();
});

test('a hidden tab keeps its updates; shown again, it catches up at once', async () => {
  const { page, errors } = await openPage();
  const { ref, update } = await createJob();
  // A reconnect that would wait a minute, so only showing the tab can bring it back early.
  await page.evaluate((job) => {
    window.app.setOptions({ streams: [], client: { backoff: { baseMs: 60_000, capMs: 60_000, random: () => 0.99 } } });
    window.app.setJob(job);
  }, ref);
  await waitAttr(page, 'state', 'live');
  const setVisibility = (state) =>
    page.evaluate((s) => {
      Object.defineProperty(document, 'visibilityState', { value: s, configurable: true });
      document.dispatchEvent(new Event('visibilitychange'));
    }, state);

  await setVisibility('hidden');
  await update({ percent: 20 });
  await waitAttr(page, 'percent', 20);

  // Shown while live: it asks for the current state.
  const syncsBefore = await page.evaluate(() => window.sockets.at(-1).sent.filter((m) => m.action === 'sync').length);
  await setVisibility('visible');
  await until('a sync', () =>
    page.evaluate((n) => window.sockets.at(-1).sent.filter((m) => m.action === 'sync').length > n, syncsBefore));

  // Dropped while hidden: the reconnect waits (its backoff)...
  await setVisibility('hidden');
  const id = await until('the connection id', () => page.evaluate(() => window.sockets.at(-1).connectionId));
  const sockets = await page.evaluate(() => window.sockets.length);
  await fetch(`${base}/dev/@connections/${encodeURIComponent(id)}`, { method: 'DELETE' });
  await waitAttr(page, 'state', 'reconnecting');
  await update({ percent: 60 });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await attr(page, 'percent'), '20');
  assert.equal(await page.evaluate(() => window.sockets.length), sockets, 'no reconnect yet');
  // ...and showing the tab reconnects now and shows the current state.
  await setVisibility('visible');
  await waitAttr(page, 'percent', 60, 5000);
  assert.equal(await attr(page, 'state'), 'live');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a job the server refuses (a wrong token, another job id): error, and nothing kept open', async () => {
  const { page, errors } = await openPage();
  const { ref } = await createJob();
  await page.evaluate((job) => window.app.setJob({ ...job, token: 'not-the-token' }), ref);
  await waitAttr(page, 'state', 'error');
  assert.equal(await attr(page, 'error'), 'forbidden');
  assert.equal(await attr(page, 'job'), '', 'no snapshot of a job it may not see');
  // Another job id with this token: refused too (the token check comes first).
  await page.evaluate((job) => window.app.setJob({ ...job, jobId: 'job_missing' }), ref);
  await page.waitForFunction(() => window.renders.some((r) => r.job === 'job_missing'));
  await waitAttr(page, 'error', 'forbidden');
  await until('no socket left open', async () => (await openSockets(page)) === 0);
  assert.deepEqual(errors, []);
  await page.close();
});

test('useJobs follows the signed-in user\'s jobs, started elsewhere, live, and nobody else\'s', async (t) => {
  // Owners on (serve --dev-tokens), with a development key of the test's own.
  const keyDir = mkdtempSync(path.join(tmpdir(), 'jobcast-react-owners-'));
  const env = { JOBCAST_DEV_KEY: path.join(keyDir, 'dev-key.pem') };
  const owners = await startServe(['--dev-tokens'], env);
  t.after(() => {
    owners.serve.kill('SIGTERM');
    rmSync(keyDir, { recursive: true, force: true });
  });
  const jwt = (sub) =>
    execFileSync(bin, ['token', 'issue', '--sub', sub], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  const start = async (bearer, steps) => {
    const res = await fetch(`${owners.base}/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` },
      body: JSON.stringify({ kind: 'demo', input: { steps, stepMs: 100 } }),
    });
    assert.equal(res.status, 202);
    return (await res.json()).jobId;
  };
  const alice = jwt('alice');
  const bob = jwt('bob');
  const first = await start(alice, 40);

  const { page, errors } = await openPage();
  await page.evaluate(([url, token, jobs]) => window.app.setOwner({ websocketUrl: url, accessToken: token, jobsUrl: jobs }),
    [`ws://127.0.0.1:${new URL(owners.base).port}/dev`, alice, `${owners.base}/jobs`]);
  await page.waitForSelector(`#jobs[data-state="live"] li[data-job="${first}"]`);
  // Started after the hook mounted, from outside the page: it appears and runs to the end.
  const second = await start(alice, 5);
  const theirs = await start(bob, 5);
  await page.waitForSelector(`#jobs li[data-job="${second}"][data-status="succeeded"]`, { timeout: 15_000 });
  const listed = await page.locator('#jobs li').evaluateAll((lis) => lis.map((li) => li.dataset.job));
  assert.deepEqual(listed, [second, first], 'the most recently seen first');
  assert.ok(!listed.includes(theirs), "bob's job showed on alice's page");
  // StrictMode ran the effect twice: one socket stays open.
  assert.equal(await openSockets(page), 1);
  assert.deepEqual(errors, []);
  await page.close();
});
