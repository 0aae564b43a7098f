//! Invariant: replicas that have applied the same log prefix hold the same
//! state.
//!
//! The FSM is a pure function of the log (DESIGN.md §3), so two servers at
//! the same applied index must have byte-identical stores; a difference
//! means non-determinism in `Fsm::apply`, a divergent log, or a bad
//! snapshot install. The simulator samples (replica, applied index, hash of
//! the store's snapshot) after steps and feeds them to a [`ReplicaStates`],
//! which remembers the first hash seen at each index. A replica sampled
//! twice at one index must agree with itself too, which catches state that
//! changes without an apply.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaSample {
    pub replica: u64,
    pub applied_index: u64,
    pub state_hash: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Divergence {
    pub first: ReplicaSample,
    pub second: ReplicaSample,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replicas diverge at applied index {}: replica {} has state {:016x}, replica {} has {:016x}",
            self.first.applied_index,
            self.first.replica,
            self.first.state_hash,
            self.second.replica,
            self.second.state_hash
        )
    }
}

/// Incremental checker: feed samples as they are taken.
#[derive(Clone, Debug, Default)]
pub struct ReplicaStates {
    first_at_index: BTreeMap<u64, ReplicaSample>,
}

impl ReplicaStates {
    pub fn observe(&mut self, sample: ReplicaSample) -> Result<(), Divergence> {
        let first = *self
            .first_at_index
            .entry(sample.applied_index)
            .or_insert(sample);
        if first.state_hash != sample.state_hash {
            return Err(Divergence {
                first,
                second: sample,
            });
        }
        Ok(())
    }

    /// Forgets indexes below `index` (all replicas are past them), to
    /// bound memory in long runs.
    pub fn forget_below(&mut self, index: u64) {
        self.first_at_index = self.first_at_index.split_off(&index);
    }
}

/// Batch form: the first divergence in sample order.
pub fn check(samples: &[ReplicaSample]) -> Result<(), Divergence> {
    let mut states = ReplicaStates::default();
    samples
        .iter()
        .try_for_each(|&sample| states.observe(sample))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(replica: u64, applied_index: u64, state_hash: u64) -> ReplicaSample {
        ReplicaSample {
            replica,
            applied_index,
            state_hash,
        }
    }

    #[test]
    fn replicas_agreeing_at_each_index_pass() {
        let samples = [
            sample(1, 5, 0xaa),
            sample(2, 3, 0x33),
            sample(2, 5, 0xaa),
            sample(3, 3, 0x33),
            sample(3, 7, 0xcc),
        ];
        assert_eq!(check(&samples), Ok(()));
    }

    #[test]
    fn a_different_hash_at_the_same_index_is_a_divergence() {
        let samples = [sample(1, 5, 0xaa), sample(2, 6, 0xbb), sample(3, 5, 0xab)];
        let divergence = check(&samples).unwrap_err();
        assert_eq!(divergence.first, samples[0]);
        assert_eq!(divergence.second, samples[2]);
        assert_eq!(
            divergence.to_string(),
            "replicas diverge at applied index 5: replica 1 has state 00000000000000aa, \
             replica 3 has 00000000000000ab"
        );
    }

    #[test]
    fn a_replica_changing_without_an_apply_is_a_divergence() {
        let mut states = ReplicaStates::default();
        states.observe(sample(1, 5, 0xaa)).unwrap();
        assert!(states.observe(sample(1, 5, 0xab)).is_err());
        states.forget_below(6);
        assert_eq!(states.observe(sample(1, 5, 0xab)), Ok(()));
    }
}
