//! The leader's gossip-to-catalog reconciliation (Consul's `leader.go`:
//! `reconcile`, `reconcileMember`, `reconcileReaped`).
//!
//! In a gossip pool, a node's liveness is the leader's to record: it
//! compares the LAN members serf knows with the catalog and proposes what
//! makes the catalog agree. Agents register their own node, services and
//! checks, but not `serfHealth` (see
//! [`LocalAgent::register_node_in_pool`](crate::agent::LocalAgent::register_node_in_pool)).
//!
//! Which members count (Consul's `shouldHandleMember`): a client (`role`
//! tag `node`) of this datacenter (`dc` tag), or a server (`role` tag
//! `consul`) of this datacenter in the default segment whose `port` tag is
//! its RPC port. Others (other datacenters, plain serf agents, servers with
//! a bad `port`) are left alone, though their names still count as known.
//!
//! - Alive: the node is registered with the member's IP address, a passing
//!   `serfHealth` and, for a server, the `consul` service, unless the
//!   catalog already says exactly that. The node's ID comes from the `id`
//!   tag (else the catalog's); tagged addresses and meta are the catalog's,
//!   since the node's own agent keeps those.
//! - Failed: a node in the catalog gets a critical `serfHealth` (without
//!   touching the node row), unless it already has one. Applying it
//!   invalidates the sessions bound to that check. A failed member the
//!   catalog does not have is ignored, as Consul does since it stopped
//!   resurrecting deregistered nodes ("ignoring failed event for member
//!   because it does not exist in the catalog").
//! - Left: the node is deregistered with everything on it.
//! - Leaving, None: nothing (Consul's switch has no case for them).
//! - Reaped: a catalog node with a `serfHealth` check whose name no member
//!   has (serf forgot it while this server was not leading) is
//!   deregistered. Nodes without `serfHealth` were registered through the
//!   catalog API ("external nodes") and are never touched.
//!
//! The local node is never deregistered ("deregistering self should be
//! done by follower": only a leaving leader sees itself leave). Names are
//! compared ignoring ASCII case where Consul does (the local node, the
//! known-member set), which can only make reconciliation do less.
//!
//! One round reaches a fixed point: applying the commands and reconciling
//! the same members again yields nothing. The commands follow the members
//! in name order, then the reaped nodes in catalog order.

use crate::agent::{
    consul_service, serf_health_check, CONSUL_SERVICE, SERF_CHECK_ALIVE_OUTPUT,
    SERF_CHECK_FAILED_OUTPUT, SERF_HEALTH_CHECK_ID,
};
use crate::catalog::{Catalog, CheckStatus, Node, Registration, Service};
use crate::command::Command;
use crate::gossip::{MemberStatus, SerfMember};
use std::collections::{BTreeMap, BTreeSet};

/// Serf tags Consul agents announce (`agent/metadata`).
pub const ROLE_TAG: &str = "role";
pub const DATACENTER_TAG: &str = "dc";
pub const SEGMENT_TAG: &str = "segment";
pub const PORT_TAG: &str = "port";
pub const ID_TAG: &str = "id";
/// `role` values: a server, a client.
pub const SERVER_ROLE: &str = "consul";
pub const CLIENT_ROLE: &str = "node";

/// The alive servers of `datacenter` among `members`, each with its
/// server RPC port (the `port` tag), in the members' order: where a client
/// agent sends requests and where servers find each other.
pub fn alive_servers<'a>(
    members: &'a [SerfMember],
    datacenter: &'a str,
) -> impl Iterator<Item = (&'a SerfMember, u16)> + 'a {
    members.iter().filter_map(move |m| {
        let tag = |name: &str| m.tags.get(name).map(String::as_str);
        let server = m.status == MemberStatus::Alive
            && tag(ROLE_TAG) == Some(SERVER_ROLE)
            && tag(DATACENTER_TAG) == Some(datacenter);
        let port = tag(PORT_TAG)?.parse().ok()?;
        server.then_some((m, port))
    })
}

/// What a member is to the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Client,
    Server { port: u16 },
}

/// The commands that make the catalog agree with the gossip pool's
/// `members`, as seen by the leader `local_node` of `datacenter`. Empty when
/// they agree. `members` holds unique names, as serf's do; should a name
/// repeat, its last entry counts.
pub fn reconcile(
    members: &[SerfMember],
    catalog: &Catalog,
    datacenter: &str,
    local_node: &str,
) -> Vec<Command> {
    let by_name: BTreeMap<&str, &SerfMember> =
        members.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut commands: Vec<Command> = by_name
        .values()
        .filter_map(|member| reconcile_member(member, catalog, datacenter, local_node))
        .collect();
    let known: BTreeSet<String> = by_name.keys().map(|n| n.to_ascii_lowercase()).collect();
    commands.extend(reconcile_reaped(&known, catalog, local_node));
    commands
}

