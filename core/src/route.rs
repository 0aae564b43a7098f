//! Where a request for the cluster's state goes, and what happens when an
//! attempt brings no answer: Consul's router and RPC retry rules, as
//! data. The shells (io-tokio's client agent and server, io-sim's
//! simulated ones) move the bytes; this decides.
//!
//! A client agent sticks to one server ([`Servers`]) and moves to the next
//! when a call fails to reach it. A request ([`Call`]) is tried on another
//! server only when nothing was sent (the connection could not be made)
//! or when it is resendable (a read, or a request that does the same
//! however often it arrives, such as a session renewal): a write whose
//! request may have arrived has an unknown outcome, and sending it again
//! could apply it twice. While no
//! server is reachable (or, on a server, no leader is known) the request
//! is held and tried again for Consul's `rpc_hold_timeout`, then fails.

use crate::rng::Rng;
use crate::time::{Duration, Instant};

/// How long a request is held while no server (or no leader) answers
/// (Consul's `rpc_hold_timeout`).
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(7);
/// Between two rounds over the servers while none answers.
pub const CLIENT_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Between two attempts to reach the leader while there is none.
pub const LEADER_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The servers a client agent knows, the one in use first.
#[derive(Clone, Debug)]
pub struct Servers<A> {
    list: Vec<A>,
    rng: Rng,
}

impl<A: Ord + Clone> Servers<A> {
    pub fn new(seed: u64) -> Servers<A> {
        Servers {
            list: Vec::new(),
            rng: Rng::from_seed(seed),
        }
    }

    /// The servers known now, the one in use first.
    pub fn known(&self) -> &[A] {
        &self.list
    }

    /// Replaces the list with the servers the pool shows now. The server in
    /// use stays first while it is listed; otherwise a random one is picked,
    /// so that clients spread over the servers.
    pub fn update(&mut self, found: impl IntoIterator<Item = A>) {
        let mut found: Vec<A> = found.into_iter().collect();
        found.sort();
        found.dedup();
        let current = self.list.first();
        match current.and_then(|c| found.iter().position(|s| s == c)) {
            Some(at) => found.rotate_left(at),
            None if !found.is_empty() => {
                let at = self.rng.below(found.len() as u64) as usize;
                found.rotate_left(at);
            }
            None => {}
        }
        self.list = found;
    }

    /// A call to `failed` brought no answer: the next server is used from
    /// now on (if `failed` is still the one in use).
    pub fn demote(&mut self, failed: &A) {
        if self.list.first() == Some(failed) {
            self.list.rotate_left(1);
        }
    }
}

/// How an attempt ended without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// Nothing was sent: the connection could not be made.
    NotSent,
    /// The request was sent (it may have arrived) and no answer came.
    NoAnswer,
    /// The server answered that it does not lead (nothing was done).
    NotLeader,
}

/// Why a request failed for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A client agent reached no server within the hold timeout (Consul's
    /// "No known Consul servers"); nothing was done.
    NoServers,
    /// A server found no leader within the hold timeout (Consul's "No
    /// cluster leader"); nothing was done.
    NoLeader,
    /// A write was sent and no answer came: it may take effect.
    Unknown,
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Try the next candidate now.
    Next,
    /// Every candidate was tried: start over after this pause.
    Wait(Duration),
    Fail(Failure),
}

/// Who holds the request: a client agent going to its servers, or a
/// server going to its leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    Client,
    Server,
}

/// One request on its way, from its first attempt to its answer.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    resendable: bool,
    holder: Holder,
    hold_until: Instant,
}

impl Call {
    /// A client agent's request to its servers, begun at `now`;
    /// `resendable`: a read, or a request that does the same however often
    /// it arrives.
    pub fn from_client(now: Instant, resendable: bool) -> Call {
        Call {
            resendable,
            holder: Holder::Client,
            hold_until: now + HOLD_TIMEOUT,
        }
    }

    /// A server's request to the leader (a forwarded write or read), begun
    /// at `now`.
    pub fn to_leader(now: Instant, resendable: bool) -> Call {
        Call {
            resendable,
            holder: Holder::Server,
            hold_until: now + HOLD_TIMEOUT,
        }
    }

