//! Reconciliation: each of Consul's rules, sessions bound to `serfHealth`,
//! and the one-round fixed point over random pools and catalogs.

use super::*;
use crate::agent::{AgentOutput, LocalAgent};
use crate::catalog::Check;
use crate::command::{CommandResult, KvOp, KvVerb};
use crate::fsm::{Effects, Fsm};
use crate::gossip::message::Vsn;
use crate::ids::Uuid;
use crate::session::{Behavior, Session};
use crate::time::Duration;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const DC: &str = "dc1";
const LEADER: &str = "leader";
const VSN: Vsn = [1, 5, 2, 2, 5, 4];

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn member_at(
    name: &str,
    addr: IpAddr,
    status: MemberStatus,
    tags: BTreeMap<String, String>,
) -> SerfMember {
    SerfMember {
        name: name.into(),
        addr: SocketAddr::new(addr, 8301),
        tags,
        status,
        vsn: VSN,
    }
}

fn client(name: &str, last: u8, status: MemberStatus) -> SerfMember {
    let id = format!("00000000-0000-4000-8000-0000000000{last:02x}");
    member_at(
        name,
        ip(last),
        status,
        tags(&[("role", "node"), ("dc", DC), ("id", &id)]),
    )
}

fn server(name: &str, last: u8, port: u16, status: MemberStatus) -> SerfMember {
    member_at(
        name,
        ip(last),
        status,
        tags(&[
            ("role", "consul"),
            ("dc", DC),
            ("port", &port.to_string()),
            ("segment", ""),
        ]),
    )
}

fn apply_all(fsm: &mut Fsm, commands: &[Command]) -> Effects {
    let mut all = Effects::default();
    for command in commands {
        let index = fsm.last_applied + 1;
        let mut fx = Effects::default();
        let result = fsm.apply(index, command, &mut fx);
        assert!(
            !matches!(result, CommandResult::Failed(_)),
            "{command:?} failed: {result:?}"
        );
        all.lock_delays.extend(fx.lock_delays);
        all.sessions_removed.extend(fx.sessions_removed);
    }
    fsm.check_invariants();
    all
}

/// One reconciliation round applied; asserts the next round has nothing.
fn round(fsm: &mut Fsm, members: &[SerfMember]) -> (Vec<Command>, Effects) {
    let commands = reconcile(members, &fsm.catalog, DC, LEADER);
    let fx = apply_all(fsm, &commands);
    assert_eq!(
        reconcile(members, &fsm.catalog, DC, LEADER),
        Vec::new(),
        "one round reaches the fixed point"
    );
    (commands, fx)
}

fn serf(fsm: &Fsm, node: &str) -> Option<Check> {
    fsm.catalog
        .checks
        .get(&(node.to_string(), SERF_HEALTH_CHECK_ID.to_string()))
        .cloned()
}

fn registration(command: &Command) -> &Registration {
    match command {
        Command::Register(reg) => reg,
        other => panic!("expected a registration, got {other:?}"),
    }
}

fn deregistration(node: &str) -> Command {
    Command::Deregister {
        node: node.into(),
        service_id: None,
        check_id: None,
    }
}

/// What a node's own agent writes when it joins a pool: its node row with
/// meta and tagged addresses, a service, no `serfHealth`.
fn agent_registers(fsm: &mut Fsm, name: &str, address: &str, server_port: Option<u16>) {
    let mut agent = LocalAgent::new(
        Node {
            id: format!("agent-id-of-{name}"),
            name: name.into(),
            address: address.into(),
            datacenter: DC.into(),
            tagged_addresses: tags(&[("lan", address), ("wan", "192.0.2.1")]),
            meta: tags(&[("rack", "r1")]),
            create_index: 0,
            modify_index: 0,
        },
        9,
    );
    agent.register_node_in_pool(server_port);
    let mut commands = Vec::new();
    while let Some(output) = agent.poll() {
        if let AgentOutput::Propose(command) = output {
            commands.push(command);
        }
    }
    apply_all(fsm, &commands);
}

