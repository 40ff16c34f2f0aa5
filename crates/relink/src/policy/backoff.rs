//! Capped exponential backoff with full jitter applied after the cap, and `Retry-After`.

use std::time::Duration;

/// The delay schedule between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first delay.
    pub initial: Duration,
    /// The largest ceiling.
    pub max: Duration,
    /// The longest `Retry-After` honoured; a server asking for more gets this.
    pub retry_after_max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            retry_after_max: Duration::from_secs(300),
        }
    }
}

/// Clamping the exponent keeps `2^n` finite however long an outage lasts (the reference
/// client's formula overflows to NaN, then to zero delay, after ~1000 attempts).
const MAX_EXPONENT: u32 = 31;

impl Backoff {
    /// The ceiling before the `failures`-th retry (1-based): `min(max, initial * 2^(failures-1))`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(MAX_EXPONENT);
        self.initial
            .checked_mul(1u32 << exponent)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay before the next attempt: `sample * ceiling`, full jitter after the cap, so
    /// clients that failed together spread over the whole window instead of waking together.
    /// `sample` is uniform in `[0, 1)`.
    pub fn delay(&self, failures: u32, sample: f64) -> Duration {
        let ceiling = self.ceiling(failures);
        // `mul_f64` panics when the product does not fit a Duration, which a ceiling near
        // `Duration::MAX` (a setting the builder accepts) reaches through float rounding.
        Duration::try_from_secs_f64(ceiling.as_secs_f64() * sample.clamp(0.0, 1.0))
            .map_or(ceiling, |d| d.min(ceiling))
    }

    /// The delay when the server also said `Retry-After`: that value (capped at
    /// `retry_after_max`) is a floor, and the jittered backoff is added on top of it, so a
    /// fleet told the same number spreads over the whole backoff window after the floor
    /// instead of coming back in the floor's instant.
    pub fn delay_with_retry_after(
        &self,
        failures: u32,
        sample: f64,
        retry_after: Option<Duration>,
    ) -> Duration {
        let jittered = self.delay(failures, sample);
        match retry_after {
            None => jittered,
            Some(asked) => asked.min(self.retry_after_max).saturating_add(jittered),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = Backoff::default();
        let ceilings: Vec<u64> = (1..=7).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.ceiling(0), S(1), "attempt 0 behaves as the first");
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let b = Backoff::default();
        for n in [33, 64, 1015, 10_000, u32::MAX] {
            assert_eq!(b.ceiling(n), S(30), "attempt {n}");
            assert_eq!(b.delay(n, 0.5), S(15));
        }
        let wide = Backoff {
            initial: Duration::MAX,
            max: Duration::MAX,
            retry_after_max: S(1),
        };
        assert_eq!(wide.ceiling(40), Duration::MAX);
    }

    #[test]
    fn full_jitter_is_applied_after_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(10, 0.0), Duration::ZERO);
        assert_eq!(b.delay(10, 0.25), Duration::from_millis(7500));
        assert_eq!(b.delay(10, 0.999_999), Duration::from_micros(29_999_970));
        assert_eq!(b.delay(2, 0.5), S(1));
        assert_eq!(b.delay(3, 2.0), S(4), "samples are clamped to [0, 1]");
    }

    #[test]
    fn retry_after_is_a_floor_under_the_jittered_backoff_and_is_capped() {
        let b = Backoff::default();
        assert_eq!(b.delay_with_retry_after(1, 0.0, Some(S(10))), S(10));
        assert_eq!(
            b.delay_with_retry_after(1, 0.5, Some(S(10))),
            Duration::from_millis(10_500)
        );
        assert_eq!(
            b.delay_with_retry_after(10, 0.9, Some(S(2))),
            S(29),
            "the backoff's window starts after the floor"
        );
        assert_eq!(
            b.delay_with_retry_after(1, 0.0, Some(S(3600))),
            S(300),
            "capped at retry_after_max"
        );
        assert_eq!(b.delay_with_retry_after(3, 0.5, None), S(2));
    }

    #[test]
    fn durations_near_the_maximum_saturate_instead_of_panicking() {
        let b = Backoff {
            initial: Duration::MAX,
            max: Duration::MAX,
            retry_after_max: Duration::MAX,
        };
        for sample in [0.0, 0.5, 1.0] {
            assert!(b.delay(3, sample) <= Duration::MAX);
            assert_eq!(
                b.delay_with_retry_after(3, sample, Some(Duration::MAX)),
                Duration::MAX
            );
        }
        assert_eq!(b.delay(1, 1.0), Duration::MAX);
    }
}
