//! The checker against the definition: on small random histories (values
//! repeat, outcomes are random, so most are not linearizable), its verdict
//! must equal that of an exhaustive search over every order of every subset
//! of the unknown-outcome operations. This is what keeps the search's
//! pruning rules (unobserved unknowns dropped, unknowns placed only before
//! an observer, identical unknowns interchangeable) honest.

use proptest::prelude::*;
use sim_tests::history::{Call, Operation, Outcome};
use sim_tests::linearizability::check;
use sim_tests::{Event, EventType, Function, History};

/// Exhaustive: can the remaining operations be ordered from `state`?
fn linearizable_from(ops: &[&Operation], placed: &mut Vec<bool>, state: Option<&str>) -> bool {
    let definite_left = ops
        .iter()
        .zip(placed.iter())
        .any(|(op, &done)| !done && matches!(op.outcome, Outcome::Ok { .. }));
    if !definite_left {
        return true;
    }
    for next in 0..ops.len() {
        if placed[next] {
            continue;
        }
        // Real time: every unplaced operation that completed before this
        // one was invoked must come first.
        let blocked = ops.iter().zip(placed.iter()).any(|(other, &done)| {
            !done
                && other
                    .complete_time
                    .is_some_and(|complete| complete < ops[next].invoke_time)
        });
        if blocked {
            continue;
        }
        let op = ops[next];
        let definite = matches!(op.outcome, Outcome::Ok { .. });
        let next_state: Option<Option<&str>> = match (&op.call, &op.outcome) {
            (Call::Read, Outcome::Ok { read }) => (read.as_deref() == state).then_some(state),
            (Call::Write { value }, _) => Some(Some(value)),
            (Call::Cas { expected, value }, _) if definite => {
                (expected.as_deref() == state).then_some(Some(value))
            }
            (Call::Cas { expected, value }, _) => Some(if expected.as_deref() == state {
                Some(value)
            } else {
                state
            }),
            (Call::Delete, _) => Some(None),
            (Call::Read, _) => None,
        };
        if let Some(next_state) = next_state {
            placed[next] = true;
            let found = linearizable_from(ops, placed, next_state);
            placed[next] = false;
            if found {
                return true;
            }
        }
    }
    false
}

fn brute_force(history: &History) -> bool {
    let ops: Vec<&Operation> = history
        .operations
        .iter()
        .filter(|op| {
            !matches!(
                (&op.call, &op.outcome),
                (_, Outcome::Fail) | (Call::Read, Outcome::Unknown)
            )
        })
        .collect();
    linearizable_from(&ops, &mut vec![false; ops.len()], None)
}

const VALUES: [Option<&str>; 3] = [None, Some("a"), Some("b")];

/// One operation: (process, function, value choice, expected choice,
/// outcome, start delay, duration).
type Spec = (u64, u8, usize, usize, u8, u64, u64);

fn events_of(specs: &[Spec]) -> Vec<Event> {
    let mut clocks = [0u64; 3];
    let mut events: Vec<(u64, usize, Event)> = Vec::new();
    for &(process, f, value, expected, outcome, delay, duration) in specs {
        let invoke = clocks[process as usize] + delay;
        let complete = invoke + duration;
        clocks[process as usize] = complete + 1;
        let written = VALUES[1 + value % 2].unwrap();
        let (invoke_event, f) = match f % 4 {
            0 => (Event::invoke_read(process, "k", invoke), Function::Read),
            1 => (
                Event::invoke_write(process, "k", written, invoke),
                Function::Write,
            ),
            2 => (
                Event::invoke_cas(process, "k", VALUES[expected % 3], written, invoke),
                Function::Cas,
            ),
            _ => (Event::invoke_delete(process, "k", invoke), Function::Delete),
        };
        let end = match outcome % 4 {
            0 | 1 => EventType::Ok,
            2 => EventType::Fail,
            _ => EventType::Info,
        };
        let completion = if end == EventType::Ok && f == Function::Read {
            Event::ok_read(process, "k", VALUES[value % 3], complete)
        } else {
            Event::complete(process, end, f, "k", complete)
        };
        let sequence = events.len();
        events.push((invoke, sequence, invoke_event));
        events.push((complete, sequence + 1, completion));
    }
    events.sort_by_key(|&(time, sequence, _)| (time, sequence));
    events.into_iter().map(|(_, _, event)| event).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn the_search_agrees_with_exhaustive_enumeration(
        specs in prop::collection::vec(
            (0..3u64, 0..4u8, 0..3usize, 0..3usize, 0..4u8, 0..6u64, 0..12u64),
            1..9,
        )
    ) {
        let history = History::from_events(&events_of(&specs)).unwrap();
        let expected = brute_force(&history);
        let report = check(&history);
        prop_assert_eq!(report.is_linearizable(), expected, "{}", report);
    }
}

/// The random histories above must exercise both verdicts, or the
/// comparison would prove little.
#[test]
fn random_small_histories_are_often_both_linearizable_and_not() {
    let mut rng = sim_tests::generate::Rng::new(7);
    let mut verdicts = [0usize; 2];
    for _ in 0..2000 {
        let length = 1 + rng.below(8) as usize;
        let specs: Vec<Spec> = (0..length)
            .map(|_| {
                (
                    rng.below(3),
                    rng.below(4) as u8,
                    rng.below(3) as usize,
                    rng.below(3) as usize,
                    rng.below(4) as u8,
                    rng.below(6),
                    rng.below(12),
                )
            })
            .collect();
        let history = History::from_events(&events_of(&specs)).unwrap();
        let linearizable = brute_force(&history);
        assert_eq!(check(&history).is_linearizable(), linearizable, "{specs:?}");
        verdicts[usize::from(linearizable)] += 1;
    }
    assert!(verdicts.iter().all(|&count| count > 400), "{verdicts:?}");
}
