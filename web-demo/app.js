// The demo page: starts jobs (the demo kind, or one of your own) through the
// jobs API and follows them all over one WebSocket with jobcast-client.js.
// Signed in (a server with owners on), it lists the user's jobs and follows
// everything they own, so a job started elsewhere appears live.
import { JobcastClient, isTerminal } from './jobcast-client.js';

const jobsList = document.getElementById('jobs');
const template = document.getElementById('job-template');
const formError = document.getElementById('form-error');
const connection = document.getElementById('connection');

/** @type {JobcastClient|null} */
let client = null;
/** Rows by job id. */
const views = new Map();

// The signed-in user's JWT, for this tab's session.
const TOKEN = 'jobcast-demo-token';
let accessToken = null;
try {
  accessToken = sessionStorage.getItem(TOKEN);
} catch {
  accessToken = null;
}

/** The `sub` a JWT names (read only for display; the server verifies). */
function subjectOf(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part)).sub ?? '?';
  } catch {
    return '?';
  }
}

// "closed" only means no job is being followed: say so.
const STATE_TEXT = { closed: 'idle', connecting: 'connecting', live: 'live', reconnecting: 'reconnecting', polling: 'polling' };

function showState(state) {
  connection.textContent = STATE_TEXT[state] ?? state;
  connection.dataset.state = state;
}
showState('closed');

// The jobs this tab started, kept for the tab's session so a reload
// follows them again.
const SAVED = 'jobcast-demo-jobs';
function savedJobs() {
  try {
    const v = JSON.parse(sessionStorage.getItem(SAVED) ?? '[]');
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}
function saveJob(job) {
  try {
    const jobs = savedJobs().filter((j) => j.jobId !== job.jobId);
    jobs.push(job);
    sessionStorage.setItem(SAVED, JSON.stringify(jobs.slice(-50)));
  } catch {
    // Storage full or disabled: the page still works, it only forgets on reload.
  }
}

function render(view, snap) {
  const pct = Math.max(0, Math.min(100, snap.percent));
  view.bar.setAttribute('aria-valuenow', String(Math.round(pct)));
  view.bar.setAttribute('aria-valuetext', `${pct.toFixed(0)}% ${snap.status}`);
  view.fill.style.width = `${pct}%`;
  view.pct.textContent = `${pct.toFixed(0)}%`;
  view.badge.textContent = snap.status;
  view.badge.dataset.status = snap.status;
  view.message.textContent = snap.message ?? '';
  if (snap.files?.length) showFiles(view, snap.files);
  if (isTerminal(snap.status)) {
    view.done = true;
    view.cancel.disabled = true;
    view.node.dataset.status = snap.status;
    const outcome = snap.status === 'succeeded' ? snap.result : snap.error;
    if (outcome) {
      view.outcome.hidden = false;
      view.outcome.textContent = JSON.stringify(outcome, null, 2);
    }
  }
}

/** A byte count as people read it. */
function humanSize(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/**
 * The job's files as download links. Each snapshot brings fresh URLs; a
 * link clicked after its URL expired asks the job again for a new one.
 */
function showFiles(view, files) {
  view.files.hidden = false;
  view.files.replaceChildren(
    ...files.map((f) => {
      const li = document.createElement('li');
      const a = document.createElement('a');
      a.href = f.url;
      a.textContent = f.name;
      a.setAttribute('download', f.name);
      a.addEventListener('click', async (ev) => {
        if (Date.parse(f.expiresAt) > Date.now() + 5000) return;
        ev.preventDefault();
        const res = await fetch(view.statusUrl, { headers: authHeaders(view.token ? { Authorization: `Bearer ${view.token}` } : {}) });
        const fresh = res.ok ? (await res.json()).files?.find((x) => x.name === f.name) : null;
        if (fresh) location.assign(fresh.url);
      });
      const size = document.createElement('span');
      size.className = 'size';
      size.textContent = humanSize(f.size);
      li.append(a, size);
      return li;
    }),
  );
}

function showError(text) {
  formError.textContent = text;
  formError.hidden = false;
}

function authHeaders(extra = {}) {
  return accessToken ? { ...extra, Authorization: `Bearer ${accessToken}` } : extra;
}

document.getElementById('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const token = String(new FormData(ev.target).get('token') ?? '').trim();
  if (token) signIn(token);
});

document.getElementById('signout').addEventListener('click', () => {
  try {
    sessionStorage.removeItem(TOKEN);
  } catch {
    // Nothing kept.
  }
  location.reload();
});

/** Lists the user's jobs and follows everything they own. */
async function signIn(token) {
  formError.hidden = true;
  let res;
  try {
    res = await fetch('/jobs?limit=20', { headers: { Authorization: `Bearer ${token}` } });
  } catch {
    showError('The jobs API cannot be reached.');
    return;
  }
  const body = await res.json().catch(() => ({}));
  if (res.status === 404) {
    showError('This server has owners off: start it with --dev-tokens (or --jwt-issuer) to sign in.');
    return;
  }
  if (res.status !== 200) {
    showError(`Sign-in refused: ${body.detail ?? res.status}`);
    return;
  }
  accessToken = token;
  try {
    sessionStorage.setItem(TOKEN, token);
  } catch {
    // The page still works; a reload asks again.
  }
  document.getElementById('signin-form').hidden = true;
  document.getElementById('who-name').textContent = subjectOf(token);
  document.getElementById('who').hidden = false;
  // Oldest first, so the newest ends on top.
  for (const job of [...body.jobs].reverse()) {
    render(addRow(job.jobId, { statusUrl: `/jobs/${job.jobId}`, started: Date.parse(job.createdAt) }), job);
  }
  if (client) client.close();
  client = new JobcastClient({ websocketUrl: body.websocketUrl, accessToken: token, onStateChange: showState });
  client.followOwner({
    jobsUrl: '/jobs',
    onJob: (snap) => addRow(snap.jobId, { statusUrl: `/jobs/${snap.jobId}` }),
    onUpdate: (snap) => {
      const view = views.get(snap.jobId);
      if (view) render(view, snap);
    },
    onError: (e) => showError(e.message),
  });
}

document.getElementById('start').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const data = new FormData(ev.target);
  const input = { steps: Number(data.get('steps')), stepMs: Number(data.get('stepMs')) };
  if (data.get('failAt')) input.failAt = Number(data.get('failAt'));
  start('demo', input);
});

