use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or fails with `what` after `timeout`.
/// The last error or `None` is reported, so a timeout says what was still missing.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "condition not met yet".to_string(),
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
