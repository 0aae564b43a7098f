//! The WAL record format, and the recovery scan over one segment's bytes.
//!
//! A record is a 28-byte header followed by the payload (opaque bytes, one
//! Raft entry). All integers are little-endian:
//!
//! ```text
//! offset size field
//!  0     4    magic "TRWL"
//!  4     1    version (1)
//!  5     3    reserved, zero
//!  8     4    payload length (<= WAL_RECORD_PAYLOAD_BYTES_MAX)
//! 12     4    batch offset: index - first index of the record's write batch
//! 16     8    log index (>= 1)
//! 24     4    CRC-32C over bytes 0..24 and the payload
//! 28     n    payload
//! ```
//!
//! The batch offset is what lets recovery tell a torn tail from damage to
//! acknowledged data. The writer writes one batch with one `write`, syncs it,
//! and only then writes the next batch; so a valid record of a *later* batch
//! behind a damaged record proves the damaged one was synced (and possibly
//! acknowledged): that is corruption, and recovery refuses. Damage followed
//! only by records of the same batch (or by nothing) is the unsynced tail of
//! an interrupted write: it is truncated. The one case this cannot decide is
//! damage inside the last batch after it was synced; like etcd's WAL, it is
//! then treated as a torn tail.
//!
//! Segment files are preallocated (the shell reserves the segment's full
//! size when it creates it, so that an fdatasync does not also have to
//! commit the file's growth), so a segment normally ends in zeros. Zeros
//! cannot start a record (the magic is not zero), and space that was never
//! written reads as zeros: a tail of nothing but zero bytes is
//! [`SegmentEnd::Padded`], a clean end, in any segment.

use crate::checksum;
use crate::limits::{WAL_BATCH_RECORDS_MAX, WAL_RECORD_PAYLOAD_BYTES_MAX};

/// First bytes of every record.
pub const RECORD_MAGIC: [u8; 4] = *b"TRWL";
/// The only record version this build writes and reads.
pub const RECORD_VERSION: u8 = 1;
/// Bytes before the payload.
pub const RECORD_HEADER_BYTES: usize = 28;
const CHECKSUM_OFFSET: usize = 24;

/// One decoded record, borrowing its payload from the segment bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub index: u64,
    /// Index of the first record of the write batch this record was part of.
    pub batch_first_index: u64,
    pub payload: &'a [u8],
}

impl Record<'_> {
    /// Bytes the record occupies on disk.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.payload.len()
    }
}

/// Why the bytes at some offset are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer bytes than the header (or its length field) asks for.
    Truncated {
        available: usize,
        needed: usize,
    },
    BadMagic,
    UnsupportedVersion(u8),
    ReservedBytesSet,
    PayloadTooLarge {
        len: u32,
    },
    /// Index 0, or a batch offset past the index or past the batch bound.
    BadIndex {
        index: u64,
        batch_offset: u32,
    },
    ChecksumMismatch {
        stored: u32,
        computed: u32,
    },
}

/// Bytes a record with a payload of `payload_len` bytes occupies.
pub const fn encoded_len(payload_len: usize) -> usize {
    RECORD_HEADER_BYTES + payload_len
}

/// Appends the encoding of one record to `out`.
///
/// The shell validates sizes and indexes before it gets here; a violation is
/// a bug in the caller, hence the assertions.
pub fn encode_record(out: &mut Vec<u8>, index: u64, batch_first_index: u64, payload: &[u8]) {
    assert!(
        payload.len() <= WAL_RECORD_PAYLOAD_BYTES_MAX,
        "payload too large"
    );
    assert!(index >= 1 && batch_first_index >= 1 && batch_first_index <= index);
    let batch_offset = index - batch_first_index;
    assert!(
        batch_offset < u64::from(WAL_BATCH_RECORDS_MAX),
        "batch too long"
    );
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&[RECORD_VERSION, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&(batch_offset as u32).to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    let crc = checksum::update(checksum::checksum(&out[start..]), payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

/// Decodes the record at the start of `bytes` (trailing bytes are ignored).
pub fn decode_record(bytes: &[u8]) -> Result<Record<'_>, RecordError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        // Report a shorter prefix of garbage as garbage, not as a short read,
        // so zero-filled tails say what they are.
        if !RECORD_MAGIC.starts_with(&bytes[..bytes.len().min(4)]) {
            return Err(RecordError::BadMagic);
        }
        return Err(RecordError::Truncated {
            available: bytes.len(),
            needed: RECORD_HEADER_BYTES,
        });
    }
    if bytes[..4] != RECORD_MAGIC {
        return Err(RecordError::BadMagic);
    }
    if bytes[4] != RECORD_VERSION {
        return Err(RecordError::UnsupportedVersion(bytes[4]));
    }
    if bytes[5..8] != [0, 0, 0] {
        return Err(RecordError::ReservedBytesSet);
    }
    let len = u32_at(bytes, 8);
    if len as usize > WAL_RECORD_PAYLOAD_BYTES_MAX {
        return Err(RecordError::PayloadTooLarge { len });
    }
    let batch_offset = u32_at(bytes, 12);
    let index = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    if index == 0 || u64::from(batch_offset) >= index || batch_offset >= WAL_BATCH_RECORDS_MAX {
        return Err(RecordError::BadIndex {
            index,
            batch_offset,
        });
    }
    let needed = encoded_len(len as usize);
    if bytes.len() < needed {
        return Err(RecordError::Truncated {
            available: bytes.len(),
            needed,
        });
    }
    let payload = &bytes[RECORD_HEADER_BYTES..needed];
    let stored = u32_at(bytes, CHECKSUM_OFFSET);
    let computed = checksum::update(checksum::checksum(&bytes[..CHECKSUM_OFFSET]), payload);
    if stored != computed {
        return Err(RecordError::ChecksumMismatch { stored, computed });
    }
    Ok(Record {
        index,
        batch_first_index: index - u64::from(batch_offset),
        payload,
    })
}

/// Where one valid record sits in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSlot {
    pub index: u64,
    pub offset: u64,
    /// Encoded bytes, header included.
    pub len: u32,
}

