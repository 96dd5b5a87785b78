// The library against a live `jobcast serve`: a worker written with it runs
// jobs that a WebSocket client and a webhook receiver watch.
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Job, JobEnded } from '../index.js';
import { WEBHOOK_SECRET, applied, follow, recorder, serve } from './helpers.mjs';

const LIB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../index.js');

test('a command worker runs a job to succeeded, watched live', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'jobcast-node-'));
  const worker = path.join(dir, 'export-worker.mjs');
  writeFileSync(
    worker,
    `import { Job } from ${JSON.stringify(LIB)};
const job = await Job.fromEnv();
const rows = job.input.rows;
for (let n = 1; n <= rows; n += 1) {
  await job.progress({ percent: (100 * n) / rows, message: \`row \${n} of \${rows}\` });
}
await job.succeed({ rows, table: job.input.table });
`,
  );
  const s = await serve('--kind', `export=command:${process.execPath} ${worker}`);
  t.after(s.stop);
  const hook = await recorder();
  t.after(hook.close);
  const job = await s.create('export', { table: 'orders', rows: 4 }, `${hook.url}/hook`);
  const shown = applied(await follow(job.websocketUrl));
  assert.deepEqual(shown.map((m) => m.seq), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(shown.map((m) => m.percent), [0, 25, 50, 75, 100, 100]);
  assert.equal(shown[2].message, 'row 2 of 4');
  assert.equal(shown.at(-1).status, 'succeeded');
  assert.deepEqual(shown.at(-1).result, { rows: 4, table: 'orders' });

  const [got] = await hook.waitFor(1);
  assert.equal(JSON.parse(got.body).seq, 6);
  const sig = Object.fromEntries(got.headers['jobcast-signature'].split(',').map((p) => p.split('=')));
  const want = createHmac('sha256', WEBHOOK_SECRET).update(`${sig.t}.${got.body}`).digest('hex');
  assert.ok(timingSafeEqual(Buffer.from(sig.v1), Buffer.from(want)));
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(hook.requests.length, 1);
});

test('cancel reaches the worker as JobEnded', async (t) => {
  const inbox = await recorder();
  t.after(inbox.close);
  const s = await serve('--kind', `manual=${inbox.url}/work`);
  t.after(s.stop);
  const created = await s.create('manual', { n: 1 });
  const [msg] = await inbox.waitFor(1);
  const job = Job.fromMessage(msg.body);
  assert.equal(job.id, created.jobId);
  assert.equal(job.attempt, 1);
  assert.equal((await job.progress({ percent: 10, message: 'started' })).seq, 2);
  assert.equal((await job.heartbeat()).seq, 2, 'a heartbeat makes no new snapshot');
  const del = await s.request('DELETE', `/jobs/${job.id}`, { token: created.token });
  assert.equal(del.status, 202);
  assert.equal(del.body.status, 'cancelled');
  await assert.rejects(job.progress({ percent: 20 }), (e) => e instanceof JobEnded && e.snapshot.status === 'cancelled');
  assert.equal(job.cancelled, true);
});

test('fail ends the job with the error', async (t) => {
  const inbox = await recorder();
  t.after(inbox.close);
  const s = await serve('--kind', `manual=${inbox.url}/work`);
  t.after(s.stop);
  await s.create('manual');
  const job = Job.fromMessage((await inbox.waitFor(1))[0].body);
  await job.progress({ percent: 40 });
  await job.fail('no_such_table', 'table orders does not exist');
  const { status, body } = await s.request('GET', `/jobs/${job.id}`);
  assert.equal(status, 200);
  assert.equal(body.status, 'failed');
  assert.deepEqual(body.error, { code: 'no_such_table', message: 'table orders does not exist' });
  assert.equal(body.percent, 40);
});

test('a worker that goes quiet is lost', async (t) => {
  const inbox = await recorder();
  t.after(inbox.close);
  const s = await serve('--kind', `manual=${inbox.url}/work`, '--heartbeat-timeout', '1s');
  t.after(s.stop);
  await s.create('manual');
  const job = Job.fromMessage((await inbox.waitFor(1))[0].body);
  assert.equal(job.heartbeatTimeoutSeconds, 1);
  await job.progress({ percent: 5 });
  let view;
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    view = (await s.request('GET', `/jobs/${job.id}`)).body;
    if (view.status !== 'running') break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(view.status, 'failed');
  assert.equal(view.error.code, 'worker_lost');
  await assert.rejects(job.progress({ percent: 50 }), JobEnded);
  assert.equal(job.cancelled, false);
});

