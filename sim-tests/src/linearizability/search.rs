//! The search of one key's operations: Wing & Gong's algorithm with
//! Lowe's and Porcupine's improvements, plus the rules for unknown outcomes
//! (see the parent module for the algorithm and why each rule is safe).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Register value: an interned string, or [`ABSENT`].
pub(super) type Value = u32;
pub(super) const ABSENT: Value = Value::MAX;
const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// One step of the register model.
#[derive(Clone, Copy, Debug)]
pub(super) enum Step {
    Read(Value),
    Write(Value),
    Cas {
        expected: Value,
        value: Value,
    },
    /// A CAS with an unknown outcome: swaps if the register holds `expected`
    /// where it is placed, else does nothing.
    MaybeCas {
        expected: Value,
        value: Value,
    },
    Delete,
}

impl Step {
    /// The register after this step from `state`, or `None` if the step's
    /// observation contradicts `state`.
    pub(super) fn apply(self, state: Value) -> Option<Value> {
        match self {
            Step::Read(value) => (state == value).then_some(state),
            Step::Write(value) => Some(value),
            Step::Cas { expected, value } => (state == expected).then_some(value),
            Step::MaybeCas { expected, value } => {
                Some(if state == expected { value } else { state })
            }
            Step::Delete => Some(ABSENT),
        }
    }

    /// The value this step requires the register to hold, if any.
    pub(super) fn observes(self) -> Option<Value> {
        match self {
            Step::Read(value) => Some(value),
            Step::Cas { expected, .. } | Step::MaybeCas { expected, .. } => Some(expected),
            Step::Write(_) | Step::Delete => None,
        }
    }

    /// Equal for steps with the same effect and observation.
    pub(super) fn identity(self) -> (u8, Value, Value) {
        match self {
            Step::Read(value) => (0, value, 0),
            Step::Write(value) => (1, value, 0),
            Step::Cas { expected, value } => (2, expected, value),
            Step::MaybeCas { expected, value } => (3, expected, value),
            Step::Delete => (4, 0, 0),
        }
    }

    /// The value this step leaves if it takes effect.
    pub(super) fn result(self) -> Value {
        match self {
            Step::Read(value) | Step::Write(value) => value,
            Step::Cas { value, .. } | Step::MaybeCas { value, .. } => value,
            Step::Delete => ABSENT,
        }
    }
}

/// An operation of one key, as the search sees it.
#[derive(Clone, Copy, Debug)]
pub(super) struct KeyOp {
    pub(super) history_index: usize,
    pub(super) step: Step,
    /// `ok`: must be placed. Unknown outcomes may be left out.
    pub(super) definite: bool,
    pub(super) call: u64,
    /// `None`: +∞ (unknown outcome).
    pub(super) complete: Option<u64>,
}

/// Where and why the deepest branch of the search stopped.
pub(super) struct DeadEnd {
    /// Placed operations (indices into the key's ops), in order.
    pub(super) prefix: Vec<usize>,
    pub(super) state: Value,
    /// Calls pending at that point, in list order.
    pub(super) pending: Vec<usize>,
    pub(super) deadline: usize,
}

/// The call/completion entries as a doubly linked list that operations are
/// lifted out of and put back into (dancing links), head at node 0.
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Node -> operation, and whether the node is the operation's call.
    node_op: Vec<usize>,
    node_is_call: Vec<bool>,
    call_node: Vec<usize>,
    /// `NIL` for an operation with an unknown outcome (completion at +∞).
    complete_node: Vec<usize>,
}

