//! The `jobcast` binary as a user runs it: flags, environment, errors, signals.

use crate::common::Process;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Waits up to 10 s until something accepts on `port`.
fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn jobcast() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jobcast"));
    for (k, _) in std::env::vars() {
        if k.starts_with("JOBCAST_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn bad_flag_values_name_the_fix() {
    let out = jobcast().args(["--idle-timeout", "soon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().next().unwrap().contains("90s"), "{err}");

    let out = jobcast().env("JOBCAST_STAGE", "jobs").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reserved"));

    let out = jobcast().args(["--max-connections", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    // A presigned URL cannot outlive 7 days.
    let out = jobcast().args(["--file-url-ttl", "8d"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("7d"));
    let out = jobcast().env("JOBCAST_STAGE", "files").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn weak_token_secret_is_refused() {
    let out = jobcast()
        .args(["--listen", "127.0.0.1:0"])
        .env("JOBCAST_TOKEN_SECRET", "short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("JOBCAST_TOKEN_SECRET") && err.contains("openssl"),
        "{err}"
    );
}

#[test]
fn busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = jobcast().args(["--listen", &addr]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen") && err.contains("--listen"),
        "{err}"
    );
}

#[test]
fn serves_and_exits_cleanly_on_sigterm() {
    let port = free_port();
    let child = jobcast()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Process::new(child);
    let stdout = child.child().stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // JSON logs: the first line is a JSON object.
    let first = lines.next().unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(&first).expect("json log line");
    assert!(v["level"].is_string());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut resp = String::new();
            s.read_to_string(&mut resp).unwrap();
            assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
            break;
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.terminate();
    let status = child.wait();
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("shutdown complete")),
        "{rest:?}"
    );
}

#[test]
fn bench_chunks_streams_through_a_serve_and_loses_nothing() {
    let (port, receiver) = (free_port(), free_port());
    let child = jobcast()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--kind", &format!("bench=http://127.0.0.1:{receiver}/")])
        .env("JOBCAST_WEBHOOK_SECRET", "bench-chunks-secret-0123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Process::new(child);
    wait_listening(port);
    let out = jobcast()
        .args([
            "bench",
            "chunks",
            "--jobs",
            "3",
            "--rate",
            "40",
            "--seconds",
            "1",
        ])
        .args(["--jobs-url", &format!("http://127.0.0.1:{port}")])
        .args(["--receiver", &format!("127.0.0.1:{receiver}")])
        .output()
        .unwrap();
    child.terminate();
    child.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["chunks"], 120);
    assert_eq!(r["missing"], 0);
    assert!(r["chunkToClient"]["p50Ms"].as_f64().unwrap() > 0.0, "{r}");
}

/// A 50 MiB file up and down through `serve`'s directory store: the same
/// bytes back, and the server never holds the file in memory (its
/// resident memory stays within a few buffers of where it was; holding
/// the file would add 50 MiB).
#[test]
fn a_50_mib_file_streams_through_serve_without_growing_it() {
    let (port, receiver) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("jobcast-cli-files-{port}"));
    let child = jobcast()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--kind", &format!("bench=http://127.0.0.1:{receiver}/")])
        .arg("--files-dir")
        .arg(&dir)
        .env("JOBCAST_WEBHOOK_SECRET", "bench-files-secret-0123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut child = Process::new(child);
    wait_listening(port);
    let out = jobcast()
        .args(["bench", "files", "--mib", "50"])
        .args(["--server-pid", &pid.to_string()])
        .args(["--jobs-url", &format!("http://127.0.0.1:{port}")])
        .args(["--receiver", &format!("127.0.0.1:{receiver}")])
        .output()
        .unwrap();
    child.terminate();
    child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["sameBytes"], true, "{r}");
    let growth = r["rssGrowthKib"].as_u64().unwrap();
    assert!(
        growth < 16 * 1024,
        "serve grew by {growth} KiB for a 50 MiB file: {r}"
    );
}

#[test]
fn bench_fanout_runs_and_loses_nothing() {
    for push in ["in-process", "http"] {
        let out = jobcast()
            .args([
                "bench",
                "fanout",
                "--subscribers",
                "20",
                "--rounds",
                "3",
                "--json",
                "--push",
                push,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["subscribers"], 20);
        assert_eq!(r["lost"], 0);
        assert!(r["fanoutMsP50"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn secrets_never_reach_the_logs_even_at_trace_level() {
    const TOKEN_SECRET: &str = "token-secret-never-logged-0123456789";
    const WEBHOOK_SECRET: &str = "webhook-secret-never-logged-0123456789";
    const SIGV4_SECRET: &str = "sigv4-secret-never-logged-0123456789";
    let port = free_port();
    let log = std::env::temp_dir().join(format!("jobcast-secrets-{port}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Process::new(
        jobcast()
            .args([
                "serve",
                "--require-sigv4",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("RUST_LOG", "trace")
            .env("JOBCAST_TOKEN_SECRET", TOKEN_SECRET)
            .env("JOBCAST_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("JOBCAST_SIGV4_ACCESS_KEY_ID", "AKIDLOGTEST")
            .env("JOBCAST_SIGV4_SECRET_ACCESS_KEY", SIGV4_SECRET)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = rt.block_on(async {
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A job with a webhook (to a closed local port: attempted and failed).
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let job = crate::common::post_job(
            &format!("127.0.0.1:{port}"),
            serde_json::json!({"kind": "demo", "input": {"steps": 1, "stepMs": 0}, "callbackUrl": format!("http://{dead}/hook")}),
        )
        .await;
        let url = job["websocketUrl"].as_str().unwrap().to_string();
        let (ws, _) = tokio_tungstenite::connect_async(url.clone()).await.unwrap();
        drop(ws);
        let _ = tokio_tungstenite::connect_async(url.replace("token=", "token=x")).await;
        let _ = http
            .post(format!("{base}/dev/@connections/abc%3D"))
            .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDLOGTEST/20261124/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=00")
            .body("x")
            .send()
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        job["token"].as_str().unwrap().to_string()
    });
    child.terminate();
    child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(
        text.len() > 1000,
        "trace logging was on: {} bytes",
        text.len()
    );
    for secret in [TOKEN_SECRET, WEBHOOK_SECRET, SIGV4_SECRET, token.as_str()] {
        assert!(!text.contains(secret), "a secret reached the log");
    }
}

#[test]
fn kind_configuration_errors_name_the_fix() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = jobcast()
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} {env:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The replaced flag and variable say what replaced them.
    for err in [
        run(&["--external-kind", "export"], &[]),
        run(&[], &[("JOBCAST_EXTERNAL_KINDS", "export")]),
    ] {
        assert!(
            err.contains("--kind") && err.contains("export=command:"),
            "{err}"
        );
    }
    let err = run(&["--kind", "demo=command:true"], &[]);
    assert!(err.contains("demo"), "{err}");
    let err = run(&["--kind", "export"], &[]);
    assert!(err.contains("KIND=TARGET"), "{err}");
    let err = run(&["--kind", "export=ftp://host/x"], &[]);
    assert!(err.contains("sqs:") && err.contains("command:"), "{err}");
    let err = run(&["--kind", "export=https://workers.example/run"], &[]);
    assert!(err.contains("JOBCAST_WEBHOOK_SECRET"), "{err}");
    let err = run(&[], &[("JOBCAST_KINDS", "a=command:true,a=command:false")]);
    assert!(err.contains("'a'"), "{err}");
    let err = run(&["--heartbeat-timeout", "soon"], &[]);
    assert!(err.contains("heartbeat"), "{err}");
}

#[test]
fn a_newcomers_flags_are_understood_or_named() {
    // A bare port and a host name are listen addresses.
    for listen in ["0", "localhost:0"] {
        let mut p = Process::new(
            jobcast()
                .args(["--listen", listen])
                .env("RUST_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let out = BufReader::new(p.child().stdout.take().unwrap());
        let line = out
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("listening"))
            .expect("a listening line");
        assert!(line.contains("addr=127.0.0.1:"), "{line}");
        // Plain text when not on a terminal, and no warning caused by a default.
        assert!(!line.contains('\u{1b}'), "colour codes: {line:?}");
        p.terminate();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut p.child().stderr.take().unwrap(), &mut err).unwrap();
        assert!(!err.contains("--max-connections"), "{err}");
    }
    let out = jobcast().args(["--listen", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("localhost:8080"));
    // A bad value from the environment names the variable.
    let out = jobcast()
        .env("JOBCAST_IDLE_TIMEOUT", "banana")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("jobcast: JOBCAST_IDLE_TIMEOUT:"), "{err}");
    assert!(err.contains("90s"), "{err}");
    // A negative number is judged as a number.
    let out = jobcast()
        .args(["--max-connections", "-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("whole number above 0"), "{err}");
}

/// One HTTP/1.1 request to 127.0.0.1:port; the whole response.
fn http(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

#[test]
fn development_tokens_sign_in_to_serve_dev_tokens() {
    let dir = std::env::temp_dir().join(format!("jobcast-devkey-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = dir.join("dev-key.json");
    let issue = |sub: &str| {
        jobcast()
            .args(["token", "issue", "--sub", sub])
            .env("JOBCAST_DEV_KEY", &key)
            .output()
            .unwrap()
    };
    let out = issue("alice");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(token.matches('.').count(), 2, "{token}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("local development"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
    assert!(!issue("").status.success());

    let port = free_port();
    let child = jobcast()
        .args([
            "serve",
            "--dev-tokens",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("JOBCAST_DEV_KEY", &key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Process::new(child);
    wait_listening(port);
    let body = r#"{"kind":"demo","input":{"steps":1,"stepMs":0}}"#;
    let post = |auth: &str| {
        http(
            port,
            &format!(
                "POST /jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let resp = post("");
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    let resp = post(&format!("Authorization: Bearer {token}\r\n"));
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    let listed = http(
        port,
        &format!(
            "GET /jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
        ),
    );
    assert!(listed.contains(r#""owner":"alice""#), "{listed}");
    child.terminate();
    assert_eq!(child.wait().code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn owners_misconfiguration_is_a_clear_error() {
    let out = jobcast()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwks",
            "/nonexistent.json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "--jwks alone must name the missing issuer"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--jwt-issuer"));
    let dir = std::env::temp_dir().join(format!("jobcast-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.json");
    std::fs::write(&empty, r#"{"keys": []}"#).unwrap();
    let owners = |extra: &[&str]| {
        let mut c = jobcast();
        c.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwt-issuer",
            "http://127.0.0.1:9",
            "--jwt-audience",
            "app",
        ]);
        c.args(extra);
        c.output().unwrap()
    };
    let out = owners(&["--jwks", empty.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("empty.json") && err.contains("no RS256 or ES256"),
        "{err}"
    );
    // No --jwks: the issuer's own JWKS URL, here unreachable.
    let out = owners(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http://127.0.0.1:9/.well-known/jwks.json"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    // A per-owner limit needs owners; zero is no limit, and refused.
    let out = jobcast()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-active-jobs-per-owner",
            "3",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--dev-tokens") && err.contains("--jwt-issuer"),
        "{err}"
    );
    let out = jobcast()
        .args(["serve", "--max-active-jobs-per-owner", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A Lambda Invoke API that knows one function, `OnConnect`: it records
/// each event it is given and answers 200. Any other function is a 404
/// in the plain words a local runner uses.
struct InvokeApi {
    port: u16,
    events: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

fn invoke_api() -> InvokeApi {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let got = events.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let got = got.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    // One request: head, then Content-Length bytes of body.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Vec<u8> = buf.drain(..head_end + len).skip(head_end).collect();
                    let answer = if head.contains("/functions/OnConnect/invocations") {
                        if let Ok(v) = serde_json::from_slice(&body) {
                            got.lock().unwrap().push(v);
                        }
                        (200, r#"{"statusCode":200}"#)
                    } else {
                        (404, "Function not found: no binary target with that name")
                    };
                    let reply = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\n\r\n{}",
                        answer.0,
                        answer.1.len(),
                        answer.1
                    );
                    if conn.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    InvokeApi { port, events }
}

/// `jobcast emulate` with two `$connect`-style routes, against `api`.
fn emulate(api: &InvokeApi, routes: &[&str]) -> (Process, u16, std::path::PathBuf) {
    let port = free_port();
    let log = std::env::temp_dir().join(format!("jobcast-emulate-{port}.log"));
    let mut args = vec![
        "emulate".to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    for r in routes {
        args.push("--route".into());
        args.push(r.to_string());
    }
    let child = jobcast()
        .args(&args)
        .env(
            "AWS_ENDPOINT_URL_LAMBDA",
            format!("http://127.0.0.1:{}", api.port),
        )
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Process::new(child);
    wait_listening(port);
    (child, port, log)
}

/// A raw WebSocket handshake with headers spelled as a client may spell
/// them; the status line of the answer.
fn handshake(port: u16, path: &str, headers: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    )
    .unwrap();
    let mut got = [0u8; 256];
    let n = s.read(&mut got).unwrap_or(0);
    String::from_utf8_lossy(&got[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn emulate_passes_header_names_as_the_client_spelled_them() {
    let api = invoke_api();
    let (mut child, port, log) = emulate(&api, &["$connect=OnConnect"]);
    let status = handshake(
        port,
        "/dev?room=1",
        "Authorization: Bearer abc\r\nSec-WebSocket-Protocol: chat\r\nx-lower-case: yes\r\nX-Mixed-ID: 7\r\n",
    );
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    child.terminate();
    child.wait();
    let _ = std::fs::remove_file(&log);
    let events = api.events.lock().unwrap();
    let connect = events
        .iter()
        .find(|e| e["requestContext"]["eventType"] == "CONNECT")
        .expect("a $connect event");
    let headers = connect["headers"].as_object().unwrap();
    for (name, value) in [
        ("Host", format!("127.0.0.1:{port}")),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==".into()),
        ("Authorization", "Bearer abc".into()),
        ("Sec-WebSocket-Protocol", "chat".into()),
        ("x-lower-case", "yes".into()),
        ("X-Mixed-ID", "7".into()),
    ] {
        assert_eq!(
            headers.get(name),
            Some(&value.into()),
            "{name} in {headers:?}"
        );
    }
    assert!(headers.get("authorization").is_none(), "{headers:?}");
    assert_eq!(
        connect["multiValueHeaders"]["Authorization"],
        serde_json::json!(["Bearer abc"])
    );
}

#[test]
fn emulate_names_the_fix_when_the_runner_has_no_such_function() {
    let api = invoke_api();
    let (mut child, port, log) = emulate(&api, &["$connect=PingFunction"]);
    let status = handshake(port, "/dev", "");
    assert!(status.starts_with("HTTP/1.1 500"), "{status}");
    child.terminate();
    child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let line = text
        .lines()
        .find(|l| l.contains("integration failed"))
        .unwrap_or_else(|| panic!("no failure logged: {text}"));
    assert!(
        line.contains("404")
            && line.contains("Function not found")
            && line.contains("--function PingFunction="),
        "{line}"
    );
    assert!(!line.contains("no message"), "{line}");
}

/// `jobcast ARGS` with DynamoDB at `endpoint`: its stderr, once it has
/// exited 1.
fn failing_over_dynamodb(endpoint: &str, args: &[&str]) -> String {
    let out = jobcast()
        .args(args)
        .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unreachable_dynamodb_is_one_line_naming_the_fix() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let serve = ["serve", "--store", "dynamodb", "--listen", "127.0.0.1:0"];
    let err = failing_over_dynamodb(&dead, &serve);
    let line = err.lines().last().unwrap_or_default();
    assert!(
        line.contains(&format!("cannot reach DynamoDB at {dead}"))
            && line.contains("Connection refused")
            && line.contains("AWS_ENDPOINT_URL_DYNAMODB"),
        "{err}"
    );
    assert!(
        line.len() < 400 && !line.contains("DispatchFailure"),
        "{line}"
    );

    // `publish` says what it needs, and what to use with a memory store.
    let publish = [
        "publish",
        "--job",
        "job_x",
        "--status",
        "running",
        "--endpoint",
        "http://127.0.0.1:8080/dev",
    ];
    let err = failing_over_dynamodb(&dead, &publish);
    assert!(
        err.contains("cannot reach DynamoDB")
            && err.contains("--store dynamodb")
            && err.contains("/updates"),
        "{err}"
    );
}
