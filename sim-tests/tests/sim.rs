//! The deterministic simulation: see book/src/simulation.md.

/// Without `--cfg madsim` this binary would pass with nothing run.
#[cfg(not(madsim))]
#[test]
fn requires_cfg_madsim() {
    panic!(
        "the simulation needs `--cfg madsim`: the workspace's .cargo/config.toml sets it; \
         do not override RUSTFLAGS when running `cargo test -p sim-tests`"
    );
}