/// A catalog-API registration: a node with a service and a check of its
/// own, no `serfHealth`.
fn external(fsm: &mut Fsm, name: &str) {
    let mut service = consul_service(name, 5432);
    service.id = "db".into();
    service.name = "db".into();
    let mut check = serf_health_check(name, CheckStatus::Critical, "external probe");
    check.check_id = "db-probe".into();
    let reg = Registration {
        node: Node {
            id: String::new(),
            name: name.into(),
            address: "198.51.100.7".into(),
            datacenter: DC.into(),
            tagged_addresses: Default::default(),
            meta: tags(&[("external-node", "true")]),
            create_index: 0,
            modify_index: 0,
        },
        skip_node_update: false,
        service: Some(service),
        checks: vec![check],
    };
    apply_all(fsm, &[Command::Register(Box::new(reg))]);
}

fn session(id: u128, node: &str, checks: &[&str], behavior: Behavior) -> Command {
    Command::SessionCreate(Box::new(Session {
        id: Uuid::new(id),
        name: format!("s{id}"),
        node: node.into(),
        node_checks: checks.iter().map(|c| c.to_string()).collect(),
        service_checks: Vec::new(),
        lock_delay: Duration::from_secs(15),
        behavior,
        ttl: Duration::ZERO,
        create_index: 0,
        modify_index: 0,
    }))
}

fn lock(key: &str, id: u128) -> Command {
    let mut op = KvOp::new(KvVerb::Lock, key);
    op.value = b"held".to_vec();
    op.session = Some(Uuid::new(id));
    Command::Kv(op)
}

// ------------------------------------------------------------------ alive

#[test]
fn alive_client_is_registered_with_passing_serf_health() {
    let mut fsm = Fsm::default();
    let (commands, _) = round(&mut fsm, &[client("c1", 5, MemberStatus::Alive)]);
    assert_eq!(commands.len(), 1);
    let reg = registration(&commands[0]);
    assert!(!reg.skip_node_update);
    assert_eq!(reg.service, None, "a client has no consul service");
    assert_eq!(reg.node.address, "10.0.0.5");
    assert_eq!(reg.node.id, "00000000-0000-4000-8000-000000000005");
    assert_eq!(reg.node.datacenter, DC);
    let check = serf(&fsm, "c1").expect("serfHealth registered");
    assert_eq!(check.status, CheckStatus::Passing);
    assert_eq!(check.name, "Serf Health Status");
    assert_eq!(check.output, "Agent alive and reachable");
    assert_eq!(fsm.catalog.node_services("c1").count(), 0);
}

#[test]
fn alive_server_gets_the_consul_service_on_its_port_tag() {
    let mut fsm = Fsm::default();
    round(&mut fsm, &[server("s1", 2, 8300, MemberStatus::Alive)]);
    let key = ("s1".to_string(), "consul".to_string());
    assert_eq!(fsm.catalog.services[&key].port, 8300);
    assert_eq!(
        serf(&fsm, "s1").map(|c| c.status),
        Some(CheckStatus::Passing)
    );
    // The port tag changes: the service follows.
    let (commands, _) = round(&mut fsm, &[server("s1", 2, 8400, MemberStatus::Alive)]);
    assert_eq!(commands.len(), 1);
    assert_eq!(fsm.catalog.services[&key].port, 8400);
}

#[test]
fn alive_member_in_sync_needs_nothing() {
    let mut fsm = Fsm::default();
    let members = [
        client("c1", 5, MemberStatus::Alive),
        server("s1", 2, 8300, MemberStatus::Alive),
    ];
    round(&mut fsm, &members);
    let before = fsm.clone();
    assert_eq!(reconcile(&members, &fsm.catalog, DC, LEADER), Vec::new());
    assert_eq!(fsm, before);
}

