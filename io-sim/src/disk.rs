//! A node's simulated disk: io-tokio's [`LogBackend`] seam with faults.
//!
//! The test owns every [`Disk`], so it outlives kill and restart; a node
//! opens it again when it starts. Faults:
//!
//! - **latency**: every append, vote save and truncation waits a seeded
//!   delay before it reaches the backend ([`SlowLog`] wraps io-tokio's
//!   `LogStore`, the daemon's adapter, unchanged);
//! - **crash** ([`Disk::crash`]): an append still in progress (its flush
//!   not reported to openraft) leaves a random prefix of its entries (a
//!   torn tail); a vote save in progress lands or not; the committed log
//!   id is forgotten (the WAL keeps it in memory only);
//! - **snapshots**: the disk also holds the node's snapshot file (io-tokio's
//!   [`SnapshotFile`]), replaced atomically as the daemon's temp file and
//!   rename do; log entries purged after a snapshot move to an archive
//!   the node never reads, kept for the durability check;
//! - **read corruption** (`DiskConfig::read_corruption_ppm`): entries are
//!   kept as the WAL's records (io-tokio's `entry_record`: checksummed
//!   header, postcard payload) and every read decodes them back the way
//!   the WAL's reads do; a read may come back with one bit flipped (a
//!   transient fault between platter and memory: the stored record stays
//!   intact), which the checksum catches, so the read fails. openraft
//!   stops the node's Raft on that error, as it would in the daemon, and
//!   a supervisor must restart it;
//! - **bit rot** ([`Disk::rot`]): a stored record damaged for good; the
//!   node stops on it after every restart, until a snapshot purges it, so
//!   the server has to be replaced;
//! - **broken mode** ([`DiskMode::AckBeforeSync`], for the teeth test):
//!   appends and votes are reported durable at once but only reach stable
//!   storage a while later; a crash before then loses them. This breaks
//!   the `LogBackend` contract on purpose; the checkers must notice.

use crate::types::{Entry, LogId, Vote, C};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tribune::raft::wal_log::{entry_from_record, entry_record};
use tribune::raft::{LogBackend, LogStore, MemLog, SnapshotFile};

/// How the disk keeps its promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskMode {
    /// Durable when the backend returns (the `LogBackend` contract).
    Durable,
    /// Broken: acknowledged at once, durable only `sync_delay` later.
    AckBeforeSync { sync_delay: Duration },
}

#[derive(Clone, Debug)]
pub struct DiskConfig {
    /// Delay of each write, drawn uniformly from `[min, max]`.
    pub latency_min: Duration,
    pub latency_max: Duration,
    pub mode: DiskMode,
    /// Chance, in parts per million, that reading one entry returns it
    /// with a bit flipped (0: never).
    pub read_corruption_ppm: u64,
    /// Broken on purpose (the teeth test): reads skip the record's header
    /// and checksum and decode whatever payload bytes they got.
    pub skip_read_checksums: bool,
}

struct State {
    /// Log ids, purge and truncation bookkeeping.
    log: MemLog<C>,
    /// What each entry's bytes on disk are: its WAL record. Reads decode
    /// these, not `log`'s copies.
    records: BTreeMap<u64, Vec<u8>>,
    read_corruption_ppm: u64,
    skip_read_checksums: bool,
    reads_corrupted: u64,
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// An append waiting on latency: may land partly on a crash.
    in_flight: Vec<Entry>,
    in_flight_vote: Option<Vote>,
    /// Broken mode: the vote on stable storage, and when `vote` gets there.
    durable_vote: Option<Vote>,
    vote_synced_at: Option<Instant>,
    /// Broken mode: entries not on stable storage yet, by index.
    unsynced: BTreeMap<u64, Instant>,
    crashes: u64,
    lost_entries: u64,
    /// The snapshot file's contents.
    snapshot: Option<Vec<u8>>,
    snapshots_saved: u64,
    /// Entries purged from the log (for the checkers only).
    purged: Vec<Entry>,
}

/// A node's disk. Clones share it.
#[derive(Clone)]
pub struct Disk {
    state: Arc<Mutex<State>>,
    config: Arc<DiskConfig>,
}

