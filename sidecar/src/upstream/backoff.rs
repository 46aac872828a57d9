//! Reconnect delays: doubling from a minimum to a maximum, each drawn with ±50 % jitter so
//! that sidecars restarted together do not reconnect in lockstep.

use std::time::Duration;

/// A doubling, jittered delay.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `min`, never above `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current.mul_f64(0.5 + fastrand::f64());
        self.current = (self.current * 2).min(self.max);
        delay.min(self.max)
    }

    /// Back to the minimum (after a success).
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_and_stay_capped() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(700));
        let mut backoff = Backoff::new(min, max);
        let bounds = [100, 200, 400, 700, 700];
        for base in bounds {
            let base = Duration::from_millis(base);
            let delay = backoff.next_delay();
            assert!(
                delay >= base / 2 && delay <= (base * 3 / 2).min(max),
                "{delay:?} for {base:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= min * 3 / 2);
    }
}
