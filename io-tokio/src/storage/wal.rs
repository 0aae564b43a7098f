//! The segmented write-ahead log on real files.
//!
//! ```text
//!  appenders --submit--> channel --> writer thread: gather every queued append,
//!                                    one write + one fdatasync for all of them,
//!                                    Layout::commit_append, then acknowledge each
//!  readers ------------------------> Layout (mutex) --> pread + checksum check
//! ```
//!
//! Group commit: the writer thread takes all appends queued while the
//! previous fdatasync ran and makes them durable with a single write and a
//! single fdatasync, so under load one sync covers many appends and the disk
//! is never idle while appenders wait. `Pending` resolves only after the batch
//! holding the entries is synced (and, for a new segment, its directory).
//!
//! Failure policy: when a write, fdatasync, truncation or deletion fails, the
//! waiting appends get the error and the WAL is *poisoned*: every later
//! request fails until the directory is reopened. Retrying is not safe: after
//! a failed fsync Linux may already have dropped the dirty pages and marked
//! them clean, so a second fsync can report success for data that never
//! reached the disk (PostgreSQL's "fsyncgate", 2018, which made PostgreSQL
//! panic instead of retrying). Reopening rebuilds the layout from what the
//! files really contain, cutting a torn tail. Nothing half-applied is ever
//! acknowledged: the in-memory layout only changes after the sync succeeded.

use super::wal_writer;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use tokio::sync::oneshot;
use tribune_core::limits::{
    WAL_BATCH_RECORDS_MAX, WAL_RECORD_PAYLOAD_BYTES_MAX, WAL_SEGMENT_BYTES_DEFAULT,
};
use tribune_core::wal::{
    self, decode_vote, encode_vote, segment_file_name, Corruption, Layout, RecoveryError, Vote,
};

const VOTE_FILE: &str = "vote";
const VOTE_TEMP_FILE: &str = "vote.tmp";

/// Where the WAL lives and when it starts a new segment.
#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    /// Size at which the next batch goes into a new segment file.
    pub segment_bytes: u64,
    /// Reserve each new segment file's full size when creating it (see
    /// `wal_writer::preallocate`); on by default.
    pub preallocate: bool,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalConfig {
            dir: dir.into(),
            segment_bytes: WAL_SEGMENT_BYTES_DEFAULT,
            preallocate: true,
        }
    }
}

/// One log entry: its index and opaque payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalError {
    /// A file operation failed (`kind` tells disk-full from the rest).
    Io {
        action: &'static str,
        path: PathBuf,
        kind: io::ErrorKind,
        message: String,
    },
    /// Bytes on disk that recovery must not repair; the node refuses to start.
    Corrupt {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    /// A record read back while running fails its checksum (damaged on
    /// disk, or on the way from it).
    DamagedRead {
        path: PathBuf,
        offset: u64,
        index: u64,
    },
    /// An earlier write or sync failed; reopen the WAL (see module docs).
    Poisoned {
        cause: String,
    },
    /// The append does not start right after the last entry.
    OutOfSequence {
        expected: u64,
        found: u64,
    },
    /// The entries of one append are not consecutive.
    NotConsecutive {
        previous: u64,
        found: u64,
    },
    PayloadTooLarge {
        index: u64,
        len: usize,
    },
    TooManyEntries {
        count: usize,
    },
    /// The writer thread is gone (the WAL is being dropped).
    Closed,
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io {
                action,
                path,
                message,
                ..
            } => write!(f, "WAL: cannot {action} {}: {message}", path.display()),
            WalError::Corrupt {
                path,
                offset,
                detail,
            } => write!(
                f,
                "WAL file {} is corrupt at byte offset {offset}: {detail}; refusing to start \
                 (restore this server from a snapshot or a peer)",
                path.display()
            ),
            WalError::DamagedRead {
                path,
                offset,
                index,
            } => write!(
                f,
                "WAL file {}: record {index} at byte offset {offset} no longer decodes \
                 (damaged on disk or in transit)",
                path.display()
            ),
            WalError::Poisoned { cause } => {
                write!(
                    f,
                    "WAL refuses writes after an earlier failure ({cause}); reopen it"
                )
            }
            WalError::OutOfSequence { expected, found } => {
                write!(f, "WAL append at index {found}, expected {expected}")
            }
            WalError::NotConsecutive { previous, found } => {
                write!(f, "WAL append has index {found} after {previous}")
            }
            WalError::PayloadTooLarge { index, len } => write!(
                f,
                "WAL entry {index} has {len} bytes, more than {WAL_RECORD_PAYLOAD_BYTES_MAX}"
            ),
            WalError::TooManyEntries { count } => write!(
                f,
                "WAL append of {count} entries, more than {WAL_BATCH_RECORDS_MAX}"
            ),
            WalError::Closed => write!(f, "WAL is closed"),
        }
    }
}