impl Disk {
    pub fn new(config: DiskConfig) -> Disk {
        Disk {
            state: Arc::new(Mutex::new(State {
                log: MemLog::default(),
                records: BTreeMap::new(),
                read_corruption_ppm: config.read_corruption_ppm,
                skip_read_checksums: config.skip_read_checksums,
                reads_corrupted: 0,
                vote: None,
                committed: None,
                in_flight: Vec::new(),
                in_flight_vote: None,
                durable_vote: None,
                vote_synced_at: None,
                unsynced: BTreeMap::new(),
                crashes: 0,
                lost_entries: 0,
                snapshot: None,
                snapshots_saved: 0,
                purged: Vec::new(),
            })),
            config: Arc::new(config),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log store a (re)starting node opens: the daemon's adapter over
    /// this disk, behind the latency wrapper.
    pub fn open(&self) -> SlowLog {
        SlowLog {
            inner: LogStore::new(FaultLog { disk: self.clone() }),
            disk: self.clone(),
        }
    }

    /// Entries with `start <= index < end`.
    pub fn entries(&self, start: u64, end: u64) -> Vec<Entry> {
        self.lock().log.entries(start, end).unwrap_or_default()
    }

    pub fn last_index(&self) -> Option<u64> {
        self.lock().log.last_entry_id().map(|id| id.index)
    }

    /// Every entry the log holds and every one purged from it, by index
    /// (purged first): what the node ever kept, for the checkers.
    pub fn history(&self) -> Vec<Entry> {
        let state = self.lock();
        let mut entries = state.purged.clone();
        let first = state.log.last_purged().map_or(0, |id| id.index + 1);
        let end = state.log.last_entry_id().map_or(0, |id| id.index + 1);
        entries.extend(state.log.entries(first, end).unwrap_or_default());
        entries
    }

    /// The last index the log dropped because a snapshot covers it.
    pub fn purged_through(&self) -> Option<u64> {
        self.lock().log.last_purged().map(|id| id.index)
    }

    /// How many snapshots were written to this disk.
    pub fn snapshots_saved(&self) -> u64 {
        self.lock().snapshots_saved
    }

    /// The node's snapshot file on this disk.
    pub fn snapshot_file(&self) -> std::sync::Arc<dyn SnapshotFile> {
        std::sync::Arc::new(DiskSnapshot { disk: self.clone() })
    }

    /// What a crash leaves: call between killing the node and restarting
    /// it. `rand` draws the torn-write outcomes.
    pub fn crash(&self, mut rand: impl FnMut(u64) -> u64) {
        let now = Instant::now();
        let mut state = self.lock();
        state.crashes += 1;
        state.committed = None;
        let in_flight = std::mem::take(&mut state.in_flight);
        let contiguous = in_flight.first().is_some_and(|first| {
            Some(first.index()) == state.log.last_entry_id().map(|id| id.index + 1)
                || (state.log.last_entry_id().is_none() && state.log.last_purged().is_none())
        });
        if contiguous {
            let kept = rand(in_flight.len() as u64 + 1) as usize;
            let _ = state.append(in_flight.into_iter().take(kept).collect());
        }
        if let Some(vote) = state.in_flight_vote.take() {
            if rand(2) == 1 {
                state.vote = Some(vote);
            }
        }
        if let DiskMode::AckBeforeSync { .. } = self.config.mode {
            settle(&mut state, now);
            if let Some(first_lost) = state.unsynced.keys().next().copied() {
                let lost = state.unsynced.len() as u64;
                state.lost_entries += lost;
                let _ = state.truncate_from(first_lost);
                state.unsynced.clear();
            }
            state.vote = state.durable_vote;
            state.vote_synced_at = None;
        }
    }

    pub fn crashes(&self) -> u64 {
        self.lock().crashes
    }

    /// Entries lost by crashes in broken mode.
    pub fn lost_entries(&self) -> u64 {
        self.lock().lost_entries
    }

    /// Reads that came back corrupted (and failed their checksum).
    pub fn reads_corrupted(&self) -> u64 {
        self.lock().reads_corrupted
    }

    /// Bit rot: one bit of one stored log record (drawn by `rand`) flips
    /// for good. Every later read of it fails its checksum, so the node
    /// stops on it, and again after every restart, until the record is
    /// purged behind a snapshot or truncated. The index, if the log had a
    /// record.
    pub fn rot(&self, mut rand: impl FnMut(u64) -> u64) -> Option<u64> {
        let mut state = self.lock();
        let indexes: Vec<u64> = state.records.keys().copied().collect();
        if indexes.is_empty() {
            return None;
        }
        let index = indexes[rand(indexes.len() as u64) as usize];
        let record = state.records.get_mut(&index)?;
        let bit = rand(record.len() as u64 * 8) as usize;
        record[bit / 8] ^= 1 << (bit % 8);
        Some(index)
    }

    /// Whether a stored record is damaged for good (fails its checksum).
    pub fn is_rotten(&self) -> bool {
        let state = self.lock();
        let rotten = state
            .records
            .values()
            .any(|record| entry_from_record::<C>(record).is_err());
        rotten
    }

    /// Ends read corruption (the fault model heals before the liveness
    /// phase).
    pub fn stop_read_corruption(&self) {
        self.lock().read_corruption_ppm = 0;
    }

    fn latency(&self) -> Duration {
        use madsim::rand::Rng;
        let (min, max) = (self.config.latency_min, self.config.latency_max);
        if max <= min {
            return min;
        }
        let span = (max - min).as_nanos() as u64;
        min + Duration::from_nanos(madsim::rand::thread_rng().gen_range(0..=span))
    }

    fn durable(&self) -> bool {
        self.config.mode == DiskMode::Durable
    }
}

/// Broken mode: what reached stable storage by `now` stays.
fn settle(state: &mut State, now: Instant) {
    state.unsynced.retain(|_, at| *at > now);
    if state.vote_synced_at.is_some_and(|at| at <= now) {
        state.durable_vote = state.vote;
        state.vote_synced_at = None;
    }
}

impl State {
    /// Appends to the log and writes each entry's record.
    fn append(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        let records = entries
            .iter()
            .map(|e| Ok((e.index(), entry_record::<C>(e)?)))
            .collect::<io::Result<Vec<_>>>()?;
        self.log.append(entries)?;
        self.records.extend(records);
        Ok(())
    }

    fn truncate_from(&mut self, first_removed: u64) -> io::Result<()> {
        self.log.truncate_from(first_removed)?;
        self.records.split_off(&first_removed);
        Ok(())
    }

    fn purge_through(&mut self, last: LogId) -> io::Result<()> {
        self.log.purge_through(last)?;
        self.records = self.records.split_off(&(last.index + 1));
        Ok(())
    }

    /// Entries `start..end` read back from their records, each read
    /// possibly corrupted in transit; a corrupted one fails its checksum.
    fn read(&mut self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        use madsim::rand::Rng;
        if start >= end {
            return Ok(Vec::new());
        }
        let (ppm, unchecked) = (self.read_corruption_ppm, self.skip_read_checksums);
        let mut rng = madsim::rand::thread_rng();
        let read: io::Result<Vec<Entry>> = self
            .records
            .range(start..end)
            .map(|(&index, stored)| {
                let flipped;
                let bytes: &[u8] = if ppm > 0 && rng.gen_range(0..1_000_000) < ppm {
                    let mut copy = stored.clone();
                    let bit = rng.gen_range(0..copy.len() * 8);
                    copy[bit / 8] ^= 1 << (bit % 8);
                    flipped = copy;
                    &flipped
                } else {
                    stored
                };
                let decoded = if unchecked {
                    unchecked_entry(bytes)
                } else {
                    entry_from_record::<C>(bytes)
                };
                decoded.map_err(|e| {
                    io::Error::new(e.kind(), format!("reading log entry {index}: {e}"))
                })
            })
            .collect();
        if read.is_err() {
            self.reads_corrupted += 1;
        }
        read
    }
}

/// Broken mode: the payload of a record decoded with no look at its
/// header or checksum.
fn unchecked_entry(record: &[u8]) -> io::Result<Entry> {
    let payload = record
        .get(tribune_core::wal::RECORD_HEADER_BYTES..)
        .unwrap_or_default();
    postcard::from_bytes(payload).map_err(|e| io::Error::other(format!("payload: {e}")))
}

/// The `LogBackend` the daemon's `LogStore` drives.
pub struct FaultLog {
    disk: Disk,
}

impl LogBackend<C> for FaultLog {
    fn vote(&self) -> Option<Vote> {
        self.disk.lock().vote
    }

    fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let mut state = self.disk.lock();
        state.in_flight_vote = None;
        match self.disk.config.mode {
            DiskMode::Durable => state.vote = Some(*vote),
            DiskMode::AckBeforeSync { sync_delay } => {
                let now = Instant::now();
                settle(&mut state, now);
                if state.vote_synced_at.is_none() {
                    state.durable_vote = state.vote;
                }
                state.vote = Some(*vote);
                state.vote_synced_at = Some(now + sync_delay);
            }
        }
        Ok(())
    }

    fn committed(&self) -> Option<LogId> {
        self.disk.lock().committed
    }

    fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        self.disk.lock().committed = committed;
        Ok(())
    }

