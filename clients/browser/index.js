// @jobcast/client (served by jobcast serve as /jobcast-client.js): follow long-running jobs from a browser, live.
//
// A dependency-free ES module. It keeps a WebSocket to the jobcast WebSocket
// API, subscribes and syncs after every (re)connect, never applies a snapshot
// older than the one shown, reconnects with capped exponential backoff and
// full jitter, pings before API Gateway's 10-minute idle cut, reconnects
// before its 2-hour lifetime, and falls back to polling GET /jobs/{id}
// (honouring Retry-After) while the WebSocket cannot connect.
//
// Streams: a job followed with `streams: {log: (chunks, from) => …}` gets
// every chunk of those streams exactly once and in order: from the start,
// resumed from the next index after any reconnect, gaps replayed, and read
// from GET /jobs/{id}/streams/{name} while polling. A job with streams is
// let go only once every chunk below its final lengths has been handed over.

/** @typedef {'queued'|'running'|'succeeded'|'failed'|'cancelled'} JobStatus */
/**
 * @typedef {object} Snapshot
 * @property {'progress'} type
 * @property {string} jobId
 * @property {number} seq
 * @property {JobStatus} status
 * @property {number} percent
 * @property {string|null} message
 * @property {unknown} result
 * @property {{code: string, message: string}|null} error
 * @property {string} updatedAt
 * @property {Record<string, number>} [streams] each stream's length when the snapshot was read
 * @property {JobFile[]} [files] attached files, with download URLs presigned when sent or read
 */
/**
 * @typedef {object} JobFile
 * @property {string} name
 * @property {number} size
 * @property {string} [contentType]
 * @property {string} url a GET URL valid until `expiresAt`; ask for the job again for a fresh one
 * @property {string} expiresAt
 */
/** @typedef {'connecting'|'live'|'reconnecting'|'polling'|'closed'} ConnectionState */

export const TERMINAL = Object.freeze(['succeeded', 'failed', 'cancelled']);

/** @param {string} status */
export function isTerminal(status) {
  return TERMINAL.includes(status);
}

/**
 * Full-jitter exponential backoff: a random delay in [0, min(cap, base * 2^attempt)].
 * @param {number} attempt 0 for the first retry
 * @param {{baseMs?: number, capMs?: number, random?: () => number}} [opts]
 */
export function backoffDelay(attempt, { baseMs = 500, capMs = 30_000, random = Math.random } = {}) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/**
 * Keeps the newest snapshot per job: a message whose seq is not above the
 * last one applied is dropped, so a bar never moves backwards.
 */
export class SnapshotTracker {
  constructor() {
    /** @type {Map<string, Snapshot>} */
    this.latest = new Map();
  }

  /** @param {Snapshot} snap @returns {boolean} true when applied */
  apply(snap) {
    if (!snap || typeof snap.seq !== 'number' || typeof snap.jobId !== 'string') return false;
    const prev = this.latest.get(snap.jobId);
    if (prev && snap.seq <= prev.seq) return false;
    this.latest.set(snap.jobId, snap);
    return true;
  }

  /** @param {string} jobId */
  get(jobId) {
    return this.latest.get(jobId);
  }
}

/**
 * Parses Retry-After (seconds or an HTTP date) into milliseconds.
 * @param {string|null} value @param {number} fallbackMs
 */
export function retryAfterMs(value, fallbackMs = 1000) {
  if (!value) return fallbackMs;
  const secs = Number(value);
  if (Number.isFinite(secs) && secs >= 0) return secs * 1000;
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : fallbackMs;
}

/**
 * Follows several jobs over one WebSocket connection.
 *
 * @example
 * const client = new JobcastClient({ websocketUrl: 'wss://…/prod' });
 * client.follow({ jobId, token, statusUrl, onUpdate: (s) => render(s) });
 */
