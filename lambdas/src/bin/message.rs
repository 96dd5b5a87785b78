//! Every message route (`subscribe`, `unsubscribe`, `sync`, `ping`, `$default`): replies through `@connections`.

use jobcast_lambdas::{Error, WebSocketRoute, run_websocket};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_websocket(WebSocketRoute::Message).await
}
