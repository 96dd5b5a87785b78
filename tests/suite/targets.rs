//! Step Functions, EventBridge and ECS as job targets, against moto's
//! server: `jobcast serve` (its own process, pointed at moto with
//! `AWS_ENDPOINT_URL`) hands each job over, the test finds what the
//! service received and reports for the worker through `serve`.

use crate::common::*;
use serde_json::{Value, json};
use std::time::Duration;

const REGION: &str = "us-east-1";

fn sdk() -> aws_config::SdkConfig {
    local_sdk(Some(&emulators::sqs()))
}

/// `jobcast serve` handing `kind` to `target`, with every AWS call going
/// to moto.
fn serve_with(kind: &str) -> (Process, String) {
    serve_against(kind, &emulators::sqs())
}

/// `jobcast serve` handing `kind` to `target`, every AWS call going to
/// `endpoint`.
fn serve_against(kind: &str, endpoint: &str) -> (Process, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_jobcast"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--kind",
            kind,
        ])
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("JOBCAST_TOKEN_SECRET", SECRET)
        .env_remove("JOBCAST_KINDS")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let process = Process::new(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (process, format!("http://127.0.0.1:{port}"))
}

async fn post_job(base: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn view(base: &str, id: &str) -> Value {
    reqwest::get(format!("{base}/jobs/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `find` until it gives something, for at most WAIT.
async fn eventually<T, F, Fut>(what: &str, find: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(t) = find().await {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} in time"))
}

/// Reports for the worker of `msg` until the job succeeds, and checks it did.
async fn work_and_check(base: &str, msg: &Value) {
    accepted_update(msg, json!({"percent": 50})).await;
    accepted_update(msg, json!({"status": "succeeded", "result": {"ok": true}})).await;
    let v = view(base, msg["jobId"].as_str().unwrap()).await;
    assert_eq!(v["status"], "succeeded");
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn a_state_machine_gets_one_execution_per_job_named_by_its_id() {
    let sfn = aws_sdk_sfn::Client::new(&sdk());
    let arn = sfn
        .create_state_machine()
        .name(format!("jobs-{:08x}", rand::random::<u32>()))
        .definition(r#"{"StartAt":"Work","States":{"Work":{"Type":"Pass","End":true}}}"#)
        .role_arn("arn:aws:iam::123456789012:role/jobs")
        .send()
        .await
        .unwrap()
        .state_machine_arn
        .clone();
    let (_serve, base) = serve_with(&format!("render=states:{arn}"));
    let job: Value = post_job(&base, json!({"kind": "render", "input": {"frames": 24}}))
        .await
        .json()
        .await
        .unwrap();
    let id = job["jobId"].as_str().unwrap().to_string();
    let execution_arn = eventually("the execution", || async {
        let list = sfn
            .list_executions()
            .state_machine_arn(&arn)
            .send()
            .await
            .ok()?;
        list.executions()
            .iter()
            .find(|e| e.name() == id)
            .map(|e| e.execution_arn().to_string())
    })
    .await;
    let described = sfn
        .describe_execution()
        .execution_arn(&execution_arn)
        .send()
        .await
        .unwrap();
    let msg: Value = serde_json::from_str(described.input().unwrap()).unwrap();
    assert_eq!(
        (msg["jobId"].as_str(), msg["kind"].as_str()),
        (Some(id.as_str()), Some("render"))
    );
    assert_eq!(msg["input"], json!({"frames": 24}));

    // The same job handed over again (its answer lost, say) starts nothing.
    let again = jobcast::dispatch::states::StatesTarget::new(sfn.clone(), arn.clone());
    let message = jobcast::dispatch::JobMessage {
        message_type: "job",
        job_id: id.clone(),
        kind: "render".into(),
        input: msg["input"].clone(),
        created_at: msg["createdAt"].as_str().unwrap().into(),
        attempt: 1,
        worker_token: msg["workerToken"].as_str().unwrap().into(),
        update_url: msg["updateUrl"].as_str().unwrap().into(),
        heartbeat_timeout_seconds: 300,
        traceparent: None,
    };
    use jobcast::dispatch::Deliver;
    again
        .deliver(&message, described.input().unwrap())
        .await
        .unwrap();
    let list = sfn
        .list_executions()
        .state_machine_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        list.executions().iter().filter(|e| e.name() == id).count(),
        1
    );
    work_and_check(&base, &msg).await;
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn an_event_reaches_a_queue_through_a_rule() {
    let config = sdk();
    let events = aws_sdk_eventbridge::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let bus = format!("jobs-{:08x}", rand::random::<u32>());
    events.create_event_bus().name(&bus).send().await.unwrap();
    let queue = sqs
        .create_queue()
        .queue_name(format!("{bus}-q"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .unwrap();
    events
        .put_rule()
        .name("jobcast-encode")
        .event_bus_name(&bus)
        .event_pattern(r#"{"source":["jobcast"],"detail-type":["Job Submitted"],"detail":{"kind":["encode"]}}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("jobcast-encode")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (_serve, base) = serve_with(&format!("encode=events:{bus}"));
    let job: Value = post_job(
        &base,
        json!({"kind": "encode", "input": {"video": "a.mp4"}}),
    )
    .await
    .json()
    .await
    .unwrap();
    let event: Value = eventually("the event on the queue", || async {
        let got = sqs
            .receive_message()
            .queue_url(&queue)
            .wait_time_seconds(1)
            .send()
            .await
            .ok()?;
        let body = got.messages().first()?.body()?.to_string();
        serde_json::from_str(&body).ok()
    })
    .await;
    assert_eq!(event["source"], "jobcast");
    assert_eq!(event["detail-type"], "Job Submitted");
    let msg = &event["detail"];
    assert_eq!(msg["jobId"], job["jobId"]);
    assert_eq!(msg["input"], json!({"video": "a.mp4"}));
    work_and_check(&base, msg).await;
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn a_task_runs_with_the_job_message_in_its_environment() {
    let ecs = aws_sdk_ecs::Client::new(&sdk());
    let cluster = format!("jobs-{:08x}", rand::random::<u32>());
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    let family = format!("{cluster}-encode");
    ecs.register_task_definition()
        .family(&family)
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("worker")
                .image("example/encoder:1")
                .memory(512)
                .build(),
        )
        .send()
        .await
        .unwrap();
    // No container named: the task definition's only one gets the message.
    let (_serve, base) = serve_with(&format!(
        "encode=ecs:{cluster}/{family}?launchType=FARGATE&subnets=subnet-1&securityGroups=sg-1"
    ));
    let job: Value = post_job(
        &base,
        json!({"kind": "encode", "input": {"video": "b.mp4"}}),
    )
    .await
    .json()
    .await
    .unwrap();
    let msg: Value = eventually("the task", || async {
        let arns = ecs.list_tasks().cluster(&cluster).send().await.ok()?;
        let arn = arns.task_arns().first()?.clone();
        let tasks = ecs
            .describe_tasks()
            .cluster(&cluster)
            .tasks(arn)
            .send()
            .await
            .ok()?;
        let task = tasks.tasks().first()?;
        assert_eq!(task.started_by(), Some("jobcast"));
        let env = task.overrides()?.container_overrides().first()?;
        assert_eq!(env.name(), Some("worker"));
        let var = env
            .environment()
            .iter()
            .find(|v| v.name() == Some("JOBCAST_JOB"))?;
        serde_json::from_str(var.value()?).ok()
    })
    .await;
    assert_eq!(msg["jobId"], job["jobId"]);
    assert_eq!(msg["input"], json!({"video": "b.mp4"}));
    work_and_check(&base, &msg).await;

    // A message too large for a task's overrides is refused at POST /jobs.
    let big = "x".repeat(9000);
    let r = post_job(&base, json!({"kind": "encode", "input": {"blob": big}})).await;
    assert_eq!(r.status(), 413);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("at most"), "{p}");
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn a_target_that_refuses_ends_the_job_dispatch_failed_with_the_services_reason() {
    // A state machine that does not exist: the job is accepted, the
    // hand-over refused, and the job ends with the service's error (a
    // refusal that will not change is not retried).
    let missing = "arn:aws:states:us-east-1:123456789012:stateMachine:nowhere";
    let (_serve, base) = serve_with(&format!("render=states:{missing}"));
    let r = post_job(&base, json!({"kind": "render", "input": {}})).await;
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    let id = job["jobId"].as_str().unwrap().to_string();
    let ended = eventually("the job's end", || async {
        let v = view(&base, &id).await;
        (v["status"] == "failed").then_some(v)
    })
    .await;
    assert_eq!(ended["error"]["code"], "dispatch_failed");
    assert!(
        ended["error"]["message"]
            .as_str()
            .unwrap()
            .contains("StateMachineDoesNotExist"),
        "{ended}"
    );
}

#[tokio::test]
async fn an_answer_without_an_error_code_is_reported_with_its_status() {
    // An endpoint that answers every call 500 with an empty body, as a
    // proxy or a crashing emulator would: the SQS kind's single attempt is
    // refused to the caller with the status, not "no message".
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    let (_serve, base) = serve_against(
        "export=sqs:http://127.0.0.1:1/123456789012/exports",
        &format!("http://{addr}"),
    );
    let r = post_job(&base, json!({"kind": "export", "input": {}})).await;
    assert_eq!(r.status(), 503);
    let p: Value = r.json().await.unwrap();
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("HTTP 500 without an error code"),
        "{p}"
    );
}
