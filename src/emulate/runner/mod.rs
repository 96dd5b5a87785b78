//! Running functions as Lambda runs them, with nothing else installed
//! (CONTRACT section 12): each function's processes speak the Lambda
//! Runtime API ([`api`]) to a sandbox of their own ([`sandbox`]), kept warm
//! and started on demand up to the function's concurrency ([`pool`]).
//! The gateway knows nothing of this: `emulate` calls a [`pool::Function`]
//! where it would call a runner's Invoke API.

pub mod api;
pub mod pool;
pub mod sandbox;
pub mod watch;

use std::collections::BTreeMap;

/// How `emulate` runs functions itself.
#[derive(Clone, Debug, Default)]
pub struct RunnerOptions {
    /// Runtime → the program to run it with (`--runtime RUNTIME=PATH`).
    pub interpreters: BTreeMap<String, String>,
    /// Concurrent invocations per function without
    /// `ReservedConcurrentExecutions` (`--max-concurrency`, default 10).
    pub max_concurrency: Option<usize>,
    /// `--env-vars`.
    pub env_vars: EnvVars,
}

/// Environment overrides in SAM's `--env-vars` format.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvVars(BTreeMap<String, BTreeMap<String, String>>);

impl EnvVars {
    /// Reads the file; a missing file or another shape is an error that
    /// says what the file must look like.
    pub fn read(path: &std::path::Path) -> Result<EnvVars, String> {
        let shape = "expected a JSON object like {\"Parameters\": {\"TABLE\": \"chat\"}, \"OnConnectFunction\": {\"DEBUG\": \"1\"}}";
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--env-vars {}: {e}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("--env-vars {}: {e}; {shape}", path.display()))?;
        let mut out = BTreeMap::new();
        for (scope, vars) in v
            .as_object()
            .ok_or_else(|| format!("--env-vars {}: {shape}", path.display()))?
        {
            let vars = vars.as_object().ok_or_else(|| {
                format!(
                    "--env-vars {}: {scope} is not an object; {shape}",
                    path.display()
                )
            })?;
            let mut scoped = BTreeMap::new();
            for (k, v) in vars {
                let value = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                scoped.insert(k.clone(), value);
            }
            out.insert(scope.clone(), scoped);
        }
        Ok(EnvVars(out))
    }

    /// `declared` (a function's template variables) with the overrides for
    /// `logical_id` applied: its own entry wins over `Parameters`, and a
    /// variable the template does not declare is left out, as in SAM.
    pub fn apply(
        &self,
        logical_id: &str,
        declared: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut out = declared.clone();
        for scope in ["Parameters", logical_id] {
            if let Some(vars) = self.0.get(scope) {
                for (k, v) in vars {
                    if let Some(slot) = out.get_mut(k) {
                        *slot = v.clone();
                    }
                }
            }
        }
        out
    }
}

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
    // What `sam local` sets, so code that finds its local resources that way
    // under SAM finds them the same way here.
    set("AWS_SAM_LOCAL", "true".to_string());
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

/// The Node and Python bootstraps, shipped inside jobcast and written to a
/// folder of their own when `emulate` starts.
pub struct Bootstraps {
    dir: std::path::PathBuf,
}

const NODE_BOOTSTRAP: &str = include_str!("bootstrap/node.mjs");
const PYTHON_BOOTSTRAP: &str = include_str!("bootstrap/python.py");

impl Bootstraps {
    /// Writes the bootstraps under the system temp folder, in a folder
    /// named by this user and the bootstraps' contents: private to the
    /// user (0700, refused if someone else owns it), shared by every
    /// `emulate` of the same build, and never rewritten under a running
    /// one by another build.
    pub fn write() -> std::io::Result<Bootstraps> {
        use std::hash::{Hash, Hasher};
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let mut h = std::hash::DefaultHasher::new();
        (NODE_BOOTSTRAP, PYTHON_BOOTSTRAP).hash(&mut h);
        // SAFETY: getuid only reads the calling process's user id.
        let uid = unsafe { libc::getuid() };
        let dir =
            std::env::temp_dir().join(format!("jobcast-emulate-runtime-{uid}-{:016x}", h.finish()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let meta = std::fs::symlink_metadata(&dir)?;
        if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
            return Err(std::io::Error::other(format!(
                "{} is not a folder of this user's alone; remove it",
                dir.display()
            )));
        }
        for (name, text) in [
            ("node.mjs", NODE_BOOTSTRAP),
            ("python.py", PYTHON_BOOTSTRAP),
        ] {
            let path = dir.join(name);
            if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
                continue;
            }
            // Written aside and renamed, so a process starting meanwhile
            // reads the whole file or none.
            let part = dir.join(format!("{name}.{}", std::process::id()));
            std::fs::write(&part, text)?;
            std::fs::rename(&part, &path)?;
        }
        Ok(Bootstraps { dir })
    }

