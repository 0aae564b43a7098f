//! The durable [`LogBackend`]: openraft's log on the segmented WAL
//! ([`crate::storage::Wal`]), plus a small checksummed meta file for what
//! the WAL itself does not keep (openraft's vote and the last purged log
//! id).
//!
//! - Entries are postcard-encoded `C::Entry` payloads (they carry their log
//!   id, so the term survives). WAL indexes start at 1 and Raft's at 0, so
//!   entry `i` is WAL record `i + 1`.
//! - Appends, truncations and purges return once the WAL made them durable
//!   (the calling thread waits for the group commit).
//! - A purge deletes whole segments; entries at or below the purged id that
//!   share a segment with later ones stay on disk and are hidden here. A
//!   purge at or past the end (a snapshot installed far ahead) empties the
//!   WAL, and the next append starts afresh wherever Raft continues.
//! - The committed log id is kept in memory only: openraft treats it as an
//!   optimisation and re-learns it from the leader after a restart.

use super::log_store::LogBackend;
use crate::storage::{Entry, Pending, Wal, WalConfig, WalError};
use openraft::entry::RaftEntry;
use openraft::type_config::alias::{LogIdOf, VoteOf};
use openraft::RaftTypeConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use tribune_core::checksum::checksum as crc32c;

const META_FILE: &str = "raft-meta";
const META_TEMP_FILE: &str = "raft-meta.tmp";
const META_VERSION: u8 = 1;

/// What the meta file holds.
#[derive(Serialize, Deserialize)]
struct Meta<V, L> {
    vote: Option<V>,
    last_purged: Option<L>,
}

pub struct WalLog<C: RaftTypeConfig> {
    wal: Wal,
    dir: PathBuf,
    vote: Option<VoteOf<C>>,
    last_purged: Option<LogIdOf<C>>,
    committed: Option<LogIdOf<C>>,
    /// The last entry's log id, kept so log-state queries need no read.
    last: Option<LogIdOf<C>>,
}

fn wal_error(e: WalError) -> io::Error {
    io::Error::other(e.to_string())
}

/// Waits for the WAL's group commit. Inside tokio's multi-threaded runtime
/// (the agent's) the worker hands its other tasks off while it waits; a
/// current-thread runtime cannot wait synchronously and gets an error.
fn durable(pending: Pending) -> io::Result<()> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let result = match Handle::try_current() {
        Err(_) => pending.wait(),
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| pending.wait())
        }
        Ok(_) => {
            return Err(io::Error::other(
                "the WAL log needs tokio's multi-threaded runtime",
            ))
        }
    };
    result.map_err(wal_error)
}

fn decode<C: RaftTypeConfig>(entry: &Entry) -> io::Result<C::Entry>
where
    C::Entry: DeserializeOwned,
{
    postcard::from_bytes(&entry.payload).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("log entry {} does not decode: {e}", entry.index - 1),
        )
    })
}

/// Entry `entry` as the WAL stores it: record `entry.index() + 1`, a
/// batch of its own, whose payload is the postcard-encoded entry. The
/// simulator's disk keeps entries this way, so its reads go through the
/// WAL's checksums.
pub fn entry_record<C: RaftTypeConfig>(entry: &C::Entry) -> io::Result<Vec<u8>>
where
    C::Entry: Serialize,
{
    let payload = postcard::to_allocvec(entry)
        .map_err(|e| io::Error::other(format!("entry does not encode: {e}")))?;
    let index = entry.index() + 1;
    let mut out = Vec::with_capacity(tribune_core::wal::encoded_len(payload.len()));
    tribune_core::wal::encode_record(&mut out, index, index, &payload);
    Ok(out)
}

/// The entry a record read back holds: the framing and checksum checked as
/// the WAL's reads check them, then the payload decoded.
pub fn entry_from_record<C: RaftTypeConfig>(bytes: &[u8]) -> io::Result<C::Entry>
where
    C::Entry: DeserializeOwned,
{
    let record = tribune_core::wal::decode_record(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a log record no longer decodes ({e:?})"),
        )
    })?;
    decode::<C>(&Entry {
        index: record.index,
        payload: record.payload.to_vec(),
    })
}

