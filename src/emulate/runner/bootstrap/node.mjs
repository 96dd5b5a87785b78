// The Node runtime of `jobcast emulate`: loads the handler named by
// _HANDLER under LAMBDA_TASK_ROOT (ES module or CommonJS, async or
// callback) and serves invocations from AWS_LAMBDA_RUNTIME_API, one at a
// time, as Lambda's Node runtime does. No dependency but Node itself.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [apiHost, apiPort] = (process.env.AWS_LAMBDA_RUNTIME_API || "127.0.0.1:9001").split(":");
const base = "/2018-06-01/runtime";
// One kept-alive connection to the Runtime API, spoken over a plain socket:
// the runtime sends one request at a time and the API (emulate's own)
// answers each with a Content-Length, so a few lines replace node:http and
// its per-request objects, which cost a warm process megabytes.
let socket = null;
let pending = null; // { resolve, reject } of the request in flight
let buffered = Buffer.alloc(0);

function connect() {
  const s = net.connect({ host: apiHost, port: Number(apiPort), noDelay: true });
  socket = s;
  // Events of a connection already given up (a refused answer's) are ignored.
  s.on("data", (chunk) => {
    if (s !== socket) return;
    buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
    settle();
  });
  const fail = (err) => {
    if (s !== socket) return;
    socket = null;
    buffered = Buffer.alloc(0);
    const p = pending;
    pending = null;
    p?.reject(err ?? new Error("the Runtime API closed the connection"));
  };
  s.on("error", fail);
  s.on("close", () => fail());
}

// Resolves the request in flight once its whole response is buffered.
function settle() {
  const end = buffered.indexOf("\r\n\r\n");
  if (!pending || end < 0) return;
  const lines = buffered.subarray(0, end).toString("latin1").split("\r\n");
  const headers = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers["content-length"] ?? 0);
  if (buffered.length < end + 4 + length) return;
  const body = buffered.subarray(end + 4, end + 4 + length);
  buffered = buffered.subarray(end + 4 + length);
  const status = Number(lines[0].split(" ")[1]);
  const p = pending;
  pending = null;
  // A refused body (413) is left unread, so the API ends the connection:
  // the next request starts a new one.
  if (status === 413 || headers.connection === "close") {
    socket.destroy();
    socket = null;
    buffered = Buffer.alloc(0);
  }
  p.resolve({ status, headers, body });
}

function request(method, path, body = "", headers = {}) {
  if (!socket) connect();
  return new Promise((resolve, reject) => {
    pending = { resolve, reject };
    const payload = Buffer.from(body);
    let head = `${method} ${base}${path} HTTP/1.1\r\nhost: ${apiHost}:${apiPort}\r\ncontent-length: ${payload.length}\r\n`;
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    socket.write(head + "\r\n");
    if (payload.length) socket.write(payload);
  });
}
const root = process.env.LAMBDA_TASK_ROOT || process.cwd();
const handlerName = process.env._HANDLER || "index.handler";

function errorShape(err, type) {
  const e = err instanceof Error ? err : new Error(String(err));
  return {
    errorType: type || e.name || "Error",
    errorMessage: e.message,
    trace: (e.stack || "").split("\n"),
  };
}

function post(path, body, headers = {}) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return request("POST", path, text, { "content-type": "application/json", ...headers });
}

async function initError(err, type) {
  const shape = errorShape(err, type);
  console.error(`${shape.errorType}: ${shape.errorMessage}`);
  await post("/init/error", shape, { "lambda-runtime-function-error-type": shape.errorType });
  process.exit(1);
}

async function load() {
  const dot = handlerName.lastIndexOf(".");
  if (dot < 1) {
    return initError(new Error(`Bad handler ${handlerName}: expected FILE.EXPORT`), "Runtime.MalformedHandlerName");
  }
  const modulePath = handlerName.slice(0, dot);
  const exportName = handlerName.slice(dot + 1);
  const base = path.resolve(root, modulePath);
  const file = [".js", ".mjs", ".cjs"].map((ext) => base + ext).find((f) => existsSync(f));
  if (!file) {
    return initError(new Error(`Cannot find module '${modulePath}' (looked for .js, .mjs, .cjs under ${root})`), "Runtime.ImportModuleError");
  }
  let mod;
  try {
    if (file.endsWith(".cjs")) {
      mod = createRequire(file)(file);
    } else {
      mod = await import(pathToFileURL(file).href);
    }
  } catch (err) {
    const type = err instanceof SyntaxError ? "Runtime.UserCodeSyntaxError" : "Runtime.ImportModuleError";
    return initError(err, type);
  }
  const fn = mod[exportName] ?? mod.default?.[exportName];
  if (typeof fn !== "function") {
    return initError(new Error(`${modulePath}.${exportName} is undefined or not exported`), "Runtime.HandlerNotFound");
  }
  return fn;
}

function context(headers, deadline) {
  return {
    awsRequestId: headers["lambda-runtime-aws-request-id"],
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

// Async handlers return a promise; callback handlers (three parameters)
// call back; either way the first answer wins.
function run(fn, event, ctx) {
  return new Promise((resolve, reject) => {
    let done = false;
    const callback = (err, value) => {
      if (done) return;
      done = true;
      err ? reject(err) : resolve(value);
    };
    try {
      const out = fn(event, ctx, callback);
      if (out && typeof out.then === "function") {
        out.then((v) => callback(null, v), (e) => callback(e));
      } else if (fn.length < 3) {
        callback(null, out);
      }
    } catch (err) {
      callback(err);
    }
  });
}

// Sends an invocation's answer. The API may refuse one (over 6 MB) and drop
// the connection while it is still being written; it has then failed the
// invocation itself, and the next request opens a new connection.
async function answer(id, kind, body, headers) {
  try {
    const res = await post(`/invocation/${id}/${kind}`, body, headers);
    if (res.status >= 400) console.error(`the Runtime API refused the ${kind}: ${res.body.toString("utf8")}`);
  } catch (err) {
    console.error(`the Runtime API refused the ${kind}: ${err.message}`);
  }
}

const fn = await load();
for (;;) {
  const res = await request("GET", "/invocation/next");
  const id = res.headers["lambda-runtime-aws-request-id"];
  const deadline = Number(res.headers["lambda-runtime-deadline-ms"]);
  const event = JSON.parse(res.body.toString("utf8") || "null");
  let text;
  try {
    const value = await run(fn, event, context(res.headers, deadline));
    text = JSON.stringify(value === undefined ? null : value);
  } catch (err) {
    const shape = errorShape(err);
    console.error(`${shape.errorType}: ${shape.errorMessage}`);
    await answer(id, "error", shape, { "lambda-runtime-function-error-type": shape.errorType });
    continue;
  }
  await answer(id, "response", text);
}
