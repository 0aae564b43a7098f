//! openraft's `RaftStateMachine` over core's [`Fsm`].
//!
//! ```text
//! committed entries --apply--> Normal(Command) --Store::apply(index)--> CommandResult --> responder
//!                                   |
//!                          Blank / Membership:
//!                   last applied (+ membership) only
//! ```
//!
//! The store itself sits behind the [`Store`] trait: the agent's node keeps
//! the `Fsm` next to its readers (HTTP, DNS), blocking-query waiters and
//! session timers, and applies under its own lock; [`MemStore`] is a bare
//! `Fsm` for tests.
//!
//! A snapshot is the `Fsm` snapshot plus the last applied log id and the
//! membership, behind a version byte and followed by a CRC-32C (see
//! [`encode_snapshot`]). Installing one decodes and validates all of it
//! (`Fsm::restore` refuses an inconsistent store) before anything is
//! replaced: a bad snapshot is an error, and the old state stays. With a
//! snapshot directory, every snapshot built or installed is written there
//! atomically (temp file, fsync, rename, fsync of the directory) before
//! openraft may purge the log behind it; openraft installs it again at
//! start-up, then replays the log after it.
//!
//! Generic over the type config, so a simulator binds the same code to its
//! own runtime. The state sits behind a `std` mutex that is never held
//! across an await.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{RaftSnapshotBuilder, RaftTypeConfig};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tribune_core::checksum::checksum as crc32c;
use tribune_core::command::{Command, CommandResult};
use tribune_core::fsm::{Effects, Fsm};
use tribune_core::limits::RAFT_SNAPSHOT_BYTES_MAX;

use super::types::CommandEntry;

/// The replicated store the state machine applies to.
pub trait Store: Send + Sync + 'static {
    /// Applies a committed command at `index` (indexes only grow).
    fn apply(&self, index: u64, command: &Command) -> CommandResult;
    /// The index of the last command applied.
    fn applied_index(&self) -> u64;
    /// [`Fsm::snapshot`] of the store, consistent with `applied_index`.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole store (a snapshot was installed).
    fn restore(&self, fsm: Fsm);
}

/// A bare in-memory store.
#[derive(Default)]
pub struct MemStore {
    fsm: Mutex<(Fsm, Effects)>,
}

impl MemStore {
    fn lock(&self) -> MutexGuard<'_, (Fsm, Effects)> {
        // Applies change the store only as a whole.
        self.fsm.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn read<T>(&self, f: impl FnOnce(&Fsm) -> T) -> T {
        f(&self.lock().0)
    }
}

impl Store for MemStore {
    fn apply(&self, index: u64, command: &Command) -> CommandResult {
        let mut guard = self.lock();
        let (fsm, effects) = &mut *guard;
        effects.clear();
        fsm.apply(index, command, effects)
    }

    fn applied_index(&self) -> u64 {
        self.lock().0.last_applied
    }

    fn snapshot(&self) -> Vec<u8> {
        self.lock().0.snapshot()
    }

    fn restore(&self, fsm: Fsm) {
        self.lock().0 = fsm;
    }
}

struct State<C: RaftTypeConfig> {
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    /// The last snapshot built or installed, served to followers.
    snapshot: Option<(SnapshotMetaOf<C>, Bytes)>,
}

/// The state machine adapter. Clones share one state.
pub struct StateMachine<C: RaftTypeConfig> {
    state: Arc<Mutex<State<C>>>,
    /// Held while a snapshot file is written, taken before `state`: a
    /// built snapshot is written without holding `state` (applies go on),
    /// and an installed one cannot be overwritten by an older build.
    files: Arc<Mutex<()>>,
    store: Arc<dyn Store>,
    /// Where snapshots are kept across restarts; `None`: memory only.
    snapshot_file: Option<Arc<dyn SnapshotFile>>,
}