/// Consul's `shouldHandleMember` plus `IsConsulServer`'s port parsing.
fn role(member: &SerfMember, datacenter: &str) -> Option<Role> {
    let tag = |name: &str| member.tags.get(name).map(String::as_str);
    if member.name.is_empty() || tag(DATACENTER_TAG) != Some(datacenter) {
        return None;
    }
    match tag(ROLE_TAG)? {
        CLIENT_ROLE => Some(Role::Client),
        SERVER_ROLE if tag(SEGMENT_TAG).unwrap_or_default().is_empty() => {
            let port = tag(PORT_TAG)?.parse().ok()?;
            Some(Role::Server { port })
        }
        _ => None,
    }
}

fn reconcile_member(
    member: &SerfMember,
    catalog: &Catalog,
    datacenter: &str,
    local_node: &str,
) -> Option<Command> {
    let role = role(member, datacenter)?;
    match member.status {
        MemberStatus::Alive => alive(member, role, catalog, datacenter),
        MemberStatus::Failed => failed(member, catalog, datacenter),
        MemberStatus::Left => deregister(&member.name, catalog, local_node),
        MemberStatus::Leaving | MemberStatus::None => None,
    }
}

/// The address the catalog records for a member: its IP, spelled as Go's
/// `net.IP.String` does (an IPv4-mapped IPv6 address as dotted IPv4).
fn member_address(member: &SerfMember) -> String {
    member.addr.ip().to_canonical().to_string()
}

fn serf_status(catalog: &Catalog, node: &str) -> Option<CheckStatus> {
    catalog
        .checks
        .get(&(node.to_string(), SERF_HEALTH_CHECK_ID.to_string()))
        .map(|c| c.status)
}

fn same_service(have: &Service, want: &Service) -> bool {
    let strip = |s: &Service| Service {
        create_index: 0,
        modify_index: 0,
        ..s.clone()
    };
    strip(have) == strip(want)
}

/// The node row the leader writes for `member`: gossip decides the address
/// and (when tagged) the ID; the rest stays as the catalog has it.
fn member_node(member: &SerfMember, existing: Option<&Node>, datacenter: &str) -> Node {
    let id = match member.tags.get(ID_TAG) {
        Some(id) if !id.is_empty() => id.clone(),
        _ => existing.map(|n| n.id.clone()).unwrap_or_default(),
    };
    Node {
        id,
        name: member.name.clone(),
        address: member_address(member),
        datacenter: datacenter.to_string(),
        tagged_addresses: existing
            .map(|n| n.tagged_addresses.clone())
            .unwrap_or_default(),
        meta: existing.map(|n| n.meta.clone()).unwrap_or_default(),
        create_index: 0,
        modify_index: 0,
    }
}

/// Consul's `handleAliveMember`.
fn alive(member: &SerfMember, role: Role, catalog: &Catalog, datacenter: &str) -> Option<Command> {
    let name = member.name.as_str();
    let service = match role {
        Role::Server { port } => Some(consul_service(name, port)),
        Role::Client => None,
    };
    let existing = catalog.nodes.get(name);
    if let Some(node) = existing {
        let service_ok = service.as_ref().is_none_or(|want| {
            catalog
                .services
                .get(&(name.to_string(), CONSUL_SERVICE.to_string()))
                .is_some_and(|have| same_service(have, want))
        });
        let passing = serf_status(catalog, name) == Some(CheckStatus::Passing);
        if node.address == member_address(member) && service_ok && passing {
            return None;
        }
    }
    Some(Command::Register(Box::new(Registration {
        node: member_node(member, existing, datacenter),
        skip_node_update: false,
        service,
        checks: vec![serf_health_check(
            name,
            CheckStatus::Passing,
            SERF_CHECK_ALIVE_OUTPUT,
        )],
    })))
}

/// Consul's `handleFailedMember`. Unlike Consul, an address that changed
/// while the member was failed does not force a write: the write skips the
/// node row, so it could not change the address anyway, and repeating it
/// every round would keep reconciliation from settling.
fn failed(member: &SerfMember, catalog: &Catalog, datacenter: &str) -> Option<Command> {
    let name = member.name.as_str();
    let existing = catalog.nodes.get(name)?;
    if serf_status(catalog, name) == Some(CheckStatus::Critical) {
        return None;
    }
    Some(Command::Register(Box::new(Registration {
        node: member_node(member, Some(existing), datacenter),
        skip_node_update: true,
        service: None,
        checks: vec![serf_health_check(
            name,
            CheckStatus::Critical,
            SERF_CHECK_FAILED_OUTPUT,
        )],
    })))
}

/// Consul's `handleDeregisterMember`, for left and reaped members.
fn deregister(node: &str, catalog: &Catalog, local_node: &str) -> Option<Command> {
    if node.eq_ignore_ascii_case(local_node) || !catalog.nodes.contains_key(node) {
        return None;
    }
    Some(Command::Deregister {
        node: node.to_string(),
        service_id: None,
        check_id: None,
    })
}

/// Consul's `reconcileReaped`: nodes with a `serfHealth` check that no
/// member (of any role or datacenter) is named after.
fn reconcile_reaped(known: &BTreeSet<String>, catalog: &Catalog, local_node: &str) -> Vec<Command> {
    catalog
        .checks
        .keys()
        .filter(|(node, id)| {
            id == SERF_HEALTH_CHECK_ID && !known.contains(&node.to_ascii_lowercase())
        })
        .filter_map(|(node, _)| deregister(node, catalog, local_node))
        .collect()
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