impl Entries {
    fn new(ops: &[KeyOp]) -> Entries {
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (op, key_op) in ops.iter().enumerate() {
            // `false` sorts first: calls before completions at equal times.
            order.push((key_op.call, false, op));
            if let Some(complete) = key_op.complete {
                order.push((complete, true, op));
            }
        }
        order.sort_unstable();
        let nodes = order.len() + 1;
        let mut entries = Entries {
            next: vec![NIL; nodes],
            prev: vec![HEAD; nodes],
            node_op: vec![NIL; nodes],
            node_is_call: vec![false; nodes],
            call_node: vec![NIL; ops.len()],
            complete_node: vec![NIL; ops.len()],
        };
        for (position, &(_, is_completion, op)) in order.iter().enumerate() {
            let node = position + 1;
            entries.next[node - 1] = node;
            entries.prev[node] = node - 1;
            entries.node_op[node] = op;
            entries.node_is_call[node] = !is_completion;
            if is_completion {
                entries.complete_node[op] = node;
            } else {
                entries.call_node[op] = node;
            }
        }
        entries
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_node[op]);
        if self.complete_node[op] != NIL {
            self.unlink(self.complete_node[op]);
        }
    }

    /// Undoes `lift(op)`; lifts must be undone in reverse order.
    fn unlift(&mut self, op: usize) {
        if self.complete_node[op] != NIL {
            self.relink(self.complete_node[op]);
        }
        self.relink(self.call_node[op]);
    }

    /// The operations below `below`, other than `op`, not yet placed, in
    /// ascending order. They are all candidates (see `Configuration`), so
    /// only the calls before the first completion need to be looked at.
    fn holes(&self, below: usize, op: usize, holes: &mut Vec<u32>) {
        holes.clear();
        let mut node = self.next[HEAD];
        while node != NIL && self.node_is_call[node] {
            let candidate = self.node_op[node];
            if candidate < below && candidate != op {
                holes.push(u32::try_from(candidate).expect("fewer than 2^32 operations per key"));
            }
            node = self.next[node];
        }
    }

    /// The dead end reached at completion `node` after placing `prefix`.
    fn dead_end(&self, prefix: Vec<usize>, state: Value, node: usize) -> DeadEnd {
        let deadline = if node == NIL {
            prefix.last().copied().unwrap_or(0)
        } else {
            self.node_op[node]
        };
        DeadEnd {
            prefix,
            state,
            pending: self.pending_calls(node),
            deadline,
        }
    }

    /// Calls before `stop` (the first completion in the list).
    fn pending_calls(&self, stop: usize) -> Vec<usize> {
        let mut pending = Vec::new();
        let mut node = self.next[HEAD];
        while node != stop && node != NIL {
            pending.push(self.node_op[node]);
            node = self.next[node];
        }
        pending
    }
}

/// The candidates to place next (calls before the list's first
/// completion), summarised for the rules on unknown operations; rebuilt
/// lazily after every change to the list.
#[derive(Default)]
struct Window {
    valid: bool,
    /// Values some candidate observes, sorted.
    observed: Vec<Value>,
    /// Per distinct step of an unknown candidate, its first node in the list.
    first_unknown: Vec<((u8, Value, Value), usize)>,
}

impl Window {
    /// Whether the unknown operation at `node` may be placed, taking the
    /// register from `state` to `next_state`: only if that changes the
    /// value to one a candidate observes (see the module documentation),
    /// and only if no identical unknown operation comes before it in the
    /// list. Identical unknown operations (two timed-out deletes, say) are
    /// interchangeable: both have no deadline, so using the earlier one
    /// first loses nothing, and trying each would multiply the
    /// configurations to explore.
    fn allows(
        &mut self,
        node: usize,
        state: Value,
        next_state: Value,
        entries: &Entries,
        ops: &[KeyOp],
    ) -> bool {
        if next_state == state {
            return false;
        }
        if !self.valid {
            self.rebuild(entries, ops);
        }
        let key = ops[entries.node_op[node]].step.identity();
        self.observed.binary_search(&next_state).is_ok()
            && self
                .first_unknown
                .binary_search_by_key(&key, |&(key, _)| key)
                .is_ok_and(|at| self.first_unknown[at].1 == node)
    }

    fn rebuild(&mut self, entries: &Entries, ops: &[KeyOp]) {
        self.observed.clear();
        self.first_unknown.clear();
        let mut node = entries.next[HEAD];
        while node != NIL && entries.node_is_call[node] {
            let op = &ops[entries.node_op[node]];
            self.observed.extend(op.step.observes());
            if !op.definite {
                self.first_unknown.push((op.step.identity(), node));
            }
            node = entries.next[node];
        }
        self.observed.sort_unstable();
        self.observed.dedup();
        // Stable: the first node of each step stays first.
        self.first_unknown.sort_by_key(|&(key, _)| key);
        self.first_unknown.dedup_by_key(|&mut (key, _)| key);
        self.valid = true;
    }
}

pub(super) enum Search {
    Linearizable,
    /// No linearization; `depth` is the longest prefix the search placed.
    Failed {
        depth: usize,
    },
    /// The first dead end with the requested prefix length.
    DeadEnd(DeadEnd),
}

