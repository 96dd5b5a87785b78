// The construct, offline: `cdk synth` of the example app with no account
// and no function built, cfn-lint on what it wrote, the same deployment as
// infra/template.yaml in three configurations (test/parity.py), and the
// synthesized WebSocket API served by `jobcast emulate`, which runs the
// functions from the CDK's asset folders.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const cdkDir = path.resolve(here, '..');
const root = path.resolve(cdkDir, '../..');
const jobcast = process.env.JOBCAST_BIN ?? path.join(root, 'target/debug/jobcast');
const env = { ...process.env, CDK_DISABLE_CLI_TELEMETRY: 'true', JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION: '1' };

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, cwd: cdkDir, ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  return r;
}

/** cdk synth of the example app into a fresh folder, its functions from `lambdaDir`. */
function synth(lambdaDir) {
  const out = mkdtempSync(path.join(tmpdir(), 'jobcast-cdk-out-'));
  const r = run(path.join(cdkDir, 'node_modules/.bin/cdk'), ['synth', '--no-notices', '--quiet', '--output', out], {
    env: { ...env, JOBCAST_LAMBDA_DIR: lambdaDir },
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  return { out, log: r.stdout + r.stderr, template: path.join(out, 'JobcastExample.template.json') };
}

test('cdk synth with no account and no function built: placeholders, warnings, a template cfn-lint passes', () => {
  const empty = mkdtempSync(path.join(tmpdir(), 'jobcast-unbuilt-'));
  const { out, log, template } = synth(empty);
  try {
    assert.match(log, /connect is not built/, 'the missing build is warned about');
    const t = JSON.parse(readFileSync(template, 'utf8'));
    const functions = Object.values(t.Resources).filter((r) => r.Type === 'AWS::Lambda::Function');
    assert.equal(functions.length, 7, 'connect, disconnect, message, jobs_api, updates, worker, sweeper (no authorizer without owners)');
    assert.deepEqual(Object.keys(t.Parameters).filter((p) => p !== 'BootstrapVersion').sort(), ['TokenSecret', 'WebhookSecret']);
    assert.equal(t.Parameters.TokenSecret.NoEcho, true);
    const lint = run('cfn-lint', [template]);
    assert.equal(lint.status, 0, `cfn-lint (pip install cfn-lint):\n${lint.stdout}${lint.stderr}`);
  } finally {
    rmSync(out, { recursive: true, force: true });
    rmSync(empty, { recursive: true, force: true });
  }
});

test('the construct deploys what infra/template.yaml deploys, in three configurations', async () => {
  const out = mkdtempSync(path.join(tmpdir(), 'jobcast-cdk-parity-'));
  try {
    const synthed = run(process.execPath, [path.join(here, 'configs.js'), out], {
      env: { ...env, JOBCAST_LAMBDA_DIR: path.join(out, 'none') },
    });
    assert.equal(synthed.status, 0, synthed.stderr);
    const { configs } = await import(path.join(here, 'configs.js'));
    for (const [name, c] of Object.entries(configs)) {
      const r = run('python3', [path.join(here, 'parity.py'), path.join(root, 'infra/template.yaml'), JSON.stringify(c.sam), path.join(out, `${name}.template.json`)]);
      assert.equal(r.status, 0, `${name}:\n${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /0 differences/);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

test('jobcast emulate serves the synthesized WebSocket API, running the functions from cdk.out', async (t) => {
  const dynamodb = process.env.JOBCAST_TEST_DYNAMODB;
  assert.ok(dynamodb, 'start DynamoDB Local first: eval "$(scripts/dynamodb-local.sh start)" (./scripts/test.sh does)');
  assert.ok(existsSync(jobcast), `${jobcast} is missing: cargo build`);
  // The functions built for this machine (cargo build -p jobcast-lambdas), laid out as cargo lambda does.
  const work = mkdtempSync(path.join(tmpdir(), 'jobcast-cdk-emulate-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  for (const bin of ['connect', 'disconnect', 'message', 'jobs_api', 'updates', 'worker', 'sweeper']) {
    const built = path.join(root, 'target/debug', bin);
    assert.ok(existsSync(built), `${built} is missing: cargo build -p jobcast-lambdas --bins`);
    mkdirSync(path.join(work, 'lambda', bin), { recursive: true });
    symlinkSync(built, path.join(work, 'lambda', bin, 'bootstrap'));
  }
  const { out, template } = synth(path.join(work, 'lambda'));
  t.after(() => rmSync(out, { recursive: true, force: true }));

  const table = `jobcast-cdk-${process.pid}`;
  const awsEnv = { ...env, AWS_ENDPOINT_URL_DYNAMODB: dynamodb, AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local', AWS_REGION: 'us-east-1' };
  const created = spawnSync(jobcast, ['table', 'create', '--table', table], { env: awsEnv, encoding: 'utf8' });
  assert.equal(created.status, 0, created.stderr);
  const port = await freePort();
  // The template's own variables, pointed at this machine (sam local's --env-vars format).
  const envVars = path.join(work, 'env.json');
  writeFileSync(envVars, JSON.stringify({ Parameters: { JOBCAST_TABLE: table, JOBCAST_MANAGEMENT_ENDPOINT: `http://127.0.0.1:${port}/prod` } }));
  let log = '';
  const emulate = spawn(jobcast, ['emulate', '--template', template, '--listen', `127.0.0.1:${port}`,
    '--parameter', 'TokenSecret=cdk-test-secret-0123456789abcdef0123', '--env-vars', envVars], {
    env: Object.fromEntries(Object.entries(awsEnv).filter(([k]) => k !== 'AWS_ENDPOINT_URL_LAMBDA')),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  emulate.stdout.on('data', (d) => (log += d));
  emulate.stderr.on('data', (d) => (log += d));
  t.after(() => emulate.kill('SIGTERM'));
  for (let i = 0; i < 100 && !log.includes('listening'); i++) await new Promise((r) => setTimeout(r, 100));
  assert.match(log, /listening/, log);
  assert.match(log, /route \$connect\s+-> Lambda ProgressConnectFunction/, log);

  const ws = new WebSocket(`ws://127.0.0.1:${port}/prod`);
  const frames = [];
  ws.onmessage = (e) => frames.push(JSON.parse(e.data));
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`no connection:\n${log}`));
  });
  const next = async (what) => {
    for (let i = 0; i < 200; i++) {
      const f = frames.shift();
      if (f) return f;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no ${what}:\n${log}`);
  };
  // ping: the message function answers through emulate's @connections.
  ws.send(JSON.stringify({ action: 'ping' }));
  const pong = await next('pong');
  assert.equal(pong.type, 'pong', JSON.stringify(pong));
  // subscribe with a token this stack's secret did not sign: refused by the function.
  ws.send(JSON.stringify({ action: 'subscribe', jobId: 'job_0123456789abcdef01234567', token: 'not-a-token' }));
  const refused = await next('refusal');
  assert.equal(refused.type, 'error');
  assert.equal(refused.code, 'forbidden');
  ws.close();
  // $disconnect ran the disconnect function against the table.
  for (let i = 0; i < 100 && !/route=\$disconnect target="ProgressDisconnectFunction\w*" connection_id="[^"]+" status=200/.test(log); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.match(log, /integration answered route=\$disconnect target="ProgressDisconnectFunction\w*" connection_id="[^"]+" status=200/, log);
  assert.match(log, /REPORT RequestId: \S+ Duration/);
});
