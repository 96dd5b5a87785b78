//! Coalescing in the functions (`JOBCAST_COALESCE_MS`): the functions that
//! publish hold updates as `serve --coalesce` does, and the sweeper, invoked
//! asynchronously by them, pushes each window's newest update when it ends.

use crate::{Error, var};
use jobcast_core::publish::{Flusher, InvokeFlush, Publisher, coalesce::MAX_WINDOW, invoke};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A coalescing window and what pushes each window's newest update.
pub(crate) type Coalescing = (Duration, Arc<dyn Flusher>);

/// The window and the flusher `JOBCAST_COALESCE_MS` and
/// `JOBCAST_FLUSH_FUNCTION` describe; `None` when coalescing is off.
pub(crate) fn from_env(sdk: &aws_config::SdkConfig) -> Result<Option<Coalescing>, Error> {
    let Some(v) = var("JOBCAST_COALESCE_MS") else {
        return Ok(None);
    };
    let most = MAX_WINDOW.as_millis();
    let ms: u64 = match v.trim().parse() {
        Ok(ms) if u128::from(ms) <= most => ms,
        _ => {
            return Err(format!(
                "JOBCAST_COALESCE_MS must be whole milliseconds from 0 (off) to {most}, got '{v}'"
            )
            .into());
        }
    };
    if ms == 0 {
        return Ok(None);
    }
    let function = var("JOBCAST_FLUSH_FUNCTION").ok_or(
        "JOBCAST_COALESCE_MS needs JOBCAST_FLUSH_FUNCTION: the function that pushes each window's newest update (the template's sweeper)",
    )?;
    let flusher: Arc<dyn Flusher> = Arc::new(InvokeFlush::new(sdk, function));
    Ok(Some((Duration::from_millis(ms), flusher)))
}

/// The sweeper's other event: pushes the newest update of the window it
/// names once that window ends. `None` when `event` is not one.
pub async fn flush(publisher: &Publisher, event: &Value) -> Option<Result<Value, Error>> {
    let held = invoke::held_in_event(event)?;
    Some(match publisher.flush_held(&held).await {
        Ok(report) => Ok(json!({
            "jobId": held.job_id,
            "pushed": report.as_ref().map(|r| r.delivered),
        })),
        Err(e) => Err(e.to_string().into()),
    })
}
