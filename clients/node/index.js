// Report the progress of a jobcast job from a Node worker (Node 18+, no
// dependencies: the global fetch).
//
//   import { Job } from '@jobcast/worker';
//   const job = Job.fromMessage(message);
//   await job.progress({ percent: 50, message: 'half way' });
//   await job.succeed({ url: 's3://bucket/out.csv' });
//
// With minIntervalMs, progress reported faster than that is merged and
// sent at most once per interval, the newest state last: fewer updates, so
// fewer pushes, invocations and table writes.
//
// What the job produces goes to its streams: `await job.append('tokens',
// 'Hel')` or `await job.log('resized 40/100')`. Chunks are gathered for
// chunkIntervalMs (100 by default) and sent together, with the next update
// when one goes out first, and always before the job ends; flush() sends
// at once.
//
// Files larger than a message go straight to storage: `await
// job.upload('report.csv', '/tmp/report.csv', { contentType: 'text/csv' })`
// asks jobcast where, then streams the file there; `await
// job.succeed(result, { files: ['report.csv'] })` attaches it and
// browsers get a download link.
//
// 429, 5xx and network errors are retried with exponential backoff,
// honouring Retry-After; any other 4xx is not. Once the job has ended
// (cancelled by its client, or expired) every call rejects with JobEnded,
// which carries the final snapshot: the signal to stop.

import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';

export const VERSION = '0.1.0';
const RETRYABLE = new Set([429, 500, 502, 503, 504]);
const REQUIRED = ['jobId', 'workerToken', 'updateUrl'];
const STREAM_NAME = /^[a-z][a-z0-9_-]{0,31}$/;
/** Chunks gathered up to this many bytes go out at once. */
const APPEND_SEND_BYTES = 48 * 1024;
/** The most bytes of chunks one update may carry. */
const APPEND_MAX_BYTES = 64 * 1024;
const chunkBytes = (chunk) => Buffer.byteLength(JSON.stringify(chunk) ?? 'null', 'utf8');

/** jobcast refused an update, or could not be reached after every retry. */
export class JobcastError extends Error {
  constructor(message, { status = null, problem = {} } = {}) {
    super(message);
    this.name = 'JobcastError';
    this.status = status;
    this.problem = problem ?? {};
    this.code = this.problem.code ?? null;
  }
}

/** The job has already ended (409 terminal); `snapshot` is its final state. */
export class JobEnded extends JobcastError {
  constructor(message, snapshot, problem) {
    super(message, { status: 409, problem });
    this.name = 'JobEnded';
    this.snapshot = snapshot;
  }

