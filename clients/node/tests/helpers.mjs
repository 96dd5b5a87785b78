// A live `jobcast serve` (the binary in JOBCAST_BIN) and local HTTP servers
// standing in for workers and webhook receivers.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const WEBHOOK_SECRET = 'node-tests-webhook-secret-0123456789';

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Records each POST; answers from a script of [status, headers, body], the last repeating. */
export async function recorder(script = [[200, {}, { ok: true }]]) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      requests.push({ path: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      const [status, headers, answer] = script[Math.min(requests.length, script.length) - 1];
      const payload = answer === undefined || answer === null ? '' : JSON.stringify(answer);
      res.writeHead(status, { ...headers, 'content-type': 'application/json' });
      res.end(payload);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    requests,
    async waitFor(n, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (requests.length >= n) return requests.slice();
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`expected ${n} requests, got ${requests.length}`);
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

export async function serve(...args) {
  const binary = process.env.JOBCAST_BIN ?? path.join(ROOT, 'target/debug/jobcast');
  if (!existsSync(binary)) throw new Error(`no jobcast binary at ${binary}: cargo build, or set JOBCAST_BIN`);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = { ...process.env, JOBCAST_WEBHOOK_SECRET: WEBHOOK_SECRET, RUST_LOG: 'warn' };
  delete env.JOBCAST_KINDS;
  const child = spawn(binary, ['serve', '--listen', `127.0.0.1:${port}`, ...args], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`jobcast serve exited: ${stderr}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('jobcast serve did not start in 20 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  const request = async (method, p, { body, token } = {}) => {
    const headers = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(url + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  return {
    url,
    request,
    async create(kind, input = {}, callbackUrl) {
      const body = { kind, input };
      if (callbackUrl) body.callbackUrl = callbackUrl;
      const r = await request('POST', '/jobs', { body });
      if (r.status !== 202) throw new Error(`POST /jobs answered ${r.status}: ${JSON.stringify(r.body)}`);
      return r.body;
    },
    stop() {
      child.kill('SIGTERM');
      return new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
    },
  };
}

/** Every progress message of a job until it ends. */
export function follow(websocketUrl, timeoutMs = 20_000) {
  return new Promise((resolve, reject) => {
    const seen = [];
    const ws = new WebSocket(websocketUrl);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`the job did not end: ${JSON.stringify(seen)}`));
    }, timeoutMs);
    ws.on('open', () => ws.send(JSON.stringify({ action: 'sync' })));
    ws.on('error', reject);
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString());
      if (m.type !== 'progress') return;
      seen.push(m);
      if (['succeeded', 'failed', 'cancelled'].includes(m.status)) {
        clearTimeout(timer);
        ws.close();
        resolve(seen);
      }
    });
  });
}

/** What a client shows: each message newer than the last one applied. */
export function applied(seen) {
  const out = [];
  for (const m of seen) if (!out.length || m.seq > out[out.length - 1].seq) out.push(m);
  return out;
}
