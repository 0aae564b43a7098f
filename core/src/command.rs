//! The closed, versioned set of replicated commands and their results.
//!
//! Encoding: one version byte, then postcard. A decoder refuses unknown
//! versions and oversized input with a precise error, never a panic: the
//! bytes may come from a peer or a damaged log.

use crate::catalog::{CatalogError, Registration};
use crate::ids::SessionId;
use crate::kv::KvEntry;
use crate::limits::COMMAND_BYTES_MAX;
use crate::restore::RestoreError;
use crate::session::Session;
use serde::{Deserialize, Serialize};
use std::fmt;

pub const COMMAND_CODEC_VERSION: u8 = 1;

/// KV verbs, as Consul's `api.KVOp` (write verbs and txn read verbs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvVerb {
    Set,
    Cas,
    Lock,
    Unlock,
    Delete,
    DeleteCas,
    DeleteTree,
    Get,
    GetOrEmpty,
    GetTree,
    CheckIndex,
    CheckSession,
    CheckNotExists,
}

impl KvVerb {
    /// Parses the verb spelling used by `/v1/txn`.
    pub fn parse(text: &str) -> Option<KvVerb> {
        Some(match text {
            "set" => KvVerb::Set,
            "cas" => KvVerb::Cas,
            "lock" => KvVerb::Lock,
            "unlock" => KvVerb::Unlock,
            "delete" => KvVerb::Delete,
            "delete-cas" => KvVerb::DeleteCas,
            "delete-tree" => KvVerb::DeleteTree,
            "get" => KvVerb::Get,
            "get-or-empty" => KvVerb::GetOrEmpty,
            "get-tree" => KvVerb::GetTree,
            "check-index" => KvVerb::CheckIndex,
            "check-session" => KvVerb::CheckSession,
            "check-not-exists" => KvVerb::CheckNotExists,
            _ => return None,
        })
    }

    /// Verbs that never change the store.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            KvVerb::Get
                | KvVerb::GetOrEmpty
                | KvVerb::GetTree
                | KvVerb::CheckIndex
                | KvVerb::CheckSession
                | KvVerb::CheckNotExists
        )
    }
}

/// One KV operation (Consul's `KVSRequest` / txn `KVTxnOp`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvOp {
    pub verb: KvVerb,
    pub key: String,
    #[serde(with = "crate::restore::byte_buf")]
    pub value: Vec<u8>,
    pub flags: u64,
    /// CAS / check-index index.
    pub index: u64,
    pub session: Option<SessionId>,
}

impl KvOp {
    pub fn new(verb: KvVerb, key: impl Into<String>) -> KvOp {
        KvOp {
            verb,
            key: key.into(),
            value: Vec::new(),
            flags: 0,
            index: 0,
            session: None,
        }
    }
}

/// A replicated write. Apply is an exhaustive match over this enum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Kv(KvOp),
    Txn(Vec<KvOp>),
    Register(Box<Registration>),
    Deregister {
        node: String,
        service_id: Option<String>,
        check_id: Option<String>,
    },
    /// The leader has assigned the ID and validated the TTL and lock-delay.
    SessionCreate(Box<Session>),
    SessionDestroy {
        id: SessionId,
    },
    /// Starts staging a snapshot archive of `total_len` bytes whose CRC-32C
    /// is `checksum` (`PUT /v1/snapshot`; see `crate::restore`). Abandons
    /// any unfinished restore.
    RestoreBegin {
        id: u64,
        total_len: u64,
        checksum: u32,
    },
    /// The archive's bytes at `offset`, in order.
    RestoreChunk {
        id: u64,
        offset: u64,
        #[serde(with = "crate::restore::byte_buf")]
        data: Vec<u8>,
    },
    /// Checks the staged archive and replaces the whole store with it.
    RestoreCommit {
        id: u64,
    },
    /// Drops the staged archive of a restore that failed part-way.
    RestoreAbort {
        id: u64,
    },
    /// Forgets the tombstones of deleted keys up to store index `index`
    /// (Consul's `ReapTombstones`), proposed by the leader once they are
    /// older than the tombstone TTL. Appended last: earlier commands keep
    /// their encoding.
    ReapTombstones {
        index: crate::ids::RaftIndex,
    },
}