/// Damage that recovery must refuse to repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The record at the offset does not decode, yet a valid record of a
    /// later write batch follows it: the damaged record had been synced.
    DamagedRecord {
        cause: RecordError,
        later_record_offset: u64,
        later_index: u64,
    },
    /// A valid record whose index is not the one after its predecessor (or,
    /// for the first record, not the index the segment's name promises).
    IndexOutOfSequence { expected: u64, found: u64 },
    /// A valid record whose batch is neither its predecessor's batch nor one
    /// starting at itself.
    BatchOutOfSequence { index: u64, batch_first_index: u64 },
}

/// How the scan of a segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEnd {
    /// Every byte belongs to a valid record.
    Clean,
    /// Every byte from `offset` on is zero: preallocated space not written
    /// yet. A clean end; nothing to cut.
    Padded { offset: u64 },
    /// The bytes from `offset` on are an interrupted write: truncate there.
    TornTail { offset: u64, cause: RecordError },
    /// Damage at `offset` that truncation would turn into silent data loss.
    Corrupt { offset: u64, cause: Corruption },
}

/// The result of scanning one segment: its valid records, in order, and how
/// the bytes after them look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    pub records: Vec<RecordSlot>,
    pub end: SegmentEnd,
}

impl SegmentScan {
    /// Bytes covered by the valid records (where a torn tail is cut).
    pub fn valid_len(&self) -> u64 {
        self.records
            .last()
            .map_or(0, |slot| slot.offset + u64::from(slot.len))
    }
}

/// Scans a segment whose name says its first record is `first_index`.
pub fn scan_segment(bytes: &[u8], first_index: u64) -> SegmentScan {
    let mut records = Vec::new();
    let mut offset = 0usize;
    let mut batch_first_index = None;
    let mut expected = first_index;
    let end = loop {
        if offset == bytes.len() {
            break SegmentEnd::Clean;
        }
        let record = match decode_record(&bytes[offset..]) {
            Ok(record) => record,
            Err(_) if bytes[offset..].iter().all(|&b| b == 0) => {
                break SegmentEnd::Padded {
                    offset: offset as u64,
                }
            }
            Err(cause) => break classify_damage(bytes, offset, expected, cause),
        };
        let corrupt = |cause| SegmentEnd::Corrupt {
            offset: offset as u64,
            cause,
        };
        if record.index != expected {
            break corrupt(Corruption::IndexOutOfSequence {
                expected,
                found: record.index,
            });
        }
        let same_batch = batch_first_index == Some(record.batch_first_index);
        if !same_batch && record.batch_first_index != record.index {
            break corrupt(Corruption::BatchOutOfSequence {
                index: record.index,
                batch_first_index: record.batch_first_index,
            });
        }
        batch_first_index = Some(record.batch_first_index);
        records.push(RecordSlot {
            index: record.index,
            offset: offset as u64,
            len: record.encoded_len() as u32,
        });
        offset += record.encoded_len();
        expected += 1;
    };
    SegmentScan { records, end }
}

/// A record failed to decode at `offset`: torn tail, unless a valid record
/// of a later batch (`batch_first_index > expected`) follows.
fn classify_damage(bytes: &[u8], offset: usize, expected: u64, cause: RecordError) -> SegmentEnd {
    let later = (offset + 1..bytes.len().saturating_sub(RECORD_HEADER_BYTES - 1))
        .filter(|&at| bytes[at..at + 4] == RECORD_MAGIC)
        .find_map(|at| match decode_record(&bytes[at..]) {
            Ok(record) if record.batch_first_index > expected => Some((at, record.index)),
            _ => None,
        });
    match later {
        Some((at, later_index)) => SegmentEnd::Corrupt {
            offset: offset as u64,
            cause: Corruption::DamagedRecord {
                cause,
                later_record_offset: at as u64,
                later_index,
            },
        },
        None => SegmentEnd::TornTail {
            offset: offset as u64,
            cause,
        },
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
