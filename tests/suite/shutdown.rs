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