export class JobcastClient {
  /**
   * @param {object} opts
   * @param {string} opts.websocketUrl base URL with the stage, e.g. wss://abc.execute-api.eu-west-1.amazonaws.com/prod
   * @param {(state: ConnectionState) => void} [opts.onStateChange]
   * @param {number} [opts.pingIntervalMs] keep-alive ping (default 5 min, under the 10 min idle limit)
   * @param {number} [opts.maxLifetimeMs] reconnect before this (default 1 h 55 min, under the 2 h limit)
   * @param {number} [opts.stableAfterMs] a connection up this long resets the backoff (default 10 s)
   * @param {number} [opts.pollAfterFailures] failed connects before polling starts (default 2)
   * @param {{baseMs?: number, capMs?: number}} [opts.backoff]
   * @param {string} [opts.accessToken] the user's sign-in JWT (owners): sent at connect as
   *   the subprotocol pair `jobcast, <JWT>`, and as the bearer when polling
   * @param {typeof WebSocket} [opts.WebSocket]
   * @param {typeof fetch} [opts.fetch]
   */
  constructor(opts) {
    this.url = opts.websocketUrl.split('?')[0];
    this.accessToken = opts.accessToken ?? null;
    /** @type {{tag?: string, jobsUrl?: string, onJob: (s: Snapshot) => void, onUpdate: (s: Snapshot) => void, pollTimer?: any}|null} */
    this.owner = null;
    this.onStateChange = opts.onStateChange ?? (() => {});
    this.pingIntervalMs = opts.pingIntervalMs ?? 5 * 60_000;
    this.maxLifetimeMs = opts.maxLifetimeMs ?? (2 * 60 - 5) * 60_000;
    this.stableAfterMs = opts.stableAfterMs ?? 10_000;
    this.pollAfterFailures = opts.pollAfterFailures ?? 2;
    this.backoff = opts.backoff ?? {};
    this.WebSocketImpl = opts.WebSocket ?? globalThis.WebSocket;
    this.fetchImpl = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.tracker = new SnapshotTracker();
    /** @type {Map<string, {jobId: string, token: string, statusUrl?: string, onUpdate: (s: Snapshot) => void, pollTimer?: any}>} */
    this.jobs = new Map();
    /** @type {ConnectionState} */
    this.state = 'closed';
    this.failures = 0;
    this.ws = null;
    this.timers = [];
    this.stopped = true;
  }

