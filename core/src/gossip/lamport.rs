//! serf's Lamport clock (`serf/lamport.go`): a counter that only moves
//! forward, stepping past every time it witnesses.
//!
//! serf keeps three: member intents, user events and queries. Each message
//! carries the sender's time; a receiver `witness`es it so its own next
//! message is ordered after everything it has seen. Times are `u64` on the
//! wire (`LamportTime`).

/// One Lamport clock. Starts at zero; serf increments each clock once at
/// start, so a fresh node's first message is at time 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LamportClock {
    counter: u64,
}

impl LamportClock {
    pub fn new() -> LamportClock {
        LamportClock::default()
    }

    /// The current time: what the next local message is stamped with.
    pub fn time(&self) -> u64 {
        self.counter
    }

    /// Advances by one and returns the new time.
    pub fn increment(&mut self) -> u64 {
        self.counter = self.counter.saturating_add(1);
        self.counter
    }

    /// Another node's time `other` was seen: our time becomes at least
    /// `other + 1`, so anything we stamp next is ordered after it. Older
    /// times change nothing.
    pub fn witness(&mut self, other: u64) {
        if other >= self.counter {
            self.counter = other.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LamportClock;
    use proptest::prelude::*;

    #[test]
    fn lamport_clock_basics() {
        let mut c = LamportClock::new();
        assert_eq!(c.time(), 0);
        assert_eq!(c.increment(), 1);
        c.witness(41);
        assert_eq!(c.time(), 42);
        c.witness(10);
        assert_eq!(c.time(), 42, "an older time changes nothing");
        c.witness(42);
        assert_eq!(c.time(), 43, "witnessing our own time steps past it");
        c.witness(u64::MAX);
        assert_eq!(c.time(), u64::MAX, "saturates instead of wrapping to zero");
    }

    proptest! {
        /// Monotonic, and after witnessing `t` the clock is past `t`: the
        /// happened-before order Lamport clocks exist for.
        #[test]
        fn lamport_clock_is_monotonic_and_passes_what_it_witnessed(
            ops in proptest::collection::vec(proptest::option::of(0u64..1_000_000), 1..200)
        ) {
            let mut c = LamportClock::new();
            let mut max_seen = 0u64;
            for op in ops {
                let before = c.time();
                match op {
                    Some(t) => {
                        c.witness(t);
                        max_seen = max_seen.max(t);
                        prop_assert!(c.time() > t);
                    }
                    None => {
                        let t = c.increment();
                        prop_assert_eq!(t, before + 1);
                    }
                }
                prop_assert!(c.time() >= before);
                prop_assert!(c.time() > max_seen || max_seen == 0 && c.time() == 0);
            }
        }
    }
}
