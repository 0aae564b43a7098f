//! How a server forms or joins a cluster, decided from what it knows.
//!
//! The shell greets its join addresses, counts the servers of its
//! datacenter it has heard of (itself included) and whether any server it
//! met is already part of a formed cluster, then asks [`next_step`] what
//! to do; it repeats until it is a voter.

/// What a server that is not yet a voter does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Formation {
    /// A formed cluster was met: ask it to add this server.
    Join,
    /// `-bootstrap` (an expectation of 1): form a cluster of this server
    /// alone; others join it afterwards.
    BootstrapAlone,
    /// At least the expected number of servers know each other: all of
    /// them form the cluster (Consul's rule). `more_than_expected` asks the
    /// shell to warn: servers started at different moments may see
    /// different sets.
    BootstrapAll { more_than_expected: bool },
    /// Keep greeting: too few servers known, or no expectation (join only).
    Wait,
}

/// The next step for a server with `bootstrap_expect` that knows
/// `servers_known` servers of its datacenter (itself included) and has or
/// has not met a server of a formed cluster.
pub fn next_step(
    bootstrap_expect: Option<u32>,
    servers_known: usize,
    met_formed_cluster: bool,
) -> Formation {
    if met_formed_cluster {
        return Formation::Join;
    }
    match bootstrap_expect.map(|n| n as usize) {
        Some(1) => Formation::BootstrapAlone,
        Some(n) if n > 1 && servers_known >= n => Formation::BootstrapAll {
            more_than_expected: servers_known > n,
        },
        _ => Formation::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        assert_eq!(next_step(Some(3), 5, true), Formation::Join);
        assert_eq!(next_step(None, 1, true), Formation::Join);
        assert_eq!(next_step(None, 7, false), Formation::Wait);
        assert_eq!(next_step(Some(1), 3, false), Formation::BootstrapAlone);
        assert_eq!(next_step(Some(3), 2, false), Formation::Wait);
        assert_eq!(
            next_step(Some(3), 3, false),
            Formation::BootstrapAll {
                more_than_expected: false
            }
        );
        assert_eq!(
            next_step(Some(3), 4, false),
            Formation::BootstrapAll {
                more_than_expected: true
            }
        );
        assert_eq!(next_step(Some(0), 4, false), Formation::Wait);
    }
}
