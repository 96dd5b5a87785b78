/** A job message, as jobcast hands it to a worker. */
export interface JobMessage {
  type: 'job';
  jobId: string;
  kind: string;
  input: unknown;
  createdAt: string;
  attempt: number;
  workerToken: string;
  updateUrl: string;
  heartbeatTimeoutSeconds: number;
  /** W3C trace context of the hand-over, when jobcast's traces are on. */
  traceparent?: string;
}

/** What jobcast answers to an accepted update. */
export interface Accepted {
  jobId: string;
  seq: number;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  /** With chunks, each of their streams' length after them. */
  streams?: Record<string, number>;
}

/** A progress snapshot, as GET /jobs/{id} shows it. */
export interface Snapshot {
  type: 'progress';
  jobId: string;
  seq: number;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  percent: number;
  message?: string | null;
  result?: unknown;
  error?: { code: string; message: string } | null;
  updatedAt: string;
  [key: string]: unknown;
}

export interface JobOptions {
  /** Retries of 429, 5xx and network errors (default 6). */
  retries?: number;
  /** Per request (default 30000). */
  timeoutMs?: number;
  /** First backoff (default 500); doubles each retry, with jitter. */
  backoffMs?: number;
  /** Longest wait between tries, Retry-After included (default 30000). */
  maxBackoffMs?: number;
  /**
   * Milliseconds between two progress updates sent (default 0: every call).
   * Faster progress is held, merged, and sent when the interval is up.
   */
  minIntervalMs?: number;
  /**
   * Milliseconds chunks are gathered before they go out (default 100; 0:
   * each call sends). They go with the next update if one is sent first.
   */
  chunkIntervalMs?: number;
}

export const VERSION: string;

/** jobcast refused an update, or could not be reached after every retry. */
export class JobcastError extends Error {
  /** HTTP status; null when jobcast was unreachable. */
  status: number | null;
  /** The RFC 9457 problem document jobcast answered with. */
  problem: Record<string, unknown>;
  code: string | null;
}

/** The job has already ended (409 terminal). */
export class JobEnded extends JobcastError {
  snapshot: Snapshot;
  readonly cancelled: boolean;
}

export class Job {
  constructor(message: JobMessage, options?: JobOptions);
  static fromMessage(message: JobMessage | string | Uint8Array, options?: JobOptions): Job;
  static fromEnv(options?: JobOptions): Promise<Job>;
  readonly id: string;
  readonly kind: string | null;
  readonly input: any;
  readonly attempt: number;
  readonly heartbeatTimeoutSeconds: number;
  readonly createdAt: string | null;
  readonly updateUrl: string;
  /** The W3C trace context of the hand-over (jobcast's traces on); sent back with every update. */
  readonly traceparent: string | null;
  last: Accepted | Snapshot | null;
  /** True once a call learned that the job had ended. */
  ended: boolean;
  /** True once a call learned that the job was cancelled. */
  cancelled: boolean;
  readonly minIntervalMs: number;
  /** Resolves to null when held by minIntervalMs. */
  progress(update?: { percent?: number; message?: string }): Promise<Accepted | null>;
  /** Sends held progress now; null when nothing is held. */
  flush(): Promise<Accepted | null>;
  /** Each stream's length after the last update that appended to it. */
  streams: Record<string, number>;
  /** Adds chunks (one, or an array: any JSON) to a stream; sent within chunkIntervalMs. */
  append(stream: string, chunks: unknown): Promise<void>;
  /** Adds one line to the `log` stream. */
  log(line: string): Promise<void>;
  heartbeat(): Promise<Accepted>;
  /** Where this job's uploads are asked for (beside its update URL). */
  readonly filesUrl: string;
  /** Uploads a file: bytes, or `{ path }` streamed from disk; attach it with succeed(…, { files }). */
  upload(
    name: string,
    data: Uint8Array | string | { path: string },
    options?: { contentType?: string },
  ): Promise<{ name: string; size: number; contentType: string }>;
  succeed(
    result?: unknown,
    options?: string | { message?: string; files?: Array<string | { name: string }> },
  ): Promise<Accepted>;
  fail(code: string, message: string): Promise<Accepted>;
  /** Heartbeats in the background until the returned function is called. */
  keepAlive(everyMs?: number): () => void;
}
