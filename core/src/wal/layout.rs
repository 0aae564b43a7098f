//! Which records live in which segment file, at which offset: the WAL's
//! bookkeeping, kept pure so the shell only performs the file operations
//! the plans here name.
//!
//! A segment file is named after the index of its first record
//! (`00000000000000000042.wal`), so sorting names sorts the log. Only the
//! last segment is written to; a new one is started (a "roll") when the last
//! reaches the size target, always between two write batches. Invariants
//! (`check_invariants`): segments are contiguous (each starts right after
//! its predecessor's last record), only the last may be empty, offsets
//! increase, and a segment's length is the end of its last record.

use super::record::{RecordError, RecordSlot, SegmentEnd, SegmentScan};
use super::Corruption;
use std::collections::VecDeque;

/// Suffix of segment file names.
pub const SEGMENT_FILE_SUFFIX: &str = ".wal";

/// File name of the segment whose first record is `first_index`.
pub fn segment_file_name(first_index: u64) -> String {
    format!("{first_index:020}{SEGMENT_FILE_SUFFIX}")
}

/// The first index a segment file name promises, or `None` for any other file.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_FILE_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&index| index >= 1)
}

/// One segment: its first index and where each record starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub first_index: u64,
    offsets: Vec<u64>,
    /// Bytes of valid records: where the next record goes. The file can
    /// be longer, zeros preallocated by the shell.
    pub len_bytes: u64,
}

impl Segment {
    fn new(first_index: u64) -> Self {
        Segment {
            first_index,
            offsets: Vec::new(),
            len_bytes: 0,
        }
    }

    pub fn last_index(&self) -> Option<u64> {
        (!self.offsets.is_empty()).then(|| self.first_index + self.offsets.len() as u64 - 1)
    }

    /// Index the next record of this segment would get.
    fn end_index(&self) -> u64 {
        self.first_index + self.offsets.len() as u64
    }

    fn slot(&self, index: u64) -> Option<RecordSlot> {
        let position = usize::try_from(index.checked_sub(self.first_index)?).ok()?;
        let offset = *self.offsets.get(position)?;
        let end = self
            .offsets
            .get(position + 1)
            .copied()
            .unwrap_or(self.len_bytes);
        Some(RecordSlot {
            index,
            offset,
            len: (end - offset) as u32,
        })
    }
}

/// Why a directory of segments cannot be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryError {
    /// A segment's scan found corruption at `offset`.
    Corrupt {
        segment: u64,
        offset: u64,
        cause: Corruption,
    },
    /// An interrupted write in a segment that is not the last: a later
    /// segment exists only after this one's last batch was synced.
    TornBeforeLastSegment {
        segment: u64,
        offset: u64,
        cause: RecordError,
    },
    /// A segment does not start right after its predecessor's last record.
    Gap { segment: u64, expected: u64 },
}

impl RecoveryError {
    /// The segment (by first index) and byte offset the error is about.
    pub fn location(&self) -> (u64, u64) {
        match *self {
            RecoveryError::Corrupt {
                segment, offset, ..
            }
            | RecoveryError::TornBeforeLastSegment {
                segment, offset, ..
            } => (segment, offset),
            RecoveryError::Gap { segment, .. } => (segment, 0),
        }
    }
}

/// An append the shell may not perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendError {
    /// The batch does not start right after the last record.
    OutOfSequence {
        expected: u64,
        found: u64,
    },
    IndexZero,
}

/// Where the shell writes a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendPlan {
    /// Segment to write into; `create` says the file does not exist yet.
    pub segment: u64,
    pub create: bool,
    /// An empty last segment to delete first (the log is empty and the batch
    /// starts at another index than its name).
    pub delete_empty: Option<u64>,
    /// Byte offset of the batch in the segment.
    pub offset: u64,
    pub first_index: u64,
}

/// File operations for `truncate_after`, in the order to perform them:
/// delete whole segments (newest first), then cut one segment's tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatePlan {
    pub after: u64,
    pub delete: Vec<u64>,
    pub cut: Option<(u64, u64)>,
}

