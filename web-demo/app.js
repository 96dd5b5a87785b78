// The demo page: starts demo jobs through the jobs API and follows each one
// over its WebSocket, falling back to polling GET /jobs/{id}.
const jobsList = document.getElementById('jobs');
const template = document.getElementById('job-template');
const formError = document.getElementById('form-error');

function render(view, snap) {
  if (snap.seq <= view.seq) return; // stale or duplicate: never move backwards
  view.seq = snap.seq;
  const pct = Math.max(view.percent, snap.percent);
  view.percent = pct;
  view.bar.setAttribute('aria-valuenow', String(Math.round(pct)));
  view.fill.style.width = `${pct}%`;
  view.pct.textContent = `${pct.toFixed(0)}%`;
  view.badge.textContent = snap.status;
  view.badge.dataset.status = snap.status;
  view.message.textContent = snap.message ?? '';
  if (['succeeded', 'failed', 'cancelled'].includes(snap.status)) {
    view.done = true;
    view.cancel.disabled = true;
    const outcome = snap.result ?? snap.error;
    if (outcome) {
      view.outcome.hidden = false;
      view.outcome.textContent = JSON.stringify(outcome, null, 2);
    }
    view.ws?.close(1000);
  }
}

function follow(view, accepted) {
  const ws = new WebSocket(accepted.websocketUrl);
  view.ws = ws;
  ws.addEventListener('open', () => ws.send(JSON.stringify({ action: 'sync' })));
  ws.addEventListener('message', (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === 'progress') render(view, msg);
  });
  ws.addEventListener('close', () => { if (!view.done) setTimeout(() => poll(view, accepted), 500); });
}

async function poll(view, accepted) {
  if (view.done) return;
  const res = await fetch(accepted.statusUrl);
  if (res.ok) render(view, await res.json());
  const wait = Number(res.headers.get('Retry-After') ?? 1) * 1000;
  if (!view.done) setTimeout(() => poll(view, accepted), wait);
}

document.getElementById('start').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  formError.hidden = true;
  const data = new FormData(ev.target);
  const input = { steps: Number(data.get('steps')), stepMs: Number(data.get('stepMs')) };
  if (data.get('failAt')) input.failAt = Number(data.get('failAt'));
  const res = await fetch('/jobs', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ kind: 'demo', input }),
  });
  const body = await res.json();
  if (res.status !== 202) {
    formError.textContent = body.detail ?? 'could not start the job';
    formError.hidden = false;
    return;
  }
  const node = template.content.firstElementChild.cloneNode(true);
  const view = {
    seq: 0, percent: 0, done: false, started: Date.now(),
    bar: node.querySelector('.bar'), fill: node.querySelector('.fill'),
    pct: node.querySelector('.percent'), badge: node.querySelector('.badge'),
    message: node.querySelector('.message'), outcome: node.querySelector('.outcome'),
    cancel: node.querySelector('.cancel'),
  };
  node.querySelector('.job-id').textContent = body.jobId;
  view.bar.setAttribute('aria-label', `progress of ${body.jobId}`);
  const elapsed = node.querySelector('.elapsed');
  const tick = setInterval(() => {
    elapsed.textContent = `${((Date.now() - view.started) / 1000).toFixed(1)} s`;
    if (view.done) clearInterval(tick);
  }, 100);
  view.cancel.addEventListener('click', () => fetch(body.statusUrl, { method: 'DELETE' }));
  jobsList.prepend(node);
  follow(view, body);
});
