//! Histories of a real atomic register under random concurrency, for the
//! checker's property tests and benchmark.
//!
//! Each process runs operations back to back; every operation gets a random
//! latency and a linearization point inside its [invoke, completion] window,
//! and the results are computed by applying the operations to one register
//! per key in linearization-point order. The history is therefore
//! linearizable by construction. Unknown outcomes (`info`) are generated too:
//! such an operation takes effect either never or at a point anywhere after
//! its invoke, possibly long after the client gave up on it.
//!
//! Every write and CAS writes a value never written before, so a read can be
//! traced to exactly one write (the tests rely on this to corrupt histories
//! in ways that are certainly violations).

use crate::history::{Event, EventType, Function};
use std::collections::BTreeMap;

/// Shape of a generated workload.
#[derive(Clone, Copy, Debug)]
pub struct RegisterWorkload {
    pub seed: u64,
    pub processes: u64,
    pub keys: usize,
    pub operations: usize,
    /// Longest operation latency, in time units (at least 1).
    pub latency_max: u64,
    /// Chance, in percent, that an operation's outcome is unknown.
    pub unknown_percent: u64,
}

impl Default for RegisterWorkload {
    fn default() -> RegisterWorkload {
        RegisterWorkload {
            seed: 1,
            processes: 8,
            keys: 10,
            operations: 1000,
            latency_max: 100,
            unknown_percent: 2,
        }
    }
}

/// A small deterministic generator (splitmix64); good enough for workloads.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE5_E4B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    pub fn percent(&mut self, chance: u64) -> bool {
        self.below(100) < chance
    }
}

struct Planned {
    process: u64,
    key: String,
    f: Function,
    invoke: u64,
    complete: u64,
    /// Where it takes effect; `None`: never.
    effect_at: Option<u64>,
    unknown: bool,
}

/// Generates a linearizable history of `workload.operations` operations.
pub fn register_history(workload: &RegisterWorkload) -> Vec<Event> {
    let mut rng = Rng::new(workload.seed);
    let planned = plan(workload, &mut rng);
    let mut by_effect: Vec<usize> = (0..planned.len()).collect();
    // Operations that never take effect still need their fields decided;
    // they go last, where they read nothing.
    by_effect.sort_by_key(|&op| (planned[op].effect_at.unwrap_or(u64::MAX), op));
    let mut registers: BTreeMap<&str, Option<String>> = BTreeMap::new();
    let mut written: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut invokes: Vec<Option<Event>> = vec![None; planned.len()];
    let mut completions: Vec<Option<Event>> = vec![None; planned.len()];
    let mut next_value = 0u64;
    for op in by_effect {
        let p = &planned[op];
        let register = registers.entry(p.key.as_str()).or_default();
        let history = written.entry(p.key.as_str()).or_default();
        let takes_effect = p.effect_at.is_some();
        let (invoke, succeeded) = match p.f {
            Function::Read => (
                Event::invoke_read(p.process, &p.key, p.invoke),
                Some(register.clone()),
            ),
            Function::Write | Function::Cas => {
                next_value += 1;
                let value = format!("v{next_value}");
                let expected = if p.f == Function::Write || rng.percent(70) {
                    register.clone()
                } else if history.is_empty() || rng.percent(20) {
                    None
                } else {
                    Some(history[rng.below(history.len() as u64) as usize].clone())
                };
                let swaps = p.f == Function::Write || expected == *register;
                if takes_effect && swaps {
                    *register = Some(value.clone());
                    history.push(value.clone());
                }
                let invoke = if p.f == Function::Write {
                    Event::invoke_write(p.process, &p.key, &value, p.invoke)
                } else {
                    Event::invoke_cas(p.process, &p.key, expected.as_deref(), &value, p.invoke)
                };
                (invoke, swaps.then_some(None))
            }
            Function::Delete => {
                if takes_effect {
                    *register = None;
                }
                (
                    Event::invoke_delete(p.process, &p.key, p.invoke),
                    Some(None),
                )
            }
        };
        let event_type = match (p.unknown, takes_effect, &succeeded) {
            (true, _, _) => EventType::Info,
            (false, true, Some(_)) => EventType::Ok,
            (false, _, _) => EventType::Fail,
        };
        let completion = match (event_type, succeeded) {
            (EventType::Ok, Some(read)) if p.f == Function::Read => {
                Event::ok_read(p.process, &p.key, read.as_deref(), p.complete)
            }
            _ => Event::complete(p.process, event_type, p.f, &p.key, p.complete),
        };
        invokes[op] = Some(invoke);
        completions[op] = Some(completion);
    }
    let mut events: Vec<Event> = invokes
        .into_iter()
        .chain(completions)
        .map(|event| event.expect("every planned operation got its events"))
        .collect();
    // Stable: a process's completion and next invoke never share a time.
    events.sort_by_key(|event| event.time);
    events
}

/// Decides who does what when, without values yet.
fn plan(workload: &RegisterWorkload, rng: &mut Rng) -> Vec<Planned> {
    let latency_max = workload.latency_max.max(1);
    let processes = workload.processes.max(1);
    let mut clocks: Vec<u64> = (0..processes).map(|_| rng.below(latency_max)).collect();
    let mut planned = Vec::with_capacity(workload.operations);
    for index in 0..workload.operations {
        let process = index as u64 % processes;
        let invoke = clocks[process as usize];
        let complete = invoke + 1 + rng.below(latency_max);
        clocks[process as usize] = complete + 1 + rng.below(latency_max / 4 + 1);
        let f = match rng.below(100) {
            0..40 => Function::Read,
            40..75 => Function::Write,
            75..90 => Function::Cas,
            _ => Function::Delete,
        };
        let unknown = rng.percent(workload.unknown_percent);
        let effect_at = if !unknown {
            // A definite failure of a write or delete (say, refused before
            // reaching the leader) now and then; CAS fails on its own.
            let refused = f != Function::Read && f != Function::Cas && rng.percent(2);
            (!refused).then(|| invoke + rng.below(complete - invoke + 1))
        } else if rng.percent(50) {
            // Takes effect some time after the invoke, maybe long after the
            // client timed out.
            Some(invoke + rng.below(20 * latency_max))
        } else {
            None
        };
        planned.push(Planned {
            process,
            key: format!("k{}", rng.below(workload.keys.max(1) as u64)),
            f,
            invoke,
            complete,
            effect_at,
            unknown,
        });
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::History;

    #[test]
    fn generated_histories_are_well_formed_and_deterministic() {
        let workload = RegisterWorkload {
            unknown_percent: 10,
            ..RegisterWorkload::default()
        };
        let events = register_history(&workload);
        assert_eq!(events, register_history(&workload));
        let history = History::from_events(&events).unwrap();
        assert_eq!(history.operations.len(), workload.operations);
        assert_eq!(history.key_count(), workload.keys);
    }
}
