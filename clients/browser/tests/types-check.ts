// Compiled by types.test.mjs with `tsc --noEmit --strict`: how an app uses
// the package's types, and misuses they must refuse.
import { JobcastClient, isTerminal, watchJob, type Snapshot } from '@jobcast/client';
import { useJob, useJobs, type JobView } from '@jobcast/client/react';

const client = new JobcastClient({ websocketUrl: 'wss://example/prod', backoff: { baseMs: 250 } });
client.follow({
  jobId: 'job_1',
  token: 't',
  onUpdate: (s: Snapshot) => console.log(s.percent.toFixed(0), s.status, s.files?.[0]?.url),
  streams: { log: (chunks, from) => console.log(chunks.length + from) },
  onComplete: (s) => console.log(isTerminal(s.status)),
  onError: (e) => console.log(e.code),
});
client.resume();
const stop: () => void = watchJob({ jobId: 'j', token: 't', websocketUrl: 'ws://x/dev', onUpdate: () => {} });
stop();

export function view(): JobView {
  const v = useJob({ jobId: 'j', token: 't', websocketUrl: 'ws://x/dev' }, { streams: ['log'], onComplete: (s, streams) => streams.log.length + s.seq });
  const none = useJob(null);
  const all = useJobs({ websocketUrl: 'ws://x/dev', accessToken: 'jwt', tag: 'export' });
  console.log(none.state === 'idle', all.jobs.map((j) => j.jobId), v.done, v.streams.log);
  return v;
}

// @ts-expect-error a job needs its id
new JobcastClient({ websocketUrl: 'x' }).follow({ token: 't', onUpdate: () => {} });
// @ts-expect-error there is no such state
export const wrong: JobView['state'] = 'finished';
// @ts-expect-error useJob takes a job, not an id
useJob('job_1');
