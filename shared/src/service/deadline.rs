//! The invocation's deadline, where there is one (a Lambda invocation; the local server has
//! none): set around each request or scheduled refresh, read where a provider call would
//! start, so that none starts whose answer could not be waited for and stored in time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `work` with `deadline` as the current task's deadline.
pub async fn within<F: Future>(deadline: Instant, work: F) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// The time left before the current task's deadline; `None` when it has none.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// The current task's deadline, to hand on to tasks it spawns.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_deadline_is_the_scopes_own() {
        assert_eq!(remaining(), None);
        let deadline = Instant::now() + Duration::from_secs(10);
        within(deadline, async {
            assert_eq!(remaining(), Some(Duration::from_secs(10)));
            tokio::time::advance(Duration::from_secs(4)).await;
            assert_eq!(remaining(), Some(Duration::from_secs(6)));
            tokio::time::advance(Duration::from_secs(60)).await;
            assert_eq!(remaining(), Some(Duration::ZERO));
        })
        .await;
        assert_eq!(remaining(), None);
    }
}
