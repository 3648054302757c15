//! A deadline a fixed time after the last activity on a connection, kept with one timer.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Completes `period` after the last [`Quiet::heard`]: a listener's idle timeout, a writer's
/// keep-alive ping. One timer, moved on only when it fires: a timer per frame or per batch
/// cost a registration and a removal in the runtime's timer wheel each, under a lock the
/// workers share.
pub(super) struct Quiet {
    period: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Quiet {
    /// Quiet from now on.
    pub fn new(period: Duration) -> Quiet {
        Quiet {
            period,
            last: Instant::now(),
            timer: Box::pin(tokio::time::sleep(period)),
        }
    }

    /// Something happened now: the quiet period starts again.
    pub fn heard(&mut self) {
        self.last = Instant::now();
    }

    /// True once `period` has passed since the last activity.
    pub fn is_quiet(&self) -> bool {
        Instant::now() >= self.last + self.period
    }

    /// Completes once `period` has passed since the last activity. Cancel safe: a `select!`
    /// may drop it and call it again.
    pub async fn elapsed(&mut self) {
        loop {
            self.timer.as_mut().await;
            let due = self.last + self.period;
            if Instant::now() >= due {
                return;
            }
            self.timer.as_mut().reset(due);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timer is the behaviour under test: it must not fire a period after it was made,
    /// only a period after the last activity, and again after the next.
    #[tokio::test]
    async fn it_completes_a_period_after_the_last_activity_not_before() {
        let period = Duration::from_millis(50);
        let mut quiet = Quiet::new(period);
        tokio::time::sleep(Duration::from_millis(30)).await;
        for _ in 0..2 {
            let heard = Instant::now();
            quiet.heard();
            quiet.elapsed().await;
            assert!(heard.elapsed() >= period, "{:?}", heard.elapsed());
        }
    }
}
