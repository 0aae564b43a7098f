//! Coordination recipes that run in a client against any Consul-compatible
//! HTTP API (a tribune agent or a Consul agent): locks, semaphores and
//! watches. `tribune lock` and `tribune watch` are thin commands over them,
//! and tests drive them directly.

pub mod api;
pub mod handler;
pub mod lock;
pub mod watch;
