//! Running functions as Lambda runs them, with nothing else installed
//! (CONTRACT section 12): each function's processes speak the Lambda
//! Runtime API ([`api`]) to a sandbox of their own ([`sandbox`]), kept warm
//! and started on demand up to the function's concurrency ([`pool`]).
//! The gateway knows nothing of this: `emulate` calls a [`pool::Function`]
//! where it would call a runner's Invoke API.

pub mod api;
pub mod pool;
pub mod sandbox;

use std::collections::BTreeMap;

/// What Lambda puts in a function's environment, for a function known
/// locally as `name` with `memory_mb` of memory in `region`, whose code is
/// at `task_root` and whose handler is `handler`. The template's
/// variables and `--env-vars` go on top; `AWS_LAMBDA_RUNTIME_API` is the
/// sandbox's own.
pub fn lambda_environment(
    name: &str,
    memory_mb: u32,
    region: &str,
    task_root: &std::path::Path,
    handler: &str,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("AWS_LAMBDA_FUNCTION_NAME", name.to_string());
    set("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string());
    set("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string());
    set("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"));
    set(
        "AWS_LAMBDA_LOG_STREAM_NAME",
        format!("local/[$LATEST]{}", pool::request_id().replace('-', "")),
    );
    set("AWS_REGION", region.to_string());
    set("AWS_DEFAULT_REGION", region.to_string());
    set("AWS_EXECUTION_ENV", "jobcast_emulate".to_string());
    set("_HANDLER", handler.to_string());
    set("LAMBDA_TASK_ROOT", task_root.display().to_string());
    set("TZ", ":UTC".to_string());
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
    ] {
        if std::env::var_os(k).is_none() {
            set(k, v.to_string());
        }
    }
    env
}

/// The ARN an invocation of `name` carries, in `region`.
pub fn function_arn(name: &str, region: &str) -> String {
    format!("arn:aws:lambda:{region}:000000000000:function:{name}")
}
