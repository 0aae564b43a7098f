//! Invariant: consistent-mode KV operations are linearizable.
//!
//! Every operation must appear to take effect atomically at one instant
//! between its invoke and its completion, in one total order that a single
//! register per key could have produced (Herlihy & Wing). The checker:
//!
//! 1. **Splits the history by key.** Linearizability is local (P-
//!    compositional): a history is linearizable iff each key's
//!    sub-history is, so each key is searched on its own.
//! 2. **Drops what cannot constrain the order.** `fail` operations definitely
//!    did not take effect, and a read whose outcome is unknown observed
//!    nothing; both are dropped. A `fail` CAS did observe "not the expected
//!    value", but dropping it only makes the check weaker, never wrong.
//! 3. **Models unknown outcomes as optional operations.** An `info` write,
//!    CAS or delete may take effect at any point after its invoke, or never:
//!    its completion time is +∞, and the search succeeds as soon as every
//!    *definite* (`ok`) operation is placed, so an unknown operation that is
//!    never placed is an operation that never happened. An unknown CAS placed
//!    where the register does not hold its expected value fails there and
//!    changes nothing. An unknown operation whose resulting value no read and
//!    no CAS ever observes is removed up front: placing it can only make
//!    later reads fail, so omitting it is always at least as good (this keeps
//!    timeouts of never-observed writes from widening the search). During
//!    the search an unknown operation is placed only where it changes the
//!    value to one that a pending operation observes: any linearization can
//!    be rewritten into one where each unknown operation that stays is
//!    immediately followed by an observer of its value (drop the ones that
//!    are not: the next operation overwrites the value, or is an unknown CAS
//!    that can be dropped as well), so nothing is lost, and timed-out writes
//!    no longer multiply the configurations to explore. For the same reason,
//!    of several pending unknown operations with the same effect (two
//!    timed-out deletes) only the earliest is tried: they have no deadline,
//!    so they are interchangeable.
//! 4. **Searches** with Wing & Gong's algorithm as improved by Lowe and by
//!    Porcupine: call and completion entries sorted by time in a doubly
//!    linked list; at each step, try to place the earliest pending calls (any
//!    call before the first completion still in the list); placing one lifts
//!    its call and completion out of the list; reaching a completion means
//!    that operation was not placed in time, so undo the last placement
//!    (backtrack) and try the next candidate. A set of visited (placed
//!    operations, register value) configurations, hashed incrementally,
//!    prunes every configuration already explored.
//!
//! At equal timestamps calls sort before completions, so operations that
//! touch the same instant count as concurrent (the lenient reading).
//!
//! Every key starts absent. The search order is fixed (time, then position
//! in the history), and the visited set is only queried, never iterated, so
//! the verdict and every message are deterministic.
//!
//! On a violation the report names the key, the longest linearizable prefix
//! the search reached, the register value after it and the operations that
//! could not be placed next, with their lines, processes, times and values.

mod search;

use crate::history::{Call, History, Operation, Outcome};
use search::{search, KeyOp, Search, Step, Value, ABSENT};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Operations of the prefix shown in an explanation (the full prefix is in
/// [`Violation::prefix`]).
const PREFIX_SHOWN_MAX: usize = 8;
const PENDING_SHOWN_MAX: usize = 16;

/// The verdict on a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub operations: usize,
    pub keys: usize,
    /// One per non-linearizable key, in key order.
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn is_linearizable(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Why one key's operations are not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    /// Operations of the key that had to be placed (`ok` ones).
    pub definite_operations: usize,
    /// The longest linearizable prefix the search reached, as indices into
    /// `History::operations`, in linearization order.
    pub prefix: Vec<usize>,
    /// The last operations of that prefix (at most 8), for messages.
    pub prefix_tail: Vec<Operation>,
    /// The key's value after the prefix (`None`: absent).
    pub value_after_prefix: Option<String>,
    /// The operations that could be placed next, none of which leads to a
    /// linearization, in call order.
    pub unplaced: Vec<Unplaced>,
    /// The completed operation that must precede every operation invoked
    /// after its completion, and that no order of `unplaced` reaches.
    pub deadline: Operation,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    pub operation: Operation,
    /// Why it cannot be placed right after the prefix; `None` when it can,
    /// but every continuation from there fails.
    pub conflict: Option<String>,
}

/// Checks a whole history, key by key (in key order).
pub fn check(history: &History) -> Report {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.operations.iter().enumerate() {
        by_key.entry(op.key.as_str()).or_default().push(index);
    }
    let violations = by_key
        .iter()
        .filter_map(|(key, indices)| check_key(history, key, indices))
        .collect();
    Report {
        operations: history.operations.len(),
        keys: by_key.len(),
        violations,
    }
}

/// Strings of one key interned to [`Value`]s.
#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a str, Value>,
    strings: Vec<&'a str>,
}