    fn last_purged(&self) -> Option<LogId> {
        self.disk.lock().log.last_purged()
    }

    fn last_entry_id(&self) -> Option<LogId> {
        self.disk.lock().log.last_entry_id()
    }

    fn entries(&self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        self.disk.lock().read(start, end)
    }

    fn append(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        let mut state = self.disk.lock();
        state.in_flight.clear();
        if let DiskMode::AckBeforeSync { sync_delay } = self.disk.config.mode {
            let now = Instant::now();
            settle(&mut state, now);
            for entry in &entries {
                state.unsynced.insert(entry.index(), now + sync_delay);
            }
        }
        state.append(entries)
    }

    fn truncate_from(&mut self, first_removed: u64) -> io::Result<()> {
        let mut state = self.disk.lock();
        state.unsynced.retain(|index, _| *index < first_removed);
        state.truncate_from(first_removed)
    }

    fn purge_through(&mut self, last: LogId) -> io::Result<()> {
        let mut state = self.disk.lock();
        state.unsynced.retain(|index, _| *index > last.index);
        let first = state.log.last_purged().map_or(0, |id| id.index + 1);
        let gone = state.log.entries(first, last.index + 1).unwrap_or_default();
        state.purged.extend(gone);
        state.purge_through(last)
    }
}

