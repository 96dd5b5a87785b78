//! Graceful shutdown: every socket closed with 1001, every `$disconnect` run.

use crate::common::*;
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn shutdown_closes_every_socket_and_runs_every_disconnect() {
    let mut srv = start().await;
    let job = srv.create_job(json!({"steps": 100, "stepMs": 1000})).await;
    let mut clients = Vec::new();
    let mut ids = HashSet::new();
    for i in 0..20 {
        let mut c = if i % 2 == 0 {
            srv.connect().await
        } else {
            tokio_tungstenite::connect_async(job["websocketUrl"].as_str().unwrap())
                .await
                .unwrap()
                .0
        };
        ids.insert(srv.connection_id(&mut c).await);
        clients.push(c);
    }
    let mut lifecycle = srv.lifecycle.resubscribe();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| tokio::spawn(async move { close_code(&mut c).await }))
        .collect();
    srv.shutdown().await;
    for r in readers {
        assert_eq!(r.await.unwrap(), 1001);
    }
    let mut disconnected = HashSet::new();
    while let Ok(e) = lifecycle.try_recv() {
        assert_eq!(e.request_context.disconnect_status_code, Some(1001));
        disconnected.insert(e.request_context.connection_id.unwrap());
    }
    assert_eq!(disconnected, ids);
    // Every subscription was removed by its $disconnect.
    for id in &ids {
        assert!(
            srv.deps
                .store()
                .connection_jobs(id)
                .await
                .unwrap()
                .is_empty()
        );
    }
    // The port no longer accepts connections.
    assert!(tokio::net::TcpStream::connect(srv.addr).await.is_err());
}

/// A demo job a previous run left running: with resume off
/// (`--no-resume`) it stays as it is long past the wait after which a
/// resume takes it up; with resume on, the same job is taken up and runs
/// to its end. On paused time, so "long past" costs nothing.
#[tokio::test(start_paused = true)]
async fn a_job_left_running_is_taken_up_only_when_resume_is_on() {
    use jobcast::clock::{SharedClock, TokioClock};
    use jobcast::protocol::Status;
    use jobcast::store::{JobRecord, JobUpdate, MemoryStore, Store};
    use std::sync::Arc;
    use std::time::Duration;

    for resume in [false, true] {
        let clock: SharedClock = TokioClock::starting_at("2030-01-01T00:00:00Z".parse().unwrap());
        let store = Arc::new(MemoryStore::new().with_clock(Arc::clone(&clock)));
        let id = "job_left0000000000000000000";
        let input = json!({"steps": 5, "stepMs": 100});
        store
            .create_job(JobRecord::queued(id, "demo", input, None, clock.now()))
            .await
            .unwrap();
        let mut step = JobUpdate::status(Status::Running);
        step.percent = Some(20.0);
        store.update_job(id, step, clock.now()).await.unwrap();

        let mut srv = start_on(store.clone(), |c| {
            c.gateway.clock = Arc::clone(&clock);
            c.resume = resume;
        })
        .await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let job = store.get_job(id).await.unwrap().unwrap();
        if resume {
            assert_eq!(job.snapshot.status, Status::Succeeded, "resume: {job:?}");
            assert_eq!(job.snapshot.seq, 7);
            assert_eq!(srv.metric("jobcast_recovered_total").await, 1.0);
        } else {
            assert_eq!(job.snapshot.status, Status::Running, "no resume: {job:?}");
            assert_eq!(job.snapshot.seq, 2);
            assert_eq!(srv.metric("jobcast_recovery_found_total").await, 0.0);
        }
        srv.shutdown().await;
    }
}
