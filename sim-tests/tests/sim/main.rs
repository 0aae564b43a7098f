//! The deterministic simulation (book/src/simulation.md): a VOPR-style
//! runner over io-sim.
//!
//! Each seed picks a cluster size (3 or 5), network faults (loss, latency),
//! disk latency, fault rates and a workload mix, then runs
//!
//! 1. a **safety phase**: clients write, CAS, delete and read a few keys
//!    while a nemesis partitions (random halves, the leader, one node, one
//!    direction of a link), kills and restarts servers (the disk keeps what
//!    it had flushed, an in-flight append may be torn), and pauses them;
//! 2. a **liveness phase**: every fault healed, the cluster must elect a
//!    leader, accept a write, converge (every server applied the same log,
//!    identical stores) and serve final reads within a bound of virtual
//!    time;
//!
//! and checks the run: linearizability of the history, Raft safety (one
//! leader per term, the same entry applied at each index everywhere),
//! replica state (equal stores at equal applied index), every
//! acknowledged write in every server's log, lock holds (strict for
//! sessions only their holder ends, fenced for leases: `leases.rs`),
//! every TTL session expired after healing, and (when the seed runs
//! gossip, on the servers and 1..3 client agents) every node's member list
//! showing every node alive and the leader's catalog agreeing with it.
//!
//! - `cargo test -p sim-tests --test sim`: the CI budget of seeds;
//! - `TRIBUNE_SIM_SEED=n cargo test -p sim-tests --test sim`: one seed,
//!   with its trace summary;
//! - `TRIBUNE_SIM_SEEDS=N`: N seeds (a soak), starting at
//!   `TRIBUNE_SIM_FIRST_SEED` (default 0).

/// Without `--cfg madsim` this binary would pass with nothing run.
#[cfg(not(madsim))]
#[test]
fn requires_cfg_madsim() {
    panic!(
        "the simulation needs `--cfg madsim`: the workspace's .cargo/config.toml sets it; \
         do not override RUSTFLAGS when running `cargo test -p sim-tests`"
    );
}

#[cfg(madsim)]
mod agents;
#[cfg(madsim)]
mod leases;
#[cfg(madsim)]
mod nemesis;
#[cfg(madsim)]
mod params;
#[cfg(madsim)]
mod scenario;
#[cfg(madsim)]
mod sessions;
#[cfg(madsim)]
mod sim;
#[cfg(madsim)]
mod workload;