/// The snapshot file on a [`Disk`]: a save lands whole (the daemon's temp
/// file, fsync and rename), and survives crashes.
struct DiskSnapshot {
    disk: Disk,
}

impl SnapshotFile for DiskSnapshot {
    fn load(&self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.disk.lock().snapshot.clone())
    }

    fn save(&self, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.disk.lock();
        state.snapshot = Some(bytes.to_vec());
        state.snapshots_saved += 1;
        Ok(())
    }

    fn name(&self) -> String {
        "simulated snapshot file".to_owned()
    }
}

/// io-tokio's `LogStore` with the disk's latency in front of each write.
/// A kill during the wait drops the write before it reached the backend
/// (and [`Disk::crash`] may keep part of it).
pub struct SlowLog {
    inner: LogStore<C, FaultLog>,
    disk: Disk,
}

impl SlowLog {
    async fn wait(&self) {
        if self.disk.durable() {
            madsim::time::sleep(self.disk.latency()).await;
        }
    }
}

impl RaftLogReader<C> for SlowLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.inner.try_get_log_entries(range).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.inner.read_vote().await
    }
}

impl RaftLogStorage<C> for SlowLog {
    type LogReader = LogStore<C, FaultLog>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        self.inner.get_log_state().await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.inner.get_log_reader().await
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.disk.lock().in_flight_vote = Some(*vote);
        self.wait().await;
        self.inner.save_vote(vote).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.inner.save_committed(committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        self.inner.read_committed().await
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if self.disk.durable() {
            self.disk.lock().in_flight = entries.clone();
        }
        self.wait().await;
        self.inner.append(entries, callback).await
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.wait().await;
        self.inner.truncate_after(last_log_id).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.inner.purge(log_id).await
    }
}
