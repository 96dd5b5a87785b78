//! `states:<state machine ARN>`: `StartExecution` with the job message as
//! input and the job id as the execution's name. A name is unique per
//! state machine, so a hand-over retried after an answer was lost (a
//! timeout, a 5xx after Step Functions acted) cannot start a second
//! execution: `ExecutionAlreadyExists` means the job's execution is there.

use super::{Deliver, DispatchError, JobMessage, aws_failure};
use async_trait::async_trait;
use aws_sdk_sfn::error::ProvideErrorMetadata;

/// Largest execution input Step Functions takes (256 KiB).
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

pub struct StatesTarget {
    client: aws_sdk_sfn::Client,
    state_machine: String,
}

impl StatesTarget {
    pub fn new(client: aws_sdk_sfn::Client, state_machine: String) -> StatesTarget {
        StatesTarget {
            client,
            state_machine,
        }
    }
}

#[async_trait]
impl Deliver for StatesTarget {
    async fn deliver(&self, message: &JobMessage, body: &str) -> Result<(), DispatchError> {
        let sent = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine)
            .name(&message.job_id)
            .input(body)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ExecutionAlreadyExists") => {
                tracing::info!(
                    job_id = %message.job_id,
                    state_machine = %self.state_machine,
                    "the job's execution already exists (a hand-over retried after its answer was lost)"
                );
                Ok(())
            }
            Err(e) => Err(aws_failure(&e)),
        }
    }

    fn max_message_bytes(&self) -> Option<usize> {
        Some(MAX_INPUT_BYTES)
    }
}
