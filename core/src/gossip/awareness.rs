//! Lifeguard's local health score (memberlist's `awareness.go`).
//!
//! A member that is itself slow or overloaded misses acks and then wrongly
//! accuses healthy peers. Lifeguard counters this: each failed probe or
//! missing nack, and each accusation we must refute, raises the score; each
//! successful probe lowers it. Probe intervals (and with them the time
//! allowed for indirect acks) are multiplied by `score + 1`, so an unhealthy
//! member slows down instead of spreading false suspicion.

use crate::time::Duration;

/// The score, kept in `0..max`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Awareness {
    max: u32,
    score: u32,
}

impl Awareness {
    /// `max` is memberlist's `AwarenessMaxMultiplier`; the score never
    /// exceeds `max - 1` (a `max` of 0 behaves like 1: no scaling).
    pub fn new(max: u32) -> Awareness {
        Awareness { max, score: 0 }
    }

    /// Adds `delta` and clamps into `0..=max-1`.
    pub fn apply_delta(&mut self, delta: i64) {
        let ceiling = i64::from(self.max.saturating_sub(1));
        let next = (i64::from(self.score) + delta).clamp(0, ceiling);
        // The clamp keeps `next` in 0..=u32::MAX.
        self.score = next as u32;
    }

    pub fn score(&self) -> u32 {
        self.score
    }

    /// `timeout * (score + 1)`.
    pub fn scale(&self, timeout: Duration) -> Duration {
        timeout.saturating_mul(u64::from(self.score) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_clamps_and_scales_like_memberlist() {
        // awareness_test.go: max 8, deltas and the expected score/timeout.
        let mut a = Awareness::new(8);
        let steps: [(i64, u32); 8] = [
            (0, 0),
            (-1, 0),
            (-10, 0),
            (1, 1),
            (-1, 0),
            (10, 7),
            (-1, 6),
            (-1, 5),
        ];
        for (delta, score) in steps {
            a.apply_delta(delta);
            assert_eq!(a.score(), score);
            assert_eq!(
                a.scale(Duration::from_secs(1)),
                Duration::from_secs(u64::from(score) + 1)
            );
        }
        let mut flat = Awareness::new(0);
        flat.apply_delta(5);
        assert_eq!(flat.score(), 0);
    }
}
