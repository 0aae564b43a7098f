//! Restoring a snapshot archive through the replicated log (`PUT
//! /v1/snapshot`), so that every server replaces its store at the same
//! entry.
//!
//! An archive can be far larger than one command (`COMMAND_BYTES_MAX`), so
//! it travels as a run of ordinary commands ([`commands`]):
//!
//! ```text
//! RestoreBegin{id, total_len, checksum} -> RestoreChunk{id, offset, data} ... -> RestoreCommit{id}
//!        |                                        |                                   |
//!   new Staging (abandons an             appended in order to              length, CRC-32C, archive
//!   unfinished one)                      the staged bytes                  and store validated, then
//!                                                                          the store is replaced
//! ```
//!
//! The staged bytes are replicated state ([`Staging`] is part of
//! `Fsm::snapshot`): a Raft snapshot taken between two chunks carries them,
//! and a server that installs it applies the remaining chunks and the
//! commit like everyone else. Only the commit changes the store, and a
//! commit that finds anything wrong changes nothing but dropping the staged
//! bytes; so a restore that fails or stops half-way leaves the old store.
//! A shell whose restore failed part-way writes `RestoreAbort{id}` so the
//! staged bytes do not wait for the next restore to be dropped.
//!
//! Indexes after a restore: Consul keeps the restored store's indexes and
//! moves the Raft log past them (hashicorp/raft's `Restore` continues at
//! `max(snapshot index, last index) + 1`, leaving a hole). openraft's log
//! has no holes, so the store keeps an offset instead
//! (`Fsm::index_offset`): an entry at log index `i` writes at store index
//! `i + offset`, and the commit raises the offset until later writes land
//! above both the restored store's indexes and every index the old store
//! showed. Blocking queries therefore never see an index repeat with other
//! contents, except across the restore itself, which wakes them all.

use crate::checksum::checksum;
use crate::command::Command;
use crate::fsm::Fsm;
use crate::limits::{RESTORE_ARCHIVE_BYTES_MAX, RESTORE_CHUNK_BYTES_MAX};
use crate::snapshot_archive::{self, ArchiveError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An archive being received: the begin's promises and the bytes so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staging {
    pub id: u64,
    pub total_len: u64,
    pub checksum: u32,
    #[serde(with = "byte_buf")]
    pub bytes: Vec<u8>,
}

/// Why a restore command was refused. The store is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RestoreError {
    TooLarge {
        len: u64,
        max: u64,
    },
    /// No restore with this ID is staged: it never began, or a later begin
    /// (another restore) or a commit replaced it.
    NotStaged {
        id: u64,
    },
    ChunkTooLarge {
        len: u64,
        max: u64,
    },
    OutOfOrder {
        id: u64,
        offset: u64,
        expected: u64,
    },
    Overrun {
        id: u64,
        end: u64,
        total_len: u64,
    },
    Incomplete {
        id: u64,
        staged: u64,
        total_len: u64,
    },
    Checksum {
        id: u64,
        expected: u32,
        actual: u32,
    },
    Archive(ArchiveError),
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::TooLarge { len, max } => write!(
                f,
                "snapshot of {len} bytes exceeds the limit of {max} bytes"
            ),
            RestoreError::NotStaged { id } => write!(
                f,
                "snapshot restore {id:016x} is not in progress (another restore replaced it?)"
            ),
            RestoreError::ChunkTooLarge { len, max } => write!(
                f,
                "snapshot restore chunk of {len} bytes exceeds the limit of {max} bytes"
            ),
            RestoreError::OutOfOrder {
                id,
                offset,
                expected,
            } => write!(
                f,
                "snapshot restore {id:016x}: chunk at offset {offset}, expected {expected}"
            ),
            RestoreError::Overrun { id, end, total_len } => write!(
                f,
                "snapshot restore {id:016x}: chunk ends at {end}, past the announced {total_len} bytes"
            ),
            RestoreError::Incomplete {
                id,
                staged,
                total_len,
            } => write!(
                f,
                "snapshot restore {id:016x}: only {staged} of {total_len} bytes arrived"
            ),
            RestoreError::Checksum {
                id,
                expected,
                actual,
            } => write!(
                f,
                "snapshot restore {id:016x}: checksum mismatch (announced {expected:08x}, \
                 staged bytes have {actual:08x})"
            ),
            RestoreError::Archive(e) => write!(f, "failed to restore snapshot: {e}"),
        }
    }
}

