use super::*;
use crate::history::{Event, EventType, Function};

/// Builds histories one operation at a time; events are sorted by time
/// (stably) when the history is built.
#[derive(Default)]
struct Script(Vec<Event>);

impl Script {
    fn read(mut self, process: u64, key: &str, value: Option<&str>, times: (u64, u64)) -> Self {
        self.0.push(Event::invoke_read(process, key, times.0));
        self.0.push(Event::ok_read(process, key, value, times.1));
        self
    }

    fn write(self, process: u64, key: &str, value: &str, times: (u64, u64)) -> Self {
        self.write_ending(process, key, value, times, EventType::Ok)
    }

    fn write_ending(
        mut self,
        process: u64,
        key: &str,
        value: &str,
        times: (u64, u64),
        end: EventType,
    ) -> Self {
        self.0
            .push(Event::invoke_write(process, key, value, times.0));
        self.0
            .push(Event::complete(process, end, Function::Write, key, times.1));
        self
    }

    fn cas(
        mut self,
        process: u64,
        key: &str,
        swap: (Option<&str>, &str),
        times: (u64, u64),
        end: EventType,
    ) -> Self {
        self.0
            .push(Event::invoke_cas(process, key, swap.0, swap.1, times.0));
        self.0
            .push(Event::complete(process, end, Function::Cas, key, times.1));
        self
    }

    fn delete(mut self, process: u64, key: &str, times: (u64, u64)) -> Self {
        self.0.push(Event::invoke_delete(process, key, times.0));
        let ok = Event::complete(process, EventType::Ok, Function::Delete, key, times.1);
        self.0.push(ok);
        self
    }

    fn check(mut self) -> Report {
        self.0.sort_by_key(|event| event.time);
        check(&History::from_events(&self.0).expect("test histories are well formed"))
    }
}

const INFO: EventType = EventType::Info;
const OK: EventType = EventType::Ok;
const FAIL: EventType = EventType::Fail;

#[test]
fn sequential_register_operations_are_linearizable() {
    let report = Script::default()
        .read(1, "k", None, (0, 1))
        .write(1, "k", "1", (2, 3))
        .read(2, "k", Some("1"), (4, 5))
        .cas(1, "k", (Some("1"), "2"), (6, 7), OK)
        .cas(2, "k", (Some("1"), "3"), (8, 9), FAIL)
        .read(2, "k", Some("2"), (10, 11))
        .delete(1, "k", (12, 13))
        .read(2, "k", None, (14, 15))
        .cas(1, "k", (None, "4"), (16, 17), OK)
        .check();
    assert!(report.is_linearizable(), "{report}");
    assert_eq!(report.to_string(), "linearizable: 9 operations on 1 keys");
}

#[test]
fn a_stale_read_after_a_completed_write_is_a_violation() {
    let report = Script::default()
        .write(1, "k", "1", (0, 10))
        .write(1, "k", "2", (20, 30))
        .read(2, "k", Some("1"), (40, 50))
        .check();
    assert_eq!(
        report.to_string(),
        "not linearizable: 1 of 1 keys (3 operations)\n\
         key \"k\":\n  \
           longest linearizable prefix: 2 operations (3 completed ones had to be placed)\n    \
             line 1: process 1 write \"1\" (invoked at 0, ok at 10)\n    \
             line 3: process 1 write \"2\" (invoked at 20, ok at 30)\n  \
           value after the prefix: \"2\"\n  \
           no order of these can be placed next before the operation on line 5 completes:\n    \
             line 5: process 2 read -> \"1\" (invoked at 40, ok at 50) -- read \"1\" but the key holds \"2\"\n"
    );
    let violation = &report.violations[0];
    assert_eq!(violation.prefix, vec![0, 1]);
    assert_eq!(violation.deadline.line, 5);
}

#[test]
fn reads_that_order_concurrent_writes_both_ways_are_a_violation() {
    let writes = Script::default()
        .write(1, "k", "a", (0, 100))
        .write(2, "k", "b", (0, 100));
    // One reader seeing a then b is fine: a took effect first.
    let one_order = Script(writes.0.clone())
        .read(3, "k", Some("a"), (10, 20))
        .read(3, "k", Some("b"), (30, 40))
        .check();
    assert!(one_order.is_linearizable(), "{one_order}");
    let both_orders = writes
        .read(3, "k", Some("a"), (10, 20))
        .read(3, "k", Some("b"), (30, 40))
        .read(4, "k", Some("b"), (10, 20))
        .read(4, "k", Some("a"), (30, 40))
        .check();
    assert!(!both_orders.is_linearizable());
    assert_eq!(both_orders.violations[0].key, "k");
}

