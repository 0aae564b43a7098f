//! The shell's only clock reads. core gets time as `core::time::Instant`
//! (nanoseconds since this process's clock origin).

use std::sync::OnceLock;
use tribune_core::time::Instant;

static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();

fn origin() -> std::time::Instant {
    *ORIGIN.get_or_init(std::time::Instant::now)
}

/// Monotonic now, as core understands it.
pub fn now() -> Instant {
    let elapsed = origin().elapsed().as_nanos();
    Instant::from_nanos(u64::try_from(elapsed).unwrap_or(u64::MAX))
}

/// The std instant corresponding to a core instant (for tokio timers).
pub fn to_std(at: Instant) -> std::time::Instant {
    origin() + std::time::Duration::from_nanos(at.0)
}

/// A seed for core's RNG, drawn once from the OS (via std's randomly keyed
/// hasher and the wall clock); the agent logs it so a run can be replayed.
pub fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hasher.write_u128(wall);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Wall-clock seconds since the Unix epoch (0 if the clock is before it),
/// for values Consul shows as wall time (the DNS SOA serial).
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Wall-clock milliseconds since the Unix epoch (0 if before it), for IDs
/// that carry a creation time (snapshot IDs).
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
