//! Whether the driver stays awake for a moment after a turn instead of going to sleep.
//!
//! When a turn's answers cross to another thread (the binding hands them to JavaScript) and
//! no other caller waits, the caller often comes straight back with its next request: a
//! sequential writer does, some 20 us later. (While writes or reads are still in flight, the
//! engine has their replication to do, and staying awake cost 2% at 256 writes in flight.) If the driver's thread has gone to sleep meanwhile, that request must wake it
//! first (an eventfd write by the caller, a wake-up of the sleeping core), which cost about
//! 18 us of a 100 us write on the 2-core machine of the bench. So after such a turn the
//! driver stays runnable for up to [`WINDOW`], yielding to every other task and letting the
//! runtime poll the sockets between yields, and takes the request the moment it is queued.
//!
//! Staying awake costs the CPU the thread would have slept through, so it is earned: only
//! while the callers' last request came within [`WINDOW`] of the answers before it. A caller
//! that does not answer back at once (a service writing once per HTTP request) costs one
//! window, after which the driver sleeps again until a caller is quick once more. Time comes
//! in as arguments, so that tests control it.

use std::time::{Duration, Instant};

/// How long the driver stays awake after answers crossed, looking for the next request.
pub(crate) const WINDOW: Duration = Duration::from_micros(50);

#[derive(Debug)]
pub(crate) struct StayAwake {
    /// When answers last crossed, until the next request arrives.
    answered_at: Option<Instant>,
    /// Awake until then.
    until: Option<Instant>,
    /// The last request came within the window after answers: callers answer back quickly.
    earned: bool,
}

impl Default for StayAwake {
    fn default() -> Self {
        // Earned at first: a caller that is not quick costs one window.
        StayAwake {
            answered_at: None,
            until: None,
            earned: true,
        }
    }
}

impl StayAwake {
    /// A turn ended at `now` whose answers crossed to another thread, and no caller waits.
    pub(crate) fn answered(&mut self, now: Instant) {
        self.answered_at = Some(now);
        if self.earned {
            self.until = Some(now + WINDOW);
        }
    }

    /// Requests arrived at `now`: whether they came quickly after the last answers decides
    /// whether the next answers keep the driver awake.
    pub(crate) fn requests_arrived(&mut self, now: Instant) {
        if let Some(at) = self.answered_at.take() {
            self.earned = now.saturating_duration_since(at) <= WINDOW;
        }
        self.until = None;
    }

    /// Whether the driver should stay awake at `now` rather than sleep.
    pub(crate) fn is_awake(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Duration = Duration::from_micros(20);
    const SLOW: Duration = Duration::from_millis(3);

    #[test]
    fn a_caller_that_answers_back_at_once_keeps_the_driver_awake_for_one_window() {
        let mut awake = StayAwake::default();
        let t0 = Instant::now();
        assert!(!awake.is_awake(t0), "asleep before any answer");
        awake.answered(t0);
        assert!(awake.is_awake(t0 + QUICK));
        assert!(!awake.is_awake(t0 + WINDOW), "never longer than the window");
        // Its request arrives: the driver works, then answers again.
        awake.requests_arrived(t0 + QUICK);
        assert!(!awake.is_awake(t0 + QUICK), "a request ends the wait");
        let t1 = t0 + Duration::from_micros(100);
        awake.answered(t1);
        assert!(awake.is_awake(t1 + QUICK));
    }

    #[test]
    fn a_slow_caller_costs_one_window_and_a_quick_request_earns_it_back() {
        let mut awake = StayAwake::default();
        let t0 = Instant::now();
        // Phase 1: the first answers keep it awake; the caller comes back late.
        awake.answered(t0);
        assert!(awake.is_awake(t0));
        awake.requests_arrived(t0 + SLOW);
        // Phase 2: the next answers let it sleep, however often they come.
        let t1 = t0 + 2 * SLOW;
        awake.answered(t1);
        assert!(!awake.is_awake(t1));
        let t2 = t1 + SLOW;
        awake.answered(t2);
        assert!(!awake.is_awake(t2));
        // Phase 3: a request within the window of those answers (it had to wake the driver)
        // earns the window back.
        awake.requests_arrived(t2 + QUICK);
        let t3 = t2 + SLOW;
        awake.answered(t3);
        assert!(awake.is_awake(t3 + QUICK));
    }

    #[test]
    fn requests_that_follow_no_answer_change_nothing() {
        let mut awake = StayAwake::default();
        let t0 = Instant::now();
        // Requests from a caller never answered (the first writes of a node) leave it earned.
        awake.requests_arrived(t0);
        awake.requests_arrived(t0 + SLOW);
        awake.answered(t0 + 2 * SLOW);
        assert!(awake.is_awake(t0 + 2 * SLOW + QUICK));
    }
}
