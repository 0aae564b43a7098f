//! Lease clients: Consul locks whose sessions end without their holder's
//! say. Each client has its own node (registered with a passing
//! `serfHealth` check) and a session with a TTL bound to that check
//! (`Behavior::Release`, the seed's lock-delay), and contends for
//! [`LEASE_KEY`]. Every third of a TTL it acts: acquire, renew, release,
//! stall for three TTLs (a client GC pause: the leader's timer expires
//! the session), or have its node fail (the `serfHealth` check goes
//! critical, as the leader writes it when gossip declares the node
//! failed, which invalidates the session).
//!
//! With gossip on, lease clients are what a Consul user runs next to a
//! client agent: each binds its sessions to an agent's node, which the
//! leader registers from its member list (a lease node outside the pool
//! would be reaped, as Consul's reconciliation does), and whose
//! `serfHealth` it writes from gossip: an agent that gossip declares
//! failed (killed, isolated, stalled) or that leaves invalidates them.
//! Their node fails only when the nemesis says so. In seeds that send
//! clients through agents (`agent_clients`), their requests go through
//! that agent too (session create, acquire, the token's read, renew,
//! release): a renewal that cannot reach the leader lets the TTL run out.
//!
//! A client believes it holds the lock from the acquire's acknowledgement
//! (confirmed by a linearizable read that shows its session as holder,
//! whose `LockIndex` is the hold's fencing token) until it releases it or
//! learns that its session is gone (a renewal answers "no such session").
//! Those beliefs can overlap (a lease), so the holds are checked as
//! fenced (`lock_exclusivity::Exclusivity::Fenced`): unique tokens, in
//! acquisition order. After the run, every TTL session must expire and
//! the lease lock must be free ([`leases_ended`]).

use io_sim::{Cluster, WriteOutcome};
use sim_tests::lock_exclusivity::LockHold;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tribune_core::catalog::{CheckStatus, Registration};
use tribune_core::command::{Command, CommandResult, KvOp, KvVerb};
use tribune_core::ids::SessionId;

use crate::params::*;
use crate::workload::*;

/// The lock the lease clients contend for.
pub(crate) const LEASE_KEY: &str = "lease";

/// Lease client `n`'s node, with its `serfHealth` check at `status`.
fn lease_node(n: u64, status: CheckStatus) -> Registration {
    let name = format!("lease-node-{n}");
    let mut registration = client_node(None);
    registration.node.name = name.clone();
    registration.node.address = format!("10.0.1.{n}");
    registration.checks = vec![tribune_core::agent::serf_health_check(
        &name,
        status,
        "simulated",
    )];
    registration
}

struct LeaseClient {
    n: u64,
    /// With gossip, the client agent whose node (and `serfHealth`, which
    /// the leader writes from gossip) the sessions are bound to; without,
    /// the client's own node.
    agent: Option<u64>,
    /// Its requests' way: through that agent when the seed sends clients
    /// through agents, else straight to a server.
    via: Via,
    ttl: Duration,
    session: Option<SessionId>,
    /// (token, acknowledged at) of the hold this client believes in.
    holding: Option<(u64, u64)>,
}

impl LeaseClient {
    fn holder(&self) -> String {
        format!("l{}", self.n)
    }

    fn end_hold(&mut self, locks: &SharedLocks, at: u64) {
        if let Some((token, acquired)) = self.holding.take() {
            locks.lock().unwrap().lease_holds.push(LockHold {
                lock: LEASE_KEY.into(),
                holder: self.holder(),
                token,
                acquired,
                released: Some(at),
            });
        }
    }

    /// Registers the node (passing) and creates a session bound to its
    /// `serfHealth`; one attempt of each. An unanswered create may leave
    /// a session behind: its TTL ends it.
    async fn create_session(&mut self, cluster: &Cluster, lock_delay: Duration) {
        let node = match self.agent {
            // Registered by the leader's reconciliation; a session on it
            // fails until then.
            Some(agent) => io_sim::gossip::name(agent),
            None => {
                let register =
                    Command::Register(Box::new(lease_node(self.n, CheckStatus::Passing)));
                let outcome = cluster
                    .write(target(cluster), register, WRITE_TIMEOUT)
                    .await;
                if outcome != WriteOutcome::Applied(CommandResult::Done) {
                    return;
                }
                format!("lease-node-{}", self.n)
            }
        };
        let session = tribune_core::session::Session {
            id: SessionId::UNASSIGNED,
            name: self.holder(),
            node,
            node_checks: vec![tribune_core::agent::SERF_HEALTH_CHECK_ID.into()],
            service_checks: Vec::new(),
            lock_delay: tribune_core::time::Duration::from_nanos(lock_delay.as_nanos() as u64),
            behavior: tribune_core::session::Behavior::Release,
            ttl: tribune_core::time::Duration::from_nanos(self.ttl.as_nanos() as u64),
            create_index: 0,
            modify_index: 0,
        };
        let command = Command::SessionCreate(Box::new(session));
        if let WriteOutcome::Applied(CommandResult::SessionCreated(id)) =
            self.via.write(cluster, command).await
        {
            self.session = Some(id);
        }
    }

    /// Renews the session: a session that is gone ends the hold.
    async fn renew(&mut self, cluster: &Cluster, locks: &SharedLocks) {
        let Some(id) = self.session else { return };
        if let Ok(None) = self.via.renew(cluster, id).await {
            self.end_hold(locks, now_ns());
            self.session = None;
        }
    }