#[test]
fn two_cas_from_the_same_value_cannot_both_swap() {
    let lost_update = Script::default()
        .write(1, "counter", "0", (0, 10))
        .cas(1, "counter", (Some("0"), "1"), (20, 30), OK)
        .cas(2, "counter", (Some("0"), "2"), (20, 30), OK)
        .check();
    assert!(!lost_update.is_linearizable());
    let explanation = lost_update.to_string();
    assert!(
        explanation.contains("swapped from \"0\" but the key holds"),
        "{explanation}"
    );
    // With one of them failing, it is fine.
    let one_fails = Script::default()
        .write(1, "counter", "0", (0, 10))
        .cas(1, "counter", (Some("0"), "1"), (20, 30), OK)
        .cas(2, "counter", (Some("0"), "2"), (20, 30), FAIL)
        .read(3, "counter", Some("1"), (40, 50))
        .check();
    assert!(one_fails.is_linearizable(), "{one_fails}");
}

#[test]
fn a_timed_out_write_may_take_effect_much_later() {
    let report = Script::default()
        .write_ending(1, "k", "x", (0, 10), INFO)
        .read(2, "k", None, (20, 30))
        .read(2, "k", None, (1_000, 1_010))
        .write(1, "other", "y", (2_000, 2_010))
        .read(3, "k", Some("x"), (5_000, 5_010))
        .read(3, "k", Some("x"), (6_000, 6_010))
        .check();
    assert!(report.is_linearizable(), "{report}");
}

#[test]
fn a_timed_out_write_may_never_take_effect() {
    let report = Script::default()
        .write_ending(1, "k", "x", (0, 10), INFO)
        .read(2, "k", None, (20, 30))
        .write(2, "k", "y", (40, 50))
        .read(2, "k", Some("y"), (60, 70))
        .check();
    assert!(report.is_linearizable(), "{report}");
}

#[test]
fn a_timed_out_write_cannot_take_effect_twice_or_be_undone() {
    let undone = Script::default()
        .write_ending(1, "k", "x", (0, 10), INFO)
        .read(2, "k", Some("x"), (20, 30))
        .read(2, "k", None, (40, 50))
        .check();
    assert!(!undone.is_linearizable());
    let twice = Script::default()
        .write_ending(1, "k", "x", (0, 10), INFO)
        .read(2, "k", Some("x"), (20, 30))
        .write(3, "k", "y", (40, 50))
        .read(2, "k", Some("x"), (60, 70))
        .check();
    assert!(!twice.is_linearizable());
}

#[test]
fn an_invoke_without_completion_counts_as_unknown() {
    let mut script = Script::default().read(2, "k", None, (5, 6));
    script.0.push(Event::invoke_write(1, "k", "x", 0));
    let report = script.read(2, "k", Some("x"), (100, 110)).check();
    assert!(report.is_linearizable(), "{report}");
}

#[test]
fn an_unknown_cas_swaps_only_from_its_expected_value() {
    let swapped = Script::default()
        .write(1, "k", "a", (0, 10))
        .cas(1, "k", (Some("a"), "b"), (20, 30), INFO)
        .read(2, "k", Some("b"), (100, 110))
        .check();
    assert!(swapped.is_linearizable(), "{swapped}");
    let impossible = Script::default()
        .write(1, "k", "a", (0, 10))
        .cas(1, "k", (Some("z"), "b"), (20, 30), INFO)
        .read(2, "k", Some("b"), (100, 110))
        .check();
    assert!(!impossible.is_linearizable());
}

#[test]
fn failed_operations_have_no_effect() {
    let report = Script::default()
        .write_ending(1, "k", "x", (0, 10), FAIL)
        .read(2, "k", Some("x"), (20, 30))
        .check();
    assert!(!report.is_linearizable());
}

#[test]
fn a_read_of_a_value_never_written_is_a_violation() {
    let report = Script::default()
        .write(1, "k", "1", (0, 10))
        .read(2, "k", Some("7"), (0, 10))
        .check();
    let explanation = report.to_string();
    assert!(
        explanation.contains("read \"7\" but the key holds"),
        "{explanation}"
    );
}

#[test]
fn touching_intervals_count_as_concurrent() {
    let report = Script::default()
        .write(1, "k", "1", (0, 10))
        .read(2, "k", None, (10, 20))
        .check();
    assert!(report.is_linearizable(), "{report}");
}

#[test]
fn keys_are_checked_independently_and_reported_in_order() {
    let report = Script::default()
        .write(1, "b", "1", (0, 10))
        .read(2, "b", None, (20, 30))
        .write(1, "a", "1", (40, 50))
        .read(2, "a", Some("1"), (60, 70))
        .read(2, "c", Some("ghost"), (80, 90))
        .check();
    let keys: Vec<&str> = report.violations.iter().map(|v| v.key.as_str()).collect();
    assert_eq!(keys, ["b", "c"]);
    assert_eq!(report.keys, 3);
}

#[test]
fn many_pending_unknown_writes_do_not_explode_the_search() {
    // 200 timed-out writes, 100 of them observed later, in any order.
    let mut script = Script::default();
    for n in 0..200u64 {
        script = script.write_ending(n, "k", &format!("v{n}"), (n, n + 5), INFO);
    }
    for n in 0..100u64 {
        let value = format!("v{}", 2 * n);
        script = script.read(1000, "k", Some(&value), (1000 + 10 * n, 1005 + 10 * n));
    }
    let report = script.check();
    assert!(report.is_linearizable(), "{report}");
}
