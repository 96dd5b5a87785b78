// The Node runtime of `jobcast emulate`: loads the handler named by
// _HANDLER under LAMBDA_TASK_ROOT (ES module or CommonJS, async or
// callback) and serves invocations from AWS_LAMBDA_RUNTIME_API, one at a
// time, as Lambda's Node runtime does. No dependency but Node itself.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [apiHost, apiPort] = (process.env.AWS_LAMBDA_RUNTIME_API || "127.0.0.1:9001").split(":");
const base = "/2018-06-01/runtime";
// One kept-alive connection to the Runtime API; node:http rather than
// fetch, whose client costs the process tens of megabytes.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: apiHost, port: Number(apiPort), method, path: base + path, agent, headers },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
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

async function post(path, body, headers = {}) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  await request("POST", path, text, { "content-type": "application/json", ...headers });
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

const fn = await load();
for (;;) {
  const res = await request("GET", "/invocation/next");
  const id = res.headers["lambda-runtime-aws-request-id"];
  const deadline = Number(res.headers["lambda-runtime-deadline-ms"]);
  const event = JSON.parse(res.body.toString("utf8") || "null");
  try {
    const value = await run(fn, event, context(res.headers, deadline));
    await post(`/invocation/${id}/response`, JSON.stringify(value === undefined ? null : value));
  } catch (err) {
    const shape = errorShape(err);
    console.error(`${shape.errorType}: ${shape.errorMessage}`);
    await post(`/invocation/${id}/error`, shape, { "lambda-runtime-function-error-type": shape.errorType });
  }
}
