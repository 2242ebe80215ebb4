//! A circuit breaker per spoke: after `threshold` failed checks in a row the circuit opens
//! (the cluster is Unreachable and not called); after `open_for` one probe is let through
//! (half-open); a success closes it again.
use std::time::{Duration, Instant};

use oaas_crds::cluster::CircuitState;

#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    pub state: CircuitState,
    pub consecutive_failures: u32,
    opened_at: Option<Instant>,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            state: CircuitState::Closed,
            consecutive_failures: 0,
            opened_at: None,
        }
    }
}

impl Breaker {
    /// Whether a call may go out now; an open circuit turns half-open once `open_for` passed.
    pub fn allow(&mut self, now: Instant, open_for: Duration) -> bool {
        match (self.state, self.opened_at) {
            (CircuitState::Open, Some(opened)) if now.duration_since(opened) >= open_for => {
                self.state = CircuitState::HalfOpen;
                true
            }
            (CircuitState::Open, _) => false,
            _ => true,
        }
    }

    pub fn success(&mut self) {
        *self = Self::default();
    }

    pub fn failure(&mut self, now: Instant, threshold: u32) {
        self.consecutive_failures += 1;
        if self.state == CircuitState::HalfOpen || self.consecutive_failures >= threshold {
            self.state = CircuitState::Open;
            self.opened_at = Some(now);
        }
    }

    /// Time until an open circuit lets a probe through.
    pub fn wait(&self, now: Instant, open_for: Duration) -> Option<Duration> {
        match (self.state, self.opened_at) {
            (CircuitState::Open, Some(opened)) => {
                Some(open_for.saturating_sub(now.duration_since(opened)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(5);

    #[test]
    fn opens_after_the_threshold_and_probes_after_the_open_time() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.failure(t0, 2);
        assert_eq!(b.state, CircuitState::Closed);
        assert!(b.allow(t0, OPEN_FOR));
        b.failure(t0, 2);
        assert_eq!(b.state, CircuitState::Open);
        assert!(!b.allow(t0 + Duration::from_secs(1), OPEN_FOR));
        assert_eq!(
            b.wait(t0 + Duration::from_secs(1), OPEN_FOR),
            Some(Duration::from_secs(4))
        );
        assert!(b.allow(t0 + OPEN_FOR, OPEN_FOR));
        assert_eq!(b.state, CircuitState::HalfOpen);
    }

    #[test]
    fn a_failed_probe_reopens_and_a_success_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.failure(t0, 1);
        assert!(b.allow(t0 + OPEN_FOR, OPEN_FOR));
        b.failure(t0 + OPEN_FOR, 10);
        assert_eq!(b.state, CircuitState::Open, "half-open fails at once");
        assert!(b.allow(t0 + OPEN_FOR * 2, OPEN_FOR));
        b.success();
        assert_eq!(b, Breaker::default());
    }
}
