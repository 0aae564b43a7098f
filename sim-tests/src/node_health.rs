//! Invariant: the catalog agrees with the leader's gossip member list, as
//! Consul's leader reconciles it: an alive member's node is registered
//! with a passing `serfHealth` check, a failed member's has a critical one
//! if it is registered at all (Consul ignores the failure of a node the
//! catalog does not have), and no other node carries a `serfHealth` check
//! (a member that left, or that gossip forgot, is deregistered).
//!
//! The input is plain data: the leader's member list (name → serf status
//! text: `alive`, `failed`, `left`, ...) and every catalog node that has a
//! `serfHealth` check, with the check's status text (`passing`,
//! `critical`, ...). Checked on one leader at one moment; the simulator
//! polls until it passes or its bound ends, and reports the last failure.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disagreement {
    /// A member that should be registered is not (or has no
    /// `serfHealth` check).
    Unregistered { node: String, member: String },
    /// A member's `serfHealth` does not say what gossip says.
    Wrong {
        node: String,
        member: String,
        status: String,
    },
    /// A node with a `serfHealth` check that should have none: no member
    /// is named after it, or its member left.
    NotReaped { node: String, status: String },
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disagreement::Unregistered { node, member } => {
                write!(
                    f,
                    "{member} member {node} has no serfHealth check in the catalog"
                )
            }
            Disagreement::Wrong {
                node,
                member,
                status,
            } => write!(f, "{member} member {node} has serfHealth {status}"),
            Disagreement::NotReaped { node, status } => write!(
                f,
                "node {node} (serfHealth {status}) is no alive or failed member but was not \
                 deregistered"
            ),
        }
    }
}

/// The `serfHealth` status a member with this serf status must have;
/// `None`: it must not be registered.
fn expected(member_status: &str) -> Option<&'static str> {
    match member_status {
        "alive" => Some("passing"),
        "failed" => Some("critical"),
        _ => None,
    }
}

/// Checks `serf_health` (catalog node → its `serfHealth` status) against
/// `members` (the leader's member list: name → serf status). Node names
/// compare without case, as Consul's catalog does.
pub fn check(
    members: &BTreeMap<String, String>,
    serf_health: &BTreeMap<String, String>,
) -> Result<(), Disagreement> {
    let health: BTreeMap<String, (&String, &String)> = serf_health
        .iter()
        .map(|(node, status)| (node.to_ascii_lowercase(), (node, status)))
        .collect();
    let registered: BTreeMap<String, &str> = members
        .iter()
        .filter_map(|(name, status)| Some((name.to_ascii_lowercase(), expected(status)?)))
        .collect();
    for (name, member) in members {
        let Some(want) = expected(member) else {
            continue;
        };
        match health.get(&name.to_ascii_lowercase()) {
            None if member == "failed" => {}
            None => {
                return Err(Disagreement::Unregistered {
                    node: name.clone(),
                    member: member.clone(),
                })
            }
            Some((_, status)) if status.as_str() != want => {
                return Err(Disagreement::Wrong {
                    node: name.clone(),
                    member: member.clone(),
                    status: (*status).clone(),
                })
            }
            Some(_) => {}
        }
    }
    for (lower, (node, status)) in &health {
        if !registered.contains_key(lower) {
            return Err(Disagreement::NotReaped {
                node: (*node).clone(),
                status: (*status).clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect()
    }

    #[test]
    fn a_catalog_that_follows_the_members_passes() {
        let members = map(&[
            ("server-1", "alive"),
            ("agent-1", "alive"),
            ("server-2", "failed"),
            ("agent-2", "left"),
        ]);
        let catalog = map(&[
            ("server-1", "passing"),
            ("Agent-1", "passing"),
            ("server-2", "critical"),
        ]);
        assert_eq!(check(&members, &catalog), Ok(()));
        // A failed member that was never registered stays out.
        let catalog = map(&[("server-1", "passing"), ("Agent-1", "passing")]);
        assert_eq!(check(&members, &catalog), Ok(()));
    }

    #[test]
    fn a_missing_or_wrong_check_is_named() {
        let members = map(&[("server-1", "alive"), ("agent-1", "alive")]);
        assert_eq!(
            check(&members, &map(&[("server-1", "passing")])),
            Err(Disagreement::Unregistered {
                node: "agent-1".into(),
                member: "alive".into()
            })
        );
        let catalog = map(&[("server-1", "passing"), ("agent-1", "critical")]);
        assert_eq!(
            check(&members, &catalog).unwrap_err().to_string(),
            "alive member agent-1 has serfHealth critical"
        );
        let failed = map(&[("server-1", "alive"), ("server-2", "failed")]);
        let catalog = map(&[("server-1", "passing"), ("server-2", "passing")]);
        assert!(matches!(
            check(&failed, &catalog),
            Err(Disagreement::Wrong { .. })
        ));
    }

    #[test]
    fn a_node_whose_member_left_or_is_unknown_must_be_deregistered() {
        let members = map(&[("server-1", "alive"), ("agent-1", "left")]);
        let catalog = map(&[("server-1", "passing"), ("agent-1", "critical")]);
        assert_eq!(
            check(&members, &catalog),
            Err(Disagreement::NotReaped {
                node: "agent-1".into(),
                status: "critical".into()
            })
        );
        let catalog = map(&[("server-1", "passing"), ("agent-9", "passing")]);
        assert!(matches!(
            check(&members, &catalog),
            Err(Disagreement::NotReaped { .. })
        ));
    }
}
