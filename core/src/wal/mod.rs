//! The write-ahead log's pure half: record format, recovery rules, segment
//! bookkeeping and the vote file format. The shell
//! (`tribune::storage::wal`) reads and writes the files; everything it
//! decides about their bytes is decided here, so recovery is unit-tested,
//! property-tested and fuzzed without a disk.
//!
//! ```text
//! append(entries) --Layout::plan_append--> (segment, offset, roll?)
//!                 --encode_record--------> bytes --shell: write + fdatasync--> Layout::commit_append
//! open(dir)       --shell: read files----> scan_segment per file --Layout::recover--> layout
//!                                          | torn tail in the last file: cut it
//!                                          | damage before synced data, gaps: refuse (file, offset)
//! ```
//!
//! See `book/src/storage.md` for the format and the rules in prose.

pub mod layout;
pub mod record;
pub mod vote;

pub use layout::{
    parse_segment_file_name, segment_file_name, AppendError, AppendPlan, Layout, Recovered,
    RecoveryError, TruncatePlan,
};
pub use record::{
    decode_record, encode_record, encoded_len, scan_segment, Corruption, Record, RecordError,
    RecordSlot, SegmentEnd, SegmentScan, RECORD_HEADER_BYTES,
};
pub use vote::{decode_vote, encode_vote, Vote, VoteError, VOTE_FILE_BYTES};