impl<C: RaftTypeConfig> WalLog<C>
where
    C::Entry: Serialize + DeserializeOwned,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    /// Opens (recovering) the log under `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<WalLog<C>> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let wal = Wal::open(WalConfig::new(&dir)).map_err(wal_error)?;
        let meta: Meta<VoteOf<C>, LogIdOf<C>> = read_meta(&dir)?.unwrap_or(Meta {
            vote: None,
            last_purged: None,
        });
        let mut log = WalLog {
            wal,
            dir,
            vote: meta.vote,
            last_purged: meta.last_purged,
            committed: None,
            last: None,
        };
        log.last = log.read_last()?;
        Ok(log)
    }

    /// The WAL's counters (batches = fsyncs, records), for metrics.
    pub fn stats_handle(&self) -> crate::storage::WalStatsHandle {
        self.wal.stats_handle()
    }

    fn read_last(&self) -> io::Result<Option<LogIdOf<C>>> {
        let Some(last) = self.wal.last_index() else {
            return Ok(None);
        };
        let entries = self.wal.read(last..last + 1).map_err(wal_error)?;
        let Some(entry) = entries.first() else {
            return Ok(None);
        };
        let id = decode::<C>(entry)?.log_id();
        Ok(self.visible(id.index).then_some(id))
    }

    /// Whether entry `index` is above the purged prefix.
    fn visible(&self, index: u64) -> bool {
        self.last_purged.as_ref().is_none_or(|p| index > p.index)
    }

    fn save_meta(&self) -> io::Result<()> {
        let meta = Meta {
            vote: self.vote.clone(),
            last_purged: self.last_purged.clone(),
        };
        let body = postcard::to_allocvec(&meta)
            .map_err(|e| io::Error::other(format!("raft meta does not encode: {e}")))?;
        let mut bytes = vec![META_VERSION];
        bytes.extend_from_slice(&crc32c(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        let temp = self.dir.join(META_TEMP_FILE);
        let mut file = File::create(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&temp, self.dir.join(META_FILE))?;
        File::open(&self.dir)?.sync_all()
    }
}

fn read_meta<V: DeserializeOwned, L: DeserializeOwned>(
    dir: &Path,
) -> io::Result<Option<Meta<V, L>>> {
    let path = dir.join(META_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let corrupt = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is corrupt: {why}", path.display()),
        )
    };
    let (version, rest) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
    if *version != META_VERSION {
        return Err(corrupt(&format!("unknown version {version}")));
    }
    let (sum, body) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("truncated"))?;
    if u32::from_le_bytes(*sum) != crc32c(body) {
        return Err(corrupt("checksum mismatch"));
    }
    postcard::from_bytes(body)
        .map(Some)
        .map_err(|e| corrupt(&e.to_string()))
}

