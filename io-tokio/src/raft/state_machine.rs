//! openraft's `RaftStateMachine` over core's [`Fsm`].
//!
//! ```text
//! committed entries --apply--> Normal(Command) --Fsm::apply(index)--> CommandResult --> responder
//!                                   |                                      |
//!                          Blank / Membership:                    ApplyHook(Applied{effects})
//!                   last applied (+ membership) only                (node fires watches, arms
//!                                                                    leader timers)
//! ```
//!
//! A snapshot is the `Fsm` snapshot plus the last applied log id and the
//! membership, behind a version byte and followed by a CRC-32C (see
//! [`encode_snapshot`]). Installing one decodes and validates all of it
//! (`Fsm::restore` refuses an inconsistent store) before anything is
//! replaced: a bad snapshot is an error, and the old state stays.
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
use std::sync::{Arc, Mutex, MutexGuard};
use tribune_core::checksum::checksum as crc32c;
use tribune_core::command::{Command, CommandResult};
use tribune_core::fsm::{Effects, Fsm};
use tribune_core::limits::RAFT_SNAPSHOT_BYTES_MAX;

use super::types::CommandEntry;

/// What the state machine tells its owner, with the state lock held (so
/// the owner sees applies in log order and never one half done).
#[derive(Debug)]
pub enum ApplyEvent<'a> {
    /// A command was applied at `index`.
    Applied {
        index: u64,
        command: &'a Command,
        result: &'a CommandResult,
        effects: &'a Effects,
    },
    /// A snapshot replaced the whole store: anything may have changed.
    Restored { fsm: &'a Fsm },
}

/// Called for every [`ApplyEvent`]; must not block (it runs under the
/// state lock, inside openraft's apply loop).
pub type ApplyHook = Box<dyn FnMut(ApplyEvent<'_>) + Send>;

struct State<C: RaftTypeConfig> {
    fsm: Fsm,
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    /// The last snapshot built or installed, served to followers.
    snapshot: Option<(SnapshotMetaOf<C>, Bytes)>,
    effects: Effects,
    hook: Option<ApplyHook>,
}

/// The state machine adapter. Clones share one state: the owner keeps a
/// clone to read the store while openraft owns another.
pub struct StateMachine<C: RaftTypeConfig> {
    state: Arc<Mutex<State<C>>>,
}

impl<C: RaftTypeConfig> Clone for StateMachine<C> {
    fn clone(&self) -> Self {
        StateMachine {
            state: Arc::clone(&self.state),
        }
    }
}

impl<C: RaftTypeConfig> Default for StateMachine<C> {
    fn default() -> Self {
        StateMachine::new(None)
    }
}

impl<C: RaftTypeConfig> StateMachine<C> {
    /// An empty store; `hook` hears of every apply and restore.
    pub fn new(hook: Option<ApplyHook>) -> StateMachine<C> {
        StateMachine {
            state: Arc::new(Mutex::new(State {
                fsm: Fsm::default(),
                last_applied: None,
                membership: StoredMembershipOf::<C>::default(),
                snapshot: None,
                effects: Effects::default(),
                hook,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<C>> {
        // Applies change the state only as a whole (the Fsm validates a
        // restore before it is swapped in), so a poisoned lock still guards
        // a consistent store.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` against the applied store.
    pub fn read<T>(&self, f: impl FnOnce(&Fsm) -> T) -> T {
        f(&self.lock().fsm)
    }

    pub fn last_applied(&self) -> Option<LogIdOf<C>> {
        self.lock().last_applied.clone()
    }
}

impl<C> State<C>
where
    C: RaftTypeConfig<R = CommandResult>,
    C::Entry: CommandEntry,
{
    fn apply_entry(&mut self, entry: &C::Entry) -> Result<CommandResult, io::Error> {
        use openraft::entry::RaftEntry;
        let log_id = entry.log_id();
        let index = log_id.index;
        if let Some(membership) = entry.get_membership() {
            self.membership = StoredMembershipOf::<C>::new(Some(log_id.clone()), membership);
        }
        let result = match entry.command() {
            Some(command) => {
                // Fsm::apply asserts that indexes grow; a log that goes back
                // is a storage bug, reported rather than panicking here.
                if index <= self.fsm.last_applied {
                    return Err(io::Error::other(format!(
                        "entry {index} applied after {}",
                        self.fsm.last_applied
                    )));
                }
                self.effects.clear();
                let result = self.fsm.apply(index, command, &mut self.effects);
                if let Some(hook) = self.hook.as_mut() {
                    hook(ApplyEvent::Applied {
                        index,
                        command,
                        result: &result,
                        effects: &self.effects,
                    });
                }
                result
            }
            None => CommandResult::Done,
        };
        self.last_applied = Some(log_id);
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
            let result = self.lock().apply_entry(&entry)?;
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
        let mut state = self.lock();
        state.fsm = contents.fsm;
        state.last_applied = contents.last_applied;
        state.membership = contents.membership;
        state.snapshot = Some((meta.clone(), snapshot));
        let State { fsm, hook, .. } = &mut *state;
        if let Some(hook) = hook.as_mut() {
            hook(ApplyEvent::Restored { fsm });
        }
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
        // Built under the lock: the store is in memory and applies are
        // short. A large store would clone the Fsm and encode outside.
        let mut state = self.lock();
        let bytes = Bytes::from(encode_snapshot::<C>(
            &state.fsm,
            &state.last_applied,
            &state.membership,
        ));
        let meta = SnapshotMetaOf::<C> {
            last_log_id: state.last_applied.clone(),
            last_membership: state.membership.clone(),
        };
        state.snapshot = Some((meta.clone(), bytes.clone()));
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
    let envelope = Envelope::<C> {
        last_applied: last_applied.clone(),
        membership: membership.clone(),
        fsm: fsm.snapshot(),
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