impl std::error::Error for WalError {}

pub(super) fn io_error(action: &'static str, path: &Path, error: io::Error) -> WalError {
    WalError::Io {
        action,
        path: path.to_path_buf(),
        kind: error.kind(),
        message: error.to_string(),
    }
}

/// Counters for benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Batches written; each cost one fdatasync.
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    /// Time spent in fdatasync, summed over batches.
    pub fdatasync_micros: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub fdatasync_micros: AtomicU64,
}

/// State the writer thread and readers share.
pub(super) struct Shared {
    pub dir: PathBuf,
    pub layout: Mutex<Layout>,
    pub poisoned: Mutex<Option<String>>,
    pub counters: Counters,
    vote: Mutex<()>,
    pub preallocate: bool,
}

impl Shared {
    pub fn layout(&self) -> MutexGuard<'_, Layout> {
        self.layout.lock().expect("layout lock")
    }

    pub fn segment_path(&self, segment: u64) -> PathBuf {
        self.dir.join(segment_file_name(segment))
    }

    pub fn poisoned(&self) -> Option<WalError> {
        let cause = self.poisoned.lock().expect("poison lock").clone()?;
        Some(WalError::Poisoned { cause })
    }

    pub fn poison(&self, error: &WalError) {
        let mut poisoned = self.poisoned.lock().expect("poison lock");
        poisoned.get_or_insert_with(|| error.to_string());
    }
}

pub(super) type Done = oneshot::Sender<Result<(), WalError>>;

pub(super) enum Request {
    Append { entries: Vec<Entry>, done: Done },
    Truncate { after: u64, done: Done },
    Purge { upto: u64, done: Done },
}

/// A submitted request; resolves once it is durable (or failed).
#[must_use = "a WAL request is only durable once its Pending resolves"]
pub struct Pending(oneshot::Receiver<Result<(), WalError>>);

impl Pending {
    fn ready(result: Result<(), WalError>) -> Self {
        let (done, pending) = oneshot::channel();
        let _ = done.send(result);
        Pending(pending)
    }

    /// Waits from async code.
    pub async fn durable(self) -> Result<(), WalError> {
        self.0.await.unwrap_or(Err(WalError::Closed))
    }

    /// Waits from a plain thread (panics inside an async runtime).
    pub fn wait(self) -> Result<(), WalError> {
        self.0.blocking_recv().unwrap_or(Err(WalError::Closed))
    }
}

/// The torn tail recovery cut from the last segment when the WAL was opened
/// (an interrupted write; worth a log line, not an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutTail {
    pub path: PathBuf,
    /// Where the file now ends.
    pub offset: u64,
    pub bytes_cut: u64,
}

/// The write-ahead log of one directory. Dropping it stops the writer
/// thread after the requests already queued.
pub struct Wal {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    cut_tail: Option<CutTail>,
}