/// The agent owns its node's meta and tagged addresses; the leader takes
/// the address and ID from gossip and keeps the rest.
#[test]
fn alive_keeps_the_agents_node_meta_and_tagged_addresses() {
    let mut fsm = Fsm::default();
    agent_registers(&mut fsm, "s1", "10.0.0.2", Some(8300));
    assert_eq!(
        serf(&fsm, "s1"),
        None,
        "the pooled agent wrote no serfHealth"
    );
    let consul_before = fsm.catalog.services[&("s1".to_string(), "consul".to_string())].clone();
    let (commands, _) = round(&mut fsm, &[server("s1", 2, 8300, MemberStatus::Alive)]);
    assert_eq!(commands.len(), 1, "only serfHealth was missing");
    let node = &fsm.catalog.nodes["s1"];
    assert_eq!(node.meta, tags(&[("rack", "r1")]));
    assert_eq!(node.tagged_addresses["wan"], "192.0.2.1");
    assert_eq!(
        node.id, "agent-id-of-s1",
        "no id tag: the catalog's ID stays"
    );
    let consul_after = &fsm.catalog.services[&("s1".to_string(), "consul".to_string())];
    assert_eq!(
        consul_after.modify_index, consul_before.modify_index,
        "the agent and the leader write the same consul service"
    );

    // Gossip reports a new address: the leader records it.
    let moved = server("s1", 9, 8300, MemberStatus::Alive);
    let (commands, _) = round(&mut fsm, &[moved]);
    assert_eq!(registration(&commands[0]).node.address, "10.0.0.9");
    assert_eq!(fsm.catalog.nodes["s1"].address, "10.0.0.9");
    assert_eq!(fsm.catalog.nodes["s1"].meta, tags(&[("rack", "r1")]));
}

#[test]
fn alive_turns_critical_serf_health_back_to_passing() {
    let mut fsm = Fsm::default();
    round(&mut fsm, &[client("c1", 5, MemberStatus::Failed)]);
    assert_eq!(serf(&fsm, "c1"), None, "failed before ever registered");
    round(&mut fsm, &[client("c1", 5, MemberStatus::Alive)]);
    round(&mut fsm, &[client("c1", 5, MemberStatus::Failed)]);
    assert_eq!(
        serf(&fsm, "c1").map(|c| c.status),
        Some(CheckStatus::Critical)
    );
    let (commands, _) = round(&mut fsm, &[client("c1", 5, MemberStatus::Alive)]);
    assert_eq!(commands.len(), 1);
    assert_eq!(
        serf(&fsm, "c1").map(|c| c.status),
        Some(CheckStatus::Passing)
    );
}

/// Go prints an IPv4-mapped IPv6 address as IPv4; so does the catalog.
#[test]
fn ipv4_mapped_addresses_are_recorded_as_ipv4() {
    let mut fsm = Fsm::default();
    let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 5).to_ipv6_mapped());
    let mut m = client("c1", 5, MemberStatus::Alive);
    m.addr = SocketAddr::new(mapped, 8301);
    round(&mut fsm, &[m.clone()]);
    assert_eq!(fsm.catalog.nodes["c1"].address, "10.0.0.5");
    assert_eq!(
        reconcile(
            &[client("c1", 5, MemberStatus::Alive)],
            &fsm.catalog,
            DC,
            LEADER
        ),
        Vec::new(),
        "the same address either way"
    );
    m.addr = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 8301);
    round(&mut fsm, &[m]);
    assert_eq!(fsm.catalog.nodes["c1"].address, "::1");
}

// ----------------------------------------------------------------- failed

#[test]
fn failed_member_marks_serf_health_critical_without_touching_the_node() {
    let mut fsm = Fsm::default();
    agent_registers(&mut fsm, "c1", "10.0.0.5", None);
    round(&mut fsm, &[client("c1", 5, MemberStatus::Alive)]);
    let node_before = fsm.catalog.nodes["c1"].clone();
    // Failed, and gossip last saw it elsewhere: only the check changes.
    let (commands, _) = round(&mut fsm, &[client("c1", 6, MemberStatus::Failed)]);
    assert_eq!(commands.len(), 1);
    let reg = registration(&commands[0]);
    assert!(reg.skip_node_update);
    assert_eq!(reg.service, None);
    assert_eq!(fsm.catalog.nodes["c1"], node_before);
    let check = serf(&fsm, "c1").expect("serfHealth");
    assert_eq!(check.status, CheckStatus::Critical);
    assert_eq!(check.output, "Agent not live or unreachable");
}

