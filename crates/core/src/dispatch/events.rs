//! `events:<bus name or ARN>`: `PutEvents` with one entry, the job message
//! as its `Detail`, `Source` `jobcast` and `DetailType` `Job Submitted`
//! (rules match the kind with `detail.kind`). An entry the bus refuses
//! (the answer's `FailedEntryCount`) is a failed hand-over. EventBridge
//! delivers at least once; a rule's target may see a job message twice
//! and tells them apart by `jobId` and `attempt`.

use super::{Deliver, DispatchError, JobMessage, aws_failure};
use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

/// The events' `Source`.
pub const SOURCE: &str = "jobcast";
/// The events' `DetailType`.
pub const DETAIL_TYPE: &str = "Job Submitted";
/// Largest entry EventBridge takes (256 KiB, its fields together).
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

pub struct EventsTarget {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventsTarget {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> EventsTarget {
        EventsTarget { client, bus }
    }
}

/// Entry errors that retrying cannot cure.
const FATAL_ENTRY_ERRORS: [&str; 3] = [
    "AccessDeniedException",
    "MalformedDetail",
    "InvalidArgument",
];

#[async_trait]
impl Deliver for EventsTarget {
    async fn deliver(&self, _message: &JobMessage, body: &str) -> Result<(), DispatchError> {
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(DETAIL_TYPE)
            .detail(body)
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| aws_failure(&e))?;
        if out.failed_entry_count() == 0 {
            return Ok(());
        }
        let (code, why) = out
            .entries()
            .first()
            .map(|e| {
                (
                    e.error_code().unwrap_or("").to_string(),
                    e.error_message().unwrap_or("").to_string(),
                )
            })
            .unwrap_or_default();
        let line = format!("bus {} refused the event: {code}: {why}", self.bus);
        if FATAL_ENTRY_ERRORS.iter().any(|f| code.contains(f)) {
            Err(DispatchError::Fatal(line))
        } else {
            Err(DispatchError::Retryable(line))
        }
    }

    fn max_message_bytes(&self) -> Option<usize> {
        // The entry's other fields take a few dozen bytes.
        Some(MAX_ENTRY_BYTES - SOURCE.len() - DETAIL_TYPE.len() - self.bus.len() - 64)
    }
}
