//! Property tests of the linearizability checker against histories of a
//! real atomic register (`sim_tests::generate`): those are linearizable by
//! construction, and stay so through the JSON-lines format; the same
//! histories with one read value corrupted into an impossible one are not.

use proptest::prelude::*;
use sim_tests::generate::{register_history, RegisterWorkload};
use sim_tests::linearizability::check;
use sim_tests::{parse_jsonl, write_jsonl, Event, EventType, Function, History};

fn workloads() -> impl Strategy<Value = RegisterWorkload> {
    (
        any::<u64>(),
        1..9u64,
        1..5usize,
        1..400usize,
        1..200u64,
        0..25u64,
    )
        .prop_map(
            |(seed, processes, keys, operations, latency_max, unknown_percent)| RegisterWorkload {
                seed,
                processes,
                keys,
                operations,
                latency_max,
                unknown_percent,
            },
        )
}

/// Where an operation's invoke and completion are in the event list.
struct Span {
    invoke: usize,
    complete: usize,
}

fn spans(events: &[Event]) -> Vec<Span> {
    let mut pending = std::collections::BTreeMap::new();
    let mut spans = Vec::new();
    for (position, event) in events.iter().enumerate() {
        if event.event_type == EventType::Invoke {
            pending.insert(event.process, position);
        } else if let Some(invoke) = pending.remove(&event.process) {
            spans.push(Span {
                invoke,
                complete: position,
            });
        }
    }
    spans
}

#[derive(Clone, Copy, Debug)]
enum Corruption {
    /// The value of a write invoked after the read completed.
    FromTheFuture,
    /// The value of a write that a later completed write overwrote before
    /// the read began.
    Stale,
}

/// Replaces the value of the `choice`-th eligible ok read with one no
/// linearization allows; `None` if no read is eligible.
fn corrupt(events: &[Event], choice: usize, how: Corruption) -> Option<(Vec<Event>, String)> {
    let spans = spans(events);
    let writes: Vec<&Span> = spans
        .iter()
        .filter(|s| matches!(events[s.invoke].f, Function::Write | Function::Cas))
        .collect();
    let changes_state = |s: &Span| {
        events[s.invoke].f != Function::Read && events[s.complete].event_type == EventType::Ok
    };
    let reads: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            events[s.invoke].f == Function::Read && events[s.complete].event_type == EventType::Ok
        })
        .collect();
    // The first eligible read from a chosen starting point, so that big
    // histories need not be scanned whole.
    (0..reads.len()).find_map(|offset| {
        let read = reads[(choice % reads.len() + offset) % reads.len()];
        let (invoke, complete) = (&events[read.invoke], &events[read.complete]);
        let same_key = |s: &&&Span| events[s.invoke].key == invoke.key;
        let impossible = match how {
            Corruption::FromTheFuture => writes
                .iter()
                .filter(same_key)
                .find(|w| events[w.invoke].time > complete.time)
                .map(|w| events[w.invoke].value.clone()),
            Corruption::Stale => writes.iter().filter(same_key).find_map(|w1| {
                let w1_done = &events[w1.complete];
                let overwritten = spans.iter().any(|w2| {
                    events[w2.invoke].key == invoke.key
                        && changes_state(w2)
                        && events[w2.invoke].time > w1_done.time
                        && events[w2.complete].time < invoke.time
                });
                (w1_done.event_type == EventType::Ok && overwritten)
                    .then(|| events[w1.invoke].value.clone())
            }),
        }?;
        (impossible != complete.value).then(|| {
            let mut corrupted = events.to_vec();
            corrupted[read.complete].value = impossible;
            (corrupted, invoke.key.clone())
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn histories_of_an_atomic_register_are_linearizable(workload in workloads()) {
        let events = register_history(&workload);
        let history = History::from_events(&events).unwrap();
        let report = check(&history);
        prop_assert!(report.is_linearizable(), "{}", report);
        prop_assert_eq!(report.operations, workload.operations);
    }

    #[test]
    fn histories_survive_the_jsonl_format(workload in workloads()) {
        let events = register_history(&workload);
        let mut jsonl = Vec::new();
        write_jsonl(&events, &mut jsonl).unwrap();
        prop_assert_eq!(
            parse_jsonl(jsonl.as_slice()).unwrap(),
            History::from_events(&events).unwrap()
        );
    }

    #[test]
    fn one_impossible_read_is_detected(
        workload in workloads(),
        choice in any::<usize>(),
        stale in any::<bool>(),
    ) {
        let how = if stale { Corruption::Stale } else { Corruption::FromTheFuture };
        let events = register_history(&workload);
        let Some((corrupted, key)) = corrupt(&events, choice, how) else {
            return Ok(());
        };
        let report = check(&History::from_events(&corrupted).unwrap());
        prop_assert!(!report.is_linearizable(), "{:?} corruption on {} missed", how, key);
        let keys: Vec<&str> = report.violations.iter().map(|v| v.key.as_str()).collect();
        prop_assert_eq!(keys, vec![key.as_str()]);
        // Deterministic explanation.
        prop_assert_eq!(
            report.to_string(),
            check(&History::from_events(&corrupted).unwrap()).to_string()
        );
    }
}

#[test]
fn corruptions_are_found_in_bigger_histories() {
    let mut checked = 0;
    for seed in 0..20 {
        let workload = RegisterWorkload {
            seed,
            operations: 5_000,
            keys: 5,
            unknown_percent: 5,
            ..RegisterWorkload::default()
        };
        let events = register_history(&workload);
        for how in [Corruption::FromTheFuture, Corruption::Stale] {
            let (corrupted, key) = corrupt(&events, seed as usize * 7919, how).unwrap();
            let report = check(&History::from_events(&corrupted).unwrap());
            assert_eq!(report.violations.len(), 1, "seed {seed} {how:?}");
            assert_eq!(report.violations[0].key, key);
            checked += 1;
        }
    }
    assert_eq!(checked, 40);
}
