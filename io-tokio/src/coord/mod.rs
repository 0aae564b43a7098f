//! Coordination recipes that run in a client against any Consul-compatible
//! HTTP API (a tribune agent or a Consul agent): locks, semaphores and
//! watches. `tribune lock` and `tribune watch` are thin commands over them,
//! and tests drive them directly.

pub mod api;
pub mod handler;
pub mod lock;
pub mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Sleeps up to `total` in short steps; `false` when `stop` was set or
/// `deadline` passed first.
pub(crate) fn sleep_unless_stopped(
    total: Duration,
    stop: &AtomicBool,
    deadline: Option<Instant>,
) -> bool {
    const TICK: Duration = Duration::from_millis(50);
    let until = Instant::now() + total;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        std::thread::sleep(TICK.min(until - Instant::now()));
    }
    true
}
