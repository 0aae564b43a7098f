//! Invariant: a transaction's writes are seen together. A transaction that
//! reads a value another transaction `T` wrote must not, on another key `T`
//! also wrote, read a value that was already overwritten by `T`.
//!
//! The linearizability check is per key (a transaction projects onto one
//! single-key operation per leg), so it cannot see a transaction applied
//! in part, or a multi-key read that mixes two states. This checker looks
//! across keys, using only what real time proves. Values are unique, so a
//! read names the write it saw. For a committed reading transaction `R`
//! and a writing transaction `T` (its legs share one invocation):
//!
//! - `R` read key `a` and got `T`'s value, so `T` took effect before `R`;
//! - `T` also wrote key `b`, and `R` read `b`;
//! - then `R` must see on `b` `T`'s value or a later one. A value written
//!   by an operation that completed before `T` was invoked precedes `T`'s
//!   and is a violation; so is an absent `b` when every delete of `b`
//!   completed before `T` was invoked.
//!
//! Real time leaves values whose writes overlap `T` unjudged. Where the
//! reads carry the modify index of what they read (a transaction's
//! answer does: every key's `ModifyIndex`), the store's own order decides
//! instead: all of `T`'s writes share one Raft index `t`, the index `R`
//! saw on `a`, so `R`'s value of `b` must carry an index of at least `t`.
//!
//! Transactions are given as groups of operation indexes (their legs).

use crate::history::{Call, History, Operation, Outcome};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornRead {
    /// Line of the reading transaction's leg on `b`.
    pub reader_line: usize,
    /// Line of `T`'s leg on `a`, whose value the reader saw.
    pub seen_line: usize,
    pub seen_key: String,
    pub key: String,
    /// What the reader got on `key` (`None`: absent).
    pub got: Option<String>,
    /// Line of `T`'s write of `key`, which `got` predates.
    pub missed_line: usize,
    /// When the store's order decided: (index of `got`, `T`'s index).
    pub indexes: Option<(u64, u64)>,
}

impl fmt::Display for TornRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "transaction read {:?} written by line {} but on {:?} got {:?}, older than that \
             transaction's write (line {}); reader's leg at line {}",
            self.seen_key, self.seen_line, self.key, self.got, self.missed_line, self.reader_line
        )?;
        match self.indexes {
            Some((got, t)) => write!(f, " (modify index {got} < the transaction's {t})"),
            None => Ok(()),
        }
    }
}

/// What the check covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// (reader, writer, other key) triples judged.
    pub pairs_judged: usize,
    /// Of those, decided by modify indexes (the rest by real time, which
    /// leaves overlapping writes undecided).
    pub by_index: usize,
}

fn written_value(op: &Operation) -> Option<&str> {
    match &op.call {
        Call::Write { value } | Call::Cas { value, .. } => Some(value),
        _ => None,
    }
}

