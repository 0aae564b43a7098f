//! The durable vote: the one piece of Raft state besides the log that must
//! survive a crash (Raft §5.2: a server that forgot its vote could vote twice
//! in one term). It lives in its own small file, replaced atomically by the
//! shell (temp file, fsync, rename, fsync of the directory), so it is never
//! half-written; the checksum still guards against a damaged disk.
//!
//! ```text
//! offset size field
//!  0     4    magic "TRVT"
//!  4     1    version (1)
//!  5     1    flags: bit 0 voted_for present, bit 1 committed; other bits zero
//!  6     2    reserved, zero
//!  8     8    term
//! 16     8    voted_for (node id; zero when absent)
//! 24     4    CRC-32C over bytes 0..24
//! ```

use crate::checksum;

const VOTE_MAGIC: [u8; 4] = *b"TRVT";
const VOTE_VERSION: u8 = 1;
/// Exact size of a vote file.
pub const VOTE_FILE_BYTES: usize = 28;
const FLAG_VOTED_FOR: u8 = 1;
const FLAG_COMMITTED: u8 = 2;

/// A vote as openraft keeps it: the term, the candidate voted for (if any)
/// and whether a quorum granted it (`committed`: the holder is leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vote {
    pub term: u64,
    pub voted_for: Option<u64>,
    pub committed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VoteError {
    WrongLength(usize),
    BadMagic,
    UnsupportedVersion(u8),
    ReservedBitsSet,
    ChecksumMismatch { stored: u32, computed: u32 },
}

pub fn encode_vote(vote: &Vote) -> [u8; VOTE_FILE_BYTES] {
    let mut bytes = [0u8; VOTE_FILE_BYTES];
    bytes[..4].copy_from_slice(&VOTE_MAGIC);
    bytes[4] = VOTE_VERSION;
    let mut flags = 0;
    if vote.voted_for.is_some() {
        flags |= FLAG_VOTED_FOR;
    }
    if vote.committed {
        flags |= FLAG_COMMITTED;
    }
    bytes[5] = flags;
    bytes[8..16].copy_from_slice(&vote.term.to_le_bytes());
    bytes[16..24].copy_from_slice(&vote.voted_for.unwrap_or(0).to_le_bytes());
    let crc = checksum::checksum(&bytes[..24]);
    bytes[24..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

pub fn decode_vote(bytes: &[u8]) -> Result<Vote, VoteError> {
    if bytes.len() != VOTE_FILE_BYTES {
        return Err(VoteError::WrongLength(bytes.len()));
    }
    if bytes[..4] != VOTE_MAGIC {
        return Err(VoteError::BadMagic);
    }
    if bytes[4] != VOTE_VERSION {
        return Err(VoteError::UnsupportedVersion(bytes[4]));
    }
    let stored = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
    let computed = checksum::checksum(&bytes[..24]);
    if stored != computed {
        return Err(VoteError::ChecksumMismatch { stored, computed });
    }
    let flags = bytes[5];
    let voted_for = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let unknown_flags = flags & !(FLAG_VOTED_FOR | FLAG_COMMITTED) != 0;
    let absent_but_set = flags & FLAG_VOTED_FOR == 0 && voted_for != 0;
    if unknown_flags || bytes[6..8] != [0, 0] || absent_but_set {
        return Err(VoteError::ReservedBitsSet);
    }
    Ok(Vote {
        term: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
        voted_for: (flags & FLAG_VOTED_FOR != 0).then_some(voted_for),
        committed: flags & FLAG_COMMITTED != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(term: u64, voted_for: Option<u64>, committed: bool) {
            let vote = Vote { term, voted_for, committed };
            prop_assert_eq!(decode_vote(&encode_vote(&vote)), Ok(vote));
        }

        #[test]
        fn any_flipped_bit_is_refused(term: u64, voted_for: Option<u64>, at in 0..VOTE_FILE_BYTES, bit in 0u8..8) {
            let mut bytes = encode_vote(&Vote { term, voted_for, committed: true });
            bytes[at] ^= 1 << bit;
            prop_assert!(decode_vote(&bytes).is_err());
        }
    }

    #[test]
    fn wrong_lengths_are_refused() {
        let bytes = encode_vote(&Vote::default());
        assert_eq!(decode_vote(&bytes[..27]), Err(VoteError::WrongLength(27)));
        assert_eq!(decode_vote(&[]), Err(VoteError::WrongLength(0)));
    }
}
