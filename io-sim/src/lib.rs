//! tribune's deterministic simulator: the same openraft adapters as the
//! daemon (io-tokio's `LogStore`, `StateMachine`), on madsim's virtual
//! time, network and seeded randomness, plus the faults madsim lacks
//! (a disk that loses unsynced writes on crash).
//!
//! Compiled only with `--cfg madsim` (the workspace's .cargo/config.toml);
//! without it this crate is empty. See book/src/simulation.md.
#![cfg(madsim)]

pub mod runtime;
pub mod watch;

pub use runtime::MadsimRuntime;
pub use watch::SimWatch;
