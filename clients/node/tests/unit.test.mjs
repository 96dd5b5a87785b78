// The library on its own, against local stand-ins for jobcast.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Job, JobEnded, JobcastError } from '../index.js';
import { freePort, recorder } from './helpers.mjs';

const message = (url, extra = {}) => ({
  type: 'job',
  jobId: 'job_1',
  kind: 'export',
  input: { table: 'orders' },
  createdAt: '2026-12-02T10:00:00Z',
  attempt: 2,
  workerToken: 'wt',
  updateUrl: url,
  heartbeatTimeoutSeconds: 300,
  ...extra,
});
const ok = [200, {}, { jobId: 'job_1', seq: 2, status: 'running' }];

test('fromMessage takes an object, JSON text or bytes', () => {
  const m = message('http://127.0.0.1:9/u');
  for (const form of [m, JSON.stringify(m), new TextEncoder().encode(JSON.stringify(m))]) {
    const job = Job.fromMessage(form);
    assert.deepEqual([job.id, job.kind, job.attempt, job.heartbeatTimeoutSeconds], ['job_1', 'export', 2, 300]);
    assert.deepEqual(job.input, { table: 'orders' });
  }
  assert.equal(JSON.stringify(Job.fromMessage(m)).includes('wt'), false, 'the token stays out of logs');
});

test('fromMessage names what is missing', () => {
  assert.throws(() => Job.fromMessage({ jobId: 'job_1' }), /workerToken, updateUrl/);
  assert.throws(() => Job.fromMessage('{not json'), /JSON/);
  assert.throws(() => Job.fromMessage('[1]'), /object/);
});

test('calls send the contract bodies with the worker token', async (t) => {
  const r = await recorder([ok]);
  t.after(r.close);
  const job = Job.fromMessage(message(`${r.url}/jobs/job_1/updates`));
  await job.progress({ percent: 5, message: 'reading' });
  await job.progress();
  await job.heartbeat();
  await job.succeed({ rows: 3 });
  await job.fail('bad_input', 'no such table');
  assert.deepEqual(
    r.requests.map((q) => JSON.parse(q.body)),
    [
      { status: 'running', percent: 5, message: 'reading' },
      { status: 'running' },
      {},
      { status: 'succeeded', result: { rows: 3 } },
      { status: 'failed', message: 'no such table', error: { code: 'bad_input', message: 'no such table' } },
    ],
  );
  assert.equal(r.requests[0].path, '/jobs/job_1/updates');
  assert.equal(r.requests[0].headers.authorization, 'Bearer wt');
});

test('429 and 5xx are retried honouring Retry-After', async (t) => {
  const r = await recorder([
    [503, { 'retry-after': '1' }, { status: 503, code: 'unavailable' }],
    [429, { 'retry-after': '0' }, { status: 429, code: 'throttled' }],
    ok,
  ]);
  t.after(r.close);
  const job = Job.fromMessage(message(`${r.url}/u`));
  const started = Date.now();
  assert.equal((await job.progress({ percent: 1 })).seq, 2);
  assert.equal(r.requests.length, 3);
  assert.ok(Date.now() - started >= 900, 'waited as Retry-After asked');
});

test('a 4xx is never retried', async (t) => {
  const r = await recorder([[422, {}, { status: 422, code: 'invalid_update', detail: 'percent went down' }]]);
  t.after(r.close);
  const job = Job.fromMessage(message(`${r.url}/u`));
  await assert.rejects(job.progress({ percent: 1 }), (e) => {
    assert.ok(e instanceof JobcastError);
    assert.equal(e.status, 422);
    assert.equal(e.code, 'invalid_update');
    assert.match(e.message, /percent went down/);
    return true;
  });
  assert.equal(r.requests.length, 1);
});

test('a terminal 409 rejects with JobEnded and the snapshot', async (t) => {
  const snapshot = { type: 'progress', jobId: 'job_1', seq: 3, status: 'cancelled' };
  const r = await recorder([[409, {}, { status: 409, code: 'terminal', snapshot }]]);
  t.after(r.close);
  const job = Job.fromMessage(message(`${r.url}/u`));
  await assert.rejects(job.heartbeat(), (e) => e instanceof JobEnded && e.cancelled && e.snapshot.seq === 3);
  assert.equal(job.cancelled, true);
  assert.equal(job.ended, true);
  assert.equal(r.requests.length, 1);
});

