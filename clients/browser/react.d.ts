// Types of @jobcast/client/react (react.js).
import type { ClientOptions, ServerError, Snapshot } from './index.js';

export type JobState = 'idle' | 'connecting' | 'live' | 'reconnecting' | 'polling' | 'done' | 'error';

/** A job as `POST /jobs` answered it, with where to follow it. */
export interface JobRef {
  jobId: string;
  /** The job's client token, as `POST /jobs` answered it. */
  token: string;
  websocketUrl: string;
  /** GET /jobs/{id}, polled while the WebSocket cannot connect. */
  statusUrl?: string;
  /** The user's sign-in JWT, where owners are configured: sent at connect. */
  accessToken?: string;
}

export interface UseJobOptions {
  /** Streams to collect, each from its first chunk. */
  streams?: string[];
  /** Once: the terminal snapshot and every stream above, complete. */
  onComplete?: (snapshot: Snapshot, streams: Record<string, unknown[]>) => void;
  /** More options of the underlying client (backoff, pingIntervalMs, …), read when it connects. */
  client?: Partial<Omit<ClientOptions, 'websocketUrl' | 'accessToken'>>;
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
}

export interface JobView {
  /** The newest snapshot of this job; null before the first (never another job's). */
  snapshot: Snapshot | null;
  state: JobState;
  /** Each requested stream's chunks so far, in order, each once. */
  streams: Record<string, unknown[]>;
  error: ServerError | null;
  /** The job ended and every requested stream is complete: nothing more will come. */
  done: boolean;
}

/** Follows one job; null or undefined follows none (state `idle`). */
export function useJob(job: JobRef | null | undefined, options?: UseJobOptions): JobView;

export interface UseJobsOptions {
  websocketUrl: string;
  /** The user's sign-in JWT. */
  accessToken: string;
  tag?: string;
  /** GET /jobs, polled while the WebSocket cannot connect. */
  jobsUrl?: string;
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
}

/** Follows every job of the signed-in user; null or undefined follows none. */
export function useJobs(opts: UseJobsOptions | null | undefined): {
  /** The most recently seen first, each at its newest snapshot. */
  jobs: Snapshot[];
  state: JobState;
  error: ServerError | null;
};