impl<'a> Interner<'a> {
    fn intern(&mut self, value: Option<&'a str>) -> Value {
        let Some(text) = value else { return ABSENT };
        *self.ids.entry(text).or_insert_with(|| {
            self.strings.push(text);
            Value::try_from(self.strings.len() - 1).expect("fewer than 2^32 values per key")
        })
    }

    fn lookup(&self, value: Value) -> Option<String> {
        (value != ABSENT).then(|| self.strings[value as usize].to_owned())
    }
}

fn check_key(history: &History, key: &str, indices: &[usize]) -> Option<Violation> {
    let mut values = Interner::default();
    let ops = key_operations(history, indices, &mut values);
    // Copying the prefix at every new deepest dead end would cost O(n) each
    // time, O(n^2) over a long key; so the first pass only measures the
    // depth, and a failing key is searched again (the same path: the search
    // is deterministic) to capture the first dead end at that depth.
    let Search::Failed { depth } = search(&ops, None) else {
        return None;
    };
    let Search::DeadEnd(dead_end) = search(&ops, Some(depth)) else {
        unreachable!("a repeated search reaches the same dead ends");
    };
    let state = values.lookup(dead_end.state);
    let operation = |op: usize| history.operations[ops[op].history_index].clone();
    let prefix: Vec<usize> = dead_end
        .prefix
        .iter()
        .map(|&op| ops[op].history_index)
        .collect();
    let tail_start = dead_end.prefix.len().saturating_sub(PREFIX_SHOWN_MAX);
    let unplaced = dead_end
        .pending
        .iter()
        .map(|&op| Unplaced {
            operation: operation(op),
            conflict: conflict(ops[op].step, dead_end.state, &values),
        })
        .collect();
    Some(Violation {
        key: key.to_owned(),
        definite_operations: ops.iter().filter(|op| op.definite).count(),
        prefix,
        prefix_tail: dead_end.prefix[tail_start..]
            .iter()
            .map(|&op| operation(op))
            .collect(),
        value_after_prefix: state,
        unplaced,
        deadline: operation(dead_end.deadline),
    })
}

fn conflict(step: Step, state: Value, values: &Interner<'_>) -> Option<String> {
    if step.apply(state).is_some() {
        return None;
    }
    let shown = |value| show_value(values.lookup(value).as_deref());
    Some(match step {
        Step::Read(value) => format!("read {} but the key holds {}", shown(value), shown(state)),
        Step::Cas { expected, .. } => format!(
            "swapped from {} but the key holds {}",
            shown(expected),
            shown(state)
        ),
        _ => unreachable!("only reads and CAS can contradict the register"),
    })
}

/// The key's operations that can constrain the order, sorted by call time.
fn key_operations<'a>(
    history: &'a History,
    indices: &[usize],
    values: &mut Interner<'a>,
) -> Vec<KeyOp> {
    let mut ops: Vec<KeyOp> = Vec::with_capacity(indices.len());
    for &history_index in indices {
        let op = &history.operations[history_index];
        let definite = match op.outcome {
            Outcome::Ok { .. } => true,
            Outcome::Unknown => false,
            Outcome::Fail => continue,
        };
        let step = match (&op.call, &op.outcome) {
            (Call::Read, Outcome::Ok { read }) => Step::Read(values.intern(read.as_deref())),
            (Call::Read, _) => continue,
            (Call::Write { value }, _) => Step::Write(values.intern(Some(value))),
            (Call::Cas { expected, value }, _) => {
                let expected = values.intern(expected.as_deref());
                let value = values.intern(Some(value));
                if definite {
                    Step::Cas { expected, value }
                } else {
                    Step::MaybeCas { expected, value }
                }
            }
            (Call::Delete, _) => Step::Delete,
        };
        ops.push(KeyOp {
            history_index,
            step,
            definite,
            call: op.invoke_time,
            complete: if definite { op.complete_time } else { None },
        });
    }
    drop_unobserved_unknowns(&mut ops);
    ops.sort_by_key(|op| (op.call, op.history_index));
    ops
}

