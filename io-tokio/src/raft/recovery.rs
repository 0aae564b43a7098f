//! Outage recovery: Consul's `peers.json`.
//!
//! When a quorum of servers is lost for good, Raft cannot change its
//! configuration (that takes a quorum). The operator stops every surviving
//! server, writes the same `data-dir/raft/peers.json` on each, listing the
//! servers that are to form the cluster from now on, and starts them:
//!
//! ```json
//! [
//!   { "id": "adf4238a-882b-9ddc-4a9d-5b6758e4159e", "address": "10.1.0.1:8300", "non_voter": false },
//!   { "id": "8b6dda82-3103-11e7-93ae-92361f002671", "address": "10.1.0.2:8300" }
//! ]
//! ```
//!
//! `id` is the server's node ID (`data-dir/node-id`, also shown by
//! `tribune operator raft list-peers`), `address` its server RPC address.
//! At start-up, before Raft runs, the server appends a membership entry
//! with exactly those voters after the last entry of its log (with that
//! entry's leader, so no term is invented) and deletes the file. Raft takes
//! the last membership in the log as the effective one, so the survivors
//! elect a leader among themselves; the one with the most complete log
//! wins, and its entries, including any that were never committed, become
//! committed (as with Consul: an outage recovery may keep writes whose
//! acknowledgement was lost).

use super::log_store::LogBackend;
use super::types::{ServerNode, TypeConfig};
use crate::cluster::raft_id;
use openraft::entry::RaftEntry;
use openraft::type_config::alias::{EntryOf, LogIdOf};
use openraft::Membership;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;

pub const PEERS_FILE: &str = "peers.json";

/// One line of `peers.json` (Consul's Raft protocol 3 format).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Peer {
    id: String,
    address: String,
    #[serde(default)]
    non_voter: bool,
}

/// The configuration `peers.json` asks for: voters and every member.
#[derive(Debug, PartialEq, Eq)]
pub struct Recovery {
    pub voters: BTreeSet<u64>,
    pub nodes: BTreeMap<u64, SocketAddr>,
}

/// Parses `peers.json`; every problem is an error naming the file.
pub fn parse(path: &Path, text: &str) -> Result<Recovery, String> {
    let fail = |why: String| format!("{}: {why}", path.display());
    let peers: Vec<Peer> =
        serde_json::from_str(text).map_err(|e| fail(format!("not a peers list: {e}")))?;
    let mut recovery = Recovery {
        voters: BTreeSet::new(),
        nodes: BTreeMap::new(),
    };
    for peer in peers {
        let id =
            raft_id(&peer.id).ok_or_else(|| fail(format!("{:?} is not a node ID", peer.id)))?;
        let address: SocketAddr = peer
            .address
            .parse()
            .map_err(|e| fail(format!("address {:?}: {e}", peer.address)))?;
        if recovery.nodes.insert(id, address).is_some() {
            return Err(fail(format!("node ID {} is listed twice", peer.id)));
        }
        if !peer.non_voter {
            recovery.voters.insert(id);
        }
    }
    if recovery.voters.is_empty() {
        return Err(fail("no voter listed".into()));
    }
    Ok(recovery)
}

/// Appends the membership `recovery` asks for after the last entry of
/// `log`. Names of servers the log's last membership knows are kept; new
/// ones are named by their address. Returns the new entry's index.
pub fn apply<L: LogBackend<TypeConfig>>(log: &mut L, recovery: &Recovery) -> Result<u64, String> {
    let last = match (log.last_entry_id(), log.last_purged()) {
        (Some(last), _) | (None, Some(last)) => last,
        (None, None) => {
            return Err(
                "this server never was in a cluster: there is nothing to recover; \
                 start it with -bootstrap-expect instead"
                    .into(),
            )
        }
    };
    let names = last_membership_names(log, last.index)?;
    let nodes: BTreeMap<u64, ServerNode> = recovery
        .nodes
        .iter()
        .map(|(id, addr)| {
            let name = names.get(id).cloned().unwrap_or_else(|| addr.to_string());
            (*id, ServerNode::new(name, *addr))
        })
        .collect();
    let membership = Membership::new(vec![recovery.voters.clone()], nodes)
        .map_err(|e| format!("peers.json: {e}"))?;
    let index = last.index + 1;
    let log_id = LogIdOf::<TypeConfig>::new(last.leader_id, index);
    log.append(vec![EntryOf::<TypeConfig>::new_membership(
        log_id, membership,
    )])
    .map_err(|e| format!("writing the recovered configuration: {e}"))?;
    Ok(index)
}

/// Server names of the last membership entry at or below `last` still in
/// the log (empty when the log holds none).
fn last_membership_names<L: LogBackend<TypeConfig>>(
    log: &L,
    last: u64,
) -> Result<BTreeMap<u64, String>, String> {
    const STEP: u64 = 256;
    let first = log.last_purged().map_or(0, |p| p.index + 1);
    let mut end = last + 1;
    while end > first {
        let start = end.saturating_sub(STEP).max(first);
        let entries = log
            .entries(start, end)
            .map_err(|e| format!("reading the log: {e}"))?;
        if let Some(membership) = entries.iter().rev().find_map(|e| e.get_membership()) {
            return Ok(membership
                .nodes()
                .map(|(id, node)| (*id, node.name.clone()))
                .collect());
        }
        end = start;
    }
    Ok(BTreeMap::new())
}

