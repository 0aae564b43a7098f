//! The leader's timer for reaping KV tombstones (Consul's `TombstoneGC`).
//!
//! A delete leaves a tombstone so the index a blocking query sees for the
//! key or its prefix does not go back while clients may still be waiting on
//! it. Kept forever, tombstones would make the store (and every snapshot)
//! grow with the history of deleted keys. So the leader remembers, per
//! granularity bucket, the newest tombstone index it saw created, and once
//! a bucket is `ttl` old proposes `ReapTombstones` up to that index: every
//! tombstone at or below it was created at least `ttl` ago (store indexes
//! grow with time). Reaping may lower a prefix's index; as with Consul,
//! clients that see an index go back start over from 0.
//!
//! A new leader knows nothing of its predecessor's buckets: it hints the
//! newest tombstone in the store when it takes over (as Consul's leader
//! does), so everything older is reaped one `ttl` later.

use crate::ids::RaftIndex;
use crate::time::{Duration, Instant};
use std::collections::BTreeMap;

#[derive(Debug)]
pub struct TombstoneGc {
    ttl: Duration,
    granularity: Duration,
    /// Expiry (rounded up to the granularity) → newest tombstone index.
    buckets: BTreeMap<Instant, RaftIndex>,
}

impl TombstoneGc {
    pub fn new(ttl: Duration, granularity: Duration) -> TombstoneGc {
        TombstoneGc {
            ttl,
            granularity: Duration::from_nanos(granularity.as_nanos().max(1)),
            buckets: BTreeMap::new(),
        }
    }

    /// A tombstone at `index` exists as of `now`.
    pub fn hint(&mut self, now: Instant, index: RaftIndex) {
        let due = (now + self.ttl) - Instant::from_nanos(0);
        let step = self.granularity.as_nanos();
        let rounded = due.as_nanos().div_ceil(step).saturating_mul(step);
        let bucket = self
            .buckets
            .entry(Instant::from_nanos(rounded))
            .or_insert(index);
        *bucket = (*bucket).max(index);
    }

    /// The index to reap up to once buckets are due at `now`, if any.
    pub fn expire(&mut self, now: Instant) -> Option<RaftIndex> {
        let mut reap = None;
        while let Some((&due, &index)) = self.buckets.first_key_value() {
            if due > now {
                break;
            }
            self.buckets.pop_first();
            reap = reap.max(Some(index));
        }
        reap
    }

    /// When the next bucket is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.buckets.keys().next().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::TombstoneGc;
    use crate::time::{Duration, Instant};

    fn at(secs: u64) -> Instant {
        Instant::from_nanos(secs * 1_000_000_000)
    }

    #[test]
    fn buckets_expire_a_ttl_later_rounded_up_to_the_granularity() {
        let mut gc = TombstoneGc::new(Duration::from_secs(900), Duration::from_secs(30));
        gc.hint(at(10), 5);
        gc.hint(at(20), 9);
        gc.hint(at(31), 12);
        // 10 s and 20 s share the bucket due at 930 s; 31 s is due at 960 s.
        assert_eq!(gc.poll_timeout(), Some(at(930)));
        assert_eq!(gc.expire(at(929)), None);
        assert_eq!(gc.expire(at(930)), Some(9));
        assert_eq!(gc.poll_timeout(), Some(at(960)));
        assert_eq!(gc.expire(at(959)), None);
        assert_eq!(gc.expire(at(2000)), Some(12));
        assert_eq!(gc.poll_timeout(), None);
        assert_eq!(gc.expire(at(3000)), None);
    }

    #[test]
    fn a_late_timer_reaps_every_due_bucket_at_once() {
        let mut gc = TombstoneGc::new(Duration::from_secs(60), Duration::from_secs(1));
        for (secs, index) in [(0, 3), (5, 4), (9, 8)] {
            gc.hint(at(secs), index);
        }
        assert_eq!(gc.expire(at(100)), Some(8));
    }
}
