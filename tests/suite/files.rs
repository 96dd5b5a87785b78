//! Files (CONTRACT section 11) through `serve`'s own directory store: a
//! worker asks where to upload, PUTs the bytes to the URL it got, attaches
//! the file with an update; clients see it in snapshots (pushed, read,
//! listed) with a download URL that fetches the same bytes. Every URL is
//! fetched by a plain HTTP client, as a browser or `curl` would.

use crate::common::*;
use jobcast::dispatch::Kinds;
use serde_json::{Value, json};

/// A server keeping files in a directory of its own, whose `export` jobs
/// the test reports for.
async fn server() -> (TestServer, std::path::PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("jobcast-files-test-{:016x}", rand::random::<u64>()));
    let d = dir.clone();
    let srv = start_with(move |c| {
        c.kinds = Kinds::parse_list("export=command:true").unwrap();
        c.files.dir = Some(d);
    })
    .await;
    (srv, dir)
}

/// A job, its job message (update URL and worker token) and its files URL.
async fn job(srv: &TestServer) -> (Value, Value, String) {
    let job = srv.create_export_job(json!({})).await;
    let id = job["jobId"].as_str().unwrap();
    let token = srv
        .deps
        .tokens
        .issue_worker(id, chrono::Utc::now().timestamp());
    let msg = json!({"updateUrl": srv.url(&format!("/jobs/{id}/updates")), "workerToken": token});
    let files_url = srv.url(&format!("/jobs/{id}/files"));
    (job, msg, files_url)
}

async fn ask_upload(files_url: &str, msg: &Value, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(files_url)
        .bearer_auth(msg["workerToken"].as_str().unwrap())
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Sends `bytes` as the upload answer says (method, URL, headers).
async fn put(upload: &Value, bytes: Vec<u8>) -> reqwest::Response {
    assert_eq!(upload["method"], "PUT");
    let mut req = reqwest::Client::new().put(upload["uploadUrl"].as_str().unwrap());
    for (k, v) in upload["headers"].as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    req.body(bytes).send().await.unwrap()
}

async fn problem(r: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "{code}");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], code, "{p}");
    p
}

fn csv(rows: usize) -> Vec<u8> {
    let mut out = b"id,name\n".to_vec();
    for i in 0..rows {
        out.extend_from_slice(format!("{i},row {i}\n").as_bytes());
    }
    out
}