/// Recovery's result: the layout, and the torn tail to cut (segment, length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub layout: Layout,
    pub truncate: Option<(u64, u64)>,
}

/// The in-memory index of the log: segments in order, records per segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    segments: VecDeque<Segment>,
    segment_bytes_target: u64,
}

impl Layout {
    pub fn new(segment_bytes_target: u64) -> Self {
        assert!(segment_bytes_target > 0);
        Layout {
            segments: VecDeque::new(),
            segment_bytes_target,
        }
    }

    /// Rebuilds the layout from the scans of every segment file (any order).
    pub fn recover(
        segment_bytes_target: u64,
        mut scans: Vec<(u64, SegmentScan)>,
    ) -> Result<Recovered, RecoveryError> {
        scans.sort_by_key(|(first_index, _)| *first_index);
        let mut layout = Layout::new(segment_bytes_target);
        let mut truncate = None;
        let count = scans.len();
        for (position, (first_index, scan)) in scans.into_iter().enumerate() {
            let last = position + 1 == count;
            match scan.end {
                SegmentEnd::Clean | SegmentEnd::Padded { .. } => {}
                SegmentEnd::Corrupt { offset, cause } => {
                    return Err(RecoveryError::Corrupt {
                        segment: first_index,
                        offset,
                        cause,
                    })
                }
                SegmentEnd::TornTail { offset, cause } if !last => {
                    return Err(RecoveryError::TornBeforeLastSegment {
                        segment: first_index,
                        offset,
                        cause,
                    })
                }
                SegmentEnd::TornTail { offset, .. } => truncate = Some((first_index, offset)),
            }
            if let Some(previous) = layout.segments.back() {
                if previous.end_index() != first_index || previous.offsets.is_empty() {
                    return Err(RecoveryError::Gap {
                        segment: first_index,
                        expected: previous.end_index(),
                    });
                }
            }
            let mut segment = Segment::new(first_index);
            segment.len_bytes = scan.valid_len();
            segment.offsets = scan.records.iter().map(|slot| slot.offset).collect();
            layout.segments.push_back(segment);
        }
        layout.check_invariants();
        Ok(Recovered { layout, truncate })
    }

