//! The file `tribune snapshot save` writes and `/v1/snapshot` serves: the
//! store's snapshot ([`crate::fsm::Fsm::snapshot`]) with who took it and
//! when, checksummed as a whole.
//!
//! Layout: `TRIBSNAP`, a version byte, a little-endian u32 metadata length,
//! the metadata (postcard), the state bytes, and a CRC-32C over everything
//! before it. Not Consul's format (a gzipped tar of Raft's files): the state
//! inside is tribune's, so a Consul snapshot could not be restored anyway.
//! Restoring decodes and validates the whole store before anything changes.

use crate::checksum::checksum;
use crate::fsm::{Fsm, SnapshotError};
use serde::{Deserialize, Serialize};
use std::fmt;

const MAGIC: &[u8; 8] = b"TRIBSNAP";
pub const ARCHIVE_VERSION: u8 = 1;
/// Metadata is a few names and numbers.
const META_BYTES_MAX: u32 = 64 * 1024;

/// Who took the snapshot, of what, when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveMeta {
    /// The last applied Raft index in the snapshot.
    pub index: u64,
    pub term: u64,
    /// Unix milliseconds when it was taken (for the ID only).
    pub created_unix_ms: u64,
    pub datacenter: String,
    pub node: String,
    /// The tribune version that wrote it.
    pub tool_version: String,
}

impl ArchiveMeta {
    /// Consul's snapshot ID shape: `<term>-<index>-<unix ms>`.
    pub fn id(&self) -> String {
        format!("{}-{}-{}", self.term, self.index, self.created_unix_ms)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ArchiveError {
    NotASnapshot,
    UnknownVersion(u8),
    Truncated,
    Checksum,
    BadMeta,
    State(SnapshotError),
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveError::NotASnapshot => f.write_str("not a tribune snapshot (bad magic)"),
            ArchiveError::UnknownVersion(v) => write!(f, "unknown snapshot archive version {v}"),
            ArchiveError::Truncated => f.write_str("snapshot archive is truncated"),
            ArchiveError::Checksum => f.write_str("snapshot archive checksum mismatch"),
            ArchiveError::BadMeta => f.write_str("snapshot metadata does not decode"),
            ArchiveError::State(e) => write!(f, "snapshot state is invalid: {e}"),
        }
    }
}

/// Builds an archive from metadata and `Fsm::snapshot` bytes.
pub fn encode(meta: &ArchiveMeta, state: &[u8]) -> Vec<u8> {
    let meta = postcard::to_allocvec(meta).unwrap_or_default();
    let mut out = Vec::with_capacity(MAGIC.len() + 5 + meta.len() + state.len() + 4);
    out.extend_from_slice(MAGIC);
    out.push(ARCHIVE_VERSION);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(state);
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Splits an archive into its metadata and state bytes, checking the
/// frame and checksum (not the state: see [`restore`]).
pub fn decode(bytes: &[u8]) -> Result<(ArchiveMeta, &[u8]), ArchiveError> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(ArchiveError::NotASnapshot)?;
    let (&version, rest) = rest.split_first().ok_or(ArchiveError::Truncated)?;
    if version != ARCHIVE_VERSION {
        return Err(ArchiveError::UnknownVersion(version));
    }
    let (covered, sum) = bytes
        .split_last_chunk::<4>()
        .ok_or(ArchiveError::Truncated)?;
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(ArchiveError::Truncated)?;
    let len = u32::from_le_bytes(*len);
    // The body between the length and the checksum.
    let body_len = rest.len().checked_sub(4).ok_or(ArchiveError::Truncated)?;
    if len > META_BYTES_MAX || len as usize > body_len {
        return Err(ArchiveError::Truncated);
    }
    if checksum(covered) != u32::from_le_bytes(*sum) {
        return Err(ArchiveError::Checksum);
    }
    let (meta, state) = rest[..body_len].split_at(len as usize);
    let meta: ArchiveMeta = postcard::from_bytes(meta).map_err(|_| ArchiveError::BadMeta)?;
    Ok((meta, state))
}

/// Decodes an archive and rebuilds (and validates) the store in it.
pub fn restore(bytes: &[u8]) -> Result<(ArchiveMeta, Fsm), ArchiveError> {
    let (meta, state) = decode(bytes)?;
    let fsm = Fsm::restore(state).map_err(ArchiveError::State)?;
    Ok((meta, fsm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::fixture;

    fn meta() -> ArchiveMeta {
        ArchiveMeta {
            index: 42,
            term: 1,
            created_unix_ms: 1_700_000_000_000,
            datacenter: "dc1".into(),
            node: "n1".into(),
            tool_version: "0.1.0".into(),
        }
    }

    #[test]
    fn round_trip_and_id() -> Result<(), ArchiveError> {
        let (fsm, _) = fixture();
        let bytes = encode(&meta(), &fsm.snapshot());
        let (back, restored) = restore(&bytes)?;
        assert_eq!(back, meta());
        assert_eq!(back.id(), "1-42-1700000000000");
        assert_eq!(restored.snapshot(), fsm.snapshot());
        Ok(())
    }

    #[test]
    fn every_flip_and_cut_is_refused() {
        let (fsm, _) = fixture();
        let bytes = encode(&meta(), &fsm.snapshot());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(restore(&bad).is_err(), "flip at {i} accepted");
            assert!(restore(&bytes[..i]).is_err(), "cut at {i} accepted");
        }
        assert_eq!(
            decode(b"hello").map(|_| ()),
            Err(ArchiveError::NotASnapshot)
        );
    }
}