/// Consul stopped resurrecting deregistered nodes from failed members.
#[test]
fn failed_member_missing_from_the_catalog_is_ignored() {
    let fsm = Fsm::default();
    let members = [
        client("c1", 5, MemberStatus::Failed),
        server("s1", 2, 8300, MemberStatus::Failed),
    ];
    assert_eq!(reconcile(&members, &fsm.catalog, DC, LEADER), Vec::new());
}

/// A node whose agent registered it but which the leader never saw alive
/// still gets its critical serfHealth.
#[test]
fn failed_member_without_serf_health_gets_a_critical_one() {
    let mut fsm = Fsm::default();
    agent_registers(&mut fsm, "c1", "10.0.0.5", None);
    let (commands, _) = round(&mut fsm, &[client("c1", 5, MemberStatus::Failed)]);
    assert_eq!(commands.len(), 1);
    assert_eq!(
        serf(&fsm, "c1").map(|c| c.status),
        Some(CheckStatus::Critical)
    );
}

#[test]
fn failed_member_already_critical_needs_nothing() {
    let mut fsm = Fsm::default();
    round(&mut fsm, &[client("c1", 5, MemberStatus::Alive)]);
    round(&mut fsm, &[client("c1", 5, MemberStatus::Failed)]);
    let index = fsm.last_applied;
    assert_eq!(
        reconcile(
            &[client("c1", 5, MemberStatus::Failed)],
            &fsm.catalog,
            DC,
            LEADER
        ),
        Vec::new()
    );
    assert_eq!(fsm.last_applied, index);
}

/// The critical serfHealth the leader writes for a failed member destroys
/// the sessions bound to it, releasing (or deleting) their locks with the
/// lock-delay; a session on the same node without that check survives.
#[test]
fn failed_member_loses_its_serf_health_sessions_and_their_locks() {
    let mut fsm = Fsm::default();
    agent_registers(&mut fsm, "c1", "10.0.0.5", None);
    round(&mut fsm, &[client("c1", 5, MemberStatus::Alive)]);
    apply_all(
        &mut fsm,
        &[
            session(1, "c1", &[SERF_HEALTH_CHECK_ID], Behavior::Release),
            session(2, "c1", &[SERF_HEALTH_CHECK_ID], Behavior::Delete),
            session(3, "c1", &[], Behavior::Release),
            lock("locks/release", 1),
            lock("locks/delete", 2),
            lock("locks/unchecked", 3),
        ],
    );
    assert_eq!(
        fsm.kv.get("locks/release").and_then(|e| e.session),
        Some(Uuid::new(1))
    );

    let (_, fx) = round(&mut fsm, &[client("c1", 5, MemberStatus::Failed)]);

    assert_eq!(fx.sessions_removed, vec![Uuid::new(1), Uuid::new(2)]);
    assert!(fsm.sessions.get(Uuid::new(1)).is_none());
    assert!(fsm.sessions.get(Uuid::new(2)).is_none());
    assert!(
        fsm.sessions.get(Uuid::new(3)).is_some(),
        "not bound to serfHealth"
    );
    let released = fsm.kv.get("locks/release").expect("release keeps the key");
    assert_eq!(released.session, None);
    assert_eq!(&*released.value, b"held");
    assert_eq!(released.lock_index, 1);
    assert!(fsm.kv.get("locks/delete").is_none(), "delete behavior");
    assert_eq!(
        fsm.kv.get("locks/unchecked").and_then(|e| e.session),
        Some(Uuid::new(3))
    );
    let mut delayed: Vec<_> = fx
        .lock_delays
        .iter()
        .map(|(k, d)| (k.as_str(), *d))
        .collect();
    delayed.sort();
    assert_eq!(
        delayed,
        vec![
            ("locks/delete", Duration::from_secs(15)),
            ("locks/release", Duration::from_secs(15)),
        ]
    );
    // New sessions on the failed node's serfHealth are refused.
    let mut fx = Effects::default();
    let index = fsm.last_applied + 1;
    let refused = fsm.apply(
        index,
        &session(4, "c1", &[SERF_HEALTH_CHECK_ID], Behavior::Release),
        &mut fx,
    );
    assert!(matches!(refused, CommandResult::Failed(_)), "{refused:?}");
}

