//! Invariant: Raft's safety properties hold over what the nodes observed.
//!
//! - **State-machine safety** (and with it log matching and leader
//!   completeness for what was applied): no two nodes apply different
//!   entries at the same index, even across restarts. The simulator records
//!   (node, index, term, leader) of every entry a node applied, read back
//!   from its disk ([`check_applied`]).
//! - **Votes never go back** within one run of a node (between two
//!   restarts). Recorded from each node's metrics. Across a crash a vote
//!   shown in metrics may legitimately be lost (metrics show it before its
//!   save is flushed, and a candidate learns of it only after), so
//!   restarts are not compared ([`check_votes`]).
//! - **Election safety** with Raft's standard leader ids: at most one
//!   leader per term ([`check_election`]). tribune runs openraft's default
//!   *advanced* leader ids, (term, node), totally ordered: a voter that
//!   granted (T, 1) may later grant (T, 2), so both can lead in term T, and
//!   since a candidate learns of its quorum only when the answers arrive,
//!   (T, 1) may even *see* itself elected after (T, 2) did (simulation seed
//!   2583 with openraft lease reads and no kills). Their entries carry
//!   different log ids, and (T, 1) cannot commit once a quorum moved on, so
//!   that is safe; for advanced ids election safety holds per (term, node)
//!   by construction, and the simulator relies on state-machine safety
//!   instead of this check.
//!
//! Plain data in, so the checker is independent of openraft's types.

use std::collections::BTreeMap;
use std::fmt;

/// An entry a node applied: its index and the leader id (term, node) that
/// created it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AppliedEntry {
    pub node: u64,
    pub index: u64,
    pub term: u64,
    pub leader: u64,
}

/// A node's vote as its metrics showed it: for (term, candidate), and
/// whether a quorum granted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VoteSeen {
    pub node: u64,
    /// Which run of the node (counts its restarts).
    pub incarnation: u64,
    pub term: u64,
    pub voted_for: u64,
    pub committed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SafetyViolation {
    TwoLeaders {
        term: u64,
        first: u64,
        second: u64,
    },
    VoteWentBack {
        before: VoteSeen,
        after: VoteSeen,
    },
    DivergentApply {
        first: AppliedEntry,
        second: AppliedEntry,
    },
}

fn committed(vote: &VoteSeen) -> &'static str {
    if vote.committed {
        " (committed)"
    } else {
        ""
    }
}

impl fmt::Display for SafetyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SafetyViolation::TwoLeaders {
                term,
                first,
                second,
            } => write!(
                f,
                "election safety: nodes {first} and {second} were both leader in term {term}"
            ),
            SafetyViolation::VoteWentBack { before, after } => write!(
                f,
                "vote went back on node {} (run {}): from term {} for {}{} to term {} for {}{}",
                before.node,
                before.incarnation,
                before.term,
                before.voted_for,
                committed(before),
                after.term,
                after.voted_for,
                committed(after),
            ),
            SafetyViolation::DivergentApply { first, second } => write!(
                f,
                "state-machine safety: at index {} node {} applied the entry of term {} (leader {}) \
                 but node {} applied the entry of term {} (leader {})",
                first.index,
                first.node,
                first.term,
                first.leader,
                second.node,
                second.term,
                second.leader
            ),
        }
    }
}

/// Raft's election safety with standard leader ids: at most one leader
/// per term; `leaders` is (term, node) as observed.
pub fn check_election(leaders: &[(u64, u64)]) -> Result<(), SafetyViolation> {
    let mut by_term: BTreeMap<u64, u64> = BTreeMap::new();
    for &(term, node) in leaders {
        let first = *by_term.entry(term).or_insert(node);
        if first != node {
            return Err(SafetyViolation::TwoLeaders {
                term,
                first,
                second: node,
            });
        }
    }
    Ok(())
}

/// Each node's votes within one run, in time order, never decrease (by
/// term, then candidate, then committed: openraft's order for advanced
/// leader ids).
pub fn check_votes(votes: &[VoteSeen]) -> Result<(), SafetyViolation> {
    let key = |v: &VoteSeen| (v.term, v.voted_for, v.committed);
    let mut last: BTreeMap<(u64, u64), VoteSeen> = BTreeMap::new();
    for &vote in votes {
        if let Some(before) = last.get(&(vote.node, vote.incarnation)) {
            if key(&vote) < key(before) {
                return Err(SafetyViolation::VoteWentBack {
                    before: *before,
                    after: vote,
                });
            }
        }
        last.insert((vote.node, vote.incarnation), vote);
    }
    Ok(())
}

/// Every index was applied with the same entry on every node.
pub fn check_applied(applied: &[AppliedEntry]) -> Result<(), SafetyViolation> {
    let mut by_index: BTreeMap<u64, AppliedEntry> = BTreeMap::new();
    for &entry in applied {
        let first = *by_index.entry(entry.index).or_insert(entry);
        if (first.term, first.leader) != (entry.term, entry.leader) {
            return Err(SafetyViolation::DivergentApply {
                first,
                second: entry,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(node: u64, index: u64, term: u64, leader: u64) -> AppliedEntry {
        AppliedEntry {
            node,
            index,
            term,
            leader,
        }
    }

    fn vote(node: u64, term: u64, voted_for: u64, committed: bool) -> VoteSeen {
        VoteSeen {
            node,
            incarnation: 0,
            term,
            voted_for,
            committed,
        }
    }

    #[test]
    fn one_leader_per_term_passes_and_two_fail() {
        assert_eq!(check_election(&[(1, 1), (1, 1), (2, 3), (3, 1)]), Ok(()));
        let violation = check_election(&[(1, 1), (2, 3), (2, 2)]).unwrap_err();
        assert_eq!(
            violation.to_string(),
            "election safety: nodes 3 and 2 were both leader in term 2"
        );
    }

    #[test]
    fn a_vote_going_back_is_caught() {
        let fine = [
            vote(1, 1, 2, false),
            vote(2, 1, 1, false),
            vote(1, 1, 2, true),
            vote(1, 2, 1, false),
            vote(2, 2, 3, true),
        ];
        assert_eq!(check_votes(&fine), Ok(()));
        let lost = [vote(1, 3, 2, false), vote(1, 2, 1, true)];
        assert_eq!(
            check_votes(&lost).unwrap_err().to_string(),
            "vote went back on node 1 (run 0): from term 3 for 2 to term 2 for 1 (committed)"
        );
        // A restarted node starts over.
        let restarted = VoteSeen {
            incarnation: 1,
            ..vote(1, 0, 1, false)
        };
        assert_eq!(check_votes(&[vote(1, 3, 2, true), restarted]), Ok(()));
    }

    #[test]
    fn the_same_entry_everywhere_passes_and_a_different_one_fails() {
        let same = [
            applied(1, 1, 1, 1),
            applied(2, 1, 1, 1),
            applied(1, 2, 2, 3),
        ];
        assert_eq!(check_applied(&same), Ok(()));
        let divergent = [
            applied(1, 1, 1, 1),
            applied(1, 2, 1, 1),
            applied(3, 2, 2, 3),
        ];
        let violation = check_applied(&divergent).unwrap_err();
        assert_eq!(
            violation.to_string(),
            "state-machine safety: at index 2 node 1 applied the entry of term 1 (leader 1) \
             but node 3 applied the entry of term 2 (leader 3)"
        );
    }
}
