//! Invariant: once faults heal, gossip membership converges: every running
//! member lists every running member, itself included, as alive.
//!
//! A view is what one member's list shows, member name → status text
//! (serf's `alive`, `failed`, `left`, ...). Checked over views taken at one
//! moment; the simulator polls until the check passes or its bound ends,
//! and reports the last failure.

use std::collections::BTreeMap;
use std::fmt;

/// One member's view: member name → status.
pub type View = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disagreement {
    /// `observer`'s list does not have `member` at all.
    Missing { observer: String, member: String },
    /// `observer` lists `member` with a status other than alive.
    NotAlive {
        observer: String,
        member: String,
        status: String,
    },
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disagreement::Missing { observer, member } => {
                write!(f, "{observer} does not list {member}")
            }
            Disagreement::NotAlive {
                observer,
                member,
                status,
            } => write!(f, "{observer} lists {member} as {status}"),
        }
    }
}

/// Checks that every member in `views` (the running members, by name)
/// lists every one of them as `alive`. Members a view lists beyond the
/// running ones (a stopped member shown as failed) are not judged.
pub fn check(views: &BTreeMap<String, View>) -> Result<(), Disagreement> {
    for (observer, view) in views {
        for member in views.keys() {
            match view.get(member) {
                None => {
                    return Err(Disagreement::Missing {
                        observer: observer.clone(),
                        member: member.clone(),
                    })
                }
                Some(status) if status != "alive" => {
                    return Err(Disagreement::NotAlive {
                        observer: observer.clone(),
                        member: member.clone(),
                        status: status.clone(),
                    })
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(entries: &[(&str, &str)]) -> View {
        entries
            .iter()
            .map(|(m, s)| (m.to_string(), s.to_string()))
            .collect()
    }

    #[test]
    fn converged_views_pass_and_extra_failed_members_are_not_judged() {
        let all = [("a", "alive"), ("b", "alive"), ("c", "failed")];
        let views = BTreeMap::from([("a".to_string(), view(&all)), ("b".to_string(), view(&all))]);
        assert_eq!(check(&views), Ok(()));
    }

    #[test]
    fn a_member_seen_failed_or_missing_is_named() {
        let views = BTreeMap::from([
            ("a".to_string(), view(&[("a", "alive"), ("b", "failed")])),
            ("b".to_string(), view(&[("a", "alive"), ("b", "alive")])),
        ]);
        assert_eq!(
            check(&views),
            Err(Disagreement::NotAlive {
                observer: "a".into(),
                member: "b".into(),
                status: "failed".into()
            })
        );
        let views = BTreeMap::from([
            ("a".to_string(), view(&[("a", "alive"), ("b", "alive")])),
            ("b".to_string(), view(&[("b", "alive")])),
        ]);
        assert_eq!(check(&views).unwrap_err().to_string(), "b does not list a");
    }
}
