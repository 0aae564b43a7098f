//! Invariant: a lock's holders are ordered by their fencing tokens, and the
//! resource the lock guards accepts their writes in that order.
//!
//! Consul locks (`?acquire=<session>` on a key) are leases: a holder learns
//! it lost the lock only after the fact (its session was invalidated, a
//! partition healed), so two clients can *believe* they hold the same lock
//! at once, and no checker over client-side intervals could forbid that.
//! What Consul promises instead is a sequencer: each acquisition bumps the
//! key's `LockIndex`, and a resource that refuses writes carrying a token
//! older than one it has seen stays safe (Kleppmann's fencing tokens). So,
//! for every lock:
//!
//! 1. **Unique tokens**: no two holds carry the same token.
//! 2. **Tokens follow acquisition order**: a hold acquired strictly before
//!    another has a strictly smaller token. (Together with 1, two holds can
//!    overlap in time only if their tokens order them.)
//! 3. **Fenced writes are monotonic**: the writes the guarded resource
//!    accepted, in the order it accepted them, carry non-decreasing tokens,
//!    and each token belongs to a hold of that lock acquired no later than
//!    the write.
//!
//! With [`Exclusivity::Strict`], holds must not overlap at all either; use
//! it for intervals the store itself reports (from the apply of the acquire
//! to the apply of the release or session invalidation), where Consul does
//! promise mutual exclusion.
//!
//! Times are any clock common to the recorder; intervals are half-open
//! `[acquired, released)`, so a release and the next acquire may share an
//! instant.

use std::collections::BTreeMap;
use std::fmt;

/// One period during which `holder` held (or believed it held) `lock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHold {
    pub lock: String,
    /// Session or client, for messages.
    pub holder: String,
    /// The fencing token: Consul's `LockIndex` after the acquire.
    pub token: u64,
    /// When the acquire was acknowledged.
    pub acquired: u64,
    /// When the holder stopped holding; `None`: still held at the end.
    pub released: Option<u64>,
}

