//! Queries a node starts and serf's keyring management, in the virtual
//! network: acks and answers come back once per member until the
//! deadline; key operations change every member's keyring, report each
//! member's answer, refuse what memberlist refuses, and time out without
//! hanging when a member is gone.

use super::crypto::{encode_key, Keyring};
use super::serf_keys::{KeyOperation, KeySummary};
use super::serf_sim::SerfSim;
use super::serf_sim_tests::{all, converged, except};
use super::serf_state::{QueryId, QueryParams, SerfConfig, SerfError, SerfEvent};
use super::sim::NetConfig;
use crate::time::Duration;
use std::collections::BTreeMap;

fn key(byte: u8) -> Vec<u8> {
    vec![byte; 32]
}

fn encrypted_config() -> SerfConfig {
    let mut config = SerfConfig::lan();
    config.keyring = Some(Keyring::new(key(1)).expect("valid key"));
    config
}

/// Runs `op` from node `from` and returns its summary once finished.
fn run_key_op(sim: &mut SerfSim, from: usize, op: KeyOperation) -> KeySummary {
    let id = sim
        .with_node(from, |s, now| s.key_operation(now, &op, 0))
        .expect("key operation starts");
    sim.run_for(Duration::from_secs(10));
    let finished: Vec<&KeySummary> = sim.nodes[from]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            SerfEvent::KeyOperationFinished { query, summary } if *query == id => Some(summary),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), 1, "{op:?} finishes once");
    assert!(sim.nodes[from].serf.open_queries().next().is_none());
    finished[0].clone()
}

fn keyrings(sim: &SerfSim) -> Vec<Vec<Vec<u8>>> {
    sim.nodes
        .iter()
        .map(|n| n.serf.keyring().expect("encryption on").keys().to_vec())
        .collect()
}

fn changes(sim: &SerfSim, i: usize) -> usize {
    sim.nodes[i]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, SerfEvent::KeyringChanged(_)))
        .count()
}

#[test]
fn key_rotation_reaches_every_member_and_reports_each_answer() {
    let n = 5;
    let mut sim = converged(n, &encrypted_config(), NetConfig::default(), 21);
    let (k1, k2) = (encode_key(&key(1)), encode_key(&key(2)));

    let installed = run_key_op(&mut sim, 2, KeyOperation::Install(key(2)));
    assert_eq!((installed.num_nodes, installed.num_resp), (n, n));
    assert_eq!(installed.error(), None, "{installed:?}");
    assert!(keyrings(&sim).iter().all(|k| *k == [key(1), key(2)]));
    for i in all(n) {
        let last = sim.nodes[i].events.iter().rev().find_map(|(_, e)| match e {
            SerfEvent::KeyringChanged(ring) => Some(ring.keys().to_vec()),
            _ => None,
        });
        assert_eq!(last, Some(vec![key(1), key(2)]), "node {i} announced it");
    }

    let listed = run_key_op(&mut sim, 0, KeyOperation::List);
    assert_eq!(listed.error(), None);
    assert_eq!(
        listed.keys,
        BTreeMap::from([(k1.clone(), n), (k2.clone(), n)])
    );
    assert_eq!(listed.primary_keys, BTreeMap::from([(k1.clone(), n)]));

    let used = run_key_op(&mut sim, 4, KeyOperation::Use(key(2)));
    assert_eq!(used.error(), None);
    assert!(keyrings(&sim).iter().all(|k| *k == [key(2), key(1)]));

    // Installing a present key changes nothing and announces nothing.
    let before: Vec<usize> = all(n).iter().map(|&i| changes(&sim, i)).collect();
    assert_eq!(
        run_key_op(&mut sim, 1, KeyOperation::Install(key(1))).error(),
        None
    );
    assert_eq!(
        before,
        all(n).iter().map(|&i| changes(&sim, i)).collect::<Vec<_>>()
    );

    let refused = run_key_op(&mut sim, 0, KeyOperation::Remove(key(2)));
    assert_eq!(
        refused.error().as_deref(),
        Some("5/5 nodes reported failure")
    );
    assert_eq!(refused.messages.len(), n);
    assert!(refused
        .messages
        .values()
        .all(|m| m == "Removing the primary key is not allowed"));
    let unknown = run_key_op(&mut sim, 0, KeyOperation::Use(key(9)));
    assert!(unknown
        .messages
        .values()
        .all(|m| m == "Requested key is not in the keyring"));

    assert_eq!(
        run_key_op(&mut sim, 3, KeyOperation::Remove(key(1))).error(),
        None
    );
    let listed = run_key_op(&mut sim, 0, KeyOperation::List);
    assert_eq!(listed.keys, BTreeMap::from([(k2.clone(), n)]));
    assert_eq!(listed.primary_keys, BTreeMap::from([(k2, n)]));
    assert!(keyrings(&sim).iter().all(|k| *k == [key(2)]));
    for i in all(n) {
        sim.nodes[i].serf.check_invariants();
    }
}