test('minIntervalMs turns a tight loop into a few updates', async (t) => {
  const inbox = await recorder();
  t.after(inbox.close);
  const s = await serve('--kind', `manual=${inbox.url}/work`);
  t.after(s.stop);
  const created = await s.create('manual');
  const job = Job.fromMessage((await inbox.waitFor(1))[0].body, { minIntervalMs: 250 });
  const calls = 100;
  for (let n = 1; n <= calls; n += 1) {
    await job.progress({ percent: n, message: `row ${n}` });
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, 400)); // the interval is up: the newest held progress is out
  const view = (await s.request('GET', `/jobs/${job.id}`)).body;
  assert.deepEqual([view.percent, view.message], [100, `row ${calls}`]);
  const updates = view.seq - 1;
  assert.ok(updates >= 2 && updates <= 12, `${calls} calls became ${updates} updates`);
  await job.succeed({ rows: calls });
  const seen = applied(await follow(created.websocketUrl));
  assert.equal(seen.at(-1).status, 'succeeded');
  assert.equal(seen.at(-1).seq, updates + 2);
  // Not held: the job has ended.
  await assert.rejects(job.progress({ percent: 100 }), (e) => e instanceof JobEnded);
});

test('chunks are gathered, sent before the end, and read back in order', async (t) => {
  const inbox = await recorder();
  t.after(inbox.close);
  const s = await serve('--kind', `manual=${inbox.url}/work`);
  t.after(s.stop);
  const created = await s.create('manual', {});
  const [msg] = await inbox.waitFor(1);
  const job = Job.fromMessage(msg.body, { chunkIntervalMs: 50 });
  const words = Array.from({ length: 60 }, (_, i) => `w${i} `);
  await job.log('started');
  for (const w of words) await job.append('tokens', w);
  await assert.rejects(job.append('Bad', 'x'), TypeError);
  await job.succeed({ words: words.length });
  assert.deepEqual(job.streams, { log: 1, tokens: 60 });
  const page = await s.request('GET', `/jobs/${created.jobId}/streams/tokens`);
  assert.deepEqual(page.body.chunks, words);
  assert.equal(page.body.complete, true);
  const log = await s.request('GET', `/jobs/${created.jobId}/streams/log`);
  assert.deepEqual(log.body.chunks, ['started']);
  const metrics = await (await fetch(`${s.url}/metrics`)).text();
  const updates = Number(metrics.match(/^jobcast_worker_updates_total (\S+)$/m)[1]);
  assert.ok(updates <= 3, `gathered into a few requests, not ${updates}`);
});

test('files upload from bytes and a streamed path, attach, and download intact', async (t) => {
  const inbox = await recorder();
  t.after(inbox.close);
  const dir = mkdtempSync(path.join(tmpdir(), 'jobcast-node-files-'));
  const s = await serve('--files-dir', path.join(dir, 'store'), '--kind', `work=${inbox.url}/work`);
  t.after(s.stop);
  const created = await s.create('work', {});
  const [msg] = await inbox.waitFor(1);
  const job = Job.fromMessage(msg.body);
  assert.equal(job.filesUrl, `${s.url}/jobs/${created.jobId}/files`);
  const data = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < data.length; i += 1) data[i] = i % 251;
  const src = path.join(dir, 'blob.bin');
  writeFileSync(src, data);
  assert.deepEqual(await job.upload('blob.bin', { path: src }), {
    name: 'blob.bin',
    size: data.length,
    contentType: 'application/octet-stream',
  });
  await job.upload('notes.txt', 'hello', { contentType: 'text/plain' });
  await assert.rejects(job.succeed({ ok: true }, { files: ['missing.csv'] }), (e) => e.status === 422 && e.code === 'file_missing');
  await job.succeed({ ok: true }, { files: ['blob.bin', 'notes.txt'] });
  const view = (await s.request('GET', `/jobs/${created.jobId}`)).body;
  assert.equal(view.status, 'succeeded');
  const urls = Object.fromEntries(view.files.map((f) => [f.name, f]));
  assert.equal(urls['notes.txt'].contentType, 'text/plain');
  const blob = Buffer.from(await (await fetch(urls['blob.bin'].url)).arrayBuffer());
  assert.ok(blob.equals(data), 'the same bytes');
  assert.equal(await (await fetch(urls['notes.txt'].url)).text(), 'hello');
});
