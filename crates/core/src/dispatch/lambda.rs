//! `lambda:<function>`: an asynchronous invoke (`InvocationType=Event`)
//! with the job message as payload.

use super::{Deliver, DispatchError, JobMessage, aws_failure};
use async_trait::async_trait;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;

pub struct LambdaTarget {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl LambdaTarget {
    pub fn new(client: aws_sdk_lambda::Client, function: String) -> LambdaTarget {
        LambdaTarget { client, function }
    }
}

#[async_trait]
impl Deliver for LambdaTarget {
    async fn deliver(&self, _message: &JobMessage, body: &str) -> Result<(), DispatchError> {
        let out = self
            .client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(body.as_bytes().to_vec()))
            .send()
            .await
            .map_err(|e| aws_failure(&e))?;
        match out.function_error() {
            Some(err) => Err(DispatchError::Retryable(format!(
                "function {} failed: {err}",
                self.function
            ))),
            None => Ok(()),
        }
    }
}