// ------------------------------------------------------ left and leaving

#[test]
fn left_member_is_deregistered_with_its_services_checks_and_sessions() {
    let mut fsm = Fsm::default();
    agent_registers(&mut fsm, "s1", "10.0.0.2", Some(8300));
    round(&mut fsm, &[server("s1", 2, 8300, MemberStatus::Alive)]);
    apply_all(
        &mut fsm,
        &[session(7, "s1", &[], Behavior::Release), lock("l", 7)],
    );
    let (commands, fx) = round(&mut fsm, &[server("s1", 2, 8300, MemberStatus::Left)]);
    assert_eq!(commands, vec![deregistration("s1")]);
    assert!(!fsm.catalog.nodes.contains_key("s1"));
    assert_eq!(fsm.catalog.node_services("s1").count(), 0);
    assert_eq!(fsm.catalog.node_checks("s1").count(), 0);
    assert_eq!(fx.sessions_removed, vec![Uuid::new(7)]);
    assert_eq!(fsm.kv.get("l").and_then(|e| e.session), None);
}

#[test]
fn left_member_missing_from_the_catalog_needs_nothing() {
    let fsm = Fsm::default();
    assert_eq!(
        reconcile(
            &[client("c1", 5, MemberStatus::Left)],
            &fsm.catalog,
            DC,
            LEADER
        ),
        Vec::new()
    );
}

/// Only a leaving leader sees itself leave; a follower that takes over
/// deregisters it.
#[test]
fn the_local_node_is_never_deregistered() {
    let mut fsm = Fsm::default();
    round(&mut fsm, &[server(LEADER, 1, 8300, MemberStatus::Alive)]);
    for members in [
        vec![server(LEADER, 1, 8300, MemberStatus::Left)],
        vec![server("LEADER", 1, 8300, MemberStatus::Left)],
        Vec::new(),
    ] {
        assert_eq!(reconcile(&members, &fsm.catalog, DC, LEADER), Vec::new());
    }
    // From a follower's point of view it goes.
    assert_eq!(
        reconcile(
            &[server(LEADER, 1, 8300, MemberStatus::Left)],
            &fsm.catalog,
            DC,
            "s2"
        ),
        vec![deregistration(LEADER)]
    );
}

/// Consul's reconcileMember has no case for leaving (or none): the node
/// stays as it is until serf settles on left or failed.
#[test]
fn leaving_and_none_members_are_left_alone() {
    let mut fsm = Fsm::default();
    round(&mut fsm, &[client("c1", 5, MemberStatus::Alive)]);
    for status in [MemberStatus::Leaving, MemberStatus::None] {
        // Not reaped either: the member is still known.
        let members = [client("c1", 7, status), client("c2", 8, status)];
        assert_eq!(reconcile(&members, &fsm.catalog, DC, LEADER), Vec::new());
    }
}

// ------------------------------------------------------------------ reaped

#[test]
fn reaped_nodes_go_but_external_and_local_nodes_stay() {
    let mut fsm = Fsm::default();
    round(
        &mut fsm,
        &[
            server(LEADER, 1, 8300, MemberStatus::Alive),
            client("gone", 3, MemberStatus::Alive),
            client("gone-failed", 4, MemberStatus::Alive),
            client("kept", 5, MemberStatus::Alive),
        ],
    );
    round(
        &mut fsm,
        &[
            server(LEADER, 1, 8300, MemberStatus::Alive),
            client("gone", 3, MemberStatus::Alive),
            client("gone-failed", 4, MemberStatus::Failed),
            client("kept", 5, MemberStatus::Alive),
        ],
    );
    assert_eq!(
        serf(&fsm, "gone-failed").map(|c| c.status),
        Some(CheckStatus::Critical)
    );
    external(&mut fsm, "ext");
    agent_registers(&mut fsm, "unjudged", "10.0.0.9", None);
    let ext_before: Vec<Check> = fsm.catalog.node_checks("ext").cloned().collect();

    // serf forgot `gone` and `gone-failed`; the leader is not in the list.
    let (commands, _) = round(&mut fsm, &[client("kept", 5, MemberStatus::Alive)]);
    assert_eq!(
        commands,
        vec![deregistration("gone"), deregistration("gone-failed")]
    );
    assert!(fsm.catalog.nodes.contains_key(LEADER));
    assert!(fsm.catalog.nodes.contains_key("kept"));
    assert!(
        fsm.catalog.nodes.contains_key("unjudged"),
        "no serfHealth: not gossip's"
    );
    let ext_after: Vec<Check> = fsm.catalog.node_checks("ext").cloned().collect();
    assert_eq!(ext_after, ext_before);
    assert!(fsm
        .catalog
        .services
        .contains_key(&("ext".to_string(), "db".to_string())));
}

