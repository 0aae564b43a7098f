use super::*;
use proptest::prelude::*;

struct Built {
    bytes: Vec<u8>,
    slots: Vec<RecordSlot>,
    batch_of: Vec<u64>,
}

/// A segment starting at `first_index`, written as the given batches.
fn build(first_index: u64, batches: &[Vec<Vec<u8>>]) -> Built {
    let mut built = Built {
        bytes: Vec::new(),
        slots: Vec::new(),
        batch_of: Vec::new(),
    };
    let mut index = first_index;
    for batch in batches {
        let batch_first = index;
        for payload in batch {
            let offset = built.bytes.len() as u64;
            encode_record(&mut built.bytes, index, batch_first, payload);
            built.slots.push(RecordSlot {
                index,
                offset,
                len: encoded_len(payload.len()) as u32,
            });
            built.batch_of.push(batch_first);
            index += 1;
        }
    }
    built
}

fn batches() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    let payload = proptest::collection::vec(any::<u8>(), 0..40);
    proptest::collection::vec(proptest::collection::vec(payload, 1..4), 1..5)
}

#[test]
fn round_trip_and_clean_scan() {
    let built = build(7, &[vec![b"a".to_vec(), b"".to_vec()], vec![vec![9; 300]]]);
    let scan = scan_segment(&built.bytes, 7);
    assert_eq!(scan.end, SegmentEnd::Clean);
    assert_eq!(scan.records, built.slots);
    assert_eq!(scan.valid_len(), built.bytes.len() as u64);
    let third = decode_record(&built.bytes[built.slots[2].offset as usize..]).unwrap();
    assert_eq!(third.index, 9);
    assert_eq!(third.batch_first_index, 9);
    assert_eq!(third.payload, &[9; 300][..]);
    let second = decode_record(&built.bytes[built.slots[1].offset as usize..]).unwrap();
    assert_eq!((second.index, second.batch_first_index), (8, 7));
}

#[test]
fn zero_filled_tail_is_preallocated_padding() {
    let mut built = build(1, &[vec![b"x".to_vec()]]);
    built.bytes.extend_from_slice(&[0; 4096]);
    let scan = scan_segment(&built.bytes, 1);
    assert_eq!(scan.records, built.slots);
    assert_eq!(
        scan.end,
        SegmentEnd::Padded {
            offset: built.slots[0].len as u64
        }
    );
    // A preallocated segment nothing was written to yet.
    let scan = scan_segment(&[0; 100], 1);
    assert!(scan.records.is_empty());
    assert_eq!(scan.end, SegmentEnd::Padded { offset: 0 });
}

#[test]
fn an_interrupted_write_into_preallocated_space_is_a_torn_tail() {
    let built = build(
        1,
        &[vec![b"x".to_vec()], vec![b"y".to_vec(), b"z".to_vec()]],
    );
    let second_batch = built.slots[1].offset as usize;
    // The second batch's write reached the disk only partly: a prefix of
    // it, then the preallocated zeros.
    let mut bytes = built.bytes[..second_batch + 10].to_vec();
    bytes.resize(built.bytes.len() + 4096, 0);
    let scan = scan_segment(&bytes, 1);
    assert_eq!(scan.records, built.slots[..1]);
    assert!(
        matches!(scan.end, SegmentEnd::TornTail { offset, .. } if offset == second_batch as u64),
        "{:?}",
        scan.end
    );
    // A non-zero byte anywhere in the tail means it is not padding.
    let mut bytes = built.bytes.clone();
    bytes.resize(built.bytes.len() + 4096, 0);
    bytes[built.bytes.len() + 4000] = 1;
    let scan = scan_segment(&bytes, 1);
    assert_eq!(scan.records, built.slots);
    assert!(
        matches!(scan.end, SegmentEnd::TornTail { .. }),
        "{:?}",
        scan.end
    );
}

#[test]
fn damage_before_a_later_batch_is_corruption() {
    let built = build(1, &[vec![b"one".to_vec()], vec![b"two".to_vec()]]);
    let mut bytes = built.bytes.clone();
    bytes[RECORD_HEADER_BYTES] ^= 1; // first payload byte
    let scan = scan_segment(&bytes, 1);
    assert!(scan.records.is_empty());
    assert!(matches!(
        scan.end,
        SegmentEnd::Corrupt {
            offset: 0,
            cause: Corruption::DamagedRecord {
                cause: RecordError::ChecksumMismatch { .. },
                later_index: 2,
                ..
            }
        }
    ));
}

