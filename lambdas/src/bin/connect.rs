//! `$connect`: checks the job token and records the subscription; 401/403 refuse the handshake.

use jobcast_lambdas::{Error, WebSocketRoute, Wiring, init_tracing, run_websocket};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let wiring = Wiring::from_env().await?;
    run_websocket(WebSocketRoute::Connect, wiring).await
}
