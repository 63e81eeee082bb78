//! The I/O side of a sans-IO machine's `poll_timeout()`: wait for the
//! deadline it returns, or forever when it has none, so that a `select!`
//! over inputs and the deadline needs no special case for "no timer".

use std::time::Instant;

/// Completes at `deadline`; never completes when there is none.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
