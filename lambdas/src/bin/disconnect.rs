//! `$disconnect`: removes every subscription of the connection.

use jobcast_lambdas::{Error, WebSocketRoute, run_websocket};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_websocket(WebSocketRoute::Disconnect).await
}