/// Members of other datacenters, in other segments, plain serf agents and
/// servers with a bad port are not the catalog's business, but their names
/// are known, so nodes with those names are not reaped (Consul's `known`
/// holds every member).
#[test]
fn foreign_members_are_skipped_but_known() {
    let mut fsm = Fsm::default();
    let names = ["other-dc", "no-role", "segmented", "bad-port", "no-dc"];
    let alive: Vec<SerfMember> = names
        .iter()
        .enumerate()
        .map(|(i, n)| client(n, 20 + i as u8, MemberStatus::Alive))
        .collect();
    round(&mut fsm, &alive);
    for name in names {
        assert!(serf(&fsm, name).is_some());
    }
    let mut foreign = vec![
        member_at(
            "other-dc",
            ip(20),
            MemberStatus::Left,
            tags(&[("role", "node"), ("dc", "dc2")]),
        ),
        member_at("no-role", ip(21), MemberStatus::Left, tags(&[("dc", DC)])),
        member_at(
            "segmented",
            ip(22),
            MemberStatus::Left,
            tags(&[
                ("role", "consul"),
                ("dc", DC),
                ("port", "8300"),
                ("segment", "alpha"),
            ]),
        ),
        member_at(
            "bad-port",
            ip(23),
            MemberStatus::Left,
            tags(&[("role", "consul"), ("dc", DC), ("port", "eighty")]),
        ),
        member_at(
            "no-dc",
            ip(24),
            MemberStatus::Left,
            tags(&[("role", "node")]),
        ),
    ];
    assert_eq!(reconcile(&foreign, &fsm.catalog, DC, LEADER), Vec::new());
    // Alive foreign members are not registered either.
    for m in &mut foreign {
        m.name = format!("new-{}", m.name);
        m.status = MemberStatus::Alive;
    }
    assert_eq!(
        reconcile(&foreign, &Catalog::default(), DC, LEADER),
        Vec::new()
    );
}

/// Names are compared as Consul's case-insensitive catalog would for the
/// known set: a node whose name differs from a member's only in case is
/// not reaped.
#[test]
fn known_names_ignore_case() {
    let mut fsm = Fsm::default();
    round(&mut fsm, &[client("Node-A", 5, MemberStatus::Alive)]);
    assert_eq!(
        reconcile(
            &[client("node-a", 5, MemberStatus::Leaving)],
            &fsm.catalog,
            DC,
            LEADER
        ),
        Vec::new()
    );
}