test('an unreachable jobcast is retried, then reported', async () => {
  const job = Job.fromMessage(message(`http://127.0.0.1:${await freePort()}/u`), { retries: 2, backoffMs: 10 });
  await assert.rejects(job.progress({ percent: 1 }), (e) => e instanceof JobcastError && e.status === null);
});

test('keepAlive heartbeats until stopped', async (t) => {
  const r = await recorder([ok]);
  t.after(r.close);
  const job = Job.fromMessage(message(`${r.url}/u`));
  const stop = job.keepAlive(50);
  await new Promise((res) => setTimeout(res, 300));
  stop();
  const n = r.requests.length;
  assert.ok(n >= 3, `${n} heartbeats`);
  assert.ok(r.requests.every((q) => q.body === '{}'));
  await new Promise((res) => setTimeout(res, 200));
  assert.equal(r.requests.length, n);
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const bodies = async (r, n) => (await r.waitFor(n)).map((q) => JSON.parse(q.body));

test('minIntervalMs holds progress and sends the newest when the interval is up', async (t) => {
  const r = await recorder([ok]);
  t.after(r.close);
  const job = Job.fromMessage(message(`${r.url}/u`), { minIntervalMs: 300 });
  assert.equal((await job.progress({ percent: 1, message: 'a' })).seq, 2, 'the first call goes out at once');
  assert.equal(await job.progress({ percent: 2, message: 'b' }), null);
  assert.equal(await job.progress({ message: 'c' }), null, "held: its percent is the one held before");
  await sleep(100);
  assert.equal(r.requests.length, 1);
  assert.deepEqual(await bodies(r, 2), [
    { status: 'running', percent: 1, message: 'a' },
    { status: 'running', percent: 2, message: 'c' },
  ]);
  await sleep(400);
  assert.equal(r.requests.length, 2, 'nothing held, nothing more sent');
  assert.equal((await job.progress({ percent: 3 })).seq, 2, 'past the interval: at once again');
});

test('held progress goes out with flush, heartbeat and the end', async (t) => {
  const r = await recorder([ok]);
  t.after(r.close);
  const job = Job.fromMessage(message(`${r.url}/u`), { minIntervalMs: 60_000 });
  await job.progress({ percent: 10 });
  assert.equal(await job.flush(), null, 'nothing held');
  await job.progress({ percent: 20 });
  assert.equal((await job.flush()).seq, 2);
  await job.progress({ percent: 30 });
  await job.heartbeat();
  await job.progress({ percent: 40 });
  await job.succeed({ rows: 3 });
  const job2 = Job.fromMessage(message(`${r.url}/u`), { minIntervalMs: 60_000 });
  await job2.progress({ percent: 50 });
  await job2.progress({ percent: 60 });
  await job2.fail('bad_input', 'no such table');
  assert.deepEqual(await bodies(r, 6), [
    { status: 'running', percent: 10 },
    { status: 'running', percent: 20 },
    { status: 'running', percent: 30 },
    { status: 'succeeded', result: { rows: 3 } },
    { status: 'running', percent: 50 },
    { status: 'failed', message: 'no such table', error: { code: 'bad_input', message: 'no such table' }, percent: 60 },
  ]);
});

test('an error met by held progress rejects the next call', async (t) => {
  const r = await recorder([ok, [422, {}, { status: 422, code: 'invalid_update', detail: 'percent went down' }]]);
  t.after(r.close);
  const job = Job.fromMessage(message(`${r.url}/u`), { minIntervalMs: 100 });
  await job.progress({ percent: 50 });
  assert.equal(await job.progress({ percent: 40 }), null);
  await r.waitFor(2);
  await sleep(50);
  await assert.rejects(job.progress({ percent: 60 }), (e) => e instanceof JobcastError && e.code === 'invalid_update');
  assert.equal(r.requests.length, 2, 'the call that rejected sent nothing');
});

test("the job message's traceparent goes back with every call, and none without one", async (t) => {
  const r = await recorder([ok]);
  t.after(r.close);
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const job = Job.fromMessage(message(`${r.url}/jobs/job_1/updates`, { traceparent }));
  assert.equal(job.traceparent, traceparent);
  await job.progress({ percent: 5 });
  await job.heartbeat();
  await job.succeed();
  assert.deepEqual(r.requests.map((q) => q.headers.traceparent), [traceparent, traceparent, traceparent]);
  const untraced = Job.fromMessage(message(`${r.url}/jobs/job_1/updates`));
  assert.equal(untraced.traceparent, null);
  await untraced.progress({ percent: 5 });
  assert.equal(r.requests.at(-1).headers.traceparent, undefined);
});