    /// The size at which a segment is full (the next batch starts a new
    /// one); the shell preallocates new segment files to it.
    pub fn segment_bytes_target(&self) -> u64 {
        self.segment_bytes_target
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    /// First index with a record, if any.
    pub fn first_index(&self) -> Option<u64> {
        self.segments
            .iter()
            .find(|segment| !segment.offsets.is_empty())
            .map(|segment| segment.first_index)
    }

    pub fn last_index(&self) -> Option<u64> {
        self.segments.iter().rev().find_map(Segment::last_index)
    }

    /// Where record `index` is: (segment, slot).
    pub fn locate(&self, index: u64) -> Option<(u64, RecordSlot)> {
        let position = self
            .segments
            .partition_point(|segment| segment.first_index <= index)
            .checked_sub(1)?;
        let segment = &self.segments[position];
        segment.slot(index).map(|slot| (segment.first_index, slot))
    }

    /// Where a batch starting at `first_index` goes. Rolls to a new segment
    /// when the last one has reached the size target.
    pub fn plan_append(&self, first_index: u64) -> Result<AppendPlan, AppendError> {
        if first_index == 0 {
            return Err(AppendError::IndexZero);
        }
        if let Some(last) = self.last_index() {
            if first_index != last + 1 {
                return Err(AppendError::OutOfSequence {
                    expected: last + 1,
                    found: first_index,
                });
            }
        }
        let new_segment = AppendPlan {
            segment: first_index,
            create: true,
            delete_empty: None,
            offset: 0,
            first_index,
        };
        let Some(tail) = self.segments.back() else {
            return Ok(new_segment);
        };
        if tail.offsets.is_empty() && tail.first_index != first_index {
            return Ok(AppendPlan {
                delete_empty: Some(tail.first_index),
                ..new_segment
            });
        }
        if tail.len_bytes >= self.segment_bytes_target && !tail.offsets.is_empty() {
            return Ok(new_segment);
        }
        Ok(AppendPlan {
            segment: tail.first_index,
            create: false,
            offset: tail.len_bytes,
            ..new_segment
        })
    }

    /// Records a batch the shell wrote (and synced) as `plan` said; `lens`
    /// are the encoded lengths of its records.
    pub fn commit_append(&mut self, plan: &AppendPlan, lens: &[u32]) {
        assert_eq!(Ok(*plan), self.plan_append(plan.first_index));
        if let Some(empty) = plan.delete_empty {
            assert_eq!(self.segments.pop_back().map(|s| s.first_index), Some(empty));
        }
        if plan.create {
            self.segments.push_back(Segment::new(plan.segment));
        }
        let tail = self.segments.back_mut().expect("a segment to append to");
        for &len in lens {
            tail.offsets.push(tail.len_bytes);
            tail.len_bytes += u64::from(len);
        }
        debug_assert!(self.check_invariants_quietly());
    }

    /// Plans dropping every record after `after` (a conflicting suffix).
    pub fn plan_truncate(&self, after: u64) -> TruncatePlan {
        let delete = self
            .segments
            .iter()
            .rev()
            .take_while(|segment| segment.first_index > after)
            .map(|segment| segment.first_index)
            .collect();
        let cut = self
            .segments
            .iter()
            .rev()
            .find(|segment| segment.first_index <= after)
            .filter(|segment| segment.end_index() > after + 1)
            .map(|segment| {
                let keep = (after + 1 - segment.first_index) as usize;
                (segment.first_index, segment.offsets[keep])
            });
        TruncatePlan { after, delete, cut }
    }

    pub fn commit_truncate(&mut self, plan: &TruncatePlan) {
        assert_eq!(*plan, self.plan_truncate(plan.after));
        for _ in &plan.delete {
            self.segments.pop_back();
        }
        if let Some((segment, len_bytes)) = plan.cut {
            let tail = self.segments.back_mut().expect("segment to cut");
            assert_eq!(tail.first_index, segment);
            let keep = (plan.after + 1 - segment) as usize;
            tail.offsets.truncate(keep);
            tail.len_bytes = len_bytes;
        }
        debug_assert!(self.check_invariants_quietly());
    }

    /// Segments (oldest first) that hold no record above `upto`: deleting
    /// them after a snapshot at `upto` loses nothing still needed. The
    /// segment holding `upto + 1` and everything after it stays.
    pub fn plan_purge(&self, upto: u64) -> Vec<u64> {
        let mut delete = Vec::new();
        for (position, segment) in self.segments.iter().enumerate() {
            let end_index = match self.segments.get(position + 1) {
                Some(next) => next.first_index,
                None => segment.end_index(),
            };
            if end_index > upto + 1 {
                break;
            }
            delete.push(segment.first_index);
        }
        delete
    }

    pub fn commit_purge(&mut self, delete: &[u64]) {
        for &segment in delete {
            assert_eq!(
                self.segments.pop_front().map(|s| s.first_index),
                Some(segment)
            );
        }
        debug_assert!(self.check_invariants_quietly());
    }

    /// Bytes of valid records across all segments.
    pub fn len_bytes(&self) -> u64 {
        self.segments.iter().map(|segment| segment.len_bytes).sum()
    }

    fn check_invariants_quietly(&self) -> bool {
        self.check_invariants();
        true
    }

    /// Panics if the layout's invariants (module docs) do not hold.
    pub fn check_invariants(&self) {
        for (position, segment) in self.segments.iter().enumerate() {
            assert!(segment.first_index >= 1);
            assert!(segment.offsets.windows(2).all(|w| w[0] < w[1]));
            assert!(segment.offsets.first().is_none_or(|&first| first == 0));
            assert!(segment
                .offsets
                .last()
                .is_none_or(|&o| o < segment.len_bytes));
            assert!(!segment.offsets.is_empty() || segment.len_bytes == 0);
            if let Some(next) = self.segments.get(position + 1) {
                assert!(
                    !segment.offsets.is_empty(),
                    "only the last segment may be empty"
                );
                assert_eq!(segment.end_index(), next.first_index, "segments contiguous");
            }
        }
    }
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
