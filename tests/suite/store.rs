//! Store semantics every backend must share: the same suite runs against
//! `MemoryStore` and against `DynamoStore` on DynamoDB Local.

use chrono::Utc;
use jobcast::clock::ManualClock;
use jobcast::protocol::Status;
use jobcast::store::streams::{AppendOptions, StreamAppend};
use jobcast::store::{
    Follower, IdempotencyOutcome, IdempotencyRecord, JobPage, JobQuery, JobRecord, JobUpdate,
    Liveness, MemoryStore, Store, StoreError, WebhookState, WebhookStatus,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn new_job(id: &str) -> JobRecord {
    let mut job = JobRecord::queued(id, "demo", json!({}), None, Utc::now());
    job.snapshot.message = None;
    job
}

fn running(p: f64) -> JobUpdate {
    let mut u = JobUpdate::status(Status::Running);
    u.percent = Some(p);
    u
}

async fn suite(store: Arc<dyn Store>) {
    // Creation is exclusive.
    store.create_job(new_job("a")).await.unwrap();
    assert!(matches!(
        store.create_job(new_job("a")).await,
        Err(StoreError::AlreadyExists(_))
    ));

    // Concurrent updates each get their own seq: no lost increment.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            s.update_job("a", JobUpdate::status(Status::Running), Utc::now())
                .await
                .unwrap()
                .snapshot
                .seq
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (2..=51).collect::<Vec<_>>());

    // Percent never goes down; out-of-range refused.
    store
        .update_job("a", running(40.0), Utc::now())
        .await
        .unwrap();
    assert!(matches!(
        store.update_job("a", running(30.0), Utc::now()).await,
        Err(StoreError::PercentBackwards { .. })
    ));
    assert!(matches!(
        store.update_job("a", running(101.0), Utc::now()).await,
        Err(StoreError::InvalidUpdate(_))
    ));
    assert!(matches!(
        store.update_job("a", running(f64::NAN), Utc::now()).await,
        Err(StoreError::InvalidUpdate(_))
    ));

    // Terminal is final.
    let mut done = JobUpdate::status(Status::Succeeded);
    done.result = Some(json!({"ok": true, "rows": [1, 2.5, "x"]}));
    done.message = Some("all done".into());
    let j = store.update_job("a", done, Utc::now()).await.unwrap();
    assert_eq!(j.snapshot.percent, 100.0);
    // What comes back from a read is what the update returned.
    let read = store.get_job("a").await.unwrap().unwrap();
    assert_eq!(
        read.snapshot.result,
        Some(json!({"ok": true, "rows": [1, 2.5, "x"]}))
    );
    assert_eq!(read.snapshot.message.as_deref(), Some("all done"));
    assert_eq!(read.snapshot.seq, j.snapshot.seq);
    assert_eq!(read.kind, "demo");
    assert_eq!(j.snapshot.seq, 53);
    assert!(matches!(
        store.update_job("a", running(100.0), Utc::now()).await,
        Err(StoreError::Terminal { .. })
    ));
    assert!(matches!(
        store.request_cancel("a").await,
        Err(StoreError::Terminal { .. })
    ));
    assert_eq!(store.get_job("a").await.unwrap().unwrap().snapshot.seq, 53);
    assert!(matches!(
        store.update_job("zz", running(1.0), Utc::now()).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.get_job("zz").await.unwrap().is_none());

    // Webhook bookkeeping changes no seq and reads back whole.
    let state = WebhookState {
        status: WebhookStatus::Failed,
        attempts: 3,
        last_status: Some(500),
        last_error: Some("receiver answered 500".into()),
        updated_at: Utc::now(),
    };
    store.set_webhook("a", state.clone()).await.unwrap();
    let j = store.get_job("a").await.unwrap().unwrap();
    assert_eq!(j.snapshot.seq, 53);
    let got = j.webhook.unwrap();
    assert_eq!(
        (got.status, got.attempts, got.last_status),
        (WebhookStatus::Failed, 3, Some(500))
    );
    assert!(matches!(
        store.set_webhook("zz", state).await,
        Err(StoreError::NotFound(_))
    ));

    // Cancellation is recorded on a live job.
    store.create_job(new_job("b")).await.unwrap();
    assert!(store.request_cancel("b").await.unwrap().cancel_requested);

    // A failure keeps its error.
    store.create_job(new_job("c")).await.unwrap();
    let mut fail = JobUpdate::status(Status::Failed);
    fail.error = Some(jobcast::protocol::JobError {
        code: "boom".into(),
        message: "it broke".into(),
    });
    store.update_job("c", fail, Utc::now()).await.unwrap();
    let c = store.get_job("c").await.unwrap().unwrap();
    assert_eq!(c.snapshot.status, Status::Failed);
    assert_eq!(c.snapshot.error.unwrap().code, "boom");

    // Subscriptions both ways.
    let now = Utc::now();
    store.subscribe("a", "c1", now).await.unwrap();
    store.subscribe("b", "c1", now).await.unwrap();
    store.subscribe("a", "c2", now).await.unwrap();
    store.subscribe("a", "c2", now).await.unwrap();
    let mut subs = store.subscribers("a").await.unwrap();
    subs.sort();
    assert_eq!(subs, vec!["c1", "c2"]);
    assert_eq!(store.connection_jobs("c1").await.unwrap(), vec!["a", "b"]);
    assert!(store.unsubscribe("a", "c2").await.unwrap());
    assert!(!store.unsubscribe("a", "c2").await.unwrap());
    assert_eq!(store.subscribers("a").await.unwrap(), vec!["c1"]);
    assert_eq!(store.remove_connection("c1").await.unwrap(), 2);
    assert!(store.subscribers("a").await.unwrap().is_empty());
    assert!(store.subscribers("b").await.unwrap().is_empty());
    assert_eq!(store.remove_connection("c1").await.unwrap(), 0);

    // Idempotency keys bind once.
    let rec = IdempotencyRecord {
        request_hash: "h1".into(),
        job_id: "a".into(),
        response: json!({"jobId": "a"}),
    };
    assert_eq!(
        store.put_idempotency("k", rec.clone()).await.unwrap(),
        IdempotencyOutcome::Recorded
    );
    let other = IdempotencyRecord {
        request_hash: "h2".into(),
        job_id: "b".into(),
        response: json!({}),
    };
    assert_eq!(
        store.put_idempotency("k", other.clone()).await.unwrap(),
        IdempotencyOutcome::Existing(rec.clone())
    );
    // Releasing for another job leaves the key alone; for its own job frees it.
    store.release_idempotency("k", "b").await.unwrap();
    assert_eq!(
        store.put_idempotency("k", other.clone()).await.unwrap(),
        IdempotencyOutcome::Existing(rec)
    );
    store.release_idempotency("k", "a").await.unwrap();
    store.release_idempotency("never-bound", "a").await.unwrap();
    assert_eq!(
        store.put_idempotency("k", other).await.unwrap(),
        IdempotencyOutcome::Recorded
    );
}

/// What a restarted `serve` takes up: jobs not yet terminal, and terminal
/// ones whose webhook is still owed; nothing else.
async fn unfinished_suite(store: Arc<dyn Store>) {
    let hook = || Some("http://127.0.0.1:9/hook".to_string());
    let with_hook = |id: &str| JobRecord::queued(id, "demo", json!({}), hook(), Utc::now());
    let webhook = |status| WebhookState {
        status,
        attempts: 1,
        last_status: Some(500),
        last_error: None,
        updated_at: Utc::now(),
    };
    for id in [
        "queued",
        "running",
        "done",
        "hook-none",
        "hook-pending",
        "hook-sent",
    ] {
        let job = if id.starts_with("hook") {
            with_hook(id)
        } else {
            new_job(id)
        };
        store.create_job(job).await.unwrap();
    }
    store
        .update_job("running", running(50.0), Utc::now())
        .await
        .unwrap();
    for id in ["done", "hook-none", "hook-pending", "hook-sent"] {
        store
            .update_job(id, JobUpdate::status(Status::Succeeded), Utc::now())
            .await
            .unwrap();
    }
    store
        .set_webhook("hook-pending", webhook(WebhookStatus::Pending))
        .await
        .unwrap();
    store
        .set_webhook("hook-sent", webhook(WebhookStatus::Delivered))
        .await
        .unwrap();

    let mut ids: Vec<String> = store
        .unfinished_jobs(100)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.snapshot.job_id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["hook-none", "hook-pending", "queued", "running"]);
    assert_eq!(store.unfinished_jobs(2).await.unwrap().len(), 2);
}

