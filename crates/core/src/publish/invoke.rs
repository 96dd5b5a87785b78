//! Coalescing in Lambda: the update that holds a window asks another
//! function (the sweeper) to push the window's newest update when it ends,
//! with an asynchronous invoke carrying `{"jobcastFlush": Held}`. Nothing
//! may outlive the invocation that holds, so the waiting happens there.

use super::Publisher;
use super::coalesce::{Flusher, Held};
use async_trait::async_trait;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde_json::Value;

/// The key of the flush event's one field.
const EVENT_KEY: &str = "jobcastFlush";

/// Flushes by invoking `function` asynchronously.
pub struct InvokeFlush {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl InvokeFlush {
    pub fn new(config: &aws_config::SdkConfig, function: impl Into<String>) -> InvokeFlush {
        InvokeFlush {
            client: aws_sdk_lambda::Client::new(config),
            function: function.into(),
        }
    }
}

/// The event an [`InvokeFlush`] sends for `held`.
pub fn flush_event(held: &Held) -> Value {
    serde_json::json!({ EVENT_KEY: held })
}

/// The window to flush, when `event` is a flush event.
pub fn held_in_event(event: &Value) -> Option<Held> {
    serde_json::from_value(event.get(EVENT_KEY)?.clone()).ok()
}

#[async_trait]
impl Flusher for InvokeFlush {
    async fn schedule(&self, _publisher: &Publisher, held: Held) -> Result<(), String> {
        let body = flush_event(&held).to_string();
        self.client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(body.into_bytes()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("invoking {}: {}", self.function, crate::aws::error_line(&e)))
    }
}
