use super::*;
use crate::wal::record::{encode_record, scan_segment};
use proptest::prelude::*;

#[test]
fn names_sort_and_parse() {
    assert_eq!(segment_file_name(42), "00000000000000000042.wal");
    assert_eq!(
        parse_segment_file_name("00000000000000000042.wal"),
        Some(42)
    );
    assert_eq!(
        parse_segment_file_name(&segment_file_name(u64::MAX)),
        Some(u64::MAX)
    );
    for bad in [
        "42.wal",
        "00000000000000000000.wal",
        "0000000000000000004x.wal",
        "vote",
    ] {
        assert_eq!(parse_segment_file_name(bad), None, "{bad}");
    }
    assert!(segment_file_name(9) < segment_file_name(10));
}

fn append(layout: &mut Layout, first_index: u64, lens: &[u32]) -> AppendPlan {
    let plan = layout.plan_append(first_index).expect("in sequence");
    layout.commit_append(&plan, lens);
    plan
}

#[test]
fn rolls_at_the_target_between_batches() {
    let mut layout = Layout::new(100);
    assert!(append(&mut layout, 1, &[60, 60]).create);
    let plan = append(&mut layout, 3, &[10]);
    assert_eq!((plan.segment, plan.create), (3, true));
    assert_eq!(append(&mut layout, 4, &[10]).offset, 10);
    assert_eq!(
        layout.locate(2).unwrap(),
        (
            1,
            RecordSlot {
                index: 2,
                offset: 60,
                len: 60
            }
        )
    );
    assert_eq!(layout.locate(4).unwrap().0, 3);
    assert_eq!(layout.locate(5), None);
    assert_eq!(
        layout.plan_append(9),
        Err(AppendError::OutOfSequence {
            expected: 5,
            found: 9
        })
    );
}

#[test]
fn purge_deletes_only_whole_segments_below() {
    let mut layout = Layout::new(10);
    for index in 1..=6 {
        append(&mut layout, index, &[10]);
    }
    // Six segments of one record each.
    assert_eq!(layout.plan_purge(0), Vec::<u64>::new());
    assert_eq!(layout.plan_purge(3), vec![1, 2, 3]);
    let mut layout = Layout::new(25);
    for index in 1..=6 {
        append(&mut layout, index, &[10]);
    }
    // Segments [1,2,3] [4,5,6]: purging up to 4 must keep the second.
    assert_eq!(layout.plan_purge(4), vec![1]);
    assert_eq!(layout.plan_purge(6), vec![1, 4]);
    layout.commit_purge(&[1, 4]);
    assert_eq!(layout.last_index(), None);
    assert!(layout.plan_append(100).unwrap().create);
}

#[test]
fn recovery_refuses_gaps_and_torn_middles() {
    let segment = |first: u64, count: u64| {
        let mut bytes = Vec::new();
        for index in first..first + count {
            encode_record(&mut bytes, index, first, b"p");
        }
        bytes
    };
    let a = segment(1, 3);
    let b = segment(4, 2);
    let ok = Layout::recover(64, vec![(4, scan_segment(&b, 4)), (1, scan_segment(&a, 1))]).unwrap();
    assert_eq!(ok.layout.last_index(), Some(5));
    assert_eq!(ok.truncate, None);
    let gap = Layout::recover(
        64,
        vec![
            (1, scan_segment(&a, 1)),
            (5, scan_segment(&segment(5, 1), 5)),
        ],
    );
    assert_eq!(
        gap,
        Err(RecoveryError::Gap {
            segment: 5,
            expected: 4
        })
    );
    let torn = &a[..a.len() - 1];
    let err = Layout::recover(
        64,
        vec![(1, scan_segment(torn, 1)), (4, scan_segment(&b, 4))],
    );
    assert!(matches!(
        err,
        Err(RecoveryError::TornBeforeLastSegment { segment: 1, .. })
    ));
    let last_torn = Layout::recover(
        64,
        vec![
            (1, scan_segment(&a, 1)),
            (4, scan_segment(&b[..b.len() - 1], 4)),
        ],
    )
    .unwrap();
    assert_eq!(last_torn.truncate, Some((4, (b.len() / 2) as u64)));
    assert_eq!(last_torn.layout.last_index(), Some(4));
}