#[test]
fn key_operations_without_encryption_fail_on_every_member() {
    let n = 3;
    let mut sim = converged(n, &SerfConfig::lan(), NetConfig::default(), 22);
    let listed = run_key_op(&mut sim, 0, KeyOperation::List);
    assert_eq!(
        listed.error().as_deref(),
        Some("3/3 nodes reported failure")
    );
    assert!(listed
        .messages
        .values()
        .all(|m| m == "Keyring is empty (encryption not enabled)"));
    assert!(listed.keys.is_empty() && listed.primary_keys.is_empty());
    let installed = run_key_op(&mut sim, 1, KeyOperation::Install(key(2)));
    assert!(installed
        .messages
        .values()
        .all(|m| m == "No keyring to modify (encryption not enabled)"));
    assert!(sim.nodes.iter().all(|n| n.serf.keyring().is_none()));
}

#[test]
fn a_silent_member_makes_the_operation_time_out_with_a_count() {
    let n = 4;
    let mut sim = converged(n, &encrypted_config(), NetConfig::default(), 23);
    // Down, but not yet declared dead: it is still counted.
    sim.nodes[3].down = true;
    let summary = run_key_op(&mut sim, 0, KeyOperation::Install(key(7)));
    assert_eq!((summary.num_nodes, summary.num_resp), (4, 3));
    assert_eq!(
        summary.error().as_deref(),
        Some("3/4 nodes reported success")
    );
    for i in except(n, &[3]) {
        assert!(sim.nodes[i]
            .serf
            .keyring()
            .expect("on")
            .keys()
            .contains(&key(7)));
    }
}

/// The events of node `i` about query `id`, as (kind, from).
fn answers(sim: &SerfSim, i: usize, id: QueryId) -> Vec<(&'static str, String)> {
    sim.nodes[i]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            SerfEvent::QueryAck { query, from } if *query == id => Some(("ack", from.clone())),
            SerfEvent::QueryResponse { query, from, .. } if *query == id => {
                Some(("response", from.clone()))
            }
            SerfEvent::QueryFinished(query) if *query == id => Some(("finished", String::new())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_started_query_collects_one_ack_and_one_answer_per_member() {
    let n = 5;
    let mut sim = converged(n, &SerfConfig::lan(), NetConfig::default(), 24);
    let params = QueryParams {
        request_ack: true,
        relay_factor: 2,
        timeout: Some(Duration::from_secs(4)),
        ..QueryParams::default()
    };
    let id = sim
        .with_node(0, |s, now| s.query(now, "uptime", b"?".to_vec(), &params))
        .expect("query starts");
    sim.run_for(Duration::from_secs(1));
    for i in all(n) {
        let delivered = sim.nodes[i].events.iter().find_map(|(_, e)| match e {
            SerfEvent::Query(q) if q.name == "uptime" => Some(q.clone()),
            _ => None,
        });
        let q = delivered.unwrap_or_else(|| panic!("node {i} got the query"));
        assert_eq!((q.ltime, q.id), (id.ltime, id.id));
        assert_eq!(q.source_node, sim.nodes[0].name);
        sim.with_node(i, |s, now| {
            s.respond_query(now, q.ltime, q.id, format!("up-{i}").into_bytes())
        })
        .expect("answerable");
    }
    sim.run_for(Duration::from_secs(5));
    let seen = answers(&sim, 0, id);
    assert_eq!(seen.last(), Some(&("finished", String::new())));
    for kind in ["ack", "response"] {
        let mut from: Vec<String> = seen
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, f)| f.clone())
            .collect();
        from.sort();
        let mut names: Vec<String> = sim.nodes.iter().map(|n| n.name.clone()).collect();
        names.sort();
        assert_eq!(from, names, "one {kind} per member");
    }
    // Relayed copies arrive too; they are dropped as duplicates.
    assert!(sim.nodes[0].serf.stats().duplicate_query_responses > 0);
    // A second query gets a later Lamport time.
    let next = sim
        .with_node(0, |s, now| {
            s.query(now, "x", Vec::new(), &QueryParams::default())
        })
        .expect("query starts");
    assert!(next.ltime > id.ltime);
}

#[test]
fn filters_choose_who_answers_and_limits_are_enforced() {
    let n = 4;
    let mut sim = converged(n, &SerfConfig::lan(), NetConfig::default(), 25);
    let params = QueryParams {
        filter_nodes: vec![sim.nodes[2].name.clone()],
        request_ack: true,
        ..QueryParams::default()
    };
    let id = sim
        .with_node(1, |s, now| s.query(now, "who", Vec::new(), &params))
        .expect("query starts");
    sim.run_for(Duration::from_secs(10));
    let acks: Vec<String> = answers(&sim, 1, id)
        .into_iter()
        .filter(|(k, _)| *k == "ack")
        .map(|(_, f)| f)
        .collect();
    assert_eq!(acks, [sim.nodes[2].name.clone()]);
    let too_big = sim.with_node(0, |s, now| {
        s.query(now, "big", vec![0; 2000], &QueryParams::default())
    });
    assert!(matches!(too_big, Err(SerfError::QueryTooLarge { .. })));
    // The default timeout scales with ⌈log10(n + 1)⌉: one digit here.
    let timeout = sim.nodes[0].serf.default_query_timeout();
    assert_eq!(timeout, Duration::from_millis(200 * 16));
}
