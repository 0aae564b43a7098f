//! openraft's `RaftLogStorage` over a [`LogBackend`].
//!
//! The adapter ([`LogStore`]) does what every backend shares: the lock,
//! openraft's trait shapes, turning ranges and "truncate after" into
//! indexes, and reporting an append as flushed once the backend returned.
//! A backend only stores: [`MemLog`] keeps everything in memory (tests,
//! `-dev`); the durable WAL implements the same trait. A backend's
//! `append`, `save_vote` and `truncate_after` must be durable when they
//! return Ok, because openraft treats a flushed append and a saved vote as
//! promises to peers.
//!
//! Generic over the type config, so a simulator uses the same adapter.

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::type_config::alias::{LogIdOf, VoteOf};
use openraft::{OptionalSend, RaftLogReader, RaftTypeConfig};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

/// Where log entries, the vote and the committed log id are kept.
pub trait LogBackend<C: RaftTypeConfig>: Send + 'static {
    fn vote(&self) -> Option<VoteOf<C>>;
    fn save_vote(&mut self, vote: &VoteOf<C>) -> io::Result<()>;
    fn committed(&self) -> Option<LogIdOf<C>>;
    fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> io::Result<()>;
    /// The last entry removed by [`LogBackend::purge_through`].
    fn last_purged(&self) -> Option<LogIdOf<C>>;
    /// The last entry present, if any.
    fn last_entry_id(&self) -> Option<LogIdOf<C>>;
    /// Entries with `start <= index < end`, in order; missing ones skipped.
    fn entries(&self, start: u64, end: u64) -> io::Result<Vec<C::Entry>>;
    /// Appends entries; they directly follow the last one (openraft
    /// truncates a conflicting suffix first).
    fn append(&mut self, entries: Vec<C::Entry>) -> io::Result<()>;
    /// Removes every entry with an index at or above `first_removed`.
    fn truncate_from(&mut self, first_removed: u64) -> io::Result<()>;
    /// Removes every entry up to and including `last`, and remembers it.
    fn purge_through(&mut self, last: LogIdOf<C>) -> io::Result<()>;
}

/// An in-memory log: everything is "durable" as long as the process (or
/// the test holding a [`LogStore`] clone) lives.
pub struct MemLog<C: RaftTypeConfig> {
    vote: Option<VoteOf<C>>,
    committed: Option<LogIdOf<C>>,
    last_purged: Option<LogIdOf<C>>,
    entries: BTreeMap<u64, C::Entry>,
}

impl<C: RaftTypeConfig> Default for MemLog<C> {
    fn default() -> Self {
        MemLog {
            vote: None,
            committed: None,
            last_purged: None,
            entries: BTreeMap::new(),
        }
    }
}

impl<C: RaftTypeConfig> LogBackend<C> for MemLog<C>
where
    C::Entry: Clone,
{
    fn vote(&self) -> Option<VoteOf<C>> {
        self.vote.clone()
    }

    fn save_vote(&mut self, vote: &VoteOf<C>) -> io::Result<()> {
        self.vote = Some(vote.clone());
        Ok(())
    }

    fn committed(&self) -> Option<LogIdOf<C>> {
        self.committed.clone()
    }

    fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> io::Result<()> {
        self.committed = committed;
        Ok(())
    }

    fn last_purged(&self) -> Option<LogIdOf<C>> {
        self.last_purged.clone()
    }

    fn last_entry_id(&self) -> Option<LogIdOf<C>> {
        self.entries
            .values()
            .next_back()
            .map(|entry| entry.log_id())
    }

    fn entries(&self, start: u64, end: u64) -> io::Result<Vec<C::Entry>> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self
            .entries
            .range(start..end)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn append(&mut self, entries: Vec<C::Entry>) -> io::Result<()> {
        for entry in entries {
            self.entries.insert(entry.index(), entry);
        }
        Ok(())
    }

    fn truncate_from(&mut self, first_removed: u64) -> io::Result<()> {
        self.entries.split_off(&first_removed);
        Ok(())
    }

    fn purge_through(&mut self, last: LogIdOf<C>) -> io::Result<()> {
        let keep = self.entries.split_off(&(last.index + 1));
        self.entries = keep;
        self.last_purged = Some(last);
        Ok(())
    }
}