/// Where a server keeps its newest snapshot across restarts: a directory
/// in the daemon ([`SnapshotDir`]), the simulated disk in io-sim.
pub trait SnapshotFile: Send + Sync + 'static {
    /// The kept snapshot's bytes, `None` if there is none yet.
    fn load(&self) -> io::Result<Option<Vec<u8>>>;
    /// Replaces the kept snapshot atomically: after a crash the old one or
    /// the new one is there, never a mix.
    fn save(&self, bytes: &[u8]) -> io::Result<()>;
    /// Names the snapshot in errors (a path).
    fn name(&self) -> String;
}

/// A snapshot file in a directory: `DIR/snapshot`, replaced through
/// `DIR/snapshot.tmp` (temp file → fsync → rename → fsync of the
/// directory).
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// Creates `dir` if needed.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<SnapshotDir> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(SnapshotDir { dir })
    }
}

impl SnapshotFile for SnapshotDir {
    fn load(&self) -> io::Result<Option<Vec<u8>>> {
        let path = self.dir.join(SNAPSHOT_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }

    fn save(&self, bytes: &[u8]) -> io::Result<()> {
        write_atomically(&self.dir, bytes)
    }

    fn name(&self) -> String {
        self.dir.join(SNAPSHOT_FILE).display().to_string()
    }
}

impl<C: RaftTypeConfig> Clone for StateMachine<C> {
    fn clone(&self) -> Self {
        StateMachine {
            state: Arc::clone(&self.state),
            files: Arc::clone(&self.files),
            store: Arc::clone(&self.store),
            snapshot_file: self.snapshot_file.clone(),
        }
    }
}

impl<C: RaftTypeConfig> Default for StateMachine<C> {
    fn default() -> Self {
        StateMachine::in_memory(Arc::new(MemStore::default()))
    }
}

const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TEMP_FILE: &str = "snapshot.tmp";

impl<C: RaftTypeConfig> StateMachine<C> {
    /// A state machine over `store` whose snapshots live in memory only.
    pub fn in_memory(store: Arc<dyn Store>) -> StateMachine<C> {
        StateMachine {
            state: Arc::new(Mutex::new(State {
                last_applied: None,
                membership: StoredMembershipOf::<C>::default(),
                snapshot: None,
            })),
            files: Arc::new(Mutex::new(())),
            store,
            snapshot_file: None,
        }
    }

    /// A state machine over `store` that keeps its snapshot in `dir` and
    /// offers the one found there (validated) to openraft at start-up. A
    /// damaged snapshot file is an error naming the file, not a silent
    /// fresh start.
    pub fn durable(store: Arc<dyn Store>, dir: impl Into<PathBuf>) -> io::Result<StateMachine<C>> {
        StateMachine::with_snapshot_file(store, Arc::new(SnapshotDir::new(dir)?))
    }

    /// A state machine over `store` that keeps its snapshot in `file` and
    /// offers the one found there (validated) to openraft at start-up.
    pub fn with_snapshot_file(
        store: Arc<dyn Store>,
        file: Arc<dyn SnapshotFile>,
    ) -> io::Result<StateMachine<C>> {
        let sm = StateMachine {
            snapshot_file: Some(Arc::clone(&file)),
            ..StateMachine::in_memory(store)
        };
        if let Some(bytes) = file.load()? {
            let contents = decode_snapshot::<C>(&bytes).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", file.name()))
            })?;
            let meta = SnapshotMetaOf::<C> {
                last_log_id: contents.last_applied,
                last_membership: contents.membership,
            };
            sm.lock().snapshot = Some((meta, Bytes::from(bytes)));
        }
        Ok(sm)
    }

    fn lock(&self) -> MutexGuard<'_, State<C>> {
        // The state changes only as a whole, so a poisoned lock still
        // guards a consistent value.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_files(&self) -> MutexGuard<'_, ()> {
        self.files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn last_applied(&self) -> Option<LogIdOf<C>> {
        self.lock().last_applied.clone()
    }

    /// Keeps `bytes` as the current snapshot, on disk first if durable.
    fn keep_snapshot(
        &self,
        state: &mut State<C>,
        meta: SnapshotMetaOf<C>,
        bytes: Bytes,
    ) -> io::Result<()> {
        if let Some(file) = &self.snapshot_file {
            file.save(&bytes)?;
        }
        state.snapshot = Some((meta, bytes));
        Ok(())
    }
}