    /// After an attempt that brought no answer: try again, or fail because
    /// the request may have taken effect (a write that was sent).
    pub fn missed(&self, miss: Miss) -> Step {
        match miss {
            Miss::NoAnswer if !self.resendable => Step::Fail(Failure::Unknown),
            Miss::NotSent | Miss::NoAnswer | Miss::NotLeader => Step::Next,
        }
    }

    /// After every candidate was tried without an answer, at `now`: wait
    /// and start over, or give up once the hold timeout passed.
    pub fn exhausted(&self, now: Instant) -> Step {
        match (now >= self.hold_until, self.holder) {
            (true, Holder::Client) => Step::Fail(Failure::NoServers),
            (true, Holder::Server) => Step::Fail(Failure::NoLeader),
            (false, Holder::Client) => Step::Wait(CLIENT_RETRY_PAUSE),
            (false, Holder::Server) => Step::Wait(LEADER_RETRY_PAUSE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_in_use_stays_first_while_it_is_listed() {
        let mut servers = Servers::new(7);
        servers.update([3, 1, 2]);
        let first = servers.known()[0];
        assert_eq!(servers.known().len(), 3);
        servers.update([4, 3, 2, 1, 1]);
        assert_eq!(servers.known()[0], first);
        assert_eq!(servers.known().len(), 4, "sorted and deduplicated");
        // Gone from the pool: another is picked.
        servers.update([1, 2, 3, 4].into_iter().filter(|s| *s != first));
        assert_ne!(servers.known()[0], first);
        assert_eq!(servers.known().len(), 3);
        servers.update(Vec::<u64>::new());
        assert!(servers.known().is_empty());
    }

    #[test]
    fn clients_spread_over_the_servers() {
        let firsts: std::collections::BTreeSet<u64> = (0..64)
            .map(|seed| {
                let mut servers = Servers::new(seed);
                servers.update([1, 2, 3]);
                servers.known()[0]
            })
            .collect();
        assert_eq!(firsts.len(), 3);
    }

    #[test]
    fn a_failed_server_goes_to_the_back_once() {
        let mut servers = Servers::new(1);
        servers.update([1, 2, 3]);
        let order = servers.known().to_vec();
        servers.demote(&order[0]);
        assert_eq!(servers.known(), &[order[1], order[2], order[0]]);
        // A later failure report about the same server moves nothing.
        servers.demote(&order[0]);
        assert_eq!(servers.known(), &[order[1], order[2], order[0]]);
    }

    #[test]
    fn a_write_that_was_sent_and_not_answered_is_not_sent_again() {
        let now = Instant::from_nanos(5);
        let write = Call::from_client(now, false);
        assert_eq!(write.missed(Miss::NoAnswer), Step::Fail(Failure::Unknown));
        assert_eq!(write.missed(Miss::NotSent), Step::Next);
        assert_eq!(write.missed(Miss::NotLeader), Step::Next);
        let read = Call::from_client(now, true);
        assert_eq!(read.missed(Miss::NoAnswer), Step::Next);
        let forwarded = Call::to_leader(now, false);
        assert_eq!(
            forwarded.missed(Miss::NoAnswer),
            Step::Fail(Failure::Unknown)
        );
        assert_eq!(forwarded.missed(Miss::NotLeader), Step::Next);
    }

    #[test]
    fn a_request_is_held_for_the_hold_timeout_then_fails() {
        let start = Instant::from_nanos(1_000);
        let client = Call::from_client(start, false);
        let server = Call::to_leader(start, false);
        let before = Instant::from_nanos(1_000 + HOLD_TIMEOUT.as_nanos() - 1);
        assert_eq!(client.exhausted(before), Step::Wait(CLIENT_RETRY_PAUSE));
        assert_eq!(server.exhausted(before), Step::Wait(LEADER_RETRY_PAUSE));
        let after = start + HOLD_TIMEOUT;
        assert_eq!(client.exhausted(after), Step::Fail(Failure::NoServers));
        assert_eq!(server.exhausted(after), Step::Fail(Failure::NoLeader));
    }
}
