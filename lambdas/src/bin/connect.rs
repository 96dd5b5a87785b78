//! `$connect`: checks the job token and records the subscription; 401/403 refuse the handshake.

use jobcast_lambdas::{Error, WebSocketRoute, run_websocket};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_websocket(WebSocketRoute::Connect).await
}