/// temp file → fsync → rename → fsync of the directory: after a crash the
/// file is the old snapshot or the new one, never a mix.
fn write_atomically(dir: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let temp = dir.join(SNAPSHOT_TEMP_FILE);
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, dir.join(SNAPSHOT_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

impl<C> StateMachine<C>
where
    C: RaftTypeConfig<R = CommandResult>,
    C::Entry: CommandEntry,
{
    fn apply_entry(
        &self,
        state: &mut State<C>,
        entry: &C::Entry,
    ) -> Result<CommandResult, io::Error> {
        use openraft::entry::RaftEntry;
        let log_id = entry.log_id();
        let index = log_id.index;
        if let Some(membership) = entry.get_membership() {
            state.membership = StoredMembershipOf::<C>::new(Some(log_id.clone()), membership);
        }
        let result = match entry.command() {
            Some(command) => {
                // Fsm::apply asserts that indexes grow; a log that goes back
                // is a storage bug, reported rather than panicking here.
                let applied = self.store.applied_index();
                if index <= applied {
                    return Err(io::Error::other(format!(
                        "entry {index} applied after {applied}"
                    )));
                }
                self.store.apply(index, command)
            }
            None => CommandResult::Done,
        };
        state.last_applied = Some(log_id);
        Ok(result)
    }
}

impl<C> RaftStateMachine<C> for StateMachine<C>
where
    C: RaftTypeConfig<R = CommandResult>,
    C::Entry: CommandEntry,
{
    type SnapshotData = Bytes;
    type SnapshotBuilder = StateMachine<C>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let state = self.lock();
        Ok((state.last_applied.clone(), state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + openraft::OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let result = {
                let mut state = self.lock();
                self.apply_entry(&mut state, &entry)?
            };
            if let Some(responder) = responder {
                responder.send(result);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Bytes,
    ) -> Result<(), io::Error> {
        let contents = validate_snapshot::<C>(meta, &snapshot).map_err(invalid_data)?;
        let _files = self.lock_files();
        let mut state = self.lock();
        let already_kept = state
            .snapshot
            .as_ref()
            .is_some_and(|(kept, _)| kept == meta);
        if !already_kept {
            self.keep_snapshot(&mut state, meta.clone(), snapshot)?;
        }
        state.last_applied = contents.last_applied;
        state.membership = contents.membership;
        self.store.restore(contents.fsm);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Bytes>>, io::Error> {
        Ok(self
            .lock()
            .snapshot
            .clone()
            .map(|(meta, snapshot)| SnapshotOf::<C, Bytes> { meta, snapshot }))
    }
}

impl<C> RaftSnapshotBuilder<C> for StateMachine<C>
where
    C: RaftTypeConfig<R = CommandResult>,
    C::Entry: CommandEntry,
{
    type SnapshotData = Bytes;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Bytes>, io::Error> {
        // Encoded under the lock, so the store and the last applied log id
        // agree (applies wait meanwhile; a copy-on-write store would lift
        // that too). The file is written after the lock is released: for a
        // large store that write and its fsync take seconds, during which
        // applies continue.
        let (meta, bytes) = {
            let state = self.lock();
            let bytes = Bytes::from(encode_snapshot_bytes::<C>(
                self.store.snapshot(),
                &state.last_applied,
                &state.membership,
            ));
            let meta = SnapshotMetaOf::<C> {
                last_log_id: state.last_applied.clone(),
                last_membership: state.membership.clone(),
            };
            (meta, bytes)
        };
        let _files = self.lock_files();
        let superseded = |state: &State<C>| {
            state
                .snapshot
                .as_ref()
                .is_some_and(|(kept, _)| kept.last_log_id >= meta.last_log_id)
        };
        // An installed (or built) snapshot at least as new was kept while
        // this one was encoded: keep that one.
        if !superseded(&self.lock()) {
            if let Some(file) = &self.snapshot_file {
                file.save(&bytes)?;
            }
            let mut state = self.lock();
            if !superseded(&state) {
                state.snapshot = Some((meta.clone(), bytes.clone()));
            }
        }
        Ok(SnapshotOf::<C, Bytes> {
            meta,
            snapshot: bytes,
        })
    }
}

fn invalid_data(e: SnapshotDecodeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

// ---------------------------------------------------------------- format

pub const RAFT_SNAPSHOT_VERSION: u8 = 1;
const CHECKSUM_BYTES: usize = 4;

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct Envelope<C: RaftTypeConfig> {
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    fsm: Vec<u8>,
}

/// A decoded, validated snapshot.
pub struct SnapshotContents<C: RaftTypeConfig> {
    pub last_applied: Option<LogIdOf<C>>,
    pub membership: StoredMembershipOf<C>,
    pub fsm: Fsm,
}

/// Why snapshot bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotDecodeError {
    TooShort,
    TooLarge {
        len: usize,
    },
    ChecksumMismatch,
    UnknownVersion(u8),
    Malformed,
    /// The store inside is damaged or inconsistent.
    Fsm(tribune_core::fsm::SnapshotError),
    /// The store was applied past the log id the snapshot claims.
    AppliedPastLastLogId,
    /// The snapshot's metadata and its contents disagree.
    MetaMismatch,
}

impl fmt::Display for SnapshotDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotDecodeError::TooShort => f.write_str("raft snapshot too short"),
            SnapshotDecodeError::TooLarge { len } => {
                write!(f, "raft snapshot of {len} bytes is over the limit")
            }
            SnapshotDecodeError::ChecksumMismatch => f.write_str("raft snapshot checksum mismatch"),
            SnapshotDecodeError::UnknownVersion(v) => {
                write!(f, "unknown raft snapshot version {v}")
            }
            SnapshotDecodeError::Malformed => f.write_str("malformed raft snapshot"),
            SnapshotDecodeError::Fsm(e) => write!(f, "raft snapshot store: {e}"),
            SnapshotDecodeError::AppliedPastLastLogId => {
                f.write_str("raft snapshot store is ahead of its last log id")
            }
            SnapshotDecodeError::MetaMismatch => {
                f.write_str("raft snapshot metadata does not match its contents")
            }
        }
    }
}

impl std::error::Error for SnapshotDecodeError {}

/// `[version][postcard envelope][crc32 of both, big-endian]`.
pub fn encode_snapshot<C: RaftTypeConfig>(
    fsm: &Fsm,
    last_applied: &Option<LogIdOf<C>>,
    membership: &StoredMembershipOf<C>,
) -> Vec<u8> {
    encode_snapshot_bytes::<C>(fsm.snapshot(), last_applied, membership)
}

/// [`encode_snapshot`] from a store already encoded with [`Fsm::snapshot`].
pub fn encode_snapshot_bytes<C: RaftTypeConfig>(
    fsm: Vec<u8>,
    last_applied: &Option<LogIdOf<C>>,
    membership: &StoredMembershipOf<C>,
) -> Vec<u8> {
    let envelope = Envelope::<C> {
        last_applied: last_applied.clone(),
        membership: membership.clone(),
        fsm,
    };
    let mut out = vec![RAFT_SNAPSHOT_VERSION];
    // Owned in-memory data always serializes into a Vec.
    out.extend(postcard::to_allocvec(&envelope).expect("snapshot envelope serializes"));
    let checksum = crc32c(&out);
    out.extend_from_slice(&checksum.to_be_bytes());
    out
}

/// Decodes and validates snapshot bytes; never panics on bad input.
pub fn decode_snapshot<C: RaftTypeConfig>(
    bytes: &[u8],
) -> Result<SnapshotContents<C>, SnapshotDecodeError> {
    if bytes.len() > RAFT_SNAPSHOT_BYTES_MAX {
        return Err(SnapshotDecodeError::TooLarge { len: bytes.len() });
    }
    if bytes.len() < 1 + CHECKSUM_BYTES {
        return Err(SnapshotDecodeError::TooShort);
    }
    let (covered, checksum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    if crc32c(covered).to_be_bytes() != checksum {
        return Err(SnapshotDecodeError::ChecksumMismatch);
    }
    let (&version, body) = covered.split_first().ok_or(SnapshotDecodeError::TooShort)?;
    if version != RAFT_SNAPSHOT_VERSION {
        return Err(SnapshotDecodeError::UnknownVersion(version));
    }
    let envelope: Envelope<C> = match postcard::take_from_bytes(body) {
        Ok((envelope, [])) => envelope,
        _ => return Err(SnapshotDecodeError::Malformed),
    };
    let fsm = Fsm::restore(&envelope.fsm).map_err(SnapshotDecodeError::Fsm)?;
    let last_index = envelope.last_applied.as_ref().map_or(0, |id| id.index);
    if fsm.last_applied > last_index {
        return Err(SnapshotDecodeError::AppliedPastLastLogId);
    }
    Ok(SnapshotContents {
        last_applied: envelope.last_applied,
        membership: envelope.membership,
        fsm,
    })
}

/// [`decode_snapshot`], and the metadata sent with the snapshot must
/// describe what is inside.
pub fn validate_snapshot<C: RaftTypeConfig>(
    meta: &SnapshotMetaOf<C>,
    bytes: &[u8],
) -> Result<SnapshotContents<C>, SnapshotDecodeError> {
    let contents = decode_snapshot::<C>(bytes)?;
    if contents.last_applied != meta.last_log_id || contents.membership != meta.last_membership {
        return Err(SnapshotDecodeError::MetaMismatch);
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::TypeConfig;
    use tribune_core::command::{KvOp, KvVerb};

    fn store_with_key() -> Fsm {
        let mut fsm = Fsm::default();
        let op = KvOp {
            value: b"v".to_vec(),
            ..KvOp::new(KvVerb::Set, "k")
        };
        fsm.apply(3, &Command::Kv(op), &mut Effects::default());
        fsm
    }

    #[test]
    fn snapshot_round_trips_and_refuses_damage() {
        let fsm = store_with_key();
        let log_id = Some(openraft::testing::log_id::<TypeConfig>(1, 1, 3));
        let membership = StoredMembershipOf::<TypeConfig>::default();
        let bytes = encode_snapshot::<TypeConfig>(&fsm, &log_id, &membership);
        let back = decode_snapshot::<TypeConfig>(&bytes).expect("round trip");
        assert_eq!(back.fsm, fsm);
        assert_eq!(back.last_applied, log_id);

        let mut flipped = bytes.clone();
        flipped[3] ^= 1;
        assert_eq!(
            decode_snapshot::<TypeConfig>(&flipped).err(),
            Some(SnapshotDecodeError::ChecksumMismatch)
        );
        assert_eq!(
            decode_snapshot::<TypeConfig>(&bytes[..2]).err(),
            Some(SnapshotDecodeError::TooShort)
        );
        // A store applied past the log id the snapshot claims.
        let behind = Some(openraft::testing::log_id::<TypeConfig>(1, 1, 2));
        let bytes = encode_snapshot::<TypeConfig>(&fsm, &behind, &membership);
        assert_eq!(
            decode_snapshot::<TypeConfig>(&bytes).err(),
            Some(SnapshotDecodeError::AppliedPastLastLogId)
        );
    }
}
