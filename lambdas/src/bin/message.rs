//! Every message route (`subscribe`, `unsubscribe`, `sync`, `ping`, `$default`): replies through `@connections`.

use jobcast_lambdas::{Error, WebSocketRoute, Wiring, init_tracing, run_websocket};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let wiring = Wiring::from_env().await?.with_files_from_env()?;
    run_websocket(WebSocketRoute::Message, wiring).await
}
