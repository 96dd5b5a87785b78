// The chat examples in examples/ as a user runs them: `jobcast emulate
// --template template.yaml` running the functions itself (Node with the AWS
// SDK for JavaScript, Python with boto3), examples/chat.html open in two
// browsers. Then the handler is edited while both stay connected, and a hung
// handler is answered as API Gateway answers one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { bin, freePort, launchChromium, root } from './harness.mjs';

let browser;
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

// The Python example needs boto3 (Lambda's Python runtimes have it); test.sh
// installs it into target/py-venv, whose python3 comes first on PATH here.
const venvBin = path.join(root, 'target/py-venv/bin');
const PATH = existsSync(venvBin) ? `${venvBin}${path.delimiter}${process.env.PATH}` : process.env.PATH;

const examples = {
  node: {
    dir: 'chat-node',
    file: 'app.mjs',
    // The edit: shout every message, and never answer "HANG".
    line: 'const text = body.text.slice(0, MAX_TEXT);',
    edited: 'const text = body.text.slice(0, MAX_TEXT).toUpperCase();\n  if (text === "HANG") await new Promise((r) => setTimeout(r, 3_600_000));',
    prepare(copy) {
      const modules = path.join(root, 'examples/chat-node/src/node_modules');
      assert.ok(existsSync(modules), 'examples/chat-node/src/node_modules is missing: npm ci there');
      symlinkSync(modules, path.join(copy, 'src/node_modules'));
    },
  },
  python: {
    dir: 'chat-python',
    file: 'app.py',
    line: 'text = body["text"][:MAX_TEXT]',
    edited: 'text = body["text"][:MAX_TEXT].upper()\n    if text == "HANG":\n        import time; time.sleep(3600)',
    prepare() {
      const probe = spawnSync('python3', ['-c', 'import boto3'], { env: { ...process.env, PATH } });
      assert.equal(probe.status, 0, 'boto3 is not importable by python3: ./scripts/test.sh installs it into target/py-venv');
    },
  },
};

/** A copy of an example in a temporary directory (the test edits it). */
function copyOf(example) {
  const work = mkdtempSync(path.join(tmpdir(), `jobcast-${example.dir}-`));
  const copy = path.join(work, example.dir);
  cpSync(path.join(root, 'examples', example.dir), copy, {
    recursive: true,
    filter: (src) => !src.includes(`${path.sep}node_modules`) && !src.includes('__pycache__'),
  });
  example.prepare(copy);
  return { work, copy };
}

async function startEmulate(template, work) {
  const port = await freePort();
  const env = { ...process.env, PATH, TMPDIR: work };
  // Nothing but the interpreters: no Lambda runner, no DynamoDB.
  for (const k of ['AWS_ENDPOINT_URL_LAMBDA', 'AWS_ENDPOINT_URL_DYNAMODB', 'AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI']) {
    delete env[k];
  }
  let log = '';
  const emulate = spawn(bin, ['emulate', '--template', template, '--listen', `127.0.0.1:${port}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  emulate.stdout.on('data', (d) => (log += d));
  emulate.stderr.on('data', (d) => (log += d));
  for (let i = 0; i < 100 && !log.includes('listening'); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(log.includes('listening'), `emulate did not start:\n${log}`);
  return { url: `ws://127.0.0.1:${port}/Prod`, emulate, log: () => log };
}

async function openChat(url, name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const chat = pathToFileURL(path.join(root, 'examples/chat.html'));
  chat.search = new URLSearchParams({ ws: url, name }).toString();
  await page.goto(chat.href);
  await page.locator('#status.open').waitFor({ timeout: 15000 });
  return { page, context, errors };
}

async function say(chat, text) {
  await chat.page.fill('#text', text);
  await chat.page.click('#submit');
}

const lines = (chat) => chat.page.locator('#log li').allTextContents();

async function waitForLine(chat, line, timeout = 15000) {
  await chat.page.locator('#log li', { hasText: line }).first().waitFor({ timeout });
}

for (const [language, example] of Object.entries(examples)) {
  test(`the ${language} chat example: two browsers chat, an edit applies live, a hung handler times out`, async () => {
    const { work, copy } = copyOf(example);
    const server = await startEmulate(path.join(copy, 'template.yaml'), work);
    try {
      const alice = await openChat(server.url, 'alice');
      const bob = await openChat(server.url, 'bob');

      await say(alice, 'hello bob');
      await waitForLine(bob, 'alice: hello bob');
      await waitForLine(alice, 'alice: hello bob');
      await say(bob, 'hi alice');
      await waitForLine(alice, 'bob: hi alice');

      // Edit the handler while both pages stay connected.
      const source = path.join(copy, 'src', example.file);
      const before = readFileSync(source, 'utf8');
      assert.ok(before.includes(example.line), `${example.file} no longer has the line this test edits: ${example.line}`);
      writeFileSync(source, before.replace(example.line, example.edited));
      let n = 0;
      for (; n < 40; n++) {
        await say(alice, `edited ${n}`);
        await waitForLine(bob, `edited ${n}`.toUpperCase(), 500).catch(() => {});
        if ((await lines(bob)).some((l) => l.startsWith('alice: EDITED'))) break;
      }
      assert.ok(n < 40, `the edit never applied:\n${server.log()}`);
      assert.match(server.log(), /code changed under/, 'the reload is logged');

      // A hung handler: stopped at the function's Timeout (3 s), answered
      // with API Gateway's error on the sender's connection; nobody else
      // hears of it.
      await say(alice, 'hang');
      await waitForLine(alice, 'the server answered: Internal server error', 20000);
      assert.match(server.log(), /Task timed out after 3\.00 seconds/);
      assert.ok(!(await lines(bob)).some((l) => l.includes('HANG')), 'the hung message reached bob');

      // And the chat goes on, on a fresh process, on the same sockets.
      await say(bob, 'still here');
      await waitForLine(alice, 'bob: STILL HERE');
      for (const chat of [alice, bob]) {
        assert.equal(await chat.page.evaluate(() => window.chatOpens), 1, 'a page had to reconnect');
        assert.deepEqual(chat.errors, []);
      }
      const reports = server.log().match(/REPORT RequestId: \S+ Duration/g) ?? [];
      assert.ok(reports.length >= 6, `START/END/REPORT lines for each invocation:\n${server.log()}`);
      await alice.context.close();
      await bob.context.close();
    } finally {
      server.emulate.kill('SIGTERM');
      await new Promise((r) => server.emulate.once('exit', r));
      rmSync(work, { recursive: true, force: true });
    }
  });
}
