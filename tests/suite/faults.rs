//! Faults: DynamoDB goes away in the middle of a run and comes back. The
//! jobs API answers 503 problem+json with Retry-After, `$connect` is
//! refused with a status (never a hang or a crash), everything else keeps
//! serving, and once DynamoDB returns the same jobs are there, unharmed.

use crate::common::*;
use jobcast::store::DynamoStore;
use serde_json::{Value, json};
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

/// A DynamoDB Local of this test's own, on disk so a restart keeps the data.
struct OwnDynamo {
    child: Option<Child>,
    port: u16,
    data: std::path::PathBuf,
}

impl OwnDynamo {
    fn start(port: u16, data: std::path::PathBuf) -> OwnDynamo {
        let mut d = OwnDynamo {
            child: None,
            port,
            data,
        };
        d.up();
        d
    }

    fn up(&mut self) {
        let child = emulators::dynamodb_command(self.port, Some(&self.data))
            .spawn()
            .expect("java");
        self.child = Some(child);
        emulators::wait_port(self.port, "DynamoDB Local");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnDynamo {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn dynamodb_down_then_back_503_with_retry_after_and_nothing_lost() {
    let data = std::env::temp_dir().join(format!("jobcast-faults-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&data).unwrap();
    let mut db = OwnDynamo::start(emulators::free_port(), data);
    let store = DynamoStore::new(
        dynamodb_client_at(&db.endpoint()),
        "jobcast-faults",
        Duration::from_secs(3600),
    );
    store.ensure_table().await.unwrap();
    let srv = start_on(Arc::new(store), |_| {}).await;

    let job = srv.create_job(json!({"steps": 3, "stepMs": 10})).await;
    let id = job["jobId"].as_str().unwrap().to_string();
    let mut before = Value::Null;
    for _ in 0..200 {
        before = srv.job_view(&id).await;
        if before["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(before["status"], "succeeded", "{before}");

    // A job that is running through the outage.
    let long = srv.create_job(json!({"steps": 40, "stepMs": 150})).await;
    let long_id = long["jobId"].as_str().unwrap().to_string();
    // Running when the store goes.
    while srv.job_view(&long_id).await["seq"].as_u64() < Some(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    db.kill();

    // The jobs API: 503 problem+json with Retry-After, for a read and a write.
    let res = srv
        .http
        .get(srv.url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = srv
        .http
        .post(srv.url("/jobs"))
        .json(&json!({"kind": "demo", "input": {"steps": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["status"], 503);

    // $connect for a job is refused with a status, not left hanging.
    let url = job["websocketUrl"].as_str().unwrap().to_string();
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(url.clone()),
    )
    .await
    .expect("the handshake is answered");
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert!(r.status().is_server_error(), "{}", r.status())
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    // Connections without a job, health and metrics carry on.
    let mut c = srv.connect().await;
    srv.connection_id(&mut c).await;
    let health = srv.http.get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // DynamoDB returns: everything recovers by itself, nothing was lost.
    db.up();
    let mut after = Value::Null;
    for _ in 0..100 {
        let res = srv
            .http
            .get(srv.url(&format!("/jobs/{id}")))
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            after = res.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(after, before, "the job reads back exactly as it was");
    // The running job carried on by itself once its updates could be stored.
    let mut finished = Value::Null;
    for _ in 0..300 {
        let v = srv.job_view(&long_id).await;
        if v["status"] != "running" && v["status"] != "queued" {
            finished = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["percent"], 100.0);
    assert_eq!(finished["result"], json!({"steps": 40}));
    // At least one update per step; an update whose reply was lost when the
    // database died may have been stored twice (seq counts stored updates).
    assert!(finished["seq"].as_u64().unwrap() >= 42, "{finished}");
    let again = srv.create_job(json!({"steps": 1, "stepMs": 0})).await;
    assert_eq!(again["status"], "queued");
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("$connect works again");
    drop(ws);
}