/// The commands depend on the set of members, not on their order.
#[test]
fn output_follows_name_order_whatever_the_member_order() {
    let mut fsm = Fsm::default();
    round(
        &mut fsm,
        &[
            client("b", 2, MemberStatus::Alive),
            client("d", 4, MemberStatus::Alive),
            client("x", 9, MemberStatus::Alive),
        ],
    );
    let mut members = vec![
        client("d", 4, MemberStatus::Left),
        client("c", 3, MemberStatus::Alive),
        client("b", 2, MemberStatus::Failed),
        client("a", 1, MemberStatus::Alive),
    ];
    let forward = reconcile(&members, &fsm.catalog, DC, LEADER);
    members.reverse();
    assert_eq!(reconcile(&members, &fsm.catalog, DC, LEADER), forward);
    let order: Vec<String> = forward
        .iter()
        .map(|c| match c {
            Command::Register(reg) => reg.node.name.clone(),
            Command::Deregister { node, .. } => format!("-{node}"),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(order, ["a", "b", "c", "-d", "-x"]);
}

// --------------------------------------------------------------- proptest

/// Names a pool may hold; `LEADER` is the local node, `N3` differs from
/// `n3` only in case.
const NAMES: [&str; 6] = [LEADER, "n1", "n2", "n3", "N3", "s1"];
const EXTERNAL: [&str; 2] = ["ext1", "ext2"];

fn address(choice: u8) -> IpAddr {
    match choice {
        0 => ip(1),
        1 => ip(2),
        _ => IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
    }
}

/// What the catalog holds for a name before the round:
/// (0 nothing | 1 node only | 2 serfHealth passing | 3 serfHealth critical,
///  address, consul service: 0 none | 1 port 8300 | 2 port 9300).
type Prior = (u8, u8, u8);

/// A name's member, if any:
/// (0 none | 1 alive | 2 leaving | 3 left | 4 failed | 5 status none,
///  0 client | 1 server | 2 other dc | 3 no role | 4 bad port,
///  address, port 8300 | 9300).
type Gossip = (u8, u8, u8, bool);

fn build_catalog(priors: &[Prior], externals: &[bool]) -> Fsm {
    let mut fsm = Fsm::default();
    for (i, &(kind, addr, consul)) in priors.iter().enumerate() {
        if kind == 0 {
            continue;
        }
        let name = NAMES[i];
        let checks = match kind {
            2 => vec![serf_health_check(name, CheckStatus::Passing, "")],
            3 => vec![serf_health_check(name, CheckStatus::Critical, "")],
            _ => Vec::new(),
        };
        let service = match consul {
            1 => Some(consul_service(name, 8300)),
            2 => Some(consul_service(name, 9300)),
            _ => None,
        };
        let reg = Registration {
            node: Node {
                id: String::new(),
                name: name.into(),
                address: address(addr).to_string(),
                datacenter: DC.into(),
                tagged_addresses: Default::default(),
                meta: tags(&[("owner", name)]),
                create_index: 0,
                modify_index: 0,
            },
            skip_node_update: false,
            service,
            checks,
        };
        apply_all(&mut fsm, &[Command::Register(Box::new(reg))]);
        // A session with a lock on every node that can hold one.
        if kind == 2 {
            let id = 100 + i as u128;
            apply_all(
                &mut fsm,
                &[
                    session(id, name, &[SERF_HEALTH_CHECK_ID], Behavior::Release),
                    lock(&format!("lock/{name}"), id),
                ],
            );
        }
    }
    for (name, present) in EXTERNAL.iter().zip(externals) {
        if *present {
            external(&mut fsm, name);
        }
    }
    fsm
}

fn build_members(gossip: &[Gossip]) -> Vec<SerfMember> {
    gossip
        .iter()
        .enumerate()
        .filter_map(|(i, &(status, role, addr, high_port))| {
            let status = match status {
                1 => MemberStatus::Alive,
                2 => MemberStatus::Leaving,
                3 => MemberStatus::Left,
                4 => MemberStatus::Failed,
                5 => MemberStatus::None,
                _ => return None,
            };
            let port = if high_port { "9300" } else { "8300" };
            let tags = match role {
                0 => tags(&[("role", "node"), ("dc", DC)]),
                1 => tags(&[("role", "consul"), ("dc", DC), ("port", port)]),
                2 => tags(&[("role", "node"), ("dc", "dc2")]),
                3 => tags(&[("dc", DC)]),
                _ => tags(&[("role", "consul"), ("dc", DC), ("port", "-1")]),
            };
            Some(member_at(NAMES[i], address(addr), status, tags))
        })
        .collect()
}

proptest! {
    /// Whatever the pool and the catalog, one round of commands applies
    /// without error, leaves the store consistent, and reaches the fixed
    /// point; it never deregisters the local node or an external node, and
    /// each handled member ends as its status says.
    #[test]
    fn one_round_reaches_a_fixed_point(
        priors in prop::collection::vec((0u8..4, 0u8..3, 0u8..3), NAMES.len()),
        gossip in prop::collection::vec((0u8..6, 0u8..5, 0u8..3, any::<bool>()), NAMES.len()),
        externals in prop::collection::vec(any::<bool>(), EXTERNAL.len()),
        reversed in any::<bool>(),
    ) {
        let mut fsm = build_catalog(&priors, &externals);
        let mut members = build_members(&gossip);
        if reversed {
            members.reverse();
        }
        let externals_before: Vec<_> = EXTERNAL
            .iter()
            .map(|n| {
                (
                    fsm.catalog.nodes.get(*n).cloned(),
                    fsm.catalog.node_checks(n).cloned().collect::<Vec<_>>(),
                    fsm.catalog.node_services(n).cloned().collect::<Vec<_>>(),
                )
            })
            .collect();

        let commands = reconcile(&members, &fsm.catalog, DC, LEADER);
        for command in &commands {
            if let Command::Deregister { node, .. } = command {
                prop_assert!(node != LEADER, "the local node: {commands:?}");
                prop_assert!(!EXTERNAL.contains(&node.as_str()), "external {node}");
            }
        }
        apply_all(&mut fsm, &commands);
        prop_assert_eq!(reconcile(&members, &fsm.catalog, DC, LEADER), Vec::new());
        members.reverse();
        prop_assert_eq!(reconcile(&members, &fsm.catalog, DC, LEADER), Vec::new());

        let externals_after: Vec<_> = EXTERNAL
            .iter()
            .map(|n| {
                (
                    fsm.catalog.nodes.get(*n).cloned(),
                    fsm.catalog.node_checks(n).cloned().collect::<Vec<_>>(),
                    fsm.catalog.node_services(n).cloned().collect::<Vec<_>>(),
                )
            })
            .collect();
        prop_assert_eq!(externals_after, externals_before);
        if priors[0].0 != 0 {
            prop_assert!(fsm.catalog.nodes.contains_key(LEADER), "the local node stays");
        }

        for member in build_members(&gossip) {
            let name = member.name.as_str();
            let handled = role(&member, DC).is_some();
            let existed = priors[NAMES.iter().position(|n| *n == name).unwrap_or(0)].0 != 0;
            let status = serf(&fsm, name).map(|c| c.status);
            match (handled, member.status) {
                (true, MemberStatus::Alive) => {
                    prop_assert_eq!(status, Some(CheckStatus::Passing));
                    let ip = member.addr.ip().to_canonical().to_string();
                    prop_assert_eq!(&fsm.catalog.nodes[name].address, &ip);
                }
                (true, MemberStatus::Failed) if existed => {
                    prop_assert_eq!(status, Some(CheckStatus::Critical));
                    prop_assert!(fsm.sessions.on_node(name).next().is_none());
                    prop_assert_eq!(
                        fsm.kv.get(&format!("lock/{name}")).and_then(|e| e.session),
                        None
                    );
                }
                (true, MemberStatus::Left) if name != LEADER => {
                    prop_assert!(!fsm.catalog.nodes.contains_key(name));
                }
                _ => {}
            }
        }
    }
}

#[test]
fn alive_servers_are_the_alive_consul_members_of_the_datacenter_with_a_port() {
    let mut no_port = server("s4", 14, 8300, MemberStatus::Alive);
    no_port.tags.remove(PORT_TAG);
    let mut other_dc = server("s5", 15, 8300, MemberStatus::Alive);
    other_dc.tags.insert(DATACENTER_TAG.into(), "dc2".into());
    let members = vec![
        server("s1", 11, 8300, MemberStatus::Alive),
        server("s2", 12, 8301, MemberStatus::Failed),
        client("c1", 21, MemberStatus::Alive),
        server("s3", 13, 8302, MemberStatus::Alive),
        no_port,
        other_dc,
    ];
    let found: Vec<(&str, u16)> = alive_servers(&members, "dc1")
        .map(|(m, port)| (m.name.as_str(), port))
        .collect();
    assert_eq!(found, [("s1", 8300), ("s3", 8302)]);
}