/// Removes unknown-outcome operations whose resulting value nothing
/// observes (no read returns it, no CAS expects it). Repeats, since removing
/// an unknown CAS removes what it observed.
fn drop_unobserved_unknowns(ops: &mut Vec<KeyOp>) {
    loop {
        let mut observed: Vec<Value> = ops.iter().filter_map(|op| op.step.observes()).collect();
        observed.sort_unstable();
        observed.dedup();
        let before = ops.len();
        ops.retain(|op| op.definite || observed.binary_search(&op.step.result()).is_ok());
        if ops.len() == before {
            return;
        }
    }
}

fn show_value(value: Option<&str>) -> String {
    value.map_or_else(|| "null".to_owned(), |text| format!("{text:?}"))
}

/// One line describing an operation: where it is, who ran it, what it did
/// and when.
pub fn describe(op: &Operation) -> String {
    let what = match (&op.call, &op.outcome) {
        (Call::Read, Outcome::Ok { read }) => format!("read -> {}", show_value(read.as_deref())),
        (Call::Read, _) => "read".to_owned(),
        (Call::Write { value }, _) => format!("write {}", show_value(Some(value))),
        (Call::Cas { expected, value }, _) => format!(
            "cas {} -> {}",
            show_value(expected.as_deref()),
            show_value(Some(value))
        ),
        (Call::Delete, _) => "delete".to_owned(),
    };
    let end = match (&op.outcome, op.complete_time) {
        (Outcome::Ok { .. }, Some(time)) => format!("ok at {time}"),
        (Outcome::Fail, Some(time)) => format!("fail at {time}"),
        _ => "outcome unknown".to_owned(),
    };
    format!(
        "line {}: process {} {what} (invoked at {}, {end})",
        op.line, op.process, op.invoke_time
    )
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {:?}:", self.key)?;
        writeln!(
            f,
            "  longest linearizable prefix: {} operations ({} completed ones had to be placed)",
            self.prefix.len(),
            self.definite_operations
        )?;
        if self.prefix.len() > self.prefix_tail.len() {
            writeln!(
                f,
                "    ... {} earlier",
                self.prefix.len() - self.prefix_tail.len()
            )?;
        }
        for op in &self.prefix_tail {
            writeln!(f, "    {}", describe(op))?;
        }
        writeln!(
            f,
            "  value after the prefix: {}",
            show_value(self.value_after_prefix.as_deref())
        )?;
        writeln!(
            f,
            "  no order of these can be placed next before {} completes:",
            describe_short(&self.deadline)
        )?;
        for unplaced in self.unplaced.iter().take(PENDING_SHOWN_MAX) {
            let why = unplaced
                .conflict
                .as_deref()
                .unwrap_or("possible here, but every continuation fails");
            writeln!(f, "    {} -- {why}", describe(&unplaced.operation))?;
        }
        if self.unplaced.len() > PENDING_SHOWN_MAX {
            writeln!(
                f,
                "    ... {} more",
                self.unplaced.len() - PENDING_SHOWN_MAX
            )?;
        }
        Ok(())
    }
}

fn describe_short(op: &Operation) -> String {
    format!("the operation on line {}", op.line)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_linearizable() {
            return write!(
                f,
                "linearizable: {} operations on {} keys",
                self.operations, self.keys
            );
        }
        writeln!(
            f,
            "not linearizable: {} of {} keys ({} operations)",
            self.violations.len(),
            self.keys,
            self.operations
        )?;
        for violation in &self.violations {
            write!(f, "{violation}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