    async fn acquire(&mut self, cluster: &Cluster) {
        let Some(id) = self.session else { return };
        let acquire = KvOp {
            value: self.holder().into_bytes(),
            session: Some(id),
            ..KvOp::new(KvVerb::Lock, LEASE_KEY)
        };
        let outcome = self.via.write(cluster, Command::Kv(acquire)).await;
        match outcome {
            WriteOutcome::Applied(CommandResult::Bool(true)) => {
                let acquired = now_ns();
                let read = self.via.read_lock(cluster, LEASE_KEY).await;
                match read {
                    Ok(Some((token, Some(holder)))) if holder == id => {
                        self.holding = Some((token, acquired));
                    }
                    // Lost already (expired, node failed): no hold.
                    Ok(_) => {}
                    // May hold it with an unknown token: give the session
                    // up, its TTL releases the lock.
                    Err(_) => self.session = None,
                }
            }
            WriteOutcome::Applied(_) | WriteOutcome::Refused(_) => {}
            WriteOutcome::Unknown(_) => self.session = None,
        }
    }

    async fn release(&mut self, cluster: &Cluster, locks: &SharedLocks) {
        let Some(id) = self.session else { return };
        self.end_hold(locks, now_ns());
        let unlock = KvOp {
            session: Some(id),
            ..KvOp::new(KvVerb::Unlock, LEASE_KEY)
        };
        let outcome = self.via.write(cluster, Command::Kv(unlock)).await;
        if !matches!(outcome, WriteOutcome::Applied(CommandResult::Bool(_))) {
            self.session = None;
        }
    }
}

pub(crate) async fn lease_client(
    cluster: Arc<Cluster>,
    params: Params,
    n: u64,
    locks: SharedLocks,
    stop: Arc<AtomicBool>,
) {
    let ttl = Duration::from_millis(params.lease_ttl_ms);
    let lock_delay = Duration::from_millis(params.lease_lock_delay_ms);
    // With gossip, a lease node outside the pool would be reaped by the
    // leader's reconciliation (as in Consul): bind to an agent's node.
    let agent = (params.agents > 0).then(|| io_sim::gossip::agent_id(1 + (n - 1) % params.agents));
    let via = match agent {
        Some(agent) if params.agent_clients => Via::Agent(agent),
        _ => Via::Servers,
    };
    let mut client = LeaseClient {
        n,
        agent,
        via,
        ttl,
        session: None,
        holding: None,
    };
    while !stop.load(Ordering::SeqCst) {
        madsim::time::sleep(ttl / 3).await;
        if client.session.is_none() {
            client.create_session(&cluster, lock_delay).await;
            continue;
        }
        let dice = rand_below(100);
        if client.holding.is_none() {
            if dice < 50 {
                client.acquire(&cluster).await;
            } else {
                client.renew(&cluster, &locks).await;
            }
            continue;
        }
        match dice {
            0..=59 => client.renew(&cluster, &locks).await,
            60..=79 => client.release(&cluster, &locks).await,
            80..=91 => {
                locks.lock().unwrap().stalls += 1;
                madsim::time::sleep(3 * ttl).await;
                client.renew(&cluster, &locks).await;
            }
            // An agent's node fails only when gossip says so.
            _ if client.agent.is_some() => client.renew(&cluster, &locks).await,
            _ => {
                let failed = lease_node(n, CheckStatus::Critical);
                let outcome = cluster
                    .write(
                        target(&cluster),
                        Command::Register(Box::new(failed)),
                        WRITE_TIMEOUT,
                    )
                    .await;
                if outcome == WriteOutcome::Applied(CommandResult::Done) {
                    locks.lock().unwrap().node_failures += 1;
                }
                client.renew(&cluster, &locks).await;
            }
        }
    }
    // Still believed at the end: open-ended.
    if let Some((token, acquired)) = client.holding {
        locks.lock().unwrap().lease_holds.push(LockHold {
            lock: LEASE_KEY.into(),
            holder: client.holder(),
            token,
            acquired,
            released: None,
        });
    }
}

/// After the clients stopped: every session with a TTL expires and the
/// lease lock is free, on the leader, within `deadline` (virtual ns).
/// `Err` names what was left.
pub(crate) async fn leases_ended(cluster: &Cluster, deadline: u64) -> Result<(), String> {
    let mut left = String::from("no leader answered");
    while now_ns() < deadline {
        madsim::time::sleep(Duration::from_millis(100)).await;
        let Some(leader) = cluster.leader() else {
            continue;
        };
        let read = cluster.read_fsm(leader, READ_TIMEOUT, |fsm| {
            let sessions: Vec<String> = fsm
                .sessions
                .by_id
                .values()
                .filter(|s| s.ttl.as_nanos() > 0)
                .map(|s| format!("{} ({})", s.id, s.name))
                .collect();
            let holder = fsm.kv.get(LEASE_KEY).and_then(|entry| entry.session);
            (sessions, holder)
        });
        match read.await {
            Ok((sessions, None)) if sessions.is_empty() => return Ok(()),
            Ok((sessions, holder)) => {
                left = format!(
                    "TTL sessions still alive: {sessions:?}; {LEASE_KEY:?} held by {holder:?}"
                );
            }
            Err(e) => left = format!("leader read failed: {e}"),
        }
    }
    Err(left)
}
