//! Invariant: Raft's safety properties hold over what the nodes observed.
//!
//! - **Election safety**: at most one leader per term. The simulator
//!   records (term, node) whenever a node sees itself leader.
//! - **State-machine safety** (and with it log matching and leader
//!   completeness for what was applied): no two nodes apply different
//!   entries at the same index, even across restarts. The simulator records
//!   (node, index, term, leader) of every entry a node applied, read back
//!   from its disk; a committed entry later overwritten and applied
//!   differently elsewhere shows up here.
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SafetyViolation {
    TwoLeaders {
        term: u64,
        first: u64,
        second: u64,
    },
    DivergentApply {
        first: AppliedEntry,
        second: AppliedEntry,
    },
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

/// At most one leader per term; `leaders` is (term, node) as observed.
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

    #[test]
    fn one_leader_per_term_passes_and_two_fail() {
        assert_eq!(check_election(&[(1, 1), (1, 1), (2, 3), (3, 1)]), Ok(()));
        assert_eq!(
            check_election(&[(1, 1), (2, 3), (2, 2)]),
            Err(SafetyViolation::TwoLeaders {
                term: 2,
                first: 3,
                second: 2
            })
        );
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
