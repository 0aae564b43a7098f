//! Invariant: the indexes a client sees for a key never go backwards.
//!
//! Blocking queries rely on it: a client passes the `X-Consul-Index` it saw
//! last as `?index=`, and if a later answer carried a smaller index the
//! client would either spin or miss changes. Consul keeps indexes monotonic
//! even across deletes (tombstones hold the delete's index), so for each
//! observation of a key's index (`X-Consul-Index` of a read, or the
//! `ModifyIndex` in its body):
//!
//! 1. **Per client session**: in the order a session made its requests,
//!    the indexes it sees for one key never decrease.
//! 2. **Per key, in real time**: if one request completed before another
//!    was invoked (from any sessions), the later one sees an index at least
//!    as large. This holds for default and `?consistent` reads, not for
//!    `?stale` ones, which a follower may answer from behind: record only
//!    the former, or check stale reads with rule 1 alone by giving each
//!    session's observations to [`check_sessions`].
//!
//! The one documented exception is a store restore (`PUT /v1/snapshot`),
//! which replaces the whole store with an older state: every observation
//! carries the store `generation` it was served from (the simulator bumps
//! it on each restore), and indexes compare as (generation, index) pairs,
//! so the index may drop only where the generation grows. A generation that
//! goes backwards is itself a violation.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexObservation {
    /// The client session (any stable id of a sequential client).
    pub session: u64,
    pub key: String,
    pub index: u64,
    pub generation: u64,
    pub invoked: u64,
    pub completed: u64,
}

impl IndexObservation {
    fn version(&self) -> (u64, u64) {
        (self.generation, self.index)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexViolation {
    /// One session saw `later` after `earlier` with a smaller version.
    Session {
        earlier: IndexObservation,
        later: IndexObservation,
    },
    /// `later` was invoked after `earlier` completed, with a smaller version.
    RealTime {
        earlier: IndexObservation,
        later: IndexObservation,
    },
}

/// Both rules; the first violation in time order.
pub fn check(observations: &[IndexObservation]) -> Result<(), Box<IndexViolation>> {
    check_sessions(observations)?;
    check_real_time(observations)
}

/// Rule 1 only: per session and key, in invoke order.
pub fn check_sessions(observations: &[IndexObservation]) -> Result<(), Box<IndexViolation>> {
    let mut order: Vec<&IndexObservation> = observations.iter().collect();
    order.sort_by_key(|o| (o.session, o.invoked, o.completed));
    let mut last: BTreeMap<(u64, &str), &IndexObservation> = BTreeMap::new();
    for observation in order {
        let slot = (observation.session, observation.key.as_str());
        if let Some(&earlier) = last.get(&slot) {
            if observation.version() < earlier.version() {
                return Err(Box::new(IndexViolation::Session {
                    earlier: earlier.clone(),
                    later: observation.clone(),
                }));
            }
        }
        last.insert(slot, observation);
    }
    Ok(())
}

/// Rule 2 only: per key, against every observation completed before the
/// invoke. A sweep in invoke order keeps, per key, the largest version
/// among completed observations.
pub fn check_real_time(observations: &[IndexObservation]) -> Result<(), Box<IndexViolation>> {
    let mut by_invoke: Vec<&IndexObservation> = observations.iter().collect();
    by_invoke.sort_by_key(|o| (o.invoked, o.completed, o.session));
    // Completions not yet folded into `highest`, earliest first; the
    // position breaks ties deterministically.
    let mut completions: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut highest: BTreeMap<&str, &IndexObservation> = BTreeMap::new();
    for (position, &observation) in by_invoke.iter().enumerate() {
        while let Some(&Reverse((completed, earlier))) = completions.peek() {
            if completed >= observation.invoked {
                break;
            }
            completions.pop();
            let earlier = by_invoke[earlier];
            let best = highest.entry(earlier.key.as_str()).or_insert(earlier);
            if earlier.version() > best.version() {
                *best = earlier;
            }
        }
        if let Some(&earlier) = highest.get(observation.key.as_str()) {
            if observation.version() < earlier.version() {
                return Err(Box::new(IndexViolation::RealTime {
                    earlier: earlier.clone(),
                    later: observation.clone(),
                }));
            }
        }
        completions.push(Reverse((observation.completed, position)));
    }
    Ok(())
}

fn show(o: &IndexObservation) -> String {
    format!(
        "session {} saw index {} (generation {}) for {:?} [{}, {}]",
        o.session, o.index, o.generation, o.key, o.invoked, o.completed
    )
}

impl fmt::Display for IndexViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexViolation::Session { earlier, later } => write!(
                f,
                "index went backwards within a session: {}, then {}",
                show(earlier),
                show(later)
            ),
            IndexViolation::RealTime { earlier, later } => write!(
                f,
                "index went backwards in real time: {}, then {}",
                show(earlier),
                show(later)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unboxed(
        checker: fn(&[IndexObservation]) -> Result<(), Box<IndexViolation>>,
        observations: &[IndexObservation],
    ) -> Option<IndexViolation> {
        checker(observations).err().map(|violation| *violation)
    }

    fn seen(session: u64, key: &str, index: u64, invoked: u64, completed: u64) -> IndexObservation {
        IndexObservation {
            session,
            key: key.into(),
            index,
            generation: 0,
            invoked,
            completed,
        }
    }

    #[test]
    fn growing_and_concurrent_observations_pass() {
        let observations = [
            seen(1, "a", 5, 0, 10),
            seen(2, "a", 7, 5, 8),
            // Concurrent with session 2's read: may still see 5.
            seen(3, "a", 5, 6, 12),
            seen(1, "a", 7, 11, 15),
            // Another key has its own indexes.
            seen(1, "b", 2, 16, 18),
        ];
        assert_eq!(unboxed(check, &observations), None);
    }

    #[test]
    fn a_session_going_backwards_is_a_violation() {
        let observations = [seen(1, "a", 9, 0, 10), seen(1, "a", 8, 20, 30)];
        let error = unboxed(check_sessions, &observations).unwrap();
        assert!(matches!(error, IndexViolation::Session { .. }));
        assert!(error
            .to_string()
            .starts_with("index went backwards within a session: session 1 saw index 9"));
    }

    #[test]
    fn a_later_request_of_another_session_going_backwards_is_a_violation() {
        let observations = [
            seen(1, "a", 9, 0, 10),
            seen(2, "a", 3, 2, 4),
            seen(3, "a", 8, 11, 12),
        ];
        assert_eq!(unboxed(check_sessions, &observations), None);
        let error = unboxed(check_real_time, &observations).unwrap();
        assert_eq!(
            error,
            IndexViolation::RealTime {
                earlier: observations[0].clone(),
                later: observations[2].clone(),
            }
        );
    }

    #[test]
    fn a_restore_may_lower_the_index_only_with_a_new_generation() {
        let mut after_restore = seen(1, "a", 3, 20, 30);
        after_restore.generation = 1;
        let mut observations = vec![seen(1, "a", 9, 0, 10), after_restore];
        assert_eq!(unboxed(check, &observations), None);
        // Back to generation 0: the restore was undone, which is not allowed.
        observations.push(seen(2, "a", 10, 40, 50));
        assert!(matches!(
            unboxed(check, &observations),
            Some(IndexViolation::RealTime { .. })
        ));
    }
}