#[tokio::test]
async fn memory_store_lists_unfinished_jobs() {
    unfinished_suite(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn dynamo_store_lists_unfinished_jobs() {
    unfinished_suite(Arc::new(crate::common::dynamo_store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_semantics() {
    suite(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn dynamo_store_semantics() {
    suite(Arc::new(crate::common::dynamo_store().await)).await;
}

fn worker_job(id: &str) -> JobRecord {
    JobRecord::queued(id, "export", json!({"file": "a.csv"}), None, Utc::now())
}

fn refreshed(status: Status, deadline: i64) -> JobUpdate {
    let mut u = JobUpdate::status(status);
    u.liveness = Liveness::Refresh(deadline);
    u
}

/// Liveness deadlines, the lost-job index and hand-over leases.
async fn liveness_suite(store: Arc<dyn Store>) {
    let now = Utc::now().timestamp();
    let id = format!("live-{:08x}", rand::random::<u32>());
    store.create_job(worker_job(&id)).await.unwrap();
    // A queued job with no deadline is never lost.
    assert!(
        !store
            .lost_jobs(now + 1_000, 100)
            .await
            .unwrap()
            .contains(&id)
    );

    // An update sets the deadline; the job is lost once it has passed.
    let mut u = refreshed(Status::Running, now + 10);
    u.message = Some("step 1".into());
    let j = store.update_job(&id, u, Utc::now()).await.unwrap();
    assert_eq!(j.deadline, Some(now + 10));
    assert!(!store.lost_jobs(now + 9, 100).await.unwrap().contains(&id));
    assert!(store.lost_jobs(now + 10, 100).await.unwrap().contains(&id));

    // An omitted message is cleared, percent kept.
    let mut u = refreshed(Status::Running, now + 10);
    u.percent = Some(30.0);
    store.update_job(&id, u, Utc::now()).await.unwrap();
    let j = store
        .update_job(&id, refreshed(Status::Running, now + 10), Utc::now())
        .await
        .unwrap();
    assert_eq!(j.snapshot.message, None);
    assert_eq!(j.snapshot.percent, 30.0);

    // A heartbeat moves the deadline without a new seq.
    let seq = j.snapshot.seq;
    let j = store.heartbeat(&id, Some(now + 20)).await.unwrap();
    assert_eq!(j.snapshot.seq, seq);
    assert_eq!(j.deadline, Some(now + 20));
    assert!(!store.lost_jobs(now + 10, 100).await.unwrap().contains(&id));

    // The sweep's update holds only while the deadline is still past: a
    // worker that reported in time wins.
    let mut lost = JobUpdate::status(Status::Failed);
    lost.liveness = Liveness::ExpiredBy(now + 10);
    assert!(matches!(
        store.update_job(&id, lost.clone(), Utc::now()).await,
        Err(StoreError::Conflict { .. })
    ));
    lost.liveness = Liveness::ExpiredBy(now + 20);
    let j = store.update_job(&id, lost, Utc::now()).await.unwrap();
    assert_eq!(j.snapshot.status, Status::Failed);
    assert_eq!(j.snapshot.seq, seq + 1);
    assert_eq!(j.deadline, None);
    assert!(
        !store
            .lost_jobs(now + 1_000, 100)
            .await
            .unwrap()
            .contains(&id)
    );
    assert!(matches!(
        store.heartbeat(&id, Some(now + 30)).await,
        Err(StoreError::Terminal { .. })
    ));
    assert!(matches!(
        store.heartbeat("no-such-job", Some(now)).await,
        Err(StoreError::NotFound(_))
    ));

    // A start deadline: set at hand-over on a job no worker reported on,
    // found by the same index, met by the worker's first report.
    let start = format!("{id}-start");
    store.create_job(worker_job(&start)).await.unwrap();
    store.mark_dispatched(&start, Some(now + 50)).await.unwrap();
    let j = store.get_job(&start).await.unwrap().unwrap();
    assert_eq!(
        (j.deadline, j.worker_seen, j.dispatched),
        (Some(now + 50), false, true)
    );
    assert!(
        !store
            .lost_jobs(now + 49, 100)
            .await
            .unwrap()
            .contains(&start)
    );
    assert!(
        store
            .lost_jobs(now + 50, 100)
            .await
            .unwrap()
            .contains(&start)
    );
    // With liveness off a heartbeat leaves no deadline at all.
    let j = store.heartbeat(&start, None).await.unwrap();
    assert_eq!((j.deadline, j.worker_seen), (None, true));
    assert!(
        !store
            .lost_jobs(now + 1_000, 100)
            .await
            .unwrap()
            .contains(&start)
    );
    // ... and so does an update.
    let update_first = format!("{id}-reported");
    store.create_job(worker_job(&update_first)).await.unwrap();
    store
        .mark_dispatched(&update_first, Some(now + 50))
        .await
        .unwrap();
    let mut u = JobUpdate::status(Status::Running);
    u.liveness = Liveness::Reported;
    let j = store
        .update_job(&update_first, u, Utc::now())
        .await
        .unwrap();
    assert_eq!((j.deadline, j.worker_seen), (None, true));
    // A worker that reported before its hand-over was recorded keeps its
    // own deadline; an ended job gets none.
    let early = format!("{id}-early");
    store.create_job(worker_job(&early)).await.unwrap();
    let u = refreshed(Status::Running, now + 500);
    store.update_job(&early, u, Utc::now()).await.unwrap();
    store.mark_dispatched(&early, Some(now + 50)).await.unwrap();
    let j = store.get_job(&early).await.unwrap().unwrap();
    assert_eq!((j.deadline, j.dispatched), (Some(now + 500), true));
    let ended = format!("{id}-ended");
    store.create_job(worker_job(&ended)).await.unwrap();
    let u = JobUpdate::status(Status::Cancelled);
    store.update_job(&ended, u, Utc::now()).await.unwrap();
    store.mark_dispatched(&ended, Some(now + 50)).await.unwrap();
    assert_eq!(store.get_job(&ended).await.unwrap().unwrap().deadline, None);

    // Many lost jobs: the index returns each once, within the limit.
    let ids: Vec<String> = (0..12).map(|n| format!("{id}-{n}")).collect();
    for (n, j) in ids.iter().enumerate() {
        store.create_job(worker_job(j)).await.unwrap();
        store
            .update_job(
                j,
                refreshed(Status::Running, now - 100 + n as i64),
                Utc::now(),
            )
            .await
            .unwrap();
    }
    let mut found = store.lost_jobs(now, 1_000).await.unwrap();
    found.retain(|j| ids.contains(j));
    found.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(found, want);
    assert!(store.lost_jobs(now, 5).await.unwrap().len() <= 5);

    // Leases: one holder at a time, each hand-over counted.
    let h = format!("lease-{:08x}", rand::random::<u32>());
    store.create_job(worker_job(&h)).await.unwrap();
    let j = store.hand_over(&h, "A", now + 100, now).await.unwrap();
    assert_eq!(j.attempt, 2);
    assert_eq!(j.lease.as_ref().map(|l| l.owner.as_str()), Some("A"));
    assert!(matches!(
        store.hand_over(&h, "B", now + 100, now).await,
        Err(StoreError::Conflict { .. })
    ));
    // The holder may renew; anyone may take it once it has lapsed.
    assert_eq!(
        store
            .hand_over(&h, "A", now + 100, now)
            .await
            .unwrap()
            .attempt,
        3
    );
    let j = store
        .hand_over(&h, "B", now + 400, now + 101)
        .await
        .unwrap();
    assert_eq!(j.attempt, 4);
    assert!(!j.dispatched);
    store.mark_dispatched(&h, None).await.unwrap();
    let j = store.get_job(&h).await.unwrap().unwrap();
    assert!(j.dispatched && j.lease.is_none());
    assert_eq!(j.deadline, None, "no start deadline asked");
    // Once its worker has it, nobody hands it over again (a process that
    // read it before the hand-over was recorded included).
    assert!(matches!(
        store.hand_over(&h, "C", now + 400, now + 1_000).await,
        Err(StoreError::Conflict { .. })
    ));

    // Racing processes: exactly one takes a free job.
    let r = format!("race-{:08x}", rand::random::<u32>());
    store.create_job(worker_job(&r)).await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (s, r) = (Arc::clone(&store), r.clone());
        tasks.push(tokio::spawn(async move {
            s.hand_over(&r, &format!("serve-{n}"), now + 100, now).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(j) => {
                won += 1;
                assert_eq!(j.attempt, 2);
            }
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);

    // A terminal job is never handed over again.
    store
        .update_job(&r, JobUpdate::status(Status::Cancelled), Utc::now())
        .await
        .unwrap();
    assert!(matches!(
        store.hand_over(&r, "serve-0", now + 100, now + 1_000).await,
        Err(StoreError::Terminal { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_liveness_and_leases() {
    liveness_suite(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn dynamo_store_liveness_and_leases() {
    liveness_suite(Arc::new(crate::common::dynamo_store().await)).await;
}

/// Owners and tags survive storage and every later update.
async fn owner_suite(store: Arc<dyn Store>) {
    let job = new_job("owned").owned_by("alice", vec!["reports".into(), "q3".into()]);
    store.create_job(job).await.unwrap();
    store
        .update_job("owned", running(50.0), Utc::now())
        .await
        .unwrap();
    let got = store.get_job("owned").await.unwrap().unwrap();
    assert_eq!(got.owner.as_deref(), Some("alice"));
    assert_eq!(got.tags, ["reports", "q3"]);
    let view = got.public_view();
    assert_eq!(view["owner"], "alice");
    assert_eq!(view["tags"], json!(["reports", "q3"]));
    // A job without an owner shows neither.
    store.create_job(new_job("anonymous")).await.unwrap();
    let view = store
        .get_job("anonymous")
        .await
        .unwrap()
        .unwrap()
        .public_view();
    assert!(
        view.get("owner").is_none() && view.get("tags").is_none(),
        "{view}"
    );
}

/// An owner's jobs, newest first, filtered and paged the same in every store.
async fn listing_suite(store: Arc<dyn Store>) {
    let base = Utc::now();
    for i in 0..5 {
        let tags = if i % 2 == 0 {
            vec!["even".to_string()]
        } else {
            vec![]
        };
        let mut job = new_job(&format!("a{i}")).owned_by("alice", tags);
        job.created_at = base + chrono::Duration::milliseconds(i);
        store.create_job(job).await.unwrap();
    }
    store
        .create_job(new_job("b0").owned_by("bob", vec!["even".into()]))
        .await
        .unwrap();
    store
        .update_job("a3", running(10.0), Utc::now())
        .await
        .unwrap();
    let page = |status, tag: Option<&str>, limit, after: Option<String>| {
        let store = Arc::clone(&store);
        let q = JobQuery {
            status,
            tag: tag.map(str::to_string),
            limit,
            after,
        };
        async move { store.owner_jobs("alice", &q).await.unwrap() }
    };
    let ids = |p: &JobPage| {
        p.jobs
            .iter()
            .map(|j| j.snapshot.job_id.clone())
            .collect::<Vec<_>>()
    };
    let first = page(None, None, 2, None).await;
    assert_eq!(ids(&first), ["a4", "a3"]);
    let second = page(None, None, 2, first.next.clone()).await;
    assert_eq!(ids(&second), ["a2", "a1"]);
    let last = page(None, None, 2, second.next.clone()).await;
    assert_eq!(ids(&last), ["a0"]);
    assert_eq!(last.next, None);
    assert_eq!(ids(&page(None, None, 10, None).await).len(), 5);
    assert_eq!(
        ids(&page(None, Some("even"), 10, None).await),
        ["a4", "a2", "a0"]
    );
    assert_eq!(
        ids(&page(Some(Status::Running), None, 10, None).await),
        ["a3"]
    );
    assert_eq!(
        ids(&page(Some(Status::Queued), Some("even"), 1, None).await),
        ["a4"]
    );
    // Bob's jobs are his.
    let q = JobQuery {
        limit: 10,
        ..JobQuery::default()
    };
    let bobs = store.owner_jobs("bob", &q).await.unwrap();
    assert_eq!(ids(&bobs), ["b0"]);
    assert!(store.owner_jobs("carol", &q).await.unwrap().jobs.is_empty());
}

#[tokio::test]
async fn memory_store_lists_an_owners_jobs() {
    listing_suite(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn dynamo_store_lists_an_owners_jobs() {
    listing_suite(Arc::new(crate::common::dynamo_store().await)).await;
}

#[tokio::test]
async fn memory_store_keeps_owners() {
    owner_suite(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn dynamo_store_keeps_owners() {
    owner_suite(Arc::new(crate::common::dynamo_store().await)).await;
}

/// Following an owner: follows are per connection and tag, listed per
/// owner, removed one at a time or with the whole connection.
async fn follow_suite(store: Arc<dyn Store>) {
    let now = Utc::now();
    store.follow_owner("alice", None, "c1", now).await.unwrap();
    store
        .follow_owner("alice", Some("reports"), "c2", now)
        .await
        .unwrap();
    // Idempotent.
    store.follow_owner("alice", None, "c1", now).await.unwrap();
    store.follow_owner("bob", None, "c3", now).await.unwrap();
    store.subscribe("job-1", "c1", now).await.unwrap();
    let alice = store.owner_followers("alice").await.unwrap();
    assert_eq!(
        alice,
        vec![
            Follower {
                connection_id: "c1".into(),
                tag: None
            },
            Follower {
                connection_id: "c2".into(),
                tag: Some("reports".into())
            },
        ]
    );
    let tagged = new_job("t").owned_by("alice", vec!["reports".into()]);
    let untagged = new_job("u").owned_by("alice", vec![]);
    assert!(alice[0].wants(&tagged) && alice[0].wants(&untagged));
    assert!(alice[1].wants(&tagged) && !alice[1].wants(&untagged));
    assert_eq!(store.owner_followers("nobody").await.unwrap(), vec![]);

    // A connection's end takes its follows and its subscriptions.
    assert_eq!(store.remove_connection("c1").await.unwrap(), 2);
    assert_eq!(
        store.owner_followers("alice").await.unwrap(),
        vec![alice[1].clone()]
    );
    assert!(store.subscribers("job-1").await.unwrap().is_empty());
    assert!(store.unfollow_owner("alice", &alice[1]).await.unwrap());
    assert!(!store.unfollow_owner("alice", &alice[1]).await.unwrap());
    assert!(store.owner_followers("alice").await.unwrap().is_empty());
    assert_eq!(store.owner_followers("bob").await.unwrap().len(), 1);
}

#[tokio::test]
async fn memory_store_keeps_follows() {
    follow_suite(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn dynamo_store_keeps_follows() {
    follow_suite(Arc::new(crate::common::dynamo_store().await)).await;
}

/// The per-owner limit: counted at creation without a race, freed when a
/// counted job ends, per owner.
async fn owner_limit_suite(store: Arc<dyn Store>) {
    let counted = |id: &str, owner: &str| new_job(id).owned_by(owner, vec![]).within_owner_limit(2);
    // Three creations at once for two places: exactly two win.
    let tries = ["l1", "l2", "l3"].map(|id| {
        let store = Arc::clone(&store);
        let job = counted(id, "alice");
        tokio::spawn(async move { store.create_job(job).await })
    });
    let mut won = Vec::new();
    let mut refused = 0;
    for (id, t) in ["l1", "l2", "l3"].into_iter().zip(tries) {
        match t.await.unwrap() {
            Ok(()) => won.push(id),
            Err(StoreError::OwnerLimit { owner, limit }) => {
                assert_eq!((owner.as_str(), limit), ("alice", 2));
                refused += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((won.len(), refused), (2, 1));
    // A refused job was not stored; another owner is not affected.
    for id in ["l1", "l2", "l3"] {
        assert_eq!(
            store.get_job(id).await.unwrap().is_some(),
            won.contains(&id)
        );
    }
    store.create_job(counted("b1", "bob")).await.unwrap();
    // An update that does not end a job frees nothing; one that ends it does.
    store
        .update_job(won[0], running(10.0), Utc::now())
        .await
        .unwrap();
    assert!(matches!(
        store.create_job(counted("l4", "alice")).await,
        Err(StoreError::OwnerLimit { .. })
    ));
    store
        .update_job(won[0], JobUpdate::status(Status::Succeeded), Utc::now())
        .await
        .unwrap();
    store.create_job(counted("l4", "alice")).await.unwrap();
    // An existing id is still AlreadyExists, and takes no place.
    store
        .update_job(won[1], JobUpdate::status(Status::Cancelled), Utc::now())
        .await
        .unwrap();
    assert!(matches!(
        store.create_job(counted("l4", "alice")).await,
        Err(StoreError::AlreadyExists(_))
    ));
    store.create_job(counted("l5", "alice")).await.unwrap();
    // Jobs created without a limit do not count.
    store
        .create_job(new_job("free").owned_by("alice", vec![]))
        .await
        .unwrap();
}

#[tokio::test]
async fn memory_store_limits_owners() {
    owner_limit_suite(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn dynamo_store_limits_owners() {
    owner_limit_suite(Arc::new(crate::common::dynamo_store().await)).await;
}

/// Updates that ask for it keep when the two updates before them came
/// (coalescing reads it); updates that do not ask leave it alone.
///
/// The store stands at `RECENT_START` by its clock: the suite holds on any
/// date it runs.
async fn recent_suite(store: Arc<dyn Store>) {
    use chrono::Duration;
    use jobcast::store::Recent;
    let start = recent_start();
    let mut job = new_job("recent");
    job.snapshot.updated_at = start;
    job.created_at = start;
    store.create_job(job).await.unwrap();
    let at = |ms| start + Duration::milliseconds(ms);
    let tracked = |p| {
        let mut u = running(p);
        u.track_recent = true;
        u
    };
    let untracked = store.update_job("recent", running(1.0), at(100)).await;
    assert_eq!(untracked.unwrap().recent, Recent::default());
    let first = store.update_job("recent", tracked(2.0), at(250)).await;
    assert_eq!(
        first.unwrap().recent,
        Recent {
            latest: Some(at(250)),
            previous: Some(at(100)),
            before_previous: None,
        }
    );
    let second = store.update_job("recent", tracked(3.0), at(420)).await;
    let expected = Recent {
        latest: Some(at(420)),
        previous: Some(at(250)),
        before_previous: Some(at(100)),
    };
    assert_eq!(second.unwrap().recent, expected);
    // What is read back is what the update returned.
    let stored = store.get_job("recent").await.unwrap().unwrap();
    assert_eq!(stored.recent, expected);
    assert_eq!(stored.snapshot.updated_at, at(420));
    let third = store.update_job("recent", tracked(4.0), at(900)).await;
    assert_eq!(
        third.unwrap().recent,
        Recent {
            latest: Some(at(900)),
            previous: Some(at(420)),
            before_previous: Some(at(250)),
        }
    );
    // An append that keeps its time counts as a report: the snapshot's
    // time stays, the reports' times move on.
    let timed = AppendOptions {
        track_recent: true,
        ..AppendOptions::default()
    };
    let log = [StreamAppend::new("log", vec![json!("a")])];
    let appended = store
        .append_chunks("recent", &log, at(1300), timed)
        .await
        .unwrap();
    let expected = Recent {
        latest: Some(at(1300)),
        previous: Some(at(900)),
        before_previous: Some(at(420)),
    };
    assert_eq!(appended.job.recent, expected);
    assert_eq!(appended.job.snapshot.updated_at, at(900));
    let stored = store.get_job("recent").await.unwrap().unwrap();
    assert_eq!(stored.recent, expected);
    let fifth = store.update_job("recent", tracked(5.0), at(1400)).await;
    assert_eq!(fifth.unwrap().recent.previous, Some(at(1300)));
}

/// A day long past, so a store reading the wall clock would find the
/// suite's job expired.
fn recent_start() -> chrono::DateTime<Utc> {
    "2001-02-03T10:00:00.000Z".parse().unwrap()
}

fn recent_clock() -> Arc<ManualClock> {
    ManualClock::at(recent_start() + chrono::Duration::seconds(1))
}

#[tokio::test]
async fn memory_store_keeps_recent_updates() {
    recent_suite(Arc::new(MemoryStore::new().with_clock(recent_clock()))).await;
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn dynamo_store_keeps_recent_updates() {
    recent_suite(Arc::new(
        crate::common::dynamo_store_with_clock(recent_clock()).await,
    ))
    .await;
}

/// A job is there until its retention has passed by the store's clock, then
/// reads as absent (TTL may not have removed the item yet).
#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn dynamo_store_expires_jobs_by_its_clock() {
    let clock = recent_clock();
    let store = crate::common::dynamo_store_with_clock(clock.clone()).await;
    let mut job = new_job("expiring");
    job.snapshot.updated_at = recent_start();
    job.created_at = recent_start();
    store.create_job(job).await.unwrap();
    clock.advance(Duration::from_secs(24 * 3600 - 60));
    assert!(store.get_job("expiring").await.unwrap().is_some());
    clock.advance(Duration::from_secs(120));
    assert!(store.get_job("expiring").await.unwrap().is_none());
}

/// Where a connection is held: recorded, read back, gone with the
/// connection's subscriptions (and not counted among them).
async fn place_suite(store: Arc<dyn Store>) {
    let conn = "PLACEcOFvHcCIhw=";
    assert_eq!(store.connection_place(conn).await.unwrap(), None);
    store
        .place_connection(conn, "http://127.0.0.1:8081/dev", Utc::now())
        .await
        .unwrap();
    store.create_job(new_job("placed")).await.unwrap();
    store.subscribe("placed", conn, Utc::now()).await.unwrap();
    assert_eq!(
        store.connection_place(conn).await.unwrap().as_deref(),
        Some("http://127.0.0.1:8081/dev")
    );
    assert_eq!(store.connection_jobs(conn).await.unwrap(), vec!["placed"]);
    assert_eq!(store.remove_connection(conn).await.unwrap(), 1);
    assert_eq!(store.connection_place(conn).await.unwrap(), None);
}

#[tokio::test]
async fn memory_store_keeps_connection_places() {
    place_suite(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn dynamo_store_keeps_connection_places() {
    place_suite(Arc::new(crate::common::dynamo_store().await)).await;
}

/// Streams (CONTRACT section 10): indices from 0 with no gaps, ranges read
/// from any index, limits refusing a whole append, concurrent appends
/// never sharing an index.
async fn streams_suite(store: Arc<dyn Store>) {
    use jobcast::store::streams::{MAX_STREAM_BYTES, MAX_STREAM_CHUNKS, MAX_STREAMS};
    let id = format!("streams-{:08x}", rand::random::<u32>());
    assert!(matches!(
        store
            .append_chunks(
                &id,
                &[StreamAppend::new("log", vec![json!("x")])],
                Utc::now(),
                AppendOptions::default()
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    store.create_job(worker_job(&id)).await.unwrap();
    // A stream the job does not have is an empty page.
    let page = store
        .read_chunks(&id, "log", 0, 100, 1 << 20)
        .await
        .unwrap();
    assert_eq!((page.chunks.len(), page.next), (0, 0));

    // Two streams in one append, then more: indices count on.
    let lines = |from: usize, n: usize| -> Vec<Value> {
        (from..from + n)
            .map(|i| json!(format!("line {i}")))
            .collect()
    };
    let out = store
        .append_chunks(
            &id,
            &[
                StreamAppend::new("log", lines(0, 3)),
                StreamAppend::new("tokens", vec![json!("Hel"), json!("lo")]),
            ],
            Utc::now(),
            AppendOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.appended[0].from, 0);
    assert_eq!(out.appended[1].from, 0);
    assert_eq!(out.lengths["log"], 3);
    assert_eq!(out.lengths["tokens"], 2);
    for n in 1..5 {
        let out = store
            .append_chunks(
                &id,
                &[StreamAppend::new("log", lines(3 * n, 3))],
                Utc::now(),
                AppendOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(out.appended[0].from, 3 * n as u64);
    }
    let job = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(job.snapshot.streams["log"], 15);
    assert_eq!(job.snapshot.streams["tokens"], 2);
    // Any range, starting inside an append, within the limit and bytes.
    let page = store.read_chunks(&id, "log", 4, 5, 1 << 20).await.unwrap();
    assert_eq!(page.chunks, lines(4, 5));
    assert_eq!(page.next, 9);
    let page = store
        .read_chunks(&id, "log", 0, 1000, 1 << 20)
        .await
        .unwrap();
    assert_eq!(page.chunks, lines(0, 15));
    let page = store.read_chunks(&id, "log", 0, 1000, 20).await.unwrap();
    assert_eq!(page.chunks, lines(0, 2), "stops before 20 bytes");
    let page = store.read_chunks(&id, "log", 0, 1000, 1).await.unwrap();
    assert_eq!(
        page.chunks,
        lines(0, 1),
        "never empty when there is a chunk"
    );
    let page = store
        .read_chunks(&id, "log", 15, 10, 1 << 20)
        .await
        .unwrap();
    assert_eq!((page.chunks.len(), page.next), (0, 15));
    let page = store
        .read_chunks(&id, "tokens", 1, 10, 1 << 20)
        .await
        .unwrap();
    assert_eq!(page.chunks, vec![json!("lo")]);

    // Limits refuse the whole append: nothing of it is written.
    let many: Vec<StreamAppend> = (0..MAX_STREAMS - 1)
        .map(|i| StreamAppend::new(format!("s{i}"), vec![json!(i)]))
        .collect();
    assert!(matches!(
        store
            .append_chunks(&id, &many, Utc::now(), AppendOptions::default())
            .await,
        Err(StoreError::TooManyStreams { limit: 8, .. })
    ));
    let job = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(job.snapshot.streams.len(), 2, "nothing of a refused append");
    store
        .append_chunks(
            &id,
            &many[..MAX_STREAMS - 2],
            Utc::now(),
            AppendOptions::default(),
        )
        .await
        .unwrap();
    let zeros = vec![json!(0); (MAX_STREAM_CHUNKS - 15) as usize];
    let full = [
        StreamAppend::new("tokens", vec![json!("!")]),
        StreamAppend::new("log", [zeros.clone(), vec![json!(0)]].concat()),
    ];
    match store
        .append_chunks(&id, &full, Utc::now(), AppendOptions::default())
        .await
    {
        Err(StoreError::StreamFull { stream, limit, .. }) => {
            assert_eq!((stream.as_str(), limit), ("log", MAX_STREAM_CHUNKS))
        }
        other => panic!("{other:?}"),
    }
    let job = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(
        (job.snapshot.streams["log"], job.snapshot.streams["tokens"]),
        (15, 2)
    );
    // Exactly the limit is accepted.
    let out = store
        .append_chunks(
            &id,
            &[StreamAppend::new("log", zeros)],
            Utc::now(),
            AppendOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.lengths["log"], MAX_STREAM_CHUNKS);
    let page = store
        .read_chunks(&id, "log", MAX_STREAM_CHUNKS - 2, 10, 1 << 20)
        .await
        .unwrap();
    assert_eq!(
        (page.chunks, page.next),
        (vec![json!(0), json!(0)], MAX_STREAM_CHUNKS)
    );
    // Bytes: a stream holds at most 8 MiB.
    let big = json!("b".repeat(300 * 1024));
    let each = jobcast::store::streams::chunk_bytes(&big);
    let fit = MAX_STREAM_BYTES / each;
    for _ in 0..fit {
        store
            .append_chunks(
                &id,
                &[StreamAppend::new("tokens", vec![big.clone()])],
                Utc::now(),
                AppendOptions::default(),
            )
            .await
            .unwrap();
    }
    match store
        .append_chunks(
            &id,
            &[StreamAppend::new("tokens", vec![big.clone()])],
            Utc::now(),
            AppendOptions::default(),
        )
        .await
    {
        Err(StoreError::StreamFull { limit, .. }) => assert_eq!(limit, MAX_STREAM_BYTES),
        other => panic!("{other:?}"),
    }

    // An ended job takes no append; what it has stays readable.
    store
        .update_job(&id, JobUpdate::status(Status::Succeeded), Utc::now())
        .await
        .unwrap();
    assert!(matches!(
        store
            .append_chunks(
                &id,
                &[StreamAppend::new("log", vec![json!(1)])],
                Utc::now(),
                AppendOptions::default()
            )
            .await,
        Err(StoreError::Terminal { .. })
    ));
    let page = store
        .read_chunks(&id, "tokens", 0, 2, 1 << 20)
        .await
        .unwrap();
    assert_eq!(page.chunks, vec![json!("Hel"), json!("lo")]);

    // Who asked for which stream: a later subscribe adds to what an
    // earlier one asked; an unsubscribe takes it all away.
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let now = Utc::now();
    store
        .subscribe_streams(&id, "c1", now, &names(&["log"]))
        .await
        .unwrap();
    store.subscribe(&id, "c2", now).await.unwrap();
    store
        .subscribe_streams(&id, "c3", now, &names(&["tokens"]))
        .await
        .unwrap();
    store
        .subscribe_streams(&id, "c1", now, &names(&["tokens"]))
        .await
        .unwrap();
    store.subscribe(&id, "c1", now).await.unwrap();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        store.stream_subscribers(&id, "log").await.unwrap(),
        vec!["c1"]
    );
    assert_eq!(
        sorted(store.stream_subscribers(&id, "tokens").await.unwrap()),
        vec!["c1", "c3"]
    );
    store.unsubscribe(&id, "c1").await.unwrap();
    assert_eq!(
        store.stream_subscribers(&id, "tokens").await.unwrap(),
        vec!["c3"]
    );
    assert!(
        store
            .stream_subscribers(&id, "log")
            .await
            .unwrap()
            .is_empty()
    );
    store.remove_connection("c3").await.unwrap();
    assert!(
        store
            .stream_subscribers(&id, "tokens")
            .await
            .unwrap()
            .is_empty()
    );

    // An append that is a worker's report sets its deadline in the same write.
    let r = format!("{id}-reported");
    store.create_job(worker_job(&r)).await.unwrap();
    let at = Utc::now().timestamp() + 100;
    let out = store
        .append_chunks(
            &r,
            &[StreamAppend::new("log", vec![json!(1)])],
            Utc::now(),
            AppendOptions {
                reported: Some(Some(at)),
                ..AppendOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((out.job.deadline, out.job.worker_seen), (Some(at), true));
    let j = store.get_job(&r).await.unwrap().unwrap();
    assert_eq!(
        (j.deadline, j.worker_seen, j.snapshot.seq),
        (Some(at), true, 1)
    );
    assert!(store.lost_jobs(at, 100).await.unwrap().contains(&r));
    let out = store
        .append_chunks(
            &r,
            &[StreamAppend::new("log", vec![json!(2)])],
            Utc::now(),
            AppendOptions {
                reported: Some(None),
                ..AppendOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out.job.deadline, None);
    assert_eq!(store.get_job(&r).await.unwrap().unwrap().deadline, None);

    // Concurrent appends from several tasks: every chunk once, no gap, each
    // task's chunks in its own order.
    let c = format!("{id}-concurrent");
    store.create_job(worker_job(&c)).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..6 {
        let (store, c) = (Arc::clone(&store), c.clone());
        tasks.push(tokio::spawn(async move {
            for k in 0..8 {
                let chunks = vec![json!([t, k, 0]), json!([t, k, 1])];
                store
                    .append_chunks(
                        &c,
                        &[StreamAppend::new("log", chunks)],
                        Utc::now(),
                        AppendOptions::default(),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let page = store
        .read_chunks(&c, "log", 0, 1000, 1 << 20)
        .await
        .unwrap();
    assert_eq!(page.next, 6 * 8 * 2);
    for t in 0..6 {
        let mine: Vec<&Value> = page.chunks.iter().filter(|v| v[0] == t).collect();
        let expected: Vec<Value> = (0..8)
            .flat_map(|k| [json!([t, k, 0]), json!([t, k, 1])])
            .collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>());
    }
    // The two chunks of one append are next to each other.
    for pair in page.chunks.chunks(2) {
        assert_eq!(
            (pair[0][0].clone(), pair[0][1].clone()),
            (pair[1][0].clone(), pair[1][1].clone())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_keeps_streams() {
    streams_suite(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn dynamo_store_keeps_streams() {
    streams_suite(Arc::new(crate::common::dynamo_store().await)).await;
}

/// Held marks (coalescing): an append that holds marks each stream's first
/// index not pushed yet and keeps an older mark; a release moves the marks
/// past what was pushed and drops the ones with nothing left; the job
/// carries its marks wherever it is read, its terminal update included.
async fn held_suite(store: Arc<dyn Store>) {
    let id = format!("held-{:08x}", rand::random::<u32>());
    store.create_job(new_job(&id)).await.unwrap();
    let hold = AppendOptions {
        hold: true,
        ..AppendOptions::default()
    };
    let chunks = |n: usize| (0..n).map(|i| json!(i)).collect::<Vec<_>>();
    // Not held: no mark.
    let plain = store
        .append_chunks(
            &id,
            &[StreamAppend::new("log", chunks(2))],
            Utc::now(),
            AppendOptions::default(),
        )
        .await
        .unwrap();
    assert!(plain.job.held.is_empty());
    let first = store
        .append_chunks(
            &id,
            &[
                StreamAppend::new("log", chunks(3)),
                StreamAppend::new("tokens", chunks(1)),
            ],
            Utc::now(),
            hold,
        )
        .await
        .unwrap();
    let marks = |pairs: &[(&str, u64)]| -> std::collections::BTreeMap<String, u64> {
        pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    };
    assert_eq!(first.job.held, marks(&[("log", 2), ("tokens", 0)]));
    let second = store
        .append_chunks(
            &id,
            &[StreamAppend::new("log", chunks(2))],
            Utc::now(),
            hold,
        )
        .await
        .unwrap();
    assert_eq!(second.job.held, marks(&[("log", 2), ("tokens", 0)]));
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().held,
        marks(&[("log", 2), ("tokens", 0)])
    );
    // A push that read log up to 5 (before the second append's end, 7)
    // and all of tokens.
    store
        .release_held(&id, &marks(&[("log", 5), ("tokens", 1)]))
        .await
        .unwrap();
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().held,
        marks(&[("log", 5)])
    );
    // A stale release changes nothing.
    store
        .release_held(&id, &marks(&[("log", 3)]))
        .await
        .unwrap();
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().held,
        marks(&[("log", 5)])
    );
    // Appends keep their indices after releases (the version moved on).
    let third = store
        .append_chunks(
            &id,
            &[StreamAppend::new("log", chunks(1))],
            Utc::now(),
            hold,
        )
        .await
        .unwrap();
    assert_eq!(third.appended[0].from, 7);
    assert_eq!(third.job.held, marks(&[("log", 5)]));
    // The terminal update carries what is still held.
    let mut done = JobUpdate::status(Status::Succeeded);
    done.percent = Some(100.0);
    let ended = store.update_job(&id, done, Utc::now()).await.unwrap();
    assert_eq!(ended.held, marks(&[("log", 5)]));
    store
        .release_held(&id, &marks(&[("log", 8)]))
        .await
        .unwrap();
    assert!(store.get_job(&id).await.unwrap().unwrap().held.is_empty());
    // Unknown job: nothing to do.
    store
        .release_held("held-unknown", &marks(&[("log", 1)]))
        .await
        .unwrap();
}

#[tokio::test]
async fn memory_store_keeps_held_marks() {
    held_suite(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn dynamo_store_keeps_held_marks() {
    held_suite(Arc::new(crate::common::dynamo_store().await)).await;
}

/// Files (CONTRACT section 11): at most 20 distinct upload names a job, a
/// name asked for again is no new one; updates attach files, one of a name
/// already attached replaces it; the job carries them in name order.
async fn files_store_suite(store: Arc<dyn Store>) {
    use jobcast::files::JobFile;
    let id = format!("files-{:08x}", rand::random::<u32>());
    assert!(matches!(
        store.record_upload(&id, "a.csv").await,
        Err(StoreError::NotFound(_))
    ));
    store.create_job(new_job(&id)).await.unwrap();
    for i in 0..20 {
        store.record_upload(&id, &format!("f{i:02}")).await.unwrap();
    }
    store.record_upload(&id, "f07").await.unwrap();
    assert!(matches!(
        store.record_upload(&id, "f20").await,
        Err(StoreError::TooManyFiles { limit: 20, .. })
    ));
    assert_eq!(store.get_job(&id).await.unwrap().unwrap().uploads.len(), 20);
    let file = |name: &str, size: u64| JobFile {
        name: name.into(),
        size,
        content_type: Some("text/csv".into()),
    };
    let mut u = running(10.0);
    u.files = vec![file("f02", 5), file("f01", 7)];
    let job = store.update_job(&id, u, Utc::now()).await.unwrap();
    assert_eq!(job.files, vec![file("f01", 7), file("f02", 5)]);
    let mut u = running(20.0);
    u.files = vec![file("f02", 9)];
    store.update_job(&id, u, Utc::now()).await.unwrap();
    let read = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(read.files, vec![file("f01", 7), file("f02", 9)]);
    // An update without files keeps them.
    store
        .update_job(&id, running(30.0), Utc::now())
        .await
        .unwrap();
    assert_eq!(store.get_job(&id).await.unwrap().unwrap().files.len(), 2);
    let mut done = JobUpdate::status(Status::Succeeded);
    done.percent = Some(100.0);
    store.update_job(&id, done, Utc::now()).await.unwrap();
    assert!(matches!(
        store.record_upload(&id, "f01").await,
        Err(StoreError::Terminal { .. })
    ));
}

#[tokio::test]
async fn memory_store_keeps_files() {
    files_store_suite(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
#[ignore = "emulators: ./scripts/test.sh runs this tier (DynamoDB Local, moto)"]
async fn dynamo_store_keeps_files() {
    files_store_suite(Arc::new(crate::common::dynamo_store().await)).await;
}
