//! The run's trace: (virtual time, node, event) lines folded into a running
//! hash. Two runs of one seed must give the same hash; the lines
//! themselves are kept only when asked (to diff two runs).

use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Inner {
    hash: u64,
    events: u64,
    lines: Option<Vec<String>>,
}

/// Shared by every node and the driver of one run.
#[derive(Clone, Default)]
pub struct Trace {
    inner: Arc<Mutex<Inner>>,
}

impl Trace {
    /// A trace that also keeps its lines.
    pub fn keeping_lines() -> Trace {
        let trace = Trace::default();
        trace.lock().lines = Some(Vec::new());
        trace
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `event` at `node` (0: the driver) at the current virtual time.
    pub fn record(&self, node: u64, event: impl AsRef<str>) {
        let nanos = madsim::time::TimeHandle::try_current()
            .map_or(0, |time| time.elapsed().as_nanos() as u64);
        let line = format!("{nanos} n{node} {}", event.as_ref());
        let mut inner = self.lock();
        // Chained: each line is hashed with the hash so far.
        let mut hasher = SipHasher13::new_with_keys(0x7472_6962, 0x0075_6e65);
        hasher.write_u64(inner.hash);
        hasher.write(line.as_bytes());
        inner.hash = hasher.finish();
        inner.events += 1;
        if let Some(lines) = &mut inner.lines {
            lines.push(line);
        }
    }

    pub fn hash(&self) -> u64 {
        self.lock().hash
    }

    pub fn events(&self) -> u64 {
        self.lock().events
    }

    pub fn lines(&self) -> Vec<String> {
        self.lock().lines.clone().unwrap_or_default()
    }
}