  get cancelled() {
    return this.snapshot?.status === 'cancelled';
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Job {
  #held = null;
  #pending = null;
  #pendingBytes = 0;
  #chunkTimer = null;
  #sentAt = null;
  #timer = null;
  #lateError = null;
  #endedError = null;
  // This worker's own terminal update was accepted: later calls go out at
  // once, to learn the final snapshot from jobcast's 409.
  #finished = false;
  // Calls on one job go out one at a time, held progress included.
  #chain = Promise.resolve();

  /**
   * @param {object} message a job message, as jobcast sends it
   * @param {object} [options] retries, timeoutMs, backoffMs, maxBackoffMs, minIntervalMs
   */
  constructor(message, options = {}) {
    this.id = message.jobId;
    this.kind = message.kind ?? null;
    this.input = message.input ?? null;
    this.attempt = Number(message.attempt ?? 1);
    this.heartbeatTimeoutSeconds = Number(message.heartbeatTimeoutSeconds ?? 0);
    this.createdAt = message.createdAt ?? null;
    this.updateUrl = message.updateUrl;
    this.retries = options.retries ?? 6;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.backoffMs = options.backoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    /** Milliseconds between two progress updates sent; 0 sends every call. */
    this.minIntervalMs = Math.max(Number(options.minIntervalMs ?? 0) || 0, 0);
    /** Milliseconds chunks are gathered before they go out (0: each call sends). */
    this.chunkIntervalMs = Math.max(Number(options.chunkIntervalMs ?? 100) || 0, 0);
    /** Each stream's length after the last update that appended to it. */
    this.streams = {};
    /** The last accepted {jobId, seq, status}, or the final snapshot once ended. */
    this.last = null;
    this.ended = false;
    this.cancelled = false;
    Object.defineProperty(this, 'token', { value: message.workerToken, enumerable: false });
    /**
     * The W3C trace context jobcast handed the job over in (when its traces
     * are on). Every update carries it back, so they join the trace its
     * POST /jobs began; start your own spans under it to join too.
     */
    this.traceparent = typeof message.traceparent === 'string' ? message.traceparent : null;
  }

  /**
   * A job from its message: an object, or its JSON text (an SQS body, stdin).
   * Throws a TypeError naming what is missing otherwise.
   */
  static fromMessage(message, options) {
    let m = message;
    if (typeof m === 'string' || m instanceof Uint8Array) {
      const text = typeof m === 'string' ? m : new TextDecoder().decode(m);
      try {
        m = JSON.parse(text);
      } catch (e) {
        throw new TypeError(`a job message is JSON, and this is not: ${e.message}`);
      }
    }
    if (m === null || typeof m !== 'object' || Array.isArray(m)) {
      throw new TypeError('a job message is a JSON object');
    }
    const missing = REQUIRED.filter((k) => typeof m[k] !== 'string' || m[k] === '');
    if (missing.length) {
      throw new TypeError(
        `not a jobcast job message: missing ${missing.join(', ')} ` +
          "(pass the whole message jobcast sent, e.g. an SQS record's body)",
      );
    }
    return new Job(m, options);
  }

  /** The job of a `command:` worker: JOBCAST_JOB, else standard input. */
  static async fromEnv(options) {
    if (process.env.JOBCAST_JOB) return Job.fromMessage(process.env.JOBCAST_JOB, options);
    const chunks = [];
    for await (const chunk of process.stdin) chunks.push(chunk);
    return Job.fromMessage(Buffer.concat(chunks).toString('utf8'), options);
  }

  /**
   * Reports progress (the job becomes running). An omitted message is cleared.
   * With minIntervalMs, a call less than that after the previous progress
   * sent is held and resolves to null: the newest held progress goes out
   * when the interval is up, or with flush(), heartbeat() or the job's end.
   * An error that sending it met rejects the next call.
   */
  async progress({ percent, message } = {}) {
    const body = { status: 'running' };
    if (percent !== undefined && percent !== null) body.percent = percent;
    if (message !== undefined && message !== null) body.message = message;
    this.#raiseLate();
    if (this.#held && body.percent === undefined && this.#held.percent !== undefined) {
      body.percent = this.#held.percent;
    }
    const now = performance.now();
    const wait = this.#sentAt === null ? 0 : this.#sentAt + this.minIntervalMs - now;
    if (wait <= 0 || this.#finished) {
      this.#dropHeld();
      this.#sentAt = now;
      return this.#serial(() => this.#send(body));
    }
    this.#held = body;
    this.#timer ??= setTimeout(() => this.#sendHeld(), wait);
    return null;
  }

  /**
   * Adds chunks (one, or an array of them: any JSON) to one of the job's
   * streams. They go out within chunkIntervalMs, with the next update if one
   * is sent first, and always before the job ends. An error that sending
   * them met rejects the next call.
   */
  async append(stream, chunks) {
    if (typeof stream !== 'string' || !STREAM_NAME.test(stream)) {
      throw new TypeError(`'${stream}' is not a stream name: [a-z][a-z0-9_-]{0,31}`);
    }
    const items = Array.isArray(chunks) ? chunks : [chunks];
    if (items.length === 0) return;
    const sizes = items.map(chunkBytes);
    if (Math.max(...sizes) > APPEND_MAX_BYTES) {
      throw new TypeError(`a chunk is at most ${APPEND_MAX_BYTES} bytes of JSON`);
    }
    this.#raiseLate();
    const sends = [];
    items.forEach((chunk, i) => {
      if (this.#pendingBytes + sizes[i] > APPEND_MAX_BYTES) sends.push(this.#sendPending());
      this.#pending ??= {};
      (this.#pending[stream] ??= []).push(chunk);
      this.#pendingBytes += sizes[i];
    });
    if (this.#pendingBytes >= APPEND_SEND_BYTES || this.chunkIntervalMs === 0) {
      sends.push(this.#sendPending());
    } else {
      this.#chunkTimer ??= setTimeout(() => {
        this.#chunkTimer = null;
        this.#sendPending().catch((e) => {
          this.#lateError = e;
        });
      }, this.chunkIntervalMs);
    }
    await Promise.all(sends);
  }

  /** Adds one line to the job's `log` stream (`append('log', line)`). */
  async log(line) {
    return this.append('log', String(line));
  }

  /** Sends held progress and gathered chunks now; null when nothing is held. */
  async flush() {
    this.#raiseLate();
    const body = this.#dropHeld();
    if (!body) {
      if (!this.#pending) return null;
      return this.#serial(() => this.#send({}));
    }
    this.#sentAt = performance.now();
    return this.#serial(() => this.#send(body));
  }

  /**
   * Tells jobcast the worker is alive, without a new snapshot (held progress,
   * if any, goes out instead: it counts as a heartbeat too).
   */
  async heartbeat() {
    if (this.#held) return this.flush();
    return this.#serial(() => this.#send({}));
  }

  /** Where this job's uploads are asked for: beside its update URL. */
  get filesUrl() {
    return this.updateUrl.replace(/\/+$/, '').replace(/\/updates$/, '') + '/files';
  }

  /**
   * Uploads a file of the job: `data` is a Buffer / Uint8Array / string of
   * bytes, or `{ path }` for a file streamed from disk (never read whole).
   * Asks jobcast where, then sends it there, both retried like an update.
   * Attach it with `succeed(result, { files: [name] })`.
   */
  async upload(name, data, { contentType } = {}) {
    const path = data && typeof data === 'object' && typeof data.path === 'string' ? data.path : null;
    const bytes = path === null ? (typeof data === 'string' ? Buffer.from(data) : data) : null;
    const size = path === null ? bytes.byteLength : (await stat(path)).size;
    const type = contentType ?? 'application/octet-stream';
    const what = `upload of ${name} for job ${this.id}`;
    const ask = JSON.stringify({ name, contentType: type, size });
    const answer = await this.#call(this.filesUrl, 'POST', { 'content-type': 'application/json' }, () => ask, what, true);
    const headers = { ...(answer.headers ?? {}), 'content-length': String(size) };
    const body = () => (path === null ? bytes : Readable.toWeb(createReadStream(path)));
    await this.#call(answer.uploadUrl, answer.method ?? 'PUT', headers, body, what, false);
    return { name, size, contentType: type };
  }

  /**
   * Ends the job succeeded (percent 100), with an optional result; the
   * second argument is a message, or `{ message, files }` where files are
   * names of uploaded files it attaches.
   */
  async succeed(result, options) {
    const { message, files } = typeof options === 'string' ? { message: options } : (options ?? {});
    const body = { status: 'succeeded' };
    if (result !== undefined && result !== null) body.result = result;
    if (message !== undefined && message !== null) body.message = message;
    if (files?.length) body.files = files.map((f) => (typeof f === 'string' ? f : f.name));
    this.#dropHeld();
    return this.#serial(() => this.#send(body));
  }

  /** Ends the job failed with error {code, message} (at the percent of any progress still held). */
  async fail(code, message) {
    const body = { status: 'failed', message, error: { code, message } };
    const held = this.#dropHeld();
    if (held?.percent !== undefined) body.percent = held.percent;
    return this.#serial(() => this.#send(body));
  }

  /**
   * Heartbeats every `everyMs` (a third of the timeout by default) until the
   * returned function is called; does nothing when liveness is off.
   */
  keepAlive(everyMs) {
    const interval = everyMs ?? (this.heartbeatTimeoutSeconds * 1000) / 3;
    if (!interval || interval <= 0) return () => {};
    const timer = setInterval(() => {
      this.heartbeat().catch(() => clearInterval(timer));
    }, interval);
    timer.unref?.();
    return () => clearInterval(timer);
  }

  /** Takes the held progress and stops its timer. */
  #dropHeld() {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const body = this.#held;
    this.#held = null;
    return body;
  }

  /** The timer's end: sends what is held, keeping an error for the next call. */
  #sendHeld() {
    this.#timer = null;
    const body = this.#held;
    this.#held = null;
    if (!body) return;
    this.#sentAt = performance.now();
    this.#serial(() => this.#send(body)).catch((e) => {
      this.#lateError = e;
    });
  }

  /** Sends the gathered chunks (alone, unless an update takes them first). */
  #sendPending() {
    return this.#serial(() => (this.#pending ? this.#send({}) : null));
  }

  /** Takes the gathered chunks and stops their timer. */
  #takePending() {
    if (this.#chunkTimer) clearTimeout(this.#chunkTimer);
    this.#chunkTimer = null;
    const pending = this.#pending;
    this.#pending = null;
    this.#pendingBytes = 0;
    return pending;
  }

  #raiseLate() {
    if (this.#endedError) throw this.#endedError;
    const e = this.#lateError;
    this.#lateError = null;
    if (e) throw e;
  }

  #serial(fn) {
    const sent = this.#chain.then(fn);
    this.#chain = sent.catch(() => {});
    return sent;
  }

  async #send(body) {
    // Gathered chunks go with whatever is sent (before it, on the server).
    const pending = this.#takePending();
    const data = JSON.stringify(pending ? { ...body, append: pending } : body);
    for (let attempt = 0; ; attempt += 1) {
      const { status, headers, answer, reason } = await this.#post(data);
      if (status === 200) {
        this.last = answer ?? {};
        Object.assign(this.streams, this.last.streams ?? {});
        if (['succeeded', 'failed', 'cancelled'].includes(this.last.status)) this.#finished = true;
        return this.last;
      }
      if (status === 409 && answer?.code === 'terminal') {
        const snapshot = answer.snapshot ?? {};
        this.last = snapshot;
        this.ended = true;
        this.cancelled = snapshot.status === 'cancelled';
        this.#endedError = new JobEnded(`job ${this.id} already ended ${snapshot.status ?? ''}`.trim(), snapshot, answer);
        throw this.#endedError;
      }
      const retryable = status === null || RETRYABLE.has(status);
      if (!retryable || attempt >= this.retries) {
        const problem = answer && typeof answer === 'object' ? answer : {};
        const where = status === null ? 'unreachable' : String(status);
        throw new JobcastError(`update of job ${this.id} refused (${where}): ${problem.detail ?? reason}`, {
          status,
          problem,
        });
      }
      await sleep(this.#delay(attempt, headers));
    }
  }

  /** One request retried like an update; `body()` gives a fresh body per attempt. */
  async #call(url, method, headers, body, what, auth) {
    for (let attempt = 0; ; attempt += 1) {
      let status = null;
      let answerHeaders = null;
      let answer = null;
      let reason = '';
      try {
        const payload = body();
        const res = await fetch(url, {
          method,
          headers: {
            ...headers,
            ...(auth ? { authorization: `Bearer ${this.token}` } : {}),
            ...(auth && this.traceparent ? { traceparent: this.traceparent } : {}),
            'user-agent': `jobcast-worker-node/${VERSION}`,
          },
          body: payload,
          ...(payload instanceof ReadableStream ? { duplex: 'half' } : {}),
        });
        status = res.status;
        answerHeaders = res.headers;
        reason = res.statusText;
        const text = await res.text();
        try {
          answer = text ? JSON.parse(text) : null;
        } catch {
          answer = null;
        }
      } catch (e) {
        reason = e.cause?.message ?? e.message;
      }
      if (status !== null && status >= 200 && status < 300) return answer ?? {};
      if (status === 409 && answer?.code === 'terminal') {
        this.ended = true;
        this.#endedError = new JobEnded(`job ${this.id} already ended`, answer.snapshot ?? {}, answer);
        throw this.#endedError;
      }
      const retryable = status === null || RETRYABLE.has(status);
      if (!retryable || attempt >= this.retries) {
        const problem = answer && typeof answer === 'object' ? answer : {};
        const where = status === null ? 'unreachable' : String(status);
        throw new JobcastError(`${what} refused (${where}): ${problem.detail ?? reason}`, { status, problem });
      }
      await sleep(this.#delay(attempt, answerHeaders));
    }
  }

  #delay(attempt, headers) {
    const retryAfter = Number.parseFloat(headers?.get?.('retry-after') ?? '');
    if (Number.isFinite(retryAfter)) {
      return Math.min(Math.max(retryAfter * 1000, 0), this.maxBackoffMs);
    }
    const ceiling = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  async #post(data) {
    try {
      const res = await fetch(this.updateUrl, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${this.token}`,
          'content-type': 'application/json',
          'user-agent': `jobcast-worker-node/${VERSION}`,
          ...(this.traceparent ? { traceparent: this.traceparent } : {}),
        },
        body: data,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      const text = await res.text();
      let answer = null;
      try {
        answer = text ? JSON.parse(text) : null;
      } catch {
        answer = null;
      }
      return { status: res.status, headers: res.headers, answer, reason: res.statusText };
    } catch (e) {
      return { status: null, headers: null, answer: null, reason: e.cause?.message ?? e.message };
    }
  }
}