  /** @param {ConnectionState} s */
  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.onStateChange(s);
  }

  /**
   * Starts following a job; connects if needed. `streams` maps a stream
   * name to its handler, called with each run of new chunks and the index
   * of the first. `onComplete` is called once, with the terminal snapshot,
   * after every followed stream was handed over up to its final length;
   * the job is then let go. `onError` hears the server's refusal of the
   * job (`forbidden`: a wrong or expired token; `not_found`), after which
   * it is no longer followed.
   * @param {{jobId: string, token: string, statusUrl?: string, onUpdate: (s: Snapshot) => void,
   *   streams?: Record<string, (chunks: unknown[], from: number) => void>,
   *   onComplete?: (s: Snapshot) => void, onError?: (e: {code: string, message: string}) => void}} job
   */
  follow(job) {
    const next = {};
    for (const name of Object.keys(job.streams ?? {})) next[name] = 0;
    this.jobs.set(job.jobId, { ...job, next, final: null, asked: {} });
    if (this.stopped) {
      this.stopped = false;
      this.connect();
    } else if (this.state === 'live') {
      this.send(this.subscription(this.jobs.get(job.jobId)));
    } else if (this.state === 'polling') {
      this.poll(job.jobId);
    }
  }

  /** The `subscribe` of a job: its streams from the next index wanted. */
  subscription(job) {
    const msg = { action: 'subscribe', jobId: job.jobId, token: job.token };
    if (job.next && Object.keys(job.next).length) msg.streams = { ...job.next };
    return msg;
  }

  /**
   * Follows every job of the signed-in user (needs `accessToken`), those
   * running now and each one started later, from anywhere (another tab,
   * curl, a server). `onJob` hears of a job the first time it is seen,
   * `onUpdate` of each of its snapshots (the first included). While the
   * socket is down, `jobsUrl` (GET /jobs) is polled for them.
   * `onError` hears the server's refusal (`unauthorized`: no valid token at connect).
   * @param {{tag?: string, jobsUrl?: string, onJob?: (s: Snapshot) => void, onUpdate: (s: Snapshot) => void,
   *   onError?: (e: {code: string, message: string}) => void}} opts
   */
  followOwner(opts) {
    if (!this.accessToken) throw new Error('followOwner needs the accessToken option (the user\'s JWT)');
    this.owner = { onJob: () => {}, ...opts };
    if (this.stopped) {
      this.stopped = false;
      this.connect();
    } else if (this.state === 'live') {
      this.send(this.ownerSubscription());
    } else if (this.state === 'polling') {
      this.pollOwner();
    }
  }

  ownerSubscription() {
    const msg = { action: 'subscribe', owner: true };
    if (this.owner?.tag) msg.tag = this.owner.tag;
    return msg;
  }

  /** Whether anything is still followed. */
  following() {
    return this.jobs.size > 0 || this.owner !== null;
  }

  /** @param {string} jobId */
  unfollow(jobId) {
    const job = this.jobs.get(jobId);
    if (!job) return;
    clearTimeout(job.pollTimer);
    this.jobs.delete(jobId);
    if (this.state === 'live') this.send({ action: 'unsubscribe', jobId });
    if (!this.following()) this.close();
  }

  /** Stops everything. */
  close() {
    this.stopped = true;
    this.clearTimers();
    for (const job of this.jobs.values()) clearTimeout(job.pollTimer);
    if (this.owner) clearTimeout(this.owner.pollTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      if (ws.readyState <= 1) ws.close(1000);
    }
    this.setState('closed');
  }

  clearTimers() {
    for (const t of this.timers) {
      clearTimeout(t);
      clearInterval(t);
    }
    this.timers = [];
  }

  send(msg) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(msg));
  }

  connect() {
    if (this.stopped) return;
    this.setState(this.failures === 0 ? 'connecting' : this.state === 'polling' ? 'polling' : 'reconnecting');
    let ws;
    try {
      // The JWT rides as a subprotocol, not in the URL (which logs keep).
      ws = this.accessToken
        ? new this.WebSocketImpl(this.url, ['jobcast', this.accessToken])
        : new this.WebSocketImpl(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.setState('live');
      for (const job of this.jobs.values()) {
        clearTimeout(job.pollTimer);
        // A job found through the owner has no job token: the owner's
        // subscription brings it back.
        if (job.token) {
          job.asked = {};
          this.send(this.subscription(job));
        }
      }
      if (this.owner) {
        clearTimeout(this.owner.pollTimer);
        this.send(this.ownerSubscription());
      }
      this.send({ action: 'sync' });
      this.timers.push(setInterval(() => this.send({ action: 'ping' }), this.pingIntervalMs));
      this.timers.push(setTimeout(() => this.failures = 0, this.stableAfterMs));
      // Leave before API Gateway's lifetime limit cuts the connection.
      this.timers.push(setTimeout(() => this.recycle(), this.maxLifetimeMs));
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg.type === 'progress') this.deliver(msg);
      else if (msg.type === 'chunks') this.chunks(msg);
      else if (msg.type === 'error' && msg.jobId && this.jobs.has(msg.jobId)) this.refused(msg);
      else if (msg.type === 'error' && msg.code === 'unauthorized' && this.owner) this.owner.onError?.(msg);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clearTimers();
      if (!opened) this.failures += 1;
      this.scheduleReconnect();
    };
    ws.onerror = () => {};
  }

  /** The server refused a job (its token, or no such job): it is let go. */
  refused(msg) {
    const job = this.jobs.get(msg.jobId);
    if (!job || !['forbidden', 'not_found', 'unauthorized'].includes(msg.code)) return;
    clearTimeout(job.pollTimer);
    this.jobs.delete(msg.jobId);
    job.onError?.({ code: msg.code, message: msg.message ?? msg.code });
    if (!this.following()) this.close();
  }

  /**
   * Catches up now: a socket waiting to reconnect connects at once (with a
   * fresh backoff), a live one asks for the current state. For when a
   * hidden tab is shown again (browsers slow its timers) or the network
   * comes back.
   */
  resume() {
    if (this.stopped) return;
    if (this.state === 'live') {
      this.send({ action: 'sync' });
      return;
    }
    if (this.ws) return; // a connection attempt is under way
    this.clearTimers();
    this.failures = 0;
    this.connect();
  }

  /** Reconnects now, on purpose (lifetime limit). */
  recycle() {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    ws.onclose = null;
    ws.close(1000);
    this.clearTimers();
    this.failures = 0;
    this.connect();
  }

  scheduleReconnect() {
    if (this.stopped || !this.following()) {
      this.close();
      return;
    }
    if (this.failures >= this.pollAfterFailures) {
      if (this.state !== 'polling') {
        this.setState('polling');
        for (const jobId of this.jobs.keys()) this.poll(jobId);
        if (this.owner) this.pollOwner();
      }
    } else {
      this.setState('reconnecting');
    }
    const delay = backoffDelay(Math.max(0, this.failures - 1), this.backoff);
    this.timers.push(setTimeout(() => this.connect(), delay));
  }

  /** @param {string} jobId */
  async poll(jobId) {
    const job = this.jobs.get(jobId);
    if (!job || !job.statusUrl || this.state !== 'polling') return;
    let wait = 1000;
    try {
      // Chunks first, so a terminal snapshot finds them handed over.
      for (const name of Object.keys(job.next ?? {})) await this.pollStream(job, name);
      const res = await this.fetchImpl(job.statusUrl, { headers: this.authHeaders(job.token) });
      wait = retryAfterMs(res.headers.get('retry-after'), 2000);
      if (res.ok) this.deliver(await res.json());
    } catch {
      wait = 2000;
    }
    const still = this.jobs.get(jobId);
    if (still && this.state === 'polling') still.pollTimer = setTimeout(() => this.poll(jobId), wait);
  }

  /** Reads one stream's pages from its next index while polling. */
  async pollStream(job, name) {
    for (let pages = 0; pages < 20; pages += 1) {
      const url = `${job.statusUrl.replace(/\/$/, '')}/streams/${name}?from=${job.next[name]}`;
      const res = await this.fetchImpl(url, { headers: this.authHeaders(job.token) });
      if (!res.ok) return;
      const page = await res.json();
      this.chunks({ type: 'chunks', jobId: job.jobId, stream: name, from: page.from, chunks: page.chunks ?? [] });
      if (!page.chunks?.length || page.complete) return;
    }
  }

  /**
   * One `chunks` message: the chunks past the stream's next index go to its
   * handler; a message that starts beyond it (a gap) asks for a replay.
   */
  chunks(msg) {
    const job = this.jobs.get(msg.jobId);
    const handler = job?.streams?.[msg.stream];
    if (!job || !handler || !Array.isArray(msg.chunks)) return;
    const next = job.next[msg.stream] ?? 0;
    if (msg.from > next) {
      if (job.asked[msg.stream] !== next) {
        job.asked[msg.stream] = next;
        this.send({ action: 'replay', jobId: job.jobId, stream: msg.stream, from: next });
      }
      return;
    }
    const fresh = msg.chunks.slice(next - msg.from);
    if (fresh.length) {
      job.next[msg.stream] = next + fresh.length;
      handler(fresh, next);
    }
    if (job.final) this.settle(job);
  }

  /** Whether every chunk below the final snapshot's lengths was handed over. */
  caughtUp(job) {
    const lengths = job.final?.streams ?? {};
    return Object.keys(job.next ?? {}).every((name) => job.next[name] >= (lengths[name] ?? 0));
  }

  /** Lets a terminal job go once its streams are complete; asks for what is missing. */
  settle(job) {
    if (!this.caughtUp(job)) {
      const lengths = job.final.streams ?? {};
      for (const [name, next] of Object.entries(job.next ?? {})) {
        if (next < (lengths[name] ?? 0) && job.asked[name] !== next) {
          job.asked[name] = next;
          this.send({ action: 'replay', jobId: job.jobId, stream: name, from: next });
        }
      }
      return;
    }
    clearTimeout(job.pollTimer);
    this.jobs.delete(job.jobId);
    if (this.state === 'live') this.send({ action: 'unsubscribe', jobId: job.jobId });
    job.onComplete?.(job.final);
    if (!this.following()) this.close();
  }

  /** @param {string|null|undefined} token a job token, else the access token */
  authHeaders(token) {
    const h = { accept: 'application/json' };
    const bearer = token ?? this.accessToken;
    if (bearer) h.authorization = `Bearer ${bearer}`;
    return h;
  }

  /** While polling: the owner's unfinished jobs from GET /jobs. */
  async pollOwner() {
    const owner = this.owner;
    if (!owner || !owner.jobsUrl || this.state !== 'polling') return;
    let wait = 2000;
    try {
      const url = new URL(owner.jobsUrl, globalThis.location?.href);
      if (owner.tag) url.searchParams.set('tag', owner.tag);
      const res = await this.fetchImpl(url.toString(), { headers: this.authHeaders(null) });
      wait = retryAfterMs(res.headers.get('retry-after'), 2000);
      if (res.ok) {
        const page = await res.json();
        for (const job of page.jobs ?? []) if (!isTerminal(job.status) || this.jobs.has(job.jobId)) this.deliver(job);
      }
    } catch {
      wait = 2000;
    }
    if (this.owner === owner && this.state === 'polling') owner.pollTimer = setTimeout(() => this.pollOwner(), wait);
  }

  /** @param {Snapshot} snap */
  deliver(snap) {
    let job = this.jobs.get(snap.jobId);
    if (!job && this.owner) {
      // A job of the owner's, seen for the first time.
      job = { jobId: snap.jobId, token: null, statusUrl: undefined, onUpdate: this.owner.onUpdate, next: {}, asked: {}, final: null };
      this.jobs.set(snap.jobId, job);
      this.owner.onJob(snap);
    }
    if (!job || !this.tracker.apply(snap)) return;
    job.onUpdate(snap);
    if (isTerminal(snap.status)) {
      job.final = snap;
      this.settle(job);
    }
  }
}

/**
 * Follows one job as `POST /jobs` described it, on a connection of its own.
 * Returns a function that stops watching.
 *
 * @param {{jobId: string, token: string, websocketUrl: string, statusUrl?: string,
 *   onUpdate: (s: Snapshot) => void, onStateChange?: (s: ConnectionState) => void,
 *   streams?: Record<string, (chunks: unknown[], from: number) => void>,
 *   onComplete?: (s: Snapshot) => void, onError?: (e: {code: string, message: string}) => void}} opts
 */
export function watchJob(opts) {
  const client = new JobcastClient({ websocketUrl: opts.websocketUrl, onStateChange: opts.onStateChange });
  client.follow({
    jobId: opts.jobId,
    token: opts.token,
    statusUrl: opts.statusUrl,
    onUpdate: opts.onUpdate,
    streams: opts.streams,
    onComplete: opts.onComplete,
    onError: opts.onError,
  });
  return () => client.close();
}