#[test]
fn preallocated_segments_recover_without_cutting() {
    let segment = |first: u64, count: u64, padding: usize| {
        let mut bytes = Vec::new();
        for index in first..first + count {
            encode_record(&mut bytes, index, first, b"p");
        }
        let records = bytes.len() as u64;
        bytes.resize(bytes.len() + padding, 0);
        (bytes, records)
    };
    let (a, a_len) = segment(1, 3, 500);
    let (b, b_len) = segment(4, 2, 700);
    let ok = Layout::recover(64, vec![(1, scan_segment(&a, 1)), (4, scan_segment(&b, 4))]).unwrap();
    assert_eq!(ok.truncate, None);
    assert_eq!(ok.layout.last_index(), Some(5));
    let lens: Vec<u64> = ok.layout.segments().map(|s| s.len_bytes).collect();
    assert_eq!(lens, vec![a_len, b_len]);
    // Records lost from the end of a padded earlier segment still show as
    // a gap before the next one.
    let (short, _) = segment(1, 2, 500);
    assert_eq!(
        Layout::recover(
            64,
            vec![(1, scan_segment(&short, 1)), (4, scan_segment(&b, 4))]
        ),
        Err(RecoveryError::Gap {
            segment: 4,
            expected: 3
        })
    );
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u32>),
    Truncate(u64),
    Purge(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(28u32..80, 1..5).prop_map(Op::Append),
        1 => (0u64..40).prop_map(Op::Truncate),
        1 => (0u64..40).prop_map(Op::Purge),
    ]
}

proptest! {
    /// Against a model (the list of live indexes): appends, truncate_after
    /// and purges keep the log contiguous, and every live index is located.
    #[test]
    fn operations_keep_the_log_contiguous(ops in proptest::collection::vec(op(), 1..60)) {
        let mut layout = Layout::new(150);
        let mut model: Vec<u64> = Vec::new();
        let mut next = 1;
        for op in ops {
            match op {
                Op::Append(lens) => {
                    let first = model.last().map_or(next, |last| last + 1);
                    append(&mut layout, first, &lens);
                    model.extend(first..first + lens.len() as u64);
                }
                Op::Truncate(after) => {
                    let plan = layout.plan_truncate(after);
                    layout.commit_truncate(&plan);
                    model.retain(|&index| index <= after);
                    if model.is_empty() { next = after.max(1); }
                }
                Op::Purge(upto) => {
                    let delete = layout.plan_purge(upto);
                    layout.commit_purge(&delete);
                    // Whole segments only: what remains is a suffix of the
                    // model that includes every index above `upto`.
                    let first_before = model.first().copied();
                    let first = layout.first_index();
                    let needed: Vec<u64> = model.iter().copied().filter(|&i| i > upto).collect();
                    model.retain(|&index| first.is_some_and(|first| index >= first));
                    prop_assert!(needed.iter().all(|i| model.contains(i)), "purge dropped a record above {}", upto);
                    prop_assert!(model.first().is_none_or(|&first| Some(first) == first_before || first <= upto + 1));
                    if model.is_empty() { next = upto + 1; }
                }
            }
            layout.check_invariants();
            prop_assert_eq!(layout.last_index(), model.last().copied());
            prop_assert_eq!(layout.first_index(), model.first().copied());
            prop_assert!(model.windows(2).all(|w| w[1] == w[0] + 1));
            for &index in &model {
                prop_assert!(layout.locate(index).is_some(), "{} missing", index);
            }
        }
    }
}
