//! `sqs:<queue URL>`: the job message as the body of one SQS message.

use super::{Deliver, DispatchError, JobMessage, aws_failure};
use async_trait::async_trait;

pub struct SqsTarget {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsTarget {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> SqsTarget {
        SqsTarget { client, queue_url }
    }
}

#[async_trait]
impl Deliver for SqsTarget {
    async fn deliver(&self, message: &JobMessage, body: &str) -> Result<(), DispatchError> {
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body);
        if self.queue_url.ends_with(".fifo") {
            // FIFO queues need a group; one per job keeps jobs independent,
            // and the job id deduplicates a repeated hand-over of one attempt.
            req = req
                .message_group_id(&message.job_id)
                .message_deduplication_id(format!("{}-{}", message.job_id, message.attempt));
        }
        req.send().await.map(|_| ()).map_err(|e| aws_failure(&e))
    }
}
