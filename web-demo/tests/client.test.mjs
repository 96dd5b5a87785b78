// Pure parts of jobcast-client.js: backoff, seq ordering, Retry-After.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, SnapshotTracker, retryAfterMs, isTerminal } from '../jobcast-client.js';

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
