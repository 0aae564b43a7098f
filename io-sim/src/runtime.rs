//! openraft's [`AsyncRuntime`] on madsim: tasks, timers and randomness come
//! from the simulation, so a seed fixes everything openraft does.
//!
//! - `spawn` puts the task on the *current* simulated node, so the tasks a
//!   `Raft` spawns die with the node that created it (`Handle::kill`).
//! - `Instant` is [`SimInstant`]: virtual time as the current node's clock
//!   reads it (its skew and drift, [`crate::clock`]); sleeps and timeouts
//!   convert the node's durations and deadlines back to virtual time.
//!   `spawn` carries the spawning task's clock into the new task.
//! - The RNG draws from madsim's seeded global generator (rand 0.8 there,
//!   rand 0.10 here: [`MadsimRng`] adapts).
//! - mpsc, oneshot and mutex are tokio's `sync` ones (no RNG, executor
//!   agnostic); the watch channel is [`SimWatch`]: tokio's draws from a
//!   thread-local RNG seeded from a process-global counter, which breaks
//!   determinism (shared/OPENRAFT-MADSIM.md §3).
//! - `spawn_blocking` runs the closure inline: the default spawns an OS
//!   thread, which madsim forbids.

use crate::clock::{self, SimInstant};
use crate::watch::SimWatch;
use openraft_rt::{AsyncRuntime, OptionalSend};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The madsim runtime. The inner runtime is only used by `new`/`block_on`
/// (openraft's own tests); a simulation builds its own `madsim::runtime`.
pub struct MadsimRuntime {
    rt: madsim::runtime::Runtime,
}

impl fmt::Debug for MadsimRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MadsimRuntime")
    }
}

/// A timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

pin_project_lite::pin_project! {
    /// `madsim::time::timeout` returns an unnameable future; this one has a
    /// name, as openraft's `Timeout` type needs.
    pub struct SimTimeout<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: madsim::time::Sleep,
    }
}

impl<F: Future> Future for SimTimeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(value) = this.future.poll(cx) {
            return Poll::Ready(Ok(value));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// rand 0.10's `Rng` over madsim's seeded generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct MadsimRng;

impl rand::TryRng for MadsimRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        use madsim::rand::RngCore;
        Ok(madsim::rand::thread_rng().next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        use madsim::rand::RngCore;
        Ok(madsim::rand::thread_rng().next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        use madsim::rand::RngCore;
        madsim::rand::thread_rng().fill_bytes(dst);
        Ok(())
    }
}

impl AsyncRuntime for MadsimRuntime {
    type JoinError = madsim::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = madsim::task::JoinHandle<T>;
    type Sleep = madsim::time::Sleep;
    type Instant = SimInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = SimTimeout<T>;
    type ThreadLocalRng = MadsimRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        madsim::task::spawn(clock::inherit(future))
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        madsim::time::sleep(clock::virtual_duration(duration))
    }

    fn sleep_until(deadline: SimInstant) -> Self::Sleep {
        madsim::time::sleep_until(deadline.to_madsim())
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        SimTimeout {
            future,
            sleep: Self::sleep(duration),
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: SimInstant,
        future: F,
    ) -> Self::Timeout<R, F> {
        SimTimeout {
            future,
            sleep: Self::sleep_until(deadline),
        }
    }

    /// madsim 0.2 never reports a panic through a `JoinError`: a panicking
    /// task ends the whole simulation.
    fn is_panic(_: &Self::JoinError) -> bool {
        false
    }

    fn thread_rng() -> MadsimRng {
        MadsimRng
    }

    type Mpsc = openraft_rt_tokio::TokioMpsc;
    type Watch = SimWatch;
    type Oneshot = openraft_rt_tokio::TokioOneshot;
    type Mutex<T: OptionalSend + 'static> = openraft_rt_tokio::TokioMutex<T>;

    fn new(_threads: usize) -> Self {
        MadsimRuntime {
            rt: madsim::runtime::Runtime::new(),
        }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.rt.block_on(future)
    }

    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let value = f();
        async move { Ok(value) }
    }
}

#[cfg(test)]
mod tests {
    use super::MadsimRuntime;

    /// openraft-rt's conformance suite: spawn, time, select, channels,
    /// mutex, task-locals, RNG.
    #[test]
    fn openraft_runtime_suite() {
        openraft_rt::testing::Suite::<MadsimRuntime>::test_all();
    }
}