#[test]
fn damage_inside_the_last_batch_is_torn() {
    let built = build(1, &[vec![b"one".to_vec(), b"two".to_vec()]]);
    let mut bytes = built.bytes.clone();
    bytes[RECORD_HEADER_BYTES] ^= 1;
    let scan = scan_segment(&bytes, 1);
    assert!(scan.records.is_empty());
    assert!(matches!(scan.end, SegmentEnd::TornTail { offset: 0, .. }));
}

#[test]
fn out_of_sequence_index_is_corruption() {
    let mut bytes = Vec::new();
    encode_record(&mut bytes, 5, 5, b"a");
    encode_record(&mut bytes, 7, 7, b"b");
    let scan = scan_segment(&bytes, 5);
    assert_eq!(scan.records.len(), 1);
    assert_eq!(
        scan.end,
        SegmentEnd::Corrupt {
            offset: encoded_len(1) as u64,
            cause: Corruption::IndexOutOfSequence {
                expected: 6,
                found: 7
            }
        }
    );
    // A file named for another first index is refused at offset 0.
    let scan = scan_segment(&bytes, 4);
    assert!(matches!(scan.end, SegmentEnd::Corrupt { offset: 0, .. }));
}

#[test]
fn batch_must_start_at_its_first_record() {
    let mut bytes = Vec::new();
    encode_record(&mut bytes, 5, 5, b"a");
    encode_record(&mut bytes, 6, 4, b"b");
    let scan = scan_segment(&bytes, 5);
    assert!(matches!(
        scan.end,
        SegmentEnd::Corrupt {
            cause: Corruption::BatchOutOfSequence { index: 6, .. },
            ..
        }
    ));
}

#[test]
fn length_fields_are_bounded() {
    let mut bytes = Vec::new();
    encode_record(&mut bytes, 1, 1, b"a");
    bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode_record(&bytes),
        Err(RecordError::PayloadTooLarge { len: u32::MAX })
    );
}

proptest! {
    /// Any prefix of a valid segment recovers to a prefix of its records,
    /// and is never mistaken for corruption.
    #[test]
    fn any_prefix_recovers_to_a_prefix(batches in batches(), first in 1u64..1000, cut in any::<prop::sample::Index>()) {
        let built = build(first, &batches);
        let cut = cut.index(built.bytes.len() + 1);
        let scan = scan_segment(&built.bytes[..cut], first);
        let whole = built.slots.iter().take_while(|s| s.offset + s.len as u64 <= cut as u64).count();
        prop_assert_eq!(&scan.records[..], &built.slots[..whole]);
        match scan.end {
            SegmentEnd::Clean => prop_assert_eq!(scan.valid_len(), cut as u64),
            SegmentEnd::TornTail { offset, .. } => prop_assert_eq!(offset, scan.valid_len()),
            SegmentEnd::Corrupt { .. } | SegmentEnd::Padded { .. } => prop_assert!(false, "prefix taken for corruption or padding: {:?}", scan.end),
        }
        // The same prefix in a preallocated file: a clean end at the
        // prefix's last whole record, or a torn tail there.
        let mut padded = built.bytes[..cut].to_vec();
        padded.resize(built.bytes.len() + 64, 0);
        let scan = scan_segment(&padded, first);
        prop_assert_eq!(&scan.records[..], &built.slots[..whole]);
        match scan.end {
            SegmentEnd::Padded { offset } | SegmentEnd::TornTail { offset, .. } => prop_assert_eq!(offset, scan.valid_len()),
            SegmentEnd::Clean | SegmentEnd::Corrupt { .. } => prop_assert!(false, "padded prefix: {:?}", scan.end),
        }
    }

    /// Flipping any byte never yields a wrong record: the scan stops at or
    /// before the damaged record, and says corruption when a later batch follows.
    #[test]
    fn any_flipped_byte_is_detected(batches in batches(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let built = build(1, &batches);
        let at = at.index(built.bytes.len());
        let mut bytes = built.bytes.clone();
        bytes[at] ^= 1 << bit;
        let scan = scan_segment(&bytes, 1);
        let damaged = built.slots.iter().position(|s| (at as u64) < s.offset + s.len as u64).unwrap();
        prop_assert!(scan.records.len() <= damaged);
        prop_assert_eq!(&scan.records[..], &built.slots[..scan.records.len()]);
        prop_assert!(scan.end != SegmentEnd::Clean);
        let later_batch = built.batch_of[damaged + 1..].iter().any(|&b| b > built.slots[damaged].index);
        if later_batch && scan.records.len() == damaged {
            let is_corrupt = matches!(scan.end, SegmentEnd::Corrupt { .. });
            prop_assert!(is_corrupt, "{:?}", scan.end);
        }
    }
}