impl Wal {
    /// Opens (creating if needed) and recovers the WAL in `config.dir`: a
    /// torn tail of the last segment is cut and synced; corruption anywhere
    /// else, or a damaged vote file, is an error naming the file and offset.
    pub fn open(config: WalConfig) -> Result<Wal, WalError> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| io_error("create", &dir, e))?;
        let (layout, cut_tail) = recover(&dir, config.segment_bytes)?;
        match fs::remove_file(dir.join(VOTE_TEMP_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error("remove", &dir.join(VOTE_TEMP_FILE), e))
            }
            _ => {}
        }
        let shared = Arc::new(Shared {
            dir,
            layout: Mutex::new(layout),
            poisoned: Mutex::new(None),
            counters: Counters::default(),
            vote: Mutex::new(()),
            preallocate: config.preallocate,
        });
        let wal_probe = Wal {
            shared: shared.clone(),
            requests: None,
            writer: None,
            cut_tail: None,
        };
        wal_probe.read_vote()?;
        let (requests, queue) = mpsc::channel();
        let writer = wal_writer::spawn(shared.clone(), queue)
            .map_err(|e| io_error("start the writer thread for", &shared.dir, e))?;
        Ok(Wal {
            shared,
            requests: Some(requests),
            writer: Some(writer),
            cut_tail,
        })
    }

    /// The torn tail that opening cut, if there was one.
    pub fn cut_tail(&self) -> Option<&CutTail> {
        self.cut_tail.as_ref()
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Queues `entries` (consecutive indexes, starting right after the last
    /// entry; any index when the log is empty). Requests are written in the
    /// order they are submitted.
    pub fn append(&self, entries: Vec<Entry>) -> Pending {
        if let Err(error) = check_entries(&entries) {
            return Pending::ready(Err(error));
        }
        self.submit(|done| Request::Append { entries, done })
    }

    /// Drops every entry after `after` (a conflicting suffix).
    pub fn truncate_after(&self, after: u64) -> Pending {
        self.submit(|done| Request::Truncate { after, done })
    }

    /// Deletes the segments that hold only entries up to `upto` (covered by
    /// a snapshot). Whole segments only: entries at or below `upto` in the
    /// segment that also holds `upto + 1` stay readable.
    pub fn purge_upto(&self, upto: u64) -> Pending {
        self.submit(|done| Request::Purge { upto, done })
    }

    fn submit(&self, request: impl FnOnce(Done) -> Request) -> Pending {
        if let Some(error) = self.shared.poisoned() {
            return Pending::ready(Err(error));
        }
        let (done, pending) = oneshot::channel();
        let sender = self.requests.as_ref().expect("open WAL has a writer");
        if sender.send(request(done)).is_err() {
            return Pending::ready(Err(WalError::Closed));
        }
        Pending(pending)
    }

    pub fn first_index(&self) -> Option<u64> {
        self.shared.layout().first_index()
    }

    pub fn last_index(&self) -> Option<u64> {
        self.shared.layout().last_index()
    }

    pub fn stats(&self) -> WalStats {
        self.stats_handle().stats()
    }

    /// Reads the counters after the WAL itself was handed to its owner.
    pub fn stats_handle(&self) -> WalStatsHandle {
        WalStatsHandle(self.shared.clone())
    }
}

/// The WAL's counters, readable from anywhere.
#[derive(Clone)]
pub struct WalStatsHandle(Arc<Shared>);

impl WalStatsHandle {
    pub fn stats(&self) -> WalStats {
        let counters = &self.0.counters;
        WalStats {
            batches: counters.batches.load(Ordering::Relaxed),
            records: counters.records.load(Ordering::Relaxed),
            bytes: counters.bytes.load(Ordering::Relaxed),
            fdatasync_micros: counters.fdatasync_micros.load(Ordering::Relaxed),
        }
    }
}

impl Wal {
    /// The durable entries with indexes in `range` (stops at the first
    /// missing index). Checksums are verified again on every read.
    pub fn read(&self, range: Range<u64>) -> Result<Vec<Entry>, WalError> {
        let slots: Vec<_> = {
            let layout = self.shared.layout();
            let start = range.start.max(layout.first_index().unwrap_or(range.start));
            (start..range.end)
                .map_while(|index| layout.locate(index))
                .collect()
        };
        let mut entries = Vec::with_capacity(slots.len());
        for run in slots.chunk_by(|a, b| a.0 == b.0) {
            self.read_run(run, &mut entries)?;
        }
        Ok(entries)
    }

    /// Reads consecutive records of one segment with a single pread.
    fn read_run(
        &self,
        run: &[(u64, wal::RecordSlot)],
        entries: &mut Vec<Entry>,
    ) -> Result<(), WalError> {
        let (segment, first) = run[0];
        let last = run[run.len() - 1].1;
        let path = self.shared.segment_path(segment);
        let file = File::open(&path).map_err(|e| io_error("open", &path, e))?;
        let mut bytes = vec![0u8; (last.offset + u64::from(last.len) - first.offset) as usize];
        file.read_exact_at(&mut bytes, first.offset)
            .map_err(|e| io_error("read", &path, e))?;
        for (_, slot) in run {
            let at = (slot.offset - first.offset) as usize;
            let record = wal::decode_record(&bytes[at..])
                .ok()
                .filter(|record| record.index == slot.index)
                .ok_or_else(|| WalError::DamagedRead {
                    path: path.clone(),
                    offset: slot.offset,
                    index: slot.index,
                })?;
            entries.push(Entry {
                index: record.index,
                payload: record.payload.to_vec(),
            });
        }
        Ok(())
    }

    /// Makes `vote` durable: temp file, fsync, rename over `vote`, fsync of
    /// the directory; a crash leaves either the old or the new vote.
    pub fn save_vote(&self, vote: &Vote) -> Result<(), WalError> {
        let _one_at_a_time = self.shared.vote.lock().expect("vote lock");
        let dir = &self.shared.dir;
        let temp = dir.join(VOTE_TEMP_FILE);
        let mut file = File::create(&temp).map_err(|e| io_error("create", &temp, e))?;
        file.write_all(&encode_vote(vote))
            .map_err(|e| io_error("write", &temp, e))?;
        file.sync_all().map_err(|e| io_error("fsync", &temp, e))?;
        let path = dir.join(VOTE_FILE);
        fs::rename(&temp, &path).map_err(|e| io_error("rename", &path, e))?;
        sync_dir(dir)
    }

    /// The last saved vote, if any.
    pub fn read_vote(&self) -> Result<Option<Vote>, WalError> {
        let path = self.shared.dir.join(VOTE_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        decode_vote(&bytes)
            .map(Some)
            .map_err(|e| WalError::Corrupt {
                path,
                offset: 0,
                detail: format!("vote file does not decode ({e:?})"),
            })
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn check_entries(entries: &[Entry]) -> Result<(), WalError> {
    if entries.len() > WAL_BATCH_RECORDS_MAX as usize {
        return Err(WalError::TooManyEntries {
            count: entries.len(),
        });
    }
    if let Some(entry) = entries
        .iter()
        .find(|entry| entry.payload.len() > WAL_RECORD_PAYLOAD_BYTES_MAX)
    {
        return Err(WalError::PayloadTooLarge {
            index: entry.index,
            len: entry.payload.len(),
        });
    }
    if entries.first().is_some_and(|entry| entry.index == 0) {
        return Err(WalError::OutOfSequence {
            expected: 1,
            found: 0,
        });
    }
    match entries.windows(2).find(|w| w[1].index != w[0].index + 1) {
        Some(w) => Err(WalError::NotConsecutive {
            previous: w[0].index,
            found: w[1].index,
        }),
        None => Ok(()),
    }
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("fsync directory", dir, e))
}

/// Scans every segment file and rebuilds the layout; cuts a torn tail.
fn recover(dir: &Path, segment_bytes: u64) -> Result<(Layout, Option<CutTail>), WalError> {
    let mut scans = Vec::new();
    let listing = fs::read_dir(dir).map_err(|e| io_error("list", dir, e))?;
    for entry in listing {
        let entry = entry.map_err(|e| io_error("list", dir, e))?;
        let name = entry.file_name();
        let Some(first_index) = name.to_str().and_then(wal::parse_segment_file_name) else {
            continue;
        };
        let path = entry.path();
        let bytes = fs::read(&path).map_err(|e| io_error("read", &path, e))?;
        scans.push((first_index, wal::scan_segment(&bytes, first_index)));
    }
    let recovered = Layout::recover(segment_bytes, scans).map_err(|error| {
        let (segment, offset) = error.location();
        WalError::Corrupt {
            path: dir.join(segment_file_name(segment)),
            offset,
            detail: describe(&error),
        }
    })?;
    let mut cut_tail = None;
    if let Some((segment, offset)) = recovered.truncate {
        let path = dir.join(segment_file_name(segment));
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| io_error("stat", &path, e))?
            .len();
        file.set_len(offset)
            .map_err(|e| io_error("truncate the torn tail of", &path, e))?;
        file.sync_all().map_err(|e| io_error("fsync", &path, e))?;
        cut_tail = Some(CutTail {
            path,
            offset,
            bytes_cut: len - offset,
        });
    }
    Ok((recovered.layout, cut_tail))
}

fn describe(error: &RecoveryError) -> String {
    match error {
        RecoveryError::Corrupt { cause, .. } => match cause {
            Corruption::DamagedRecord {
                cause,
                later_record_offset,
                later_index,
            } => format!(
                "record does not decode ({cause:?}) but a record of a later write batch \
                 (index {later_index}) follows at offset {later_record_offset}, so synced \
                 data is damaged"
            ),
            Corruption::IndexOutOfSequence { expected, found } => {
                format!("record has index {found}, expected {expected}")
            }
            Corruption::BatchOutOfSequence {
                index,
                batch_first_index,
            } => format!("record {index} claims a write batch starting at {batch_first_index}"),
            other => format!("{other:?}"),
        },
        RecoveryError::TornBeforeLastSegment { cause, .. } => format!(
            "incomplete record ({cause:?}) in a segment that is not the last one, \
             although later segments are only written after it was synced"
        ),
        RecoveryError::Gap { segment, expected } => {
            format!("segment starts at index {segment} but the previous one ends before {expected}")
        }
        other => format!("{other:?}"),
    }
}
