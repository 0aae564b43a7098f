//! Per-node clocks: skew and drift for everything openraft times.
//!
//! openraft reads time only through its runtime's `Instant` and sleeps
//! (election timeouts, heartbeats, the leader lease, RPC deadlines), and
//! nothing on the simulated server path reads wall time; so a node's clock
//! is modelled where [`crate::MadsimRuntime`] hands out instants and
//! timers:
//!
//! - **drift**: the node's clock runs `rate_ppm` parts per million fast
//!   (negative: slow) against virtual time, so one second of virtual time
//!   is `1 s × (1 + rate_ppm / 10⁶)` on that node, and a sleep of `d` on
//!   the node lasts `d / (1 + rate_ppm / 10⁶)` of virtual time;
//! - **skew**: each node's instants start from its own origin
//!   (`offset`), so an instant that leaked from one node to another (sent
//!   in a message, shared through memory) would be compared against an
//!   unrelated clock, as between real machines.
//!
//! Which clock applies is a thread-local set while a task of that node is
//! polled: the node's init future is wrapped with [`with_clock`], and
//! [`crate::MadsimRuntime::spawn`] carries the spawner's clock into every
//! task it spawns (madsim runs one task at a time on one thread). Outside
//! any node clock (the test driver), time is virtual time.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// One node's clock against virtual time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeClock {
    /// Where the node's instants start, in nanoseconds.
    pub offset_ns: u64,
    /// How fast the clock runs against virtual time, in parts per million
    /// (10,000 = 1% fast; -10,000 = 1% slow). Must be above -1,000,000.
    pub rate_ppm: i64,
}

const PPM: i128 = 1_000_000;

impl NodeClock {
    /// The node's reading at `virtual_ns` since the simulation began.
    pub fn local_ns(&self, virtual_ns: u64) -> u64 {
        let scaled = i128::from(virtual_ns) * (PPM + i128::from(self.rate_ppm)) / PPM;
        self.offset_ns
            .saturating_add(u64::try_from(scaled.max(0)).unwrap_or(u64::MAX))
    }

    /// The virtual time at which the node reads `local_ns` (the earliest
    /// one, rounded up; before the origin: 0).
    pub fn virtual_ns(&self, local_ns: u64) -> u64 {
        let since_origin = i128::from(local_ns.saturating_sub(self.offset_ns));
        let rate = PPM + i128::from(self.rate_ppm);
        let v = (since_origin * PPM + rate - 1) / rate;
        u64::try_from(v).unwrap_or(u64::MAX)
    }

    /// How long `local` of the node's time lasts in virtual time.
    pub fn virtual_duration(&self, local: Duration) -> Duration {
        let rate = PPM + i128::from(self.rate_ppm);
        let v = (local.as_nanos() as i128 * PPM + rate - 1) / rate;
        Duration::from_nanos(u64::try_from(v).unwrap_or(u64::MAX))
    }
}

thread_local! {
    static CURRENT: Cell<Option<NodeClock>> = const { Cell::new(None) };
}

/// The clock of the task being polled (`None`: virtual time).
pub fn current() -> Option<NodeClock> {
    CURRENT.with(Cell::get)
}

pin_project_lite::pin_project! {
    /// A future polled under a node's clock.
    pub struct Clocked<F> {
        clock: Option<NodeClock>,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Clocked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let outer = CURRENT.with(|c| c.replace(*this.clock));
        let result = this.future.poll(cx);
        CURRENT.with(|c| c.set(outer));
        result
    }
}

/// Runs `future` under `clock` (and every task it spawns through
/// [`crate::MadsimRuntime`]).
pub fn with_clock<F: Future>(clock: Option<NodeClock>, future: F) -> Clocked<F> {
    Clocked { clock, future }
}

/// Runs `future` under the current task's clock.
pub fn inherit<F: Future>(future: F) -> Clocked<F> {
    with_clock(current(), future)
}

