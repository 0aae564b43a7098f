//! Lifeguard's dogpile suspicion timer (memberlist's `suspicion.go`), as
//! data: the owner asks for the deadline instead of arming a timer.
//!
//! A suspicion starts at `max` and shrinks towards `min` as distinct
//! members independently confirm it: with `c` confirmations out of the `k`
//! expected, the timeout is `max - ln(c+1)/ln(k+1) * (max - min)`, never
//! below `min`. A member that is merely slow gets the long timeout to
//! refute; one that many peers can't reach is declared dead quickly.

use crate::time::{Duration, Instant};
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suspicion {
    /// Confirmations that bring the timeout down to `min`.
    expected_confirmations: u32,
    confirmations: u32,
    min: Duration,
    max: Duration,
    start: Instant,
    /// Who has accused so far, the first accuser included; a member's
    /// repeated accusations count once.
    accusers: BTreeSet<String>,
}

impl Suspicion {
    /// A suspicion raised by `from` at `now`. With `k == 0` no confirmations
    /// are expected and the timeout is `min` from the start.
    pub fn new(now: Instant, from: &str, k: u32, min: Duration, max: Duration) -> Suspicion {
        let mut accusers = BTreeSet::new();
        accusers.insert(from.to_string());
        Suspicion {
            expected_confirmations: k,
            confirmations: 0,
            min,
            max: max.max(min),
            start: now,
            accusers,
        }
    }

    /// Records an accusation by `from`. True when it is new information
    /// (an accuser not seen before, while confirmations still matter): the
    /// caller then re-gossips the suspicion so confirmations keep flowing.
    pub fn confirm(&mut self, from: &str) -> bool {
        if self.confirmations >= self.expected_confirmations {
            return false;
        }
        if !self.accusers.insert(from.to_string()) {
            return false;
        }
        self.confirmations += 1;
        true
    }

    pub fn confirmations(&self) -> u32 {
        self.confirmations
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// The current timeout, from `start`.
    pub fn timeout(&self) -> Duration {
        if self.expected_confirmations == 0 {
            return self.min;
        }
        if self.confirmations == 0 {
            return self.max;
        }
        let fraction = (f64::from(self.confirmations) + 1.0).ln()
            / (f64::from(self.expected_confirmations) + 1.0).ln();
        let span = self.max.as_nanos() as f64 - self.min.as_nanos() as f64;
        let raw_ns = self.max.as_nanos() as f64 - fraction * span;
        // memberlist truncates to whole milliseconds.
        let raw_ms = (raw_ns / 1_000_000.0).floor().max(0.0) as u64;
        Duration::from_millis(raw_ms).max(self.min)
    }

    /// When the suspected member is declared dead unless it refutes.
    pub fn deadline(&self) -> Instant {
        self.start + self.timeout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn remaining_time_matches_memberlist_table() {
        // suspicion_test.go: k = 3, min 2s, max 30s; timeout after n confirmations.
        let expected_total_ms = [30_000, 16_000, 7_810, 2_000];
        let mut s = Suspicion::new(Instant(0), "a", 3, ms(2_000), ms(30_000));
        for (n, total) in expected_total_ms.iter().enumerate() {
            assert_eq!(s.confirmations() as usize, n);
            assert_eq!(s.timeout(), ms(*total), "after {n} confirmations");
            s.confirm(&format!("peer{n}"));
        }
        // Beyond k, nothing changes and nothing is news.
        assert!(!s.confirm("another"));
        assert_eq!(s.timeout(), ms(2_000));
    }

    #[test]
    fn only_distinct_accusers_count() {
        // suspicion_test.go's timer cases: k 3, min 500ms, max 2s.
        let mut s = Suspicion::new(Instant(0), "me", 3, ms(500), ms(2_000));
        assert_eq!(s.deadline(), Instant(0) + ms(2_000));
        assert!(!s.confirm("me"));
        assert!(s.confirm("foo"));
        assert!(!s.confirm("foo"));
        assert_eq!(s.timeout(), ms(1_250));
        assert!(s.confirm("bar"));
        // memberlist's timing test expects ~810ms; the exact value is 811.28ms, floored.
        assert_eq!(s.timeout(), ms(811));
        assert!(s.confirm("baz"));
        assert_eq!(s.timeout(), ms(500));
    }

    #[test]
    fn no_expected_confirmations_means_min() {
        let mut s = Suspicion::new(Instant(5), "me", 0, ms(500), ms(2_000));
        assert_eq!(s.deadline(), Instant(5) + ms(500));
        assert!(!s.confirm("foo"));
    }
}
