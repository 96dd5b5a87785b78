//! `$disconnect`: removes every subscription of the connection.

use jobcast_lambdas::{Error, WebSocketRoute, Wiring, init_tracing, run_websocket};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let wiring = Wiring::from_env().await?;
    run_websocket(WebSocketRoute::Disconnect, wiring).await
}
