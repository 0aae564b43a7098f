//! tribune's deterministic simulator: the same openraft adapters as the
//! daemon (io-tokio's `LogStore`, `StateMachine`), on madsim's virtual
//! time, network and seeded randomness, plus the faults madsim lacks
//! (a disk with latency that tears in-flight writes on crash), core's
//! leader machine (`server`) and gossip (`gossip`) on every server, and
//! client agents (gossip only) beside them.
//!
//! ```text
//!  test driver (madsim main node) ──client_write / read──> server n (madsim node 10.0.0.n)
//!                                                           ├─ Raft::new (openraft, MadsimRuntime)
//!                                                           ├─ io-tokio LogStore ─> FaultLog ─> Disk (owned by Cluster)
//!                                                           ├─ io-tokio StateMachine ─> ServerStore (core Fsm + leader machine)
//!                                                           ├─ leader duties (session TTLs, lock-delay, gossip → catalog)
//!                                                           ├─ gossip: core Serf over madsim datagrams (optional)
//!                                                           └─ net::serve <── madsim Endpoint ──> net::Network peers
//!  client agent k (madsim node 10.0.1.k) ── gossip only (core Serf, client tags), joins the servers
//! ```
//!
//! Compiled only with `--cfg madsim` (the workspace's .cargo/config.toml);
//! without it this crate is empty. See book/src/simulation.md.
#![cfg(madsim)]

pub mod client;
pub mod clock;
pub mod cluster;
pub mod disk;
pub mod gossip;
pub mod net;
pub mod runtime;
pub mod server;
pub mod trace;
pub mod types;
pub mod watch;

pub use clock::NodeClock;
pub use cluster::{Cluster, ClusterConfig, ReadMode, ReadOutcome, WriteOutcome};
pub use disk::{Disk, DiskConfig, DiskMode};
pub use runtime::MadsimRuntime;
pub use trace::Trace;
pub use watch::SimWatch;