/// The adapter openraft drives. Clones share one backend: the owner may
/// keep a clone (a test restarts a node from it).
pub struct LogStore<C: RaftTypeConfig, B = MemLog<C>> {
    backend: Arc<Mutex<B>>,
    _config: std::marker::PhantomData<fn() -> C>,
}

impl<C: RaftTypeConfig, B> Clone for LogStore<C, B> {
    fn clone(&self) -> Self {
        LogStore {
            backend: Arc::clone(&self.backend),
            _config: std::marker::PhantomData,
        }
    }
}

impl<C: RaftTypeConfig> Default for LogStore<C, MemLog<C>>
where
    C::Entry: Clone,
{
    fn default() -> Self {
        LogStore::new(MemLog::default())
    }
}

impl<C: RaftTypeConfig, B: LogBackend<C>> LogStore<C, B> {
    pub fn new(backend: B) -> Self {
        LogStore {
            backend: Arc::new(Mutex::new(backend)),
            _config: std::marker::PhantomData,
        }
    }

    fn lock(&self) -> MutexGuard<'_, B> {
        // Backend calls either complete or return an error before changing
        // anything openraft relies on, so a poisoned lock is still usable.
        self.backend
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Index of the last entry present, or of the last purged one.
    pub fn last_log_index(&self) -> Option<u64> {
        let backend = self.lock();
        backend
            .last_entry_id()
            .or_else(|| backend.last_purged())
            .map(|id| id.index)
    }
}

/// `range` as `start..end`, saturating at the ends of `u64`.
fn to_half_open(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&i) => i.saturating_add(1),
        Bound::Excluded(&i) => i,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl<C: RaftTypeConfig, B: LogBackend<C>> RaftLogReader<C> for LogStore<C, B> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        let (start, end) = to_half_open(&range);
        self.lock().entries(start, end)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.lock().vote())
    }
}

impl<C: RaftTypeConfig, B: LogBackend<C>> RaftLogStorage<C> for LogStore<C, B> {
    type LogReader = LogStore<C, B>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let backend = self.lock();
        let last_purged_log_id = backend.last_purged();
        let last_log_id = backend
            .last_entry_id()
            .or_else(|| last_purged_log_id.clone());
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        self.lock().save_vote(vote)
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        self.lock().save_committed(committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.lock().committed())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = self.lock().append(entries.into_iter().collect());
        // The backend is durable on return, so the flush is complete now.
        let reported = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| io::Error::new(e.kind(), e.to_string()));
        callback.io_completed(reported);
        result
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let first_removed = last_log_id.map_or(0, |id| id.index + 1);
        self.lock().truncate_from(first_removed)
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        self.lock().purge_through(log_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::state_machine::StateMachine;
    use crate::raft::types::TypeConfig;
    use openraft::testing::log::{StoreBuilder, Suite};
    use openraft::StorageError;

    struct MemBuilder;

    impl StoreBuilder<TypeConfig, LogStore<TypeConfig>, StateMachine<TypeConfig>> for MemBuilder {
        async fn build(
            &self,
        ) -> Result<((), LogStore<TypeConfig>, StateMachine<TypeConfig>), StorageError<TypeConfig>>
        {
            Ok(((), LogStore::default(), StateMachine::default()))
        }
    }

    /// openraft's own storage suite: log state, reads, truncation, purge,
    /// votes, membership recovery, apply and snapshot transfer.
    #[tokio::test]
    async fn openraft_storage_suite() {
        Suite::test_all(MemBuilder)
            .await
            .expect("openraft storage suite passes");
    }
}
