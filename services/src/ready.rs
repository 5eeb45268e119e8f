//! One "poll until ready or time out" loop for every service the harness
//! starts or waits for (the implementation's HTTP port, Toxiproxy, PostgreSQL,
//! Kafka, containers), so that each wait gives up the same way and its error
//! always says what was not ready, after how long, and why (the last probe's
//! error) instead of each site wording (or dropping) that differently.

use anyhow::{anyhow, Result};
use std::fmt;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Marks a probe's error as fatal: the wait ends at once with it, unwrapped
/// (e.g. the process being waited for has exited: asking again is pointless).
/// Any other probe error means "not ready yet".
pub struct Fatal(anyhow::Error);

impl fmt::Debug for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Fatal {}

/// Wraps `e` as a [`Fatal`] probe error, for `.map_err(fatal)?` in a probe.
pub fn fatal(e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Fatal(e.into()))
}

/// Calls `probe` until it succeeds (returning its value), it fails with a
/// [`fatal`] error (returned as is), or `timeout` has passed since the start
/// with the last probe failing; between probes, sleeps `interval`. The probe
/// always runs at least once, and once more after the last sleep, so a
/// service ready just at the deadline is not reported as failed.
///
/// The timeout error reads `{what} not ready after {timeout} (last error:
/// …)`, followed by `; {hint}` when `hint` (made only then, e.g. to read a
/// log's last lines) is not empty: where to look or what the service must do.
pub async fn wait_until_ready<T, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    hint: impl FnOnce() -> String,
    mut probe: impl FnMut() -> Fut,
) -> Result<T>
where
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    loop {
        let last = match probe().await {
            Ok(v) => return Ok(v),
            Err(e) => match e.downcast::<Fatal>() {
                Ok(Fatal(e)) => return Err(e),
                Err(e) => e,
            },
        };
        if started.elapsed() > timeout {
            let hint = hint();
            let hint = if hint.is_empty() { hint } else { format!("; {hint}") };
            return Err(anyhow!(
                "{what} not ready after {timeout:?} (last error: {last:#}){hint}"
            ));
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test]
    async fn returns_the_first_success() {
        let calls = Cell::new(0);
        let v = wait_until_ready(
            "thing",
            Duration::from_secs(5),
            Duration::from_millis(1),
            String::new,
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 3 {
                        anyhow::bail!("not yet {n}")
                    }
                    Ok(n)
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn times_out_with_what_how_long_the_last_error_and_the_hint() {
        let e = wait_until_ready::<(), _>(
            "the widget",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || "read widget.log".into(),
            || async { Err(anyhow!("connection refused")) },
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the widget not ready after 30ms (last error: connection refused); read widget.log"
        );
    }

    #[tokio::test]
    async fn a_fatal_error_ends_the_wait_at_once_unwrapped() {
        let calls = Cell::new(0);
        let e = wait_until_ready::<(), _>(
            "the widget",
            Duration::from_secs(60),
            Duration::from_millis(1),
            || panic!("no hint on a fatal error"),
            || {
                calls.set(calls.get() + 1);
                async { Err(fatal(anyhow!("exited (status 1)").context("the widget"))) }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(calls.get(), 1);
        assert_eq!(format!("{e:#}"), "the widget: exited (status 1)");
    }
}