impl Staging {
    /// A new, empty staging area for an archive of `total_len` bytes.
    pub fn begin(id: u64, total_len: u64, checksum: u32) -> Result<Staging, RestoreError> {
        let max = RESTORE_ARCHIVE_BYTES_MAX as u64;
        if total_len > max {
            return Err(RestoreError::TooLarge {
                len: total_len,
                max,
            });
        }
        Ok(Staging {
            id,
            total_len,
            checksum,
            bytes: Vec::new(),
        })
    }

    /// Appends the chunk at `offset`, which must be where the staged bytes
    /// end. Unchanged on error.
    pub fn append(&mut self, offset: u64, data: &[u8]) -> Result<(), RestoreError> {
        let id = self.id;
        let max = RESTORE_CHUNK_BYTES_MAX as u64;
        let len = data.len() as u64;
        if len > max {
            return Err(RestoreError::ChunkTooLarge { len, max });
        }
        let staged = self.bytes.len() as u64;
        if offset != staged {
            return Err(RestoreError::OutOfOrder {
                id,
                offset,
                expected: staged,
            });
        }
        let end = staged + len;
        if end > self.total_len {
            return Err(RestoreError::Overrun {
                id,
                end,
                total_len: self.total_len,
            });
        }
        if self.bytes.capacity() == 0 {
            // Once, when bytes arrive: the begin promised this many (within
            // the limit), and growing by doubling would hold up to twice.
            self.bytes.reserve_exact(self.total_len as usize);
        }
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    /// Checks that the whole archive arrived intact, then decodes and
    /// validates the store inside.
    pub fn finish(self) -> Result<Fsm, RestoreError> {
        let id = self.id;
        let staged = self.bytes.len() as u64;
        if staged != self.total_len {
            return Err(RestoreError::Incomplete {
                id,
                staged,
                total_len: self.total_len,
            });
        }
        let actual = checksum(&self.bytes);
        if actual != self.checksum {
            return Err(RestoreError::Checksum {
                id,
                expected: self.checksum,
                actual,
            });
        }
        snapshot_archive::restore(&self.bytes)
            .map(|(_, fsm)| fsm)
            .map_err(RestoreError::Archive)
    }

    /// What a staging area decoded from a snapshot must satisfy.
    pub fn validate(&self) -> Result<(), String> {
        let staged = self.bytes.len() as u64;
        if self.total_len > RESTORE_ARCHIVE_BYTES_MAX as u64 || staged > self.total_len {
            return Err(format!(
                "restore {:016x} stages {staged} of {} bytes",
                self.id, self.total_len
            ));
        }
        Ok(())
    }
}

/// The commands that restore `archive`, in the order they must be applied:
/// the begin, one chunk per `RESTORE_CHUNK_BYTES_MAX` bytes, the commit.
/// `id` tells this restore from any other; a shell draws it at random.
/// Chunks are built as they are taken, so a large archive is not held twice.
pub fn commands(id: u64, archive: &[u8]) -> impl Iterator<Item = Command> + '_ {
    let begin = Command::RestoreBegin {
        id,
        total_len: archive.len() as u64,
        checksum: checksum(archive),
    };
    let chunks = archive
        .chunks(RESTORE_CHUNK_BYTES_MAX)
        .enumerate()
        .map(move |(i, data)| Command::RestoreChunk {
            id,
            offset: (i * RESTORE_CHUNK_BYTES_MAX) as u64,
            data: data.to_vec(),
        });
    std::iter::once(begin)
        .chain(chunks)
        .chain(std::iter::once(Command::RestoreCommit { id }))
}

/// Bytes (archive chunks, KV values) as one byte string rather than a
/// sequence of `u8`s. postcard encodes both alike (a length, then the
/// bytes), so this changes no encoding; it copies the bytes at once instead
/// of one element at a time, which matters for an archive of hundreds of
/// MiB or a snapshot of a large store.
pub(crate) mod byte_buf {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(ByteBuf)
    }

    /// [`deserialize`] into a boxed slice (a stored KV value).
    pub fn deserialize_boxed<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Box<[u8]>, D::Error> {
        deserialize(deserializer).map(Vec::into_boxed_slice)
    }

    struct ByteBuf;

    impl<'de> Visitor<'de> for ByteBuf {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        /// Self-describing formats (JSON) write bytes as a list of numbers.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(byte) = seq.next_element()? {
                out.push(byte);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
