//! tribune's simulation tests and the checkers they judge runs with.
//!
//! Each checker verifies one invariant over plain data that a run records,
//! whether the run is the deterministic simulator (`tests/sim/` on io-sim,
//! under `cfg(madsim)`) or real processes:
//!
//! | module | invariant |
//! |---|---|
//! | [`linearizability`] | KV operations are linearizable (also the `lincheck` binary) |
//! | [`lock_exclusivity`] | lock holders are ordered by fencing tokens, and fenced writes respect them |
//! | [`index_monotonic`] | indexes seen per key and per client session never go backwards |
//! | [`txn_atomicity`] | a transaction that saw one write of another transaction sees its other writes too |
//! | [`replica_state`] | replicas at the same applied index have the same state |
//! | [`membership`] | after faults heal, every running member lists every running member alive |
//! | [`node_health`] | the catalog follows the leader's gossip: alive members pass `serfHealth`, registered failed ones are critical, no other node has one |
//! | [`raft_safety`] | no two nodes apply different entries at one index; votes never go back; one leader per term (standard leader ids) |
//!
//! Data flow for linearizability:
//!
//! ```text
//! run (sim or real clients) --Event--> write_jsonl --> HISTORY.jsonl --parse_jsonl--+
//!          |                                                                        v
//!          +-------------------------- History::from_events ----------------> History --check--> Report
//! ```

pub mod fuzzing;
pub mod generate;
pub mod history;
pub mod index_monotonic;
pub mod linearizability;
pub mod lock_exclusivity;
pub mod membership;
pub mod node_health;
pub mod raft_safety;
pub mod replica_state;
pub mod txn_atomicity;

pub use history::{parse_jsonl, write_jsonl, Event, EventType, Function, History, HistoryError};