/// Checks every reading transaction in `groups` (legs as indexes into
/// `history.operations`) against every writing transaction whose value it
/// saw. `read_indexes` gives, for read legs whose answer carried it, the
/// modify index of the value read (by operation index). The first
/// violation, or what was judged.
pub fn check(
    history: &History,
    groups: &[Vec<usize>],
    read_indexes: &BTreeMap<usize, u64>,
) -> Result<Coverage, Box<TornRead>> {
    let ops = &history.operations;
    // Which operation wrote each value, and which group it belongs to.
    let writer: BTreeMap<&str, usize> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| written_value(op).map(|v| (v, i)))
        .collect();
    let mut group_of: BTreeMap<usize, usize> = BTreeMap::new();
    for (g, legs) in groups.iter().enumerate() {
        for &leg in legs {
            group_of.insert(leg, g);
        }
    }
    let completed_before = |op: &Operation, t: u64| op.complete_time.is_some_and(|c| c < t);
    let mut coverage = Coverage::default();
    for reader in groups {
        // The reader's committed reads: key -> (leg, value).
        let reads: BTreeMap<&str, (usize, Option<&str>)> = reader
            .iter()
            .filter_map(|&leg| match (&ops[leg].call, &ops[leg].outcome) {
                (Call::Read, Outcome::Ok { read }) => {
                    Some((ops[leg].key.as_str(), (leg, read.as_deref())))
                }
                _ => None,
            })
            .collect();
        for (&seen_key, &(seen_reader_leg, seen)) in &reads {
            let Some(&seen_leg) = seen.and_then(|v| writer.get(v)) else {
                continue;
            };
            let Some(&t) = group_of.get(&seen_leg) else {
                continue;
            };
            let t_invoked = ops[seen_leg].invoke_time;
            for &t_leg in &groups[t] {
                let key = ops[t_leg].key.as_str();
                if key == seen_key || written_value(&ops[t_leg]).is_none() {
                    continue;
                }
                let Some(&(reader_leg, got)) = reads.get(key) else {
                    continue;
                };
                coverage.pairs_judged += 1;
                let by_index = match (
                    got,
                    read_indexes.get(&reader_leg),
                    read_indexes.get(&seen_reader_leg),
                ) {
                    (Some(_), Some(&got_index), Some(&t_index)) => Some((got_index, t_index)),
                    _ => None,
                };
                let older = match (by_index, got) {
                    (Some((got_index, t_index)), _) => {
                        coverage.by_index += 1;
                        got_index < t_index
                    }
                    (None, Some(value)) => writer.get(value).is_some_and(|&w| {
                        group_of.get(&w) != Some(&t) && completed_before(&ops[w], t_invoked)
                    }),
                    (None, None) => !ops.iter().any(|op| {
                        op.key == key
                            && matches!(op.call, Call::Delete)
                            && !completed_before(op, t_invoked)
                    }),
                };
                if older {
                    return Err(Box::new(TornRead {
                        reader_line: ops[reader_leg].line,
                        seen_line: ops[seen_leg].line,
                        seen_key: seen_key.to_owned(),
                        key: key.to_owned(),
                        got: got.map(str::to_owned),
                        missed_line: ops[t_leg].line,
                        indexes: by_index,
                    }));
                }
            }
        }
    }
    Ok(coverage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Event;

    /// A writing transaction (process 10, keys a and b, values t-a and
    /// t-b) at 10..20, after plain writes of o-a and o-b at 0..5; then a
    /// reading transaction (process 20) at 30..40 that reads `got_a` and
    /// `got_b`.
    fn two_transactions(got_a: Option<&str>, got_b: Option<&str>) -> (History, Vec<Vec<usize>>) {
        let events = vec![
            Event::invoke_write(1, "a", "o-a", 0),
            Event::complete(1, crate::EventType::Ok, crate::Function::Write, "a", 5),
            Event::invoke_write(2, "b", "o-b", 0),
            Event::complete(2, crate::EventType::Ok, crate::Function::Write, "b", 5),
            Event::invoke_write(10, "a", "t-a", 10),
            Event::invoke_write(11, "b", "t-b", 10),
            Event::complete(10, crate::EventType::Ok, crate::Function::Write, "a", 20),
            Event::complete(11, crate::EventType::Ok, crate::Function::Write, "b", 20),
            Event::invoke_read(20, "a", 30),
            Event::invoke_read(21, "b", 30),
            Event::ok_read(20, "a", got_a, 40),
            Event::ok_read(21, "b", got_b, 40),
        ];
        let history = History::from_events(&events).expect("pairs");
        let groups = writer_and_reader(&history);
        (history, groups)
    }

    /// The legs of the writing transaction (processes 10 and 11) and of
    /// the reading one (20 and 21), as operation indexes.
    fn writer_and_reader(history: &History) -> Vec<Vec<usize>> {
        let index = |process: u64| {
            history
                .operations
                .iter()
                .position(|op| op.process == process)
                .unwrap()
        };
        vec![vec![index(10), index(11)], vec![index(20), index(21)]]
    }

    #[test]
    fn seeing_both_writes_of_a_transaction_passes() {
        let (history, groups) = two_transactions(Some("t-a"), Some("t-b"));
        let none = BTreeMap::new();
        assert_eq!(check(&history, &groups, &none).unwrap().pairs_judged, 2);
        let (history, groups) = two_transactions(Some("o-a"), Some("o-b"));
        assert_eq!(check(&history, &groups, &none).unwrap().pairs_judged, 0);
    }

    #[test]
    fn seeing_one_write_of_a_transaction_and_an_older_value_fails() {
        let (history, groups) = two_transactions(Some("t-a"), Some("o-b"));
        let none = BTreeMap::new();
        let torn = check(&history, &groups, &none).unwrap_err();
        assert_eq!((torn.seen_key.as_str(), torn.key.as_str()), ("a", "b"));
        assert_eq!(torn.got.as_deref(), Some("o-b"));
        assert!(torn
            .to_string()
            .contains("older than that transaction's write"));
        // Absent, with no delete of b at all: older too.
        let (history, groups) = two_transactions(Some("t-a"), None);
        assert!(check(&history, &groups, &none).is_err());
    }

    /// A writing transaction (process 10, keys a and b) at 10..20 and a
    /// plain write of `b` (process 2, value o-b) at 12..25 overlapping it,
    /// then a reading transaction (process 20) at 30..40 that sees `t-a`
    /// on `a` (modify index 7) and `o-b` on `b` (modify index `b_index`).
    /// Real time cannot order o-b and the transaction; indexes can.
    fn overlapping_write(b_index: u64) -> (History, Vec<Vec<usize>>, BTreeMap<usize, u64>) {
        use crate::{EventType::Ok, Function::Write};
        let events = vec![
            Event::invoke_write(10, "a", "t-a", 10),
            Event::invoke_write(11, "b", "t-b", 10),
            Event::invoke_write(2, "b", "o-b", 12),
            Event::complete(10, Ok, Write, "a", 20),
            Event::complete(11, Ok, Write, "b", 20),
            Event::complete(2, Ok, Write, "b", 25),
            Event::invoke_read(20, "a", 30),
            Event::invoke_read(21, "b", 30),
            Event::ok_read(20, "a", Some("t-a"), 40),
            Event::ok_read(21, "b", Some("o-b"), 40),
        ];
        let history = History::from_events(&events).expect("pairs");
        let groups = writer_and_reader(&history);
        let indexes = BTreeMap::from([(groups[1][0], 7), (groups[1][1], b_index)]);
        (history, groups, indexes)
    }

    #[test]
    fn modify_indexes_decide_what_real_time_cannot() {
        // Without indexes: judged, not decided (o-b overlaps the writer).
        let (history, groups, _) = overlapping_write(9);
        let coverage = check(&history, &groups, &BTreeMap::new()).unwrap();
        assert_eq!((coverage.pairs_judged, coverage.by_index), (1, 0));
        // o-b after the transaction (index 9 > 7): fine.
        let (history, groups, indexes) = overlapping_write(9);
        let coverage = check(&history, &groups, &indexes).unwrap();
        assert_eq!((coverage.pairs_judged, coverage.by_index), (1, 1));
        // o-b before it (index 5 < 7): the reader saw half of it.
        let (history, groups, indexes) = overlapping_write(5);
        let torn = check(&history, &groups, &indexes).unwrap_err();
        assert_eq!(torn.indexes, Some((5, 7)));
        assert!(torn
            .to_string()
            .contains("modify index 5 < the transaction's 7"));
    }
}