/// Wing–Gong–Lowe search with Porcupine's visited-configuration cache.
/// With `capture_depth`, stops at the first dead end after that many
/// placements and describes it.
pub(super) fn search(ops: &[KeyOp], capture_depth: Option<usize>) -> Search {
    let definite_total = ops.iter().filter(|op| op.definite).count();
    if definite_total == 0 {
        return Search::Linearizable;
    }
    let mut entries = Entries::new(ops);
    let mut window = Window::default();
    let zobrist: Vec<u64> = (0..ops.len() as u64).map(splitmix64).collect();
    let mut placed_hash = 0u64;
    // Every placed operation is below `placed_below`; `holes` are the
    // unplaced ones below it (see `Configuration`).
    let mut placed_below = 0;
    let mut holes: Vec<u32> = Vec::new();
    let mut visited = Visited::default();
    let mut stack: Vec<(usize, Value, usize)> = Vec::new();
    let mut definite_placed = 0;
    let mut state = ABSENT;
    let mut deepest = 0;
    let mut node = entries.next[HEAD];
    loop {
        if node != NIL && entries.node_is_call[node] {
            let op = entries.node_op[node];
            let next_state = ops[op].step.apply(state).filter(|&next_state| {
                ops[op].definite || window.allows(node, state, next_state, &entries, ops)
            });
            if let Some(next_state) = next_state {
                let next_hash = placed_hash ^ zobrist[op];
                let next_below = placed_below.max(op + 1);
                entries.holes(next_below, op, &mut holes);
                debug_assert_eq!(next_below - holes.len(), stack.len() + 1);
                if visited.insert(next_hash, next_state, next_below, &holes) {
                    stack.push((op, state, placed_below));
                    state = next_state;
                    placed_hash = next_hash;
                    placed_below = next_below;
                    entries.lift(op);
                    window.valid = false;
                    definite_placed += usize::from(ops[op].definite);
                    if definite_placed == definite_total {
                        return Search::Linearizable;
                    }
                    node = entries.next[HEAD];
                    continue;
                }
            }
            node = entries.next[node];
            continue;
        }
        // A completion (or, defensively, the end): the operation it belongs
        // to was not placed in time. Undo the last placement and try the
        // call after it.
        deepest = deepest.max(stack.len());
        if capture_depth == Some(stack.len()) {
            let prefix: Vec<usize> = stack.iter().map(|&(op, _, _)| op).collect();
            return Search::DeadEnd(entries.dead_end(prefix, state, node));
        }
        let Some((op, previous_state, previous_below)) = stack.pop() else {
            return Search::Failed { depth: deepest };
        };
        definite_placed -= usize::from(ops[op].definite);
        placed_hash ^= zobrist[op];
        placed_below = previous_below;
        state = previous_state;
        entries.unlift(op);
        window.valid = false;
        node = entries.next[entries.call_node[op]];
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE5_E4B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Visited (placed set, register value) configurations. Keyed by an
/// incrementally maintained (Zobrist) hash of the placed set mixed with the
/// value; the exact configurations are kept to rule out collisions, in two
/// flat arenas (no allocation per configuration).
#[derive(Default)]
struct Visited {
    /// Hash -> first configuration with that hash (chained by `next`).
    heads: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    configurations: Vec<Configuration>,
    holes: Vec<u32>,
}

/// A placed set stored as "every operation below `placed_below`, except
/// the holes". Operations are numbered in call order and an operation can
/// only be placed while it is a candidate, so the holes are candidates too:
/// a handful of concurrent calls plus pending unknown outcomes, whatever the
/// length of the history. A bitset would cost n/64 words per configuration
/// and per comparison, quadratic over a long single-key history.
struct Configuration {
    state: Value,
    placed_below: u32,
    /// `holes[holes_start..holes_start + holes_len]` in `Visited::holes`.
    holes_start: u32,
    holes_len: u32,
    /// Next configuration with the same hash, or `u32::MAX`.
    next: u32,
}

impl Visited {
    /// `true` if the configuration was new.
    fn insert(
        &mut self,
        placed_hash: u64,
        state: Value,
        placed_below: usize,
        holes: &[u32],
    ) -> bool {
        let placed_below = u32::try_from(placed_below).expect("fewer than 2^32 operations per key");
        let key = placed_hash ^ splitmix64(u64::from(state) ^ 0x5EED);
        let new = u32::try_from(self.configurations.len()).expect("fewer than 2^32 configurations");
        let head = self.heads.entry(key).or_insert(u32::MAX);
        let mut at = *head;
        while at != u32::MAX {
            let seen = &self.configurations[at as usize];
            let start = seen.holes_start as usize;
            if seen.state == state
                && seen.placed_below == placed_below
                && self.holes[start..start + seen.holes_len as usize] == *holes
            {
                return false;
            }
            at = seen.next;
        }
        self.configurations.push(Configuration {
            state,
            placed_below,
            holes_start: u32::try_from(self.holes.len()).expect("fewer than 2^32 holes"),
            holes_len: holes.len() as u32,
            next: *head,
        });
        *head = new;
        self.holes.extend_from_slice(holes);
        true
    }
}

/// The visited set's keys are already uniformly mixed 64-bit hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}