/// A write the guarded resource accepted, with the token it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FencedWrite {
    pub lock: String,
    pub token: u64,
    /// When the resource accepted it; the resource is serial, so these
    /// times order its writes.
    pub time: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exclusivity {
    /// Overlap allowed when tokens order the holds (client-observed leases).
    Fenced,
    /// No overlap at all (store-reported holds).
    Strict,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockViolation {
    DuplicateToken {
        first: LockHold,
        second: LockHold,
    },
    TokenOrder {
        earlier: LockHold,
        later: LockHold,
    },
    Overlap {
        first: LockHold,
        second: LockHold,
    },
    StaleWrite {
        accepted_before: FencedWrite,
        write: FencedWrite,
    },
    UnknownToken {
        write: FencedWrite,
    },
}

/// Checks every lock's holds and fenced writes; returns the first violation
/// in (lock, time) order.
pub fn check(
    holds: &[LockHold],
    writes: &[FencedWrite],
    exclusivity: Exclusivity,
) -> Result<(), Box<LockViolation>> {
    let mut holds_by_lock: BTreeMap<&str, Vec<&LockHold>> = BTreeMap::new();
    for hold in holds {
        holds_by_lock.entry(&hold.lock).or_default().push(hold);
    }
    let mut writes_by_lock: BTreeMap<&str, Vec<&FencedWrite>> = BTreeMap::new();
    for write in writes {
        writes_by_lock.entry(&write.lock).or_default().push(write);
    }
    for (lock, holds) in &mut holds_by_lock {
        check_holds(holds, exclusivity)?;
        check_writes(holds, writes_by_lock.remove(lock).unwrap_or_default())?;
    }
    // Writes to a lock nobody ever held.
    if let Some(write) = writes_by_lock.values().flatten().next() {
        return Err(Box::new(LockViolation::UnknownToken {
            write: (*write).clone(),
        }));
    }
    Ok(())
}

fn check_holds(
    holds: &mut [&LockHold],
    exclusivity: Exclusivity,
) -> Result<(), Box<LockViolation>> {
    holds.sort_by_key(|hold| (hold.token, hold.acquired));
    for pair in holds.windows(2) {
        if pair[0].token == pair[1].token {
            return Err(Box::new(LockViolation::DuplicateToken {
                first: pair[0].clone(),
                second: pair[1].clone(),
            }));
        }
    }
    holds.sort_by_key(|hold| (hold.acquired, hold.token));
    for pair in holds.windows(2) {
        let (earlier, later) = (pair[0], pair[1]);
        if earlier.acquired < later.acquired && earlier.token > later.token {
            return Err(Box::new(LockViolation::TokenOrder {
                earlier: earlier.clone(),
                later: later.clone(),
            }));
        }
    }
    // Sorted by acquisition, tokens now increase too; the holds that can
    // overlap a later one are those still held when it is acquired.
    if exclusivity == Exclusivity::Strict {
        let mut latest_release: Option<(u64, &LockHold)> = None;
        for &hold in holds.iter() {
            if let Some((release, holder)) = latest_release {
                if release > hold.acquired {
                    return Err(Box::new(LockViolation::Overlap {
                        first: holder.clone(),
                        second: hold.clone(),
                    }));
                }
            }
            let release = hold.released.unwrap_or(u64::MAX);
            if latest_release.is_none_or(|(latest, _)| release > latest) {
                latest_release = Some((release, hold));
            }
        }
    }
    Ok(())
}

/// `holds` sorted by acquisition (and so by token).
fn check_writes(
    holds: &[&LockHold],
    mut writes: Vec<&FencedWrite>,
) -> Result<(), Box<LockViolation>> {
    writes.sort_by_key(|write| write.time);
    let mut highest: Option<&FencedWrite> = None;
    for write in writes {
        let granted = holds
            .iter()
            .any(|hold| hold.token == write.token && hold.acquired <= write.time);
        if !granted {
            return Err(Box::new(LockViolation::UnknownToken {
                write: write.clone(),
            }));
        }
        if let Some(before) = highest {
            if write.token < before.token {
                return Err(Box::new(LockViolation::StaleWrite {
                    accepted_before: before.clone(),
                    write: write.clone(),
                }));
            }
        }
        if highest.is_none_or(|before| write.token > before.token) {
            highest = Some(write);
        }
    }
    Ok(())
}

fn show_hold(hold: &LockHold) -> String {
    let released = hold.released.map_or_else(
        || "still held".to_owned(),
        |time| format!("released at {time}"),
    );
    format!(
        "{} holds {:?} with token {} (acquired at {}, {released})",
        hold.holder, hold.lock, hold.token, hold.acquired
    )
}

impl fmt::Display for LockViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockViolation::DuplicateToken { first, second } => write!(
                f,
                "two holds share a fencing token: {}; {}",
                show_hold(first),
                show_hold(second)
            ),
            LockViolation::TokenOrder { earlier, later } => write!(
                f,
                "a later acquisition has a smaller token: {}; then {}",
                show_hold(earlier),
                show_hold(later)
            ),
            LockViolation::Overlap { first, second } => write!(
                f,
                "holds overlap: {}; {}",
                show_hold(first),
                show_hold(second)
            ),
            LockViolation::StaleWrite {
                accepted_before,
                write,
            } => write!(
                f,
                "lock {:?}: write with token {} accepted at {} after a write with token {} at {}",
                write.lock, write.token, write.time, accepted_before.token, accepted_before.time
            ),
            LockViolation::UnknownToken { write } => write!(
                f,
                "lock {:?}: write with token {} accepted at {}, but no hold had that token by then",
                write.lock, write.token, write.time
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(
        holds: &[LockHold],
        writes: &[FencedWrite],
        exclusivity: Exclusivity,
    ) -> Option<LockViolation> {
        check(holds, writes, exclusivity)
            .err()
            .map(|violation| *violation)
    }

    fn hold(holder: &str, token: u64, acquired: u64, released: Option<u64>) -> LockHold {
        LockHold {
            lock: "service/leader".into(),
            holder: holder.into(),
            token,
            acquired,
            released,
        }
    }

    fn write(token: u64, time: u64) -> FencedWrite {
        FencedWrite {
            lock: "service/leader".into(),
            token,
            time,
        }
    }

    #[test]
    fn handovers_in_token_order_pass_both_modes() {
        let holds = [
            hold("a", 1, 0, Some(10)),
            hold("b", 2, 10, Some(20)),
            hold("a", 3, 25, None),
        ];
        let writes = [write(1, 5), write(2, 12), write(2, 19), write(3, 30)];
        for mode in [Exclusivity::Fenced, Exclusivity::Strict] {
            assert_eq!(verdict(&holds, &writes, mode), None);
        }
    }

    #[test]
    fn a_lease_lost_unknowingly_is_fine_when_fenced_but_not_strict() {
        // a's session expired at 10 on the servers; a still thinks it holds
        // the lock until 30, and its late write at 25 is refused (not listed).
        let holds = [hold("a", 1, 0, Some(30)), hold("b", 2, 15, None)];
        let writes = [write(1, 5), write(2, 20)];
        assert_eq!(verdict(&holds, &writes, Exclusivity::Fenced), None);
        let overlap = verdict(&holds, &writes, Exclusivity::Strict).unwrap();
        assert!(matches!(overlap, LockViolation::Overlap { .. }));
        assert!(overlap.to_string().starts_with("holds overlap: a holds"));
    }

    #[test]
    fn an_overlap_names_both_holds() {
        let holds = [
            hold("a", 1, 0, Some(100)),
            hold("c", 3, 100, Some(110)),
            hold("b", 2, 50, Some(60)),
        ];
        assert_eq!(verdict(&holds, &[], Exclusivity::Fenced), None);
        let error = verdict(&holds, &[], Exclusivity::Strict).unwrap();
        assert!(
            matches!(error, LockViolation::Overlap { ref first, ref second }
            if first.holder == "a" && second.holder == "b")
        );
    }

    #[test]
    fn duplicate_and_backwards_tokens_are_violations() {
        let duplicate = [hold("a", 4, 0, Some(10)), hold("b", 4, 20, None)];
        assert!(matches!(
            verdict(&duplicate, &[], Exclusivity::Fenced),
            Some(LockViolation::DuplicateToken { .. })
        ));
        let backwards = [hold("a", 5, 0, Some(10)), hold("b", 4, 20, None)];
        let error = verdict(&backwards, &[], Exclusivity::Fenced).unwrap();
        assert!(matches!(error, LockViolation::TokenOrder { .. }));
        assert!(error.to_string().contains("token 5"));
    }

    #[test]
    fn writes_must_be_fenced() {
        let holds = [hold("a", 1, 0, Some(30)), hold("b", 2, 15, None)];
        let stale = verdict(&holds, &[write(2, 20), write(1, 25)], Exclusivity::Fenced);
        assert!(matches!(stale, Some(LockViolation::StaleWrite { .. })));
        let premature = verdict(&holds, &[write(2, 10)], Exclusivity::Fenced);
        assert!(matches!(
            premature,
            Some(LockViolation::UnknownToken { .. })
        ));
        let forged = verdict(&holds, &[write(7, 40)], Exclusivity::Fenced);
        assert!(matches!(forged, Some(LockViolation::UnknownToken { .. })));
        let mut other_lock = write(1, 5);
        other_lock.lock = "nobody/holds/this".into();
        let orphan = verdict(&holds, &[other_lock], Exclusivity::Fenced);
        assert!(matches!(orphan, Some(LockViolation::UnknownToken { .. })));
    }
}
