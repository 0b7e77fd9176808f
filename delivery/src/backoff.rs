//! Capped exponential backoff with jitter, shared by every consumer's retries.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    seed: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
            seed,
        }
    }

    /// The next wait: `initial · 2^attempt`, capped at `max`, then drawn uniformly from its
    /// upper half so consumers failing together do not retry together.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        self.seed = mix(self.seed.wrapping_add(u64::from(self.attempt)));
        let half = ceiling / 2;
        let spread = half.as_nanos() as u64;
        let jitter = if spread == 0 { 0 } else { self.seed % spread };
        half + Duration::from_nanos(jitter)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// SplitMix64: enough randomness for jitter without a dependency.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stay_in_the_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 7);
        let ceilings = [100, 200, 400, 800, 1000, 1000, 1000];
        for ceiling in ceilings {
            let d = b.next_delay().as_millis() as u64;
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d} not in [{}, {ceiling}]",
                ceiling / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn many_attempts_never_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 1);
        for _ in 0..1000 {
            assert!(b.next_delay() <= Duration::from_secs(60));
        }
    }
}
