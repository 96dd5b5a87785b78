// The page the React tests drive: <Job> uses useJob under StrictMode, and
// window.app lets the test mount, unmount and switch jobs. Every render is
// logged with the job it was given and the snapshot it showed.
import { StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { useJob, useJobs } from '@jobcast/client/react';

window.renders = [];
window.completions = [];

function Job({ job, options }) {
  const view = useJob(job, {
    ...options,
    onComplete: (s, streams) => window.completions.push({ jobId: s.jobId, status: s.status, log: streams.log }),
  });
  window.renders.push({ job: job?.jobId ?? null, shown: view.snapshot?.jobId ?? null, seq: view.snapshot?.seq ?? 0 });
  const s = view.snapshot;
  return (
    <section
      id="job"
      data-state={view.state}
      data-job={s?.jobId ?? ''}
      data-seq={s?.seq ?? 0}
      data-status={s?.status ?? ''}
      data-percent={s?.percent ?? ''}
      data-done={String(view.done)}
      data-error={view.error?.code ?? ''}
      data-log={(view.streams.log ?? []).join('|')}
    >
      <progress max="100" value={s?.percent ?? 0} />
      <span>{s?.message ?? ''}</span>
    </section>
  );
}

function Jobs({ opts }) {
  const { jobs, state } = useJobs(opts);
  return (
    <ul id="jobs" data-state={state}>
      {jobs.map((j) => (
        <li key={j.jobId} data-job={j.jobId} data-status={j.status} data-percent={j.percent} />
      ))}
    </ul>
  );
}

function App() {
  const [job, setJob] = useState(null);
  const [options, setOptions] = useState({ streams: ['log'] });
  const [mounted, setMounted] = useState(true);
  const [owner, setOwner] = useState(null);
  window.app = { setJob, setOptions, setMounted, setOwner };
  return (
    <StrictMode>
      {mounted && <Job job={job} options={options} />}
      {owner && <Jobs opts={owner} />}
    </StrictMode>
  );
}

createRoot(document.getElementById('root')).render(<App />);
