//! Where the core reads the time. A node reads the system's monotonic clock; the simulated
//! network's tests give their cores a manual clock that moves only when they advance it, so
//! that the lease, member health and deadlines follow the ticks they deliver and a run does
//! not depend on how fast the machine executes it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A source of `Instant`s: the system's, or a manual one (cheap to clone; clones share it).
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<ManualTime>>);

#[derive(Debug)]
struct ManualTime {
    start: Instant,
    elapsed_nanos: AtomicU64,
}

impl Clock {
    /// The system's monotonic clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that stands still until [`Clock::advance`] moves it.
    pub fn manual() -> Clock {
        Clock(Some(Arc::new(ManualTime {
            start: Instant::now(),
            elapsed_nanos: AtomicU64::new(0),
        })))
    }

    /// The time now.
    pub fn now(&self) -> Instant {
        match &self.0 {
            None => Instant::now(),
            Some(manual) => {
                manual.start + Duration::from_nanos(manual.elapsed_nanos.load(Ordering::SeqCst))
            }
        }
    }

    /// Moves a manual clock forward by `by` (the system clock moves by itself: no effect).
    pub fn advance(&self, by: Duration) {
        if let Some(manual) = &self.0 {
            manual
                .elapsed_nanos
                .fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = Clock::manual();
        let shared = clock.clone();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        shared.advance(Duration::from_millis(15));
        assert_eq!(clock.now(), t0 + Duration::from_millis(15));
        let system = Clock::system();
        let before = system.now();
        system.advance(Duration::from_secs(3600));
        assert!(system.now() < before + Duration::from_secs(60));
    }
}
