// React hooks over the jobcast browser client: `useJob` follows one job,
// `useJobs` every job of the signed-in user. No provider, no context: each
// hook owns its connection and closes it when the component unmounts or its
// job changes.
//
// What they get right (each is a test in tests/react.test.mjs):
// - strict mode: effects run, are cleaned up and run again; the first
//   connection is closed, never leaked, and nothing from it is rendered;
// - a changed job: the previous job's snapshot is never shown for the new
//   one, not even for one render;
// - unmounted mid-reconnect: no socket is opened afterwards;
// - a job that ended before the hook mounted: its final snapshot, `done`,
//   and no connection kept or request made after;
// - `done` (and `onComplete`) only once the terminal snapshot is there and
//   every requested stream has been handed over up to its final length;
// - a hidden tab: updates keep arriving; when it is shown again a socket
//   that dropped meanwhile reconnects at once (browsers slow the timers of
//   hidden tabs) and a live one asks for the current state.
import { useEffect, useRef, useState } from 'react';
import { JobcastClient } from './index.js';

/**
 * @typedef {import('./index.js').Snapshot} Snapshot
 * @typedef {'idle'|'connecting'|'live'|'reconnecting'|'polling'|'done'|'error'} JobState
 */

/** A stable text key for a job description: a new object with the same job is the same job. */
function jobKey(job) {
  if (!job || !job.jobId) return '';
  return JSON.stringify([job.websocketUrl, job.jobId, job.token ?? null, job.statusUrl ?? null, job.accessToken ?? null]);
}

function freshView(key, streamNames) {
  const streams = {};
  for (const name of streamNames) streams[name] = [];
  return { key, snapshot: null, state: key ? 'connecting' : 'idle', streams, error: null, done: false };
}

/** Calls `fn` while the page is shown again (and when the network is back). */
function onPageReturn(fn) {
  if (typeof document === 'undefined') return () => {};
  const visible = () => {
    if (document.visibilityState === 'visible') fn();
  };
  document.addEventListener('visibilitychange', visible);
  globalThis.addEventListener?.('online', fn);
  return () => {
    document.removeEventListener('visibilitychange', visible);
    globalThis.removeEventListener?.('online', fn);
  };
}

/**
 * One connection's view, keyed by what it connects to. A new key resets the
 * view in that very render (nothing of the previous key is ever shown) and
 * replaces the connection; unmounting closes it. `connect(update, alive)`
 * makes and starts the client: `update(patch)` merges `patch(view)` into the
 * view while this key is still the current one, and `alive()` says whether
 * it is. An empty key connects nothing.
 */
