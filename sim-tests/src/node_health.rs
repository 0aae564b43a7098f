//! Invariant: once gossip membership has converged, the catalog agrees
//! with it: every alive member's node is registered with a passing
//! `serfHealth` check, and no other node carries a `serfHealth` check (a
//! node whose member is gone is reaped, as Consul's leader reconciles).
//!
//! The input is plain data: the names of the alive members, and every
//! catalog node that has a `serfHealth` check, with the check's status
//! text (`passing`, `critical`, ...). Checked on one leader's catalog at
//! one moment; the simulator polls until it passes or its bound ends, and
//! reports the last failure.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disagreement {
    /// An alive member's node is not in the catalog (or has no
    /// `serfHealth` check).
    Unregistered { node: String },
    /// An alive member's `serfHealth` is not passing.
    NotPassing { node: String, status: String },
    /// A node with a `serfHealth` check that no member is named after.
    NotReaped { node: String, status: String },
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disagreement::Unregistered { node } => {
                write!(
                    f,
                    "alive member {node} has no serfHealth check in the catalog"
                )
            }
            Disagreement::NotPassing { node, status } => {
                write!(f, "alive member {node} has serfHealth {status}")
            }
            Disagreement::NotReaped { node, status } => write!(
                f,
                "node {node} (serfHealth {status}) is no member but was not reaped"
            ),
        }
    }
}

/// Checks `serf_health` (catalog node → its `serfHealth` status) against
/// the `alive` members. Node names compare without case, as Consul's
/// catalog does.
pub fn check(
    alive: &BTreeSet<String>,
    serf_health: &BTreeMap<String, String>,
) -> Result<(), Disagreement> {
    let health: BTreeMap<String, (&String, &String)> = serf_health
        .iter()
        .map(|(node, status)| (node.to_ascii_lowercase(), (node, status)))
        .collect();
    let members: BTreeSet<String> = alive.iter().map(|m| m.to_ascii_lowercase()).collect();
    for member in alive {
        match health.get(&member.to_ascii_lowercase()) {
            None => {
                return Err(Disagreement::Unregistered {
                    node: member.clone(),
                })
            }
            Some((_, status)) if status.as_str() != "passing" => {
                return Err(Disagreement::NotPassing {
                    node: member.clone(),
                    status: (*status).clone(),
                })
            }
            Some(_) => {}
        }
    }
    for (lower, (node, status)) in &health {
        if !members.contains(lower) {
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

    fn alive(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn health(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect()
    }

    #[test]
    fn a_catalog_that_matches_the_members_passes() {
        let catalog = health(&[("server-1", "passing"), ("Agent-1", "passing")]);
        assert_eq!(check(&alive(&["server-1", "agent-1"]), &catalog), Ok(()));
    }

    #[test]
    fn a_missing_or_unhealthy_member_is_named() {
        let members = alive(&["server-1", "agent-1"]);
        assert_eq!(
            check(&members, &health(&[("server-1", "passing")])),
            Err(Disagreement::Unregistered {
                node: "agent-1".into()
            })
        );
        let catalog = health(&[("server-1", "passing"), ("agent-1", "critical")]);
        assert_eq!(
            check(&members, &catalog).unwrap_err().to_string(),
            "alive member agent-1 has serfHealth critical"
        );
    }

    #[test]
    fn a_node_nobody_gossips_for_must_be_reaped() {
        let catalog = health(&[("server-1", "passing"), ("agent-9", "critical")]);
        assert_eq!(
            check(&alive(&["server-1"]), &catalog),
            Err(Disagreement::NotReaped {
                node: "agent-9".into(),
                status: "critical".into()
            })
        );
    }
}
