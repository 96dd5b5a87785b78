// Types of @jobcast/client (index.js).

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** A file attached to a job, its download URL presigned when sent or read. */
export interface JobFile {
  name: string;
  size: number;
  contentType?: string;
  /** A GET URL valid until `expiresAt`; ask for the job again for a fresh one. */
  url: string;
  expiresAt: string;
}

/** A job's whole state: every progress message is one. */
export interface Snapshot {
  type: 'progress';
  jobId: string;
  /** Grows by one per accepted update; a lower one is never applied. */
  seq: number;
  status: JobStatus;
  percent: number;
  message: string | null;
  result: unknown;
  error: { code: string; message: string } | null;
  updatedAt: string;
  /** Each stream's length when the snapshot was read. */
  streams?: Record<string, number>;
  files?: JobFile[];
}

export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'polling' | 'closed';

/** The server's refusal of a job or of the user's token. */
export interface ServerError {
  code: string;
  message: string;
}

/** What `follow` takes: the job as `POST /jobs` answered, and handlers. */
export interface FollowedJob {
  jobId: string;
  token: string;
  /** GET /jobs/{id}, polled while the WebSocket cannot connect. */
  statusUrl?: string;
  onUpdate: (snapshot: Snapshot) => void;
  /** Stream name → handler of each run of new chunks, with the index of the first. */
  streams?: Record<string, (chunks: unknown[], from: number) => void>;
  /** Once: the terminal snapshot, after every followed stream was handed over. */
  onComplete?: (snapshot: Snapshot) => void;
  /** The server refused the job (`forbidden`, `not_found`); it is no longer followed. */
  onError?: (error: ServerError) => void;
}

export interface ClientOptions {
  /** Base URL with the stage, e.g. wss://abc.execute-api.eu-west-1.amazonaws.com/prod */
  websocketUrl: string;
  onStateChange?: (state: ConnectionState) => void;
  /** Keep-alive ping (default 5 min, under API Gateway's 10 min idle limit). */
  pingIntervalMs?: number;
  /** Reconnect before this (default 1 h 55 min, under the 2 h limit). */
  maxLifetimeMs?: number;
  /** A connection up this long resets the backoff (default 10 s). */
  stableAfterMs?: number;
  /** Failed connects before polling starts (default 2). */
  pollAfterFailures?: number;
  backoff?: { baseMs?: number; capMs?: number };
  /** The user's sign-in JWT (owners): the subprotocol pair `jobcast, <JWT>` at connect, the bearer when polling. */
  accessToken?: string | null;
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
}

export interface OwnerOptions {
  tag?: string;
  /** GET /jobs, polled while the WebSocket cannot connect. */
  jobsUrl?: string;
  onJob?: (snapshot: Snapshot) => void;
  onUpdate: (snapshot: Snapshot) => void;
  onError?: (error: ServerError) => void;
}

/** Follows several jobs over one WebSocket connection. */
export class JobcastClient {
  constructor(opts: ClientOptions);
  readonly state: ConnectionState;
  follow(job: FollowedJob): void;
  followOwner(opts: OwnerOptions): void;
  unfollow(jobId: string): void;
  following(): boolean;
  /** Catches up now: reconnects at once if waiting to, else asks for the current state. */
  resume(): void;
  /** Stops everything. */
  close(): void;
}

/** Keeps the newest snapshot per job; `apply` is false for one not newer than the last. */
export class SnapshotTracker {
  apply(snapshot: Snapshot): boolean;
  get(jobId: string): Snapshot | undefined;
}

export const TERMINAL: readonly ['succeeded', 'failed', 'cancelled'];
export function isTerminal(status: JobStatus | string): boolean;
/** Full-jitter exponential backoff: a random delay in [0, min(cap, base · 2^attempt)]. */
export function backoffDelay(attempt: number, opts?: { baseMs?: number; capMs?: number; random?: () => number }): number;
/** Retry-After (seconds or an HTTP date) in milliseconds. */
export function retryAfterMs(value: string | null, fallbackMs?: number): number;

/** Follows one job on a connection of its own; returns a function that stops. */
export function watchJob(opts: {
  jobId: string;
  token: string;
  websocketUrl: string;
  statusUrl?: string;
  onUpdate: (snapshot: Snapshot) => void;
  onStateChange?: (state: ConnectionState) => void;
  streams?: Record<string, (chunks: unknown[], from: number) => void>;
  onComplete?: (snapshot: Snapshot) => void;
  onError?: (error: ServerError) => void;
}): () => void;