function useConnection(key, fresh, connect) {
  const [view, setView] = useState(fresh);
  let current = view;
  if (view.key !== key) {
    current = fresh();
    setView(current);
  }
  useEffect(() => {
    if (!key) return undefined;
    let alive = true;
    const update = (patch) => {
      if (alive) setView((v) => (v.key === key ? { ...v, ...patch(v) } : v));
    };
    const client = connect(update, () => alive);
    const stopWatching = onPageReturn(() => client.resume());
    return () => {
      alive = false;
      stopWatching();
      client.close();
    };
    // Everything `connect` reads is in `key`, or read through a ref.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  return current;
}

/**
 * Follows one job: `job` is what `POST /jobs` answered plus the WebSocket
 * URL (`{jobId, token, websocketUrl, statusUrl?}`), or null for none yet.
 *
 * @param {{jobId: string, token: string, websocketUrl: string, statusUrl?: string, accessToken?: string} | null | undefined} job
 * @param {{streams?: string[], onComplete?: (s: Snapshot, streams: Record<string, unknown[]>) => void,
 *   client?: object, WebSocket?: typeof WebSocket, fetch?: typeof fetch}} [options] `client`: more
 *   options of the JobcastClient (backoff, pingIntervalMs, …)
 * @returns {{snapshot: Snapshot|null, state: JobState, streams: Record<string, unknown[]>, error: {code: string, message: string}|null, done: boolean}}
 */
export function useJob(job, options = {}) {
  const streamNames = options.streams ?? [];
  // Other streams are another connection, as another job is.
  const key = jobKey(job) && `${jobKey(job)}\u0000${streamNames.join('\u0000')}`;
  // The latest options, read by the connection without reconnecting when
  // an inline callback changes identity on every render.
  const latest = useRef(options);
  latest.current = options;

  return useConnection(key, () => freshView(key, streamNames), (update, alive) => {
    const client = new JobcastClient({
      ...latest.current.client,
      websocketUrl: job.websocketUrl,
      accessToken: job.accessToken,
      WebSocket: latest.current.WebSocket,
      fetch: latest.current.fetch,
      onStateChange: (s) => update((v) => (v.done || v.error || s === 'closed' ? {} : { state: s })),
    });
    // Each stream's chunks as this connection handed them over; the view
    // gets a copy with each run.
    const collected = {};
    const streams = {};
    for (const name of streamNames) {
      collected[name] = [];
      streams[name] = (chunks, from) => {
        collected[name] = [...collected[name].slice(0, from), ...chunks];
        const copy = collected[name];
        update((v) => ({ streams: { ...v.streams, [name]: copy } }));
      };
    }
    client.follow({
      jobId: job.jobId,
      token: job.token,
      statusUrl: job.statusUrl,
      streams,
      onUpdate: (snapshot) => update(() => ({ snapshot })),
      onComplete: (snapshot) => {
        update(() => ({ snapshot, done: true, state: 'done' }));
        if (alive()) latest.current.onComplete?.(snapshot, { ...collected });
      },
      onError: (error) => update(() => ({ error, state: 'error' })),
    });
    return client;
  });
}

/**
 * Follows every job of the signed-in user (owners): those running when it
 * mounts and each one started later, from anywhere. `jobs` lists the most
 * recently seen first, each at its latest snapshot.
 *
 * @param {{websocketUrl: string, accessToken: string, tag?: string, jobsUrl?: string,
 *   WebSocket?: typeof WebSocket, fetch?: typeof fetch} | null | undefined} opts
 * @returns {{jobs: Snapshot[], state: JobState, error: {code: string, message: string}|null}}
 */
export function useJobs(opts) {
  const key = opts?.websocketUrl && opts?.accessToken
    ? JSON.stringify([opts.websocketUrl, opts.accessToken, opts.tag ?? null, opts.jobsUrl ?? null])
    : '';
  const latest = useRef(opts);
  latest.current = opts;
  const fresh = () => ({ key, byId: new Map(), state: key ? 'connecting' : 'idle', error: null });
  const current = useConnection(key, fresh, (update) => {
    const o = latest.current;
    const client = new JobcastClient({
      websocketUrl: o.websocketUrl,
      accessToken: o.accessToken,
      WebSocket: o.WebSocket,
      fetch: o.fetch,
      onStateChange: (s) => update((v) => (v.error || s === 'closed' ? {} : { state: s })),
    });
    client.followOwner({
      tag: o.tag,
      jobsUrl: o.jobsUrl,
      onUpdate: (snapshot) =>
        update((v) => {
          // Seen before: its place stays; new: it goes last (shown first).
          const byId = new Map(v.byId);
          byId.set(snapshot.jobId, snapshot);
          return { byId };
        }),
      onError: (error) => update(() => ({ error, state: 'error' })),
    });
    return client;
  });
  const jobs = useJobsList(current.byId);
  return { jobs, state: current.state, error: current.error };
}

/** The jobs of a map, the most recently seen first; the same array while the map is the same. */
function useJobsList(byId) {
  const memo = useRef({ byId: null, list: [] });
  if (memo.current.byId !== byId) memo.current = { byId, list: [...byId.values()].reverse() };
  return memo.current.list;
}