/// Reads and applies `raft_dir/peers.json` if it is there, then deletes it
/// (so a later restart does not apply it again). `Ok(None)`: no file.
pub fn recover<L: LogBackend<TypeConfig>>(
    raft_dir: &Path,
    log: &mut L,
) -> Result<Option<Recovery>, String> {
    let path = raft_dir.join(PEERS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let recovery = parse(&path, &text)?;
    let index = apply(log, &recovery)?;
    std::fs::remove_file(&path).map_err(|e| {
        format!(
            "{}: applied at log index {index} but not deleted: {e}; delete it before the \
             next start",
            path.display()
        )
    })?;
    crate::log::warn(&format!(
        "raft: recovered from {}: the configuration is now {} voters (log index {index})",
        path.display(),
        recovery.voters.len()
    ));
    Ok(Some(recovery))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::log_store::MemLog;
    use openraft::vote::RaftLeaderId;

    const A: &str = "00000000-0000-0001-0000-000000000000";
    const B: &str = "00000000-0000-0002-0000-000000000000";

    fn path() -> &'static Path {
        Path::new("/data/raft/peers.json")
    }

    #[test]
    fn parses_consuls_format() {
        let text = format!(
            r#"[{{"id":"{A}","address":"10.0.0.1:8300","non_voter":false}},
                {{"id":"{B}","address":"10.0.0.2:8300","non_voter":true}}]"#
        );
        let recovery = parse(path(), &text).expect("valid");
        assert_eq!(recovery.voters, BTreeSet::from([1]));
        assert_eq!(recovery.nodes.len(), 2);
        assert_eq!(recovery.nodes[&2], "10.0.0.2:8300".parse().unwrap());
    }

    #[test]
    fn refuses_bad_files_naming_the_problem() {
        for (text, why) in [
            ("{", "not a peers list"),
            ("[]", "no voter"),
            (
                r#"[{"id":"x","address":"10.0.0.1:8300"}]"#,
                "is not a node ID",
            ),
            (
                &format!(r#"[{{"id":"{A}","address":"nowhere"}}]"#),
                "address",
            ),
            (
                &format!(
                    r#"[{{"id":"{A}","address":"10.0.0.1:1"}},{{"id":"{A}","address":"10.0.0.2:1"}}]"#
                ),
                "listed twice",
            ),
            (
                &format!(r#"[{{"id":"{A}","address":"10.0.0.1:1","voter":1}}]"#),
                "unknown field",
            ),
        ] {
            let e = parse(path(), text).expect_err(text);
            assert!(e.starts_with("/data/raft/peers.json: "), "{e}");
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    fn leader(
        term: u64,
        node: u64,
    ) -> openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig> {
        openraft::type_config::alias::LeaderIdOf::<TypeConfig>::new(term, node).to_committed()
    }

    #[test]
    fn appends_the_membership_after_the_last_entry_keeping_names() {
        let mut log = MemLog::<TypeConfig>::default();
        let old = Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            [1, 2, 3]
                .into_iter()
                .map(|id| {
                    let addr: SocketAddr = format!("10.0.0.{id}:8300").parse().unwrap();
                    (id, ServerNode::new(format!("s{id}"), addr))
                })
                .collect::<BTreeMap<_, _>>(),
        )
        .unwrap();
        log.append(vec![
            EntryOf::<TypeConfig>::new_membership(LogIdOf::<TypeConfig>::new(leader(1, 1), 0), old),
            EntryOf::<TypeConfig>::new_blank(LogIdOf::<TypeConfig>::new(leader(2, 3), 1)),
        ])
        .unwrap();
        let recovery = parse(
            path(),
            &format!(r#"[{{"id":"{A}","address":"10.0.0.1:8300"}},{{"id":"{B}","address":"10.0.0.9:8300"}}]"#),
        )
        .unwrap();
        assert_eq!(apply(&mut log, &recovery), Ok(2));
        let entry = log.entries(2, 3).unwrap().pop().expect("appended");
        assert_eq!(entry.log_id(), LogIdOf::<TypeConfig>::new(leader(2, 3), 2));
        let membership = entry.get_membership().expect("a membership entry");
        let voters: Vec<u64> = membership.voter_ids().collect();
        assert_eq!(voters, [1, 2]);
        // Known IDs keep their names; addresses are peers.json's.
        let nodes: Vec<(u64, String, String)> = membership
            .nodes()
            .map(|(id, n)| (*id, n.name.clone(), n.rpc_addr.to_string()))
            .collect();
        assert_eq!(
            nodes,
            [
                (1, "s1".into(), "10.0.0.1:8300".into()),
                (2, "s2".into(), "10.0.0.9:8300".into())
            ]
        );
    }

    #[test]
    fn unknown_servers_are_named_by_their_address() {
        let mut log = MemLog::<TypeConfig>::default();
        log.append(vec![EntryOf::<TypeConfig>::new_blank(
            LogIdOf::<TypeConfig>::new(leader(1, 1), 0),
        )])
        .unwrap();
        let recovery = parse(
            path(),
            &format!(r#"[{{"id":"{B}","address":"10.0.0.9:8300"}}]"#),
        )
        .unwrap();
        assert_eq!(apply(&mut log, &recovery), Ok(1));
        let entry = log.entries(1, 2).unwrap().pop().expect("appended");
        let membership = entry.get_membership().expect("a membership entry");
        let names: Vec<String> = membership.nodes().map(|(_, n)| n.name.clone()).collect();
        assert_eq!(names, ["10.0.0.9:8300"]);
    }

    #[test]
    fn a_server_that_never_was_in_a_cluster_has_nothing_to_recover() {
        let mut log = MemLog::<TypeConfig>::default();
        let recovery = parse(
            path(),
            &format!(r#"[{{"id":"{A}","address":"10.0.0.1:8300"}}]"#),
        )
        .unwrap();
        assert!(apply(&mut log, &recovery)
            .unwrap_err()
            .contains("never was in a cluster"));
    }
}
