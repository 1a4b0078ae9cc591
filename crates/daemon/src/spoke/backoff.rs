//! Exponential backoff with jitter for a failing hub, capped at five minutes.
//!
//! Pure: the caller brings the randomness and does the waiting, so the
//! schedule is unit-tested exactly and the wait with tokio's paused clock.
//! It knows nothing about HTTP or the replica.

use std::time::Duration;

/// The first delay after a failure.
pub const BASE: Duration = Duration::from_millis(500);
/// No delay is ever longer.
pub const CAP: Duration = Duration::from_secs(5 * 60);

/// The failure count of a sync loop and the delay it earns.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// A backoff with no failure yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets the failures after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records a failure and returns how long to wait before the next try.
    /// `unit` is a random number in `[0, 1)`: the delay is drawn uniformly
    /// from the upper half of the exponential step ("equal jitter"), so
    /// spokes that failed together do not retry together, and the wait still
    /// grows.
    pub fn fail(&mut self, unit: f64) -> Duration {
        let step = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let unit = unit.clamp(0.0, 1.0);
        step.mul_f64(0.5 + 0.5 * unit).min(CAP)
    }

    /// The largest delay the next failure can earn.
    pub fn ceiling(&self) -> Duration {
        let exp = self.failures.min(20);
        BASE.saturating_mul(1u32 << exp).min(CAP)
    }
}

/// A random number in `[0, 1)` from the OS.
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_and_stop_at_five_minutes() {
        let mut b = Backoff::new();
        // With unit 0 the delay is half the step, with unit ~1 the whole step.
        let lows: Vec<Duration> = (0..12).map(|_| b.fail(0.0)).collect();
        assert_eq!(lows[0], Duration::from_millis(250));
        assert_eq!(lows[1], Duration::from_millis(500));
        assert_eq!(lows[2], Duration::from_secs(1));
        assert_eq!(lows[10], Duration::from_secs(150));
        assert_eq!(lows[11], Duration::from_secs(150));
        let mut b = Backoff::new();
        let highs: Vec<Duration> = (0..40).map(|_| b.fail(1.0)).collect();
        assert_eq!(highs[0], BASE);
        assert!(highs.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*highs.last().unwrap(), CAP);
        assert!(highs.iter().all(|d| *d <= CAP));
        assert_eq!(b.failures(), 40);
        b.reset();
        assert_eq!(b.fail(1.0), BASE);
    }

    #[test]
    fn random_units_stay_in_range() {
        for _ in 0..1000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }

    /// The wait a failure earns really elapses on tokio's clock, and not
    /// sooner: measured with paused time, no real sleeping.
    #[tokio::test(start_paused = true)]
    async fn the_wait_elapses_on_the_tokio_clock() {
        let mut b = Backoff::new();
        b.fail(1.0);
        b.fail(1.0);
        let delay = b.fail(1.0);
        assert_eq!(delay, Duration::from_secs(2));
        let start = tokio::time::Instant::now();
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        tokio::select! {
            _ = &mut sleep => panic!("the backoff ended early"),
            _ = tokio::time::sleep(Duration::from_millis(1999)) => {}
        }
        sleep.await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