document.getElementById('start-own').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const data = new FormData(ev.target);
  let input;
  try {
    input = JSON.parse(String(data.get('input') || '{}'));
  } catch (e) {
    showError(`The input is not JSON: ${e.message}`);
    return;
  }
  start(String(data.get('kind')).trim(), input);
});

/** Starts a job through the jobs API and follows it. */
async function start(kind, input) {
  formError.hidden = true;
  let res;
  try {
    res = await fetch('/jobs', {
      method: 'POST',
      headers: authHeaders({ 'Content-Type': 'application/json' }),
      body: JSON.stringify({ kind, input }),
    });
  } catch {
    showError('The jobs API cannot be reached.');
    return;
  }
  const body = await res.json();
  if (res.status !== 202) {
    showError(body.detail ?? 'The job could not be started.');
    return;
  }
  if (accessToken) {
    // Following the owner brings its progress (perhaps before this answer).
    addRow(body.jobId, { statusUrl: body.statusUrl });
    return;
  }
  const job = {
    jobId: body.jobId,
    token: body.token,
    statusUrl: body.statusUrl,
    websocketUrl: body.websocketUrl,
    started: Date.now(),
  };
  saveJob(job);
  show(job);
}

/** Adds a job's row and follows it by its job token. */
function show(body) {
  addRow(body.jobId, body);
  if (!client || client.state === 'closed') {
    client = new JobcastClient({ websocketUrl: body.websocketUrl, onStateChange: showState });
  }
  client.follow({
    jobId: body.jobId,
    token: body.token,
    statusUrl: body.statusUrl,
    onUpdate: (snap) => render(views.get(body.jobId), snap),
    // What the job produces, as it comes: the demo kind's `log` and a
    // model's `tokens`, from the start after a reload too.
    streams: {
      log: (chunks) => output(views.get(body.jobId), chunks.map((c) => `${c}\n`)),
      tokens: (chunks) => output(views.get(body.jobId), chunks.map(String)),
    },
  });
}

/** Adds text to a job's output, under its bar. */
function output(view, pieces) {
  if (!view || pieces.length === 0) return;
  view.log.hidden = false;
  view.log.textContent += pieces.join('');
  view.log.scrollTop = view.log.scrollHeight;
}

/**
 * A job's row, made once: cancelled with its job token, or signed in with
 * the owner's.
 * @param {string} jobId
 * @param {{statusUrl: string, token?: string, started?: number}} body
 */
function addRow(jobId, body) {
  const existing = views.get(jobId);
  if (existing) return existing;
  const node = template.content.firstElementChild.cloneNode(true);
  const view = {
    node, done: false, started: body.started ?? Date.now(),
    bar: node.querySelector('.bar'), fill: node.querySelector('.fill'),
    pct: node.querySelector('.percent'), badge: node.querySelector('.badge'),
    message: node.querySelector('.message'), outcome: node.querySelector('.outcome'),
    log: node.querySelector('.log'),
    files: node.querySelector('.files'),
    cancel: node.querySelector('.cancel'),
    statusUrl: body.statusUrl,
    token: body.token,
  };
  node.dataset.jobId = jobId;
  node.querySelector('.job-id').textContent = jobId;
  view.bar.setAttribute('aria-label', `Progress of ${jobId}`);
  view.cancel.setAttribute('aria-label', `Cancel ${jobId}`);
  const elapsed = node.querySelector('.elapsed');
  const tick = setInterval(() => {
    elapsed.textContent = `${((Date.now() - view.started) / 1000).toFixed(1)} s`;
    if (view.done) clearInterval(tick);
  }, 100);
  view.cancel.addEventListener('click', async () => {
    view.cancel.disabled = true;
    await fetch(body.statusUrl, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${body.token ?? accessToken}` },
    });
  });
  jobsList.prepend(node);
  views.set(jobId, view);
  return view;
}

// After a reload: signed in, the user's jobs from the server; otherwise the
// tab's own jobs again, each from its current snapshot.
if (accessToken) signIn(accessToken);
else for (const job of savedJobs()) show(job);