/// One result row of a txn (Consul's `TxnResult{KV}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnKvResult {
    pub key: String,
    pub entry: KvEntry,
    /// `Value` is shown only for reads.
    pub include_value: bool,
}

/// One failed op of a rolled-back txn (Consul's `TxnError`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    pub op_index: usize,
    pub what: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOutcome {
    Committed(Vec<TxnKvResult>),
    RolledBack(Vec<TxnError>),
}

/// Why a command could not be applied. The store is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ApplyError {
    MissingSession,
    SessionUnknown(SessionId),
    SessionNodeUnknown(String),
    SessionCheckUnknown(String),
    SessionCheckCritical(String),
    SessionExists(SessionId),
    Catalog(CatalogError),
    VerbNotAllowed(KvVerb),
    Restore(RestoreError),
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::MissingSession => f.write_str("Missing session"),
            ApplyError::SessionUnknown(id) => write!(f, "Invalid session \"{id}\""),
            ApplyError::SessionNodeUnknown(_) => f.write_str("Missing node registration"),
            ApplyError::SessionCheckUnknown(c) => write!(f, "Missing check '{c}' registration"),
            ApplyError::SessionCheckCritical(c) => write!(f, "Check '{c}' is in critical state"),
            ApplyError::SessionExists(id) => write!(f, "Session ID {id} already exists"),
            ApplyError::Catalog(e) => e.fmt(f),
            ApplyError::VerbNotAllowed(v) => write!(f, "KV verb {v:?} is not a write"),
            ApplyError::Restore(e) => e.fmt(f),
        }
    }
}

/// What applying a command produced. Serializable because a server that
/// forwards a write to the leader gets the result back over server RPC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// KV writes answer true/false like Consul's `PUT /v1/kv`.
    Bool(bool),
    Txn(TxnOutcome),
    SessionCreated(SessionId),
    Done,
    Failed(ApplyError),
}

/// Why bytes did not decode to a command.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    Empty,
    TooLarge { len: usize },
    UnknownVersion(u8),
    Malformed,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty command"),
            DecodeError::TooLarge { len } => write!(f, "command of {len} bytes is too large"),
            DecodeError::UnknownVersion(v) => write!(f, "unknown command codec version {v}"),
            DecodeError::Malformed => f.write_str("malformed command"),
        }
    }
}

/// A short description for logs (openraft prints entries with it): the
/// variant and the key or node it is about, never a value.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Kv(op) => write!(f, "kv {:?} {:?}", op.verb, op.key),
            Command::Txn(ops) => write!(f, "txn of {} ops", ops.len()),
            Command::Register(reg) => write!(f, "register node {:?}", reg.node.name),
            Command::Deregister { node, .. } => write!(f, "deregister on node {node:?}"),
            Command::SessionCreate(session) => write!(f, "session create {}", session.id),
            Command::SessionDestroy { id } => write!(f, "session destroy {id}"),
            Command::RestoreBegin { id, total_len, .. } => {
                write!(f, "restore {id:016x} begin, {total_len} bytes")
            }
            Command::RestoreChunk { id, offset, data } => {
                write!(
                    f,
                    "restore {id:016x} chunk at {offset}, {} bytes",
                    data.len()
                )
            }
            Command::RestoreCommit { id } => write!(f, "restore {id:016x} commit"),
            Command::RestoreAbort { id } => write!(f, "restore {id:016x} abort"),
            Command::ReapTombstones { index } => write!(f, "reap tombstones up to {index}"),
        }
    }
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![COMMAND_CODEC_VERSION];
        // Serializing owned, in-memory data into a Vec cannot fail.
        let body = postcard::to_allocvec(self).expect("commands always serialize");
        out.extend_from_slice(&body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if bytes.len() > COMMAND_BYTES_MAX {
            return Err(DecodeError::TooLarge { len: bytes.len() });
        }
        if version != COMMAND_CODEC_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        match postcard::take_from_bytes::<Command>(body) {
            Ok((command, [])) => Ok(command),
            _ => Err(DecodeError::Malformed),
        }
    }
}