fn virtual_now_ns() -> u64 {
    let elapsed = madsim::time::TimeHandle::current().elapsed();
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// The madsim instant at `virtual_ns` since the simulation began.
pub fn madsim_instant(virtual_ns: u64) -> std::time::Instant {
    let handle = madsim::time::TimeHandle::current();
    let now = handle.now_instant();
    let elapsed = handle.elapsed();
    let target = Duration::from_nanos(virtual_ns);
    if target >= elapsed {
        now + (target - elapsed)
    } else {
        now - (elapsed - target)
    }
}

/// openraft's `Instant` on a node's clock: nanoseconds of that clock.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimInstant(u64);

impl SimInstant {
    /// The instant at which the node's clock reads `ns`.
    pub fn from_nanos(ns: u64) -> SimInstant {
        SimInstant(ns)
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// The madsim (virtual-time) instant at which the current node's clock
    /// reads `self`, for timers.
    pub fn to_madsim(self) -> std::time::Instant {
        let virtual_ns = match current() {
            Some(clock) => clock.virtual_ns(self.0),
            None => self.0,
        };
        madsim_instant(virtual_ns)
    }
}

impl fmt::Debug for SimInstant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimInstant({:?})", Duration::from_nanos(self.0))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for SimInstant {
    type Output = SimInstant;
    fn add(self, d: Duration) -> SimInstant {
        SimInstant(self.0.saturating_add(nanos(d)))
    }
}

impl AddAssign<Duration> for SimInstant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for SimInstant {
    type Output = SimInstant;
    fn sub(self, d: Duration) -> SimInstant {
        SimInstant(self.0.saturating_sub(nanos(d)))
    }
}

impl SubAssign<Duration> for SimInstant {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

impl Sub<SimInstant> for SimInstant {
    type Output = Duration;
    fn sub(self, earlier: SimInstant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl openraft_rt::Instant for SimInstant {
    fn now() -> SimInstant {
        let v = virtual_now_ns();
        SimInstant(match current() {
            Some(clock) => clock.local_ns(v),
            None => v,
        })
    }
}

/// A sleep of `d` on the current node's clock, in virtual time.
pub fn virtual_duration(d: Duration) -> Duration {
    match current() {
        Some(clock) => clock.virtual_duration(d),
        None => d,
    }
}

#[cfg(test)]
mod tests {
    use super::NodeClock;
    use std::time::Duration;

    #[test]
    fn local_and_virtual_time_convert_both_ways() {
        for rate_ppm in [-500_000, -10_000, -1, 0, 1, 100, 50_000, 2_000_000] {
            let clock = NodeClock {
                offset_ns: 7_000_000_000,
                rate_ppm,
            };
            for v in [0u64, 1, 999, 1_000_000, 123_456_789_012] {
                let local = clock.local_ns(v);
                let back = clock.virtual_ns(local);
                // Rounded up to the first virtual time that reads `local`.
                assert!(back <= v, "rate {rate_ppm}: {v} -> {local} -> {back}");
                assert!(clock.local_ns(back) >= local, "rate {rate_ppm}");
            }
            assert!(clock.local_ns(2_000) >= clock.local_ns(1_000));
        }
        let fast = NodeClock {
            offset_ns: 0,
            rate_ppm: 10_000,
        };
        assert_eq!(fast.local_ns(1_000_000_000), 1_010_000_000);
        assert_eq!(
            fast.virtual_duration(Duration::from_millis(1010)),
            Duration::from_secs(1)
        );
        let slow = NodeClock {
            offset_ns: 5,
            rate_ppm: -500_000,
        };
        assert_eq!(slow.local_ns(2_000), 1_005);
        assert_eq!(slow.virtual_ns(1_005), 2_000);
        assert_eq!(
            slow.virtual_duration(Duration::from_nanos(10)),
            Duration::from_nanos(20)
        );
    }
}
