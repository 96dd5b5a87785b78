// @jobcast/client without a browser: backoff, seq ordering, Retry-After,
// and following an owner over a stand-in WebSocket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, JobcastClient, SnapshotTracker, retryAfterMs, isTerminal } from '../index.js';

test('backoff is full jitter under an exponential, capped ceiling', () => {
  assert.equal(backoffDelay(0, { baseMs: 500, capMs: 30000, random: () => 0.999 }), 499);
  assert.equal(backoffDelay(3, { baseMs: 500, capMs: 30000, random: () => 0.5 }), 2000);
  assert.equal(backoffDelay(50, { baseMs: 500, capMs: 30000, random: () => 0.999 }), 29970);
  assert.equal(backoffDelay(5, { random: () => 0 }), 0);
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelay(i % 12);
    assert.ok(d >= 0 && d < 30000);
  }
});

test('snapshots apply only when their seq is newer', () => {
  const t = new SnapshotTracker();
  const snap = (seq, percent) => ({ type: 'progress', jobId: 'j', seq, percent, status: 'running' });
  assert.ok(t.apply(snap(3, 20)));
  assert.ok(!t.apply(snap(3, 20)), 'a duplicate is dropped');
  assert.ok(!t.apply(snap(2, 10)), 'an older one is dropped');
  assert.ok(t.apply(snap(5, 40)), 'a gap is fine: snapshots are complete');
  assert.equal(t.get('j').seq, 5);
  assert.ok(t.apply({ ...snap(1, 0), jobId: 'other' }), 'jobs are tracked apart');
  assert.ok(!t.apply({ seq: 'x' }));
  assert.ok(!t.apply(null));
});

test('Retry-After in seconds or as a date', () => {
  assert.equal(retryAfterMs('2'), 2000);
  assert.equal(retryAfterMs(null, 750), 750);
  assert.equal(retryAfterMs('soon', 750), 750);
  const inFive = new Date(Date.now() + 5000).toUTCString();
  const ms = retryAfterMs(inFive);
  assert.ok(ms > 3000 && ms <= 5000, String(ms));
});

test('terminal states', () => {
  for (const s of ['succeeded', 'failed', 'cancelled']) assert.ok(isTerminal(s));
  for (const s of ['queued', 'running']) assert.ok(!isTerminal(s));
});

test('followOwner connects with the token as a subprotocol and takes in jobs it did not start', () => {
  const sockets = [];
  class FakeSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close() { this.readyState = 3; }
  }
  const client = new JobcastClient({ websocketUrl: 'ws://x/dev', accessToken: 'eyJ.a.b', WebSocket: FakeSocket });
  assert.throws(() => new JobcastClient({ websocketUrl: 'ws://x/dev', WebSocket: FakeSocket }).followOwner({ onUpdate() {} }));
  const found = [];
  const updates = [];
  client.followOwner({ tag: 'reports', onJob: (s) => found.push(s.jobId), onUpdate: (s) => updates.push([s.jobId, s.seq]) });
  const ws = sockets[0];
  assert.deepEqual(ws.protocols, ['jobcast', 'eyJ.a.b']);
  ws.readyState = 1;
  ws.onopen();
  assert.deepEqual(ws.sent.find((m) => m.owner), { action: 'subscribe', owner: true, tag: 'reports' });
  const msg = (o) => ws.onmessage({ data: JSON.stringify({ type: 'progress', ...o }) });
  msg({ jobId: 'a', seq: 1, status: 'queued', percent: 0 });
  msg({ jobId: 'a', seq: 2, status: 'running', percent: 50 });
  msg({ jobId: 'a', seq: 2, status: 'running', percent: 50 });
  msg({ jobId: 'a', seq: 3, status: 'succeeded', percent: 100 });
  assert.deepEqual(found, ['a']);
  assert.deepEqual(updates, [['a', 1], ['a', 2], ['a', 3]]);
  // Still following the owner after its last job ended.
  assert.equal(client.state, 'live');
  client.close();
});

test('streams: every chunk once and in order, gaps replayed, let go only when complete', () => {
  const sockets = [];
  class FakeSocket {
    constructor() {
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close() { this.readyState = 3; }
  }
  const client = new JobcastClient({ websocketUrl: 'ws://x/dev', WebSocket: FakeSocket });
  const got = [];
  client.follow({
    jobId: 'j', token: 't', onUpdate() {},
    streams: { log: (chunks, from) => got.push([from, ...chunks]) },
  });
  const ws = sockets[0];
  ws.readyState = 1;
  ws.onopen();
  assert.deepEqual(ws.sent[0], { action: 'subscribe', jobId: 'j', token: 't', streams: { log: 0 } });
  const chunks = (from, list) => ws.onmessage({ data: JSON.stringify({ type: 'chunks', jobId: 'j', stream: 'log', from, chunks: list }) });
  chunks(0, ['a', 'b']);
  chunks(1, ['b', 'c']); // overlaps: only c is new
  chunks(5, ['f']); // a gap: 3 and 4 are missing
  assert.deepEqual(ws.sent.at(-1), { action: 'replay', jobId: 'j', stream: 'log', from: 3 });
  chunks(6, ['g']); // still the same gap: asked once
  assert.equal(ws.sent.filter((m) => m.action === 'replay').length, 1);
  // The end arrives before the replay: the job is held until it is complete.
  ws.onmessage({ data: JSON.stringify({ type: 'progress', jobId: 'j', seq: 3, status: 'succeeded', percent: 100, streams: { log: 7 } }) });
  assert.equal(client.state, 'live', 'not let go with chunks missing');
  chunks(3, ['d', 'e', 'f', 'g']);
  assert.deepEqual(got, [[0, 'a', 'b'], [2, 'c'], [3, 'd', 'e', 'f', 'g']]);
  assert.equal(client.state, 'closed', 'complete: let go');
});