impl<C: RaftTypeConfig> LogBackend<C> for WalLog<C>
where
    C::Entry: Serialize + DeserializeOwned,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    fn vote(&self) -> Option<VoteOf<C>> {
        self.vote.clone()
    }

    fn save_vote(&mut self, vote: &VoteOf<C>) -> io::Result<()> {
        let previous = self.vote.replace(vote.clone());
        self.save_meta().inspect_err(|_| self.vote = previous)
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
        self.last.clone()
    }

    fn entries(&self, start: u64, end: u64) -> io::Result<Vec<C::Entry>> {
        let start = match &self.last_purged {
            Some(purged) => start.max(purged.index + 1),
            None => start,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        let records = self
            .wal
            .read(start.saturating_add(1)..end.saturating_add(1))
            .map_err(wal_error)?;
        records.iter().map(decode::<C>).collect()
    }

    fn append(&mut self, entries: Vec<C::Entry>) -> io::Result<()> {
        let Some(last) = entries.last().map(|e| e.log_id()) else {
            return Ok(());
        };
        let records = entries
            .iter()
            .map(|entry| {
                let payload = postcard::to_allocvec(entry)
                    .map_err(|e| io::Error::other(format!("entry does not encode: {e}")))?;
                Ok(Entry {
                    index: entry.index() + 1,
                    payload,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        durable(self.wal.append(records))?;
        self.last = Some(last);
        Ok(())
    }

    fn truncate_from(&mut self, first_removed: u64) -> io::Result<()> {
        // Raft entry `first_removed` is WAL record `first_removed + 1`.
        durable(self.wal.truncate_after(first_removed))?;
        self.last = self.read_last()?;
        Ok(())
    }

    fn purge_through(&mut self, last: LogIdOf<C>) -> io::Result<()> {
        // Remember the purge first: a crash in between leaves entries that
        // are hidden anyway, never a hole that the meta file does not cover.
        let previous = self.last_purged.replace(last.clone());
        if let Err(e) = self.save_meta() {
            self.last_purged = previous;
            return Err(e);
        }
        durable(self.wal.purge_upto(last.index + 1))?;
        if self.last.as_ref().is_some_and(|l| l.index <= last.index) {
            self.last = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::log_store::LogStore;
    use crate::raft::state_machine::StateMachine;
    use crate::raft::types::TypeConfig;
    use openraft::testing::log::{StoreBuilder, Suite};
    use openraft::StorageError;

    /// Removes the log's directory when the suite is done with it.
    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    struct WalBuilder;

    impl
        StoreBuilder<
            TypeConfig,
            LogStore<TypeConfig, WalLog<TypeConfig>>,
            StateMachine<TypeConfig>,
            TempDir,
        > for WalBuilder
    {
        async fn build(
            &self,
        ) -> Result<
            (
                TempDir,
                LogStore<TypeConfig, WalLog<TypeConfig>>,
                StateMachine<TypeConfig>,
            ),
            StorageError<TypeConfig>,
        > {
            use std::sync::atomic::{AtomicU64, Ordering};
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "tribune-wal-log-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&dir);
            let log = WalLog::open(&dir).expect("open WAL log");
            Ok((TempDir(dir), LogStore::new(log), StateMachine::default()))
        }
    }

    /// openraft's own storage suite against the durable log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openraft_storage_suite_on_the_wal() {
        Suite::test_all(WalBuilder)
            .await
            .expect("openraft storage suite passes on the WAL");
    }

    /// What was acknowledged survives a reopen: entries, vote, the purged
    /// prefix (hidden even where its segment is still on disk), and a purge
    /// past the end lets the log restart further on (snapshot install).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopen_keeps_entries_vote_and_purge() {
        use openraft::testing::{blank_ent, log_id};
        type C = TypeConfig;
        let dir =
            std::env::temp_dir().join(format!("tribune-wal-log-reopen-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let _guard = TempDir(dir.clone());
        {
            let mut log = WalLog::<C>::open(&dir).expect("open");
            log.append((0..10).map(|i| blank_ent::<C>(1, 1, i)).collect())
                .expect("append");
            let vote = VoteOf::<C>::new(3, 2);
            log.save_vote(&vote).expect("vote");
            log.purge_through(log_id::<C>(1, 1, 3)).expect("purge");
            log.truncate_from(8).expect("truncate");
        }
        let mut log = WalLog::<C>::open(&dir).expect("reopen");
        assert_eq!(log.vote(), Some(VoteOf::<C>::new(3, 2)));
        assert_eq!(log.last_purged(), Some(log_id::<C>(1, 1, 3)));
        assert_eq!(log.last_entry_id(), Some(log_id::<C>(1, 1, 7)));
        let indexes: Vec<u64> = log
            .entries(0, 100)
            .expect("read")
            .iter()
            .map(|e| e.index())
            .collect();
        assert_eq!(indexes, [4, 5, 6, 7], "purged entries stay hidden");
        // A snapshot far ahead: purge past the end, then continue there.
        log.purge_through(log_id::<C>(2, 1, 50))
            .expect("purge ahead");
        assert_eq!(log.last_entry_id(), None);
        log.append(vec![blank_ent::<C>(2, 1, 51)])
            .expect("append after the gap");
        drop(log);
        let log = WalLog::<C>::open(&dir).expect("reopen again");
        assert_eq!(log.last_entry_id(), Some(log_id::<C>(2, 1, 51)));
        assert_eq!(log.entries(0, 100).expect("read").len(), 1);
    }
}