    fn node(&self) -> std::path::PathBuf {
        self.dir.join("node.mjs")
    }

    fn python(&self) -> std::path::PathBuf {
        self.dir.join("python.py")
    }
}

/// The program and arguments a function of `runtime` starts with, its
/// code in `code_dir`; `interpreters` maps a runtime to another program
/// (`--runtime RUNTIME=PATH`). An unknown runtime, or a `provided` one
/// without its `bootstrap`, is a start-up error saying what to do.
pub fn command(
    runtime: &str,
    code_dir: &std::path::Path,
    cargo_lambda_binary: Option<&str>,
    bootstraps: &Bootstraps,
    interpreters: &BTreeMap<String, String>,
) -> Result<(std::path::PathBuf, Vec<String>), String> {
    let program = |default: &str| {
        std::path::PathBuf::from(interpreters.get(runtime).map_or(default, String::as_str))
    };
    if runtime.starts_with("nodejs") {
        return Ok((
            program("node"),
            vec![bootstraps.node().display().to_string()],
        ));
    }
    if runtime.starts_with("python3") {
        return Ok((
            program("python3"),
            vec!["-u".into(), bootstraps.python().display().to_string()],
        ));
    }
    if runtime.starts_with("provided") {
        let bootstrap = match cargo_lambda_binary {
            // `cargo lambda build` writes target/lambda/NAME/bootstrap in
            // the workspace the crate belongs to.
            Some(bin) => code_dir
                .ancestors()
                .map(|d| d.join("target/lambda").join(bin).join("bootstrap"))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    format!(
                        "no target/lambda/{bin}/bootstrap above {}: build it first with `cargo lambda build --bin {bin}` (in {})",
                        code_dir.display(),
                        code_dir.display()
                    )
                })?,
            None => code_dir.join("bootstrap"),
        };
        if let Some(p) = interpreters.get(runtime) {
            return Ok((p.into(), vec![bootstrap.display().to_string()]));
        }
        if !bootstrap.is_file() {
            return Err(format!(
                "{} has no bootstrap: build the function first, or point CodeUri at the folder holding it",
                code_dir.display()
            ));
        }
        return Ok((bootstrap, Vec::new()));
    }
    Err(format!(
        "runtime {runtime} is not one emulate runs (nodejs18.x-22.x, python3.9-3.13, provided.al2/al2023); name a program for it with --runtime {runtime}=PATH, or run it elsewhere and set AWS_ENDPOINT_URL_LAMBDA"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_vars_override_only_what_the_template_declares() {
        let path = std::env::temp_dir().join(format!("env-vars-{}.json", std::process::id()));
        std::fs::write(
            &path,
            r#"{"Parameters": {"A": "all", "B": "all"}, "F": {"B": "mine", "C": "new", "N": 5}}"#,
        )
        .unwrap();
        let vars = EnvVars::read(&path).unwrap();
        let declared: BTreeMap<String, String> = [("A", "a"), ("B", "b"), ("N", "0")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let got = vars.apply("F", &declared);
        assert_eq!(got["A"], "all");
        assert_eq!(got["B"], "mine", "a function's own entry wins");
        assert_eq!(got["N"], "5");
        assert!(!got.contains_key("C"), "not declared: left out");
        assert_eq!(vars.apply("G", &declared)["B"], "all");
        std::fs::write(&path, "[1]").unwrap();
        assert!(EnvVars::read(&path).unwrap_err().contains("Parameters"));
        let _ = std::fs::remove_file(&path);
    }
}