#[tokio::test]
async fn an_uploaded_file_reaches_subscribers_readers_and_lists_with_a_working_url() {
    let (srv, dir) = server().await;
    let (job, msg, files_url) = job(&srv).await;
    let id = job["jobId"].as_str().unwrap();
    let mut c = srv.connect().await;
    send_json(
        &mut c,
        json!({"action": "subscribe", "jobId": id, "token": job["token"]}),
    )
    .await;
    assert_eq!(next_json(&mut c).await["seq"], 1);

    let bytes = csv(2000);
    let r = ask_upload(
        &files_url,
        &msg,
        json!({"name": "report.csv", "contentType": "text/csv", "size": bytes.len()}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let upload: Value = r.json().await.unwrap();
    assert_eq!(upload["name"], "report.csv");
    assert_eq!(upload["headers"], json!({"Content-Type": "text/csv"}));
    assert!(upload["expiresAt"].as_str().is_some());
    // Not there until uploaded: attaching it is refused, nothing applied.
    let missing = post_update(
        &msg,
        json!({"status": "succeeded", "files": ["report.csv"]}),
    )
    .await;
    let p = problem(missing, 422, "file_missing").await;
    assert_eq!(p["file"], "report.csv");
    assert_eq!(srv.job_view(id).await["seq"], 1);

    assert_eq!(put(&upload, bytes.clone()).await.status(), 200);
    let done = accepted_update(
        &msg,
        json!({"status": "succeeded", "result": {"rows": 2000}, "files": ["report.csv"]}),
    )
    .await;
    assert_eq!(done["seq"], 2);

    // Pushed: the terminal snapshot carries the file with a URL.
    let pushed = next_json(&mut c).await;
    assert_eq!(pushed["status"], "succeeded");
    let file = &pushed["files"][0];
    assert_eq!(
        (
            file["name"].as_str(),
            file["size"].as_u64(),
            file["contentType"].as_str()
        ),
        (
            Some("report.csv"),
            Some(bytes.len() as u64),
            Some("text/csv")
        )
    );
    assert!(file["expiresAt"].as_str().is_some());
    let got = reqwest::get(file["url"].as_str().unwrap()).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "text/csv");
    assert_eq!(
        got.headers()["content-disposition"],
        "attachment; filename=\"report.csv\""
    );
    assert_eq!(got.bytes().await.unwrap().to_vec(), bytes);

    // Read: GET /jobs/{id} presigns afresh; the list shows it too.
    let view = srv.job_view(id).await;
    assert_eq!(view["files"][0]["name"], "report.csv");
    let again = reqwest::get(view["files"][0]["url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(again.bytes().await.unwrap().to_vec(), bytes);
    // After the end, no more uploads.
    let late = ask_upload(&files_url, &msg, json!({"name": "more.csv", "size": 1})).await;
    problem(late, 409, "terminal").await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn files_attach_while_running_and_replace_by_name() {
    let (srv, dir) = server().await;
    let (job, msg, files_url) = job(&srv).await;
    let id = job["jobId"].as_str().unwrap();
    for (name, body) in [("part-1.txt", "one"), ("part-2.txt", "two")] {
        let r = ask_upload(&files_url, &msg, json!({"name": name, "size": body.len()})).await;
        let upload: Value = r.json().await.unwrap();
        assert_eq!(upload["headers"], json!({}));
        assert_eq!(put(&upload, body.into()).await.status(), 200);
    }
    // `files` alone is an update: seq + 1, the job stays running.
    let a = accepted_update(&msg, json!({"files": ["part-1.txt"]})).await;
    assert_eq!(
        (a["seq"].as_u64(), a["status"].as_str()),
        (Some(2), Some("running"))
    );
    accepted_update(&msg, json!({"percent": 50, "files": ["part-2.txt"]})).await;
    let view = srv.job_view(id).await;
    let names: Vec<&str> = view["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["part-1.txt", "part-2.txt"]);
    // Uploading a name again replaces it; attaching it again shows the new size.
    let r = ask_upload(&files_url, &msg, json!({"name": "part-1.txt", "size": 5})).await;
    let upload: Value = r.json().await.unwrap();
    put(&upload, b"one!!".to_vec()).await;
    accepted_update(&msg, json!({"files": ["part-1.txt"]})).await;
    let view = srv.job_view(id).await;
    assert_eq!(view["files"].as_array().unwrap().len(), 2);
    assert_eq!(view["files"][0]["size"], 5);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn bad_upload_requests_are_refused_with_the_fix() {
    let (srv, dir) = server().await;
    let (_, msg, files_url) = job(&srv).await;
    for (body, code) in [
        (json!({"name": "../etc/passwd", "size": 1}), "invalid_file"),
        (json!({"name": ".hidden", "size": 1}), "invalid_file"),
        (json!({"name": "a.csv"}), "invalid_file"),
        (json!({"name": "a.csv", "size": -1}), "invalid_file"),
        (
            json!({"name": "a.csv", "size": 5_368_709_121u64}),
            "invalid_file",
        ),
        (json!({"name": "a.csv", "size": 1.5}), "invalid_file"),
        (
            json!({"name": "a.csv", "size": 1, "contentType": 7}),
            "invalid_file",
        ),
        (
            json!({"name": "a.csv", "size": 1, "bucket": "x"}),
            "invalid_file",
        ),
    ] {
        problem(ask_upload(&files_url, &msg, body).await, 422, code).await;
    }
    let anonymous = reqwest::Client::new()
        .post(&files_url)
        .json(&json!({"name": "a.csv", "size": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // 20 distinct names a job; an existing one may be asked for again.
    for i in 0..20 {
        let r = ask_upload(
            &files_url,
            &msg,
            json!({"name": format!("f{i}.bin"), "size": 1}),
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    problem(
        ask_upload(&files_url, &msg, json!({"name": "f20.bin", "size": 1})).await,
        422,
        "too_many_files",
    )
    .await;
    let again = ask_upload(&files_url, &msg, json!({"name": "f3.bin", "size": 1})).await;
    assert_eq!(again.status(), 201);
    // A bad `files` in an update.
    problem(
        post_update(&msg, json!({"files": "a.csv"})).await,
        422,
        "invalid_update",
    )
    .await;
    problem(
        post_update(&msg, json!({"files": ["../x"]})).await,
        422,
        "invalid_update",
    )
    .await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn expired_altered_and_foreign_urls_get_one_403_whether_or_not_the_file_exists() {
    let (srv, dir) = server().await;
    let (job, msg, files_url) = job(&srv).await;
    let id = job["jobId"].as_str().unwrap();
    let r = ask_upload(
        &files_url,
        &msg,
        json!({"name": "a.csv", "size": 3, "contentType": "text/csv"}),
    )
    .await;
    let upload: Value = r.json().await.unwrap();
    let upload_url = upload["uploadUrl"].as_str().unwrap().to_string();
    // The upload must carry the content type it was signed for.
    let untyped = reqwest::Client::new()
        .put(&upload_url)
        .body("a,b")
        .send()
        .await
        .unwrap();
    let refusal = problem(untyped, 403, "forbidden").await;
    assert_eq!(put(&upload, b"a,b".to_vec()).await.status(), 200);
    accepted_update(&msg, json!({"files": ["a.csv"]})).await;
    let url = srv.job_view(id).await["files"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();

    // A URL of the same server, signed an hour ago for a minute.
    let key = srv.deps.tokens.derive(b"files");
    let signer = jobcast::files::LocalFiles::new(&dir, &srv.url(""), &key).unwrap();
    use jobcast::files::Files;
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let expired = signer
        .download_url(id, "a.csv", std::time::Duration::from_secs(60), hour_ago)
        .await
        .unwrap();
    let expired_missing = signer
        .download_url(id, "b.csv", std::time::Duration::from_secs(60), hour_ago)
        .await
        .unwrap();
    let fresh_missing = signer
        .download_url(
            id,
            "b.csv",
            std::time::Duration::from_secs(60),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let other_job = url.replace(&format!("/files/{id}/"), "/files/job_0000/");
    let other_name = url.replace("/a.csv?", "/b.csv?");
    let altered = url.replace("sig=", "sig=A");
    let client = reqwest::Client::new();
    for bad in [
        &expired,
        &expired_missing,
        &other_job,
        &other_name,
        &altered,
        &upload_url,
    ] {
        let r = client.get(bad.as_str()).send().await.unwrap();
        let p = problem(r, 403, "forbidden").await;
        assert_eq!(
            p["detail"], refusal["detail"],
            "one answer for every refusal"
        );
    }
    // A download URL never uploads.
    let r = client.put(&url).body("x").send().await.unwrap();
    problem(r, 403, "forbidden").await;
    assert_eq!(
        reqwest::get(&url)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"a,b"
    );
    // A valid URL for a name never uploaded: not found (nothing is hidden
    // from someone who holds a valid URL).
    assert_eq!(reqwest::get(&fresh_missing).await.unwrap().status(), 404);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_partial_upload_never_shows_as_a_file() {
    let (srv, dir) = server().await;
    let (_, msg, files_url) = job(&srv).await;
    let r = ask_upload(
        &files_url,
        &msg,
        json!({"name": "big.bin", "size": 1_000_000}),
    )
    .await;
    let upload: Value = r.json().await.unwrap();
    let url = reqwest::Url::parse(upload["uploadUrl"].as_str().unwrap()).unwrap();
    // A client that announces a megabyte, sends some of it and hangs up.
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let head = format!(
        "PUT {}?{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000000\r\n\r\n",
        url.path(),
        url.query().unwrap_or(""),
        srv.addr
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[7u8; 300_000]).await.unwrap();
    drop(s);
    // The server notices the hang-up; nothing was stored under the name.
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            let r = post_update(&msg, json!({"files": ["big.bin"]})).await;
            if r.status() == 422 {
                break r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    problem(refused, 422, "file_missing").await;
    // And no temporary upload is left behind once the server saw the end.
    tokio::time::timeout(WAIT, async {
        loop {
            let left: Vec<_> = std::fs::read_dir(dir.join(msg_job(&msg)))
                .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
                .unwrap_or_default();
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the partial upload is removed");
    let _ = std::fs::remove_dir_all(dir);
}

/// The job id of a job message.
fn msg_job(msg: &Value) -> String {
    msg["updateUrl"]
        .as_str()
        .unwrap()
        .split('/')
        .rev()
        .nth(1)
        .unwrap()
        .to_string()
}

/// The rules both file stores keep, through their real URLs: what a PUT
/// to an upload URL stores is what `stat` reports and a GET of a download
/// URL returns; a name never uploaded is `None`; uploading a name again
/// replaces it; a download URL made an hour ago for a minute is refused
/// (`checks_urls`: moto, unlike S3, checks neither signatures nor expiry,
/// so there the URL's signed lifetime is what is checked).
async fn files_suite(files: std::sync::Arc<dyn jobcast::files::Files>, checks_urls: bool) {
    let job = format!("job_{:016x}", rand::random::<u64>());
    let now = chrono::Utc::now();
    let client = reqwest::Client::new();
    assert_eq!(files.stat(&job, "report.csv").await.unwrap(), None);
    let bytes = csv(500);
    let upload = files
        .upload_url(&job, "report.csv", Some("text/csv"), now)
        .await
        .unwrap();
    let upload = serde_json::to_value(&upload).unwrap();
    let r = put(&upload, bytes.clone()).await;
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let stored = files.stat(&job, "report.csv").await.unwrap().unwrap();
    assert_eq!(stored.size, bytes.len() as u64);
    assert_eq!(stored.content_type.as_deref(), Some("text/csv"));
    let url = files
        .download_url(&job, "report.csv", std::time::Duration::from_secs(60), now)
        .await
        .unwrap();
    let got = client.get(&url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), bytes);
    // Replaced by a second upload of the same name (no content type now).
    let again = files
        .upload_url(&job, "report.csv", None, now)
        .await
        .unwrap();
    put(&serde_json::to_value(&again).unwrap(), b"x".to_vec()).await;
    assert_eq!(
        files.stat(&job, "report.csv").await.unwrap().unwrap().size,
        1
    );
    // Another job's name of the same name is another file.
    assert_eq!(files.stat("job_other", "report.csv").await.unwrap(), None);
    let hour_ago = now - chrono::Duration::hours(1);
    let stale = files
        .download_url(
            &job,
            "report.csv",
            std::time::Duration::from_secs(60),
            hour_ago,
        )
        .await
        .unwrap();
    if checks_urls {
        assert_eq!(client.get(&stale).send().await.unwrap().status(), 403);
    } else {
        assert!(stale.contains("X-Amz-Expires=60"), "{stale}");
    }
}

#[tokio::test]
async fn the_directory_store_keeps_the_rules() {
    let (srv, dir) = server().await;
    let key = srv.deps.tokens.derive(b"files");
    let local = jobcast::files::LocalFiles::new(&dir, &srv.url(""), &key).unwrap();
    files_suite(std::sync::Arc::new(local), true).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn an_s3_bucket_keeps_the_rules() {
    let endpoint = emulators::s3();
    let config = local_sdk(Some(&endpoint));
    let bucket = format!("jobcast-test-{:08x}", rand::random::<u32>());
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    files_suite(
        std::sync::Arc::new(jobcast::files::S3Files::new(&config, &bucket)),
        false,
    )
    .await;
}

#[tokio::test]
async fn the_rust_worker_client_uploads_bytes_and_a_streamed_path() {
    let (srv, dir) = server().await;
    let (job, msg, files_url) = job(&srv).await;
    let id = job["jobId"].as_str().unwrap();
    let mut message = msg.clone();
    message["jobId"] = json!(id);
    let worker = jobcast_worker::Job::from_value(message).unwrap();
    assert_eq!(worker.files_url(), files_url);
    let data: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let src = dir.join("source.bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&src, &data).unwrap();
    let up = worker.upload("big.bin", src.as_path(), None).await.unwrap();
    assert_eq!(up.size, data.len() as u64);
    worker
        .upload("notes.txt", b"hello".as_slice(), Some("text/plain"))
        .await
        .unwrap();
    let done = worker
        .succeed_with_files(Some(json!({"ok": true})), None, &["big.bin", "notes.txt"])
        .await
        .unwrap();
    assert_eq!(done.status, "succeeded");
    let view = srv.job_view(id).await;
    let got = reqwest::get(view["files"][0]["url"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), data.as_slice());
    assert_eq!(view["files"][1]["contentType"], "text/plain");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_webhook_carries_the_files_with_working_urls() {
    let dir =
        std::env::temp_dir().join(format!("jobcast-files-test-{:016x}", rand::random::<u64>()));
    let d = dir.clone();
    let srv = start_with(move |c| {
        c.kinds = Kinds::parse_list("export=command:true").unwrap();
        c.files.dir = Some(d);
        c.webhook_secret = Some(SECRET.into());
    })
    .await;
    let receiver = webhook_receiver(vec![200]).await;
    let created: Value = srv
        .http
        .post(srv.url("/jobs"))
        .json(&json!({"kind": "export", "input": {}, "callbackUrl": format!("http://{}/hook", receiver.addr)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["jobId"].as_str().unwrap();
    let token = srv
        .deps
        .tokens
        .issue_worker(id, chrono::Utc::now().timestamp());
    let msg = json!({"updateUrl": srv.url(&format!("/jobs/{id}/updates")), "workerToken": token});
    let files_url = srv.url(&format!("/jobs/{id}/files"));
    let r = ask_upload(&files_url, &msg, json!({"name": "out.txt", "size": 2})).await;
    let upload: Value = r.json().await.unwrap();
    put(&upload, b"ok".to_vec()).await;
    accepted_update(&msg, json!({"status": "succeeded", "files": ["out.txt"]})).await;
    let body: Value = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(r) = receiver.got.lock().unwrap().first().cloned() {
                return serde_json::from_slice(&r.body).unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the webhook in time");
    assert_eq!(body["status"], "succeeded");
    let url = body["files"][0]["url"].as_str().unwrap();
    assert_eq!(reqwest::get(url).await.unwrap().text().await.unwrap(), "ok");
    let _ = std::fs::remove_dir_all(dir);
}
