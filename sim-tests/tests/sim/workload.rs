//! The clients: KV registers, transactions, the catalog and locks, each
//! recording its operations in the history.

use io_sim::cluster::ReadValue;
use io_sim::{Cluster, ReadOutcome, WriteOutcome};
use madsim::rand::Rng;
use sim_tests::history::{Event, EventType, Function};
use sim_tests::index_monotonic::IndexObservation;
use sim_tests::lock_exclusivity::LockHold;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tribune_core::command::{Command, CommandResult, KvOp, KvVerb, TxnOutcome};

use crate::params::*;

pub(crate) fn now_ns() -> u64 {
    madsim::time::TimeHandle::current().elapsed().as_nanos() as u64
}

pub(crate) fn rand_below(bound: u64) -> u64 {
    madsim::rand::thread_rng().gen_range(0..bound.max(1))
}

/// What the clients recorded: the history of operations, and the index
/// every successful KV read returned with its value (the key's
/// `ModifyIndex`, for `index_monotonic`).
#[derive(Default)]
pub(crate) struct Recorded {
    pub(crate) events: Vec<Event>,
    pub(crate) indexes: Vec<IndexObservation>,
    /// The modify index a transaction's read leg saw with its value, by
    /// (leg process, completion time): for `txn_atomicity`.
    pub(crate) txn_read_indexes: BTreeMap<(u64, u64), u64>,
}

pub(crate) type SharedHistory = Arc<Mutex<Recorded>>;

pub(crate) fn push(history: &SharedHistory, event: Event) {
    history.lock().unwrap().events.push(event);
}

pub(crate) fn value_string(value: &ReadValue) -> Option<String> {
    value
        .as_ref()
        .map(|(bytes, _)| String::from_utf8_lossy(bytes).into_owned())
}

pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_millis(1_500);
pub(crate) const READ_TIMEOUT: Duration = Duration::from_millis(1_500);

pub(crate) fn kv(verb: KvVerb, key: &str, value: &str, index: u64) -> Command {
    Command::Kv(KvOp {
        value: value.as_bytes().to_vec(),
        index,
        ..KvOp::new(verb, key)
    })
}

/// The history type of a write's outcome.
pub(crate) fn write_event_type(outcome: &WriteOutcome) -> EventType {
    match outcome {
        WriteOutcome::Applied(CommandResult::Bool(true) | CommandResult::Done) => EventType::Ok,
        WriteOutcome::Applied(CommandResult::Bool(false) | CommandResult::Failed(_)) => {
            EventType::Fail
        }
        WriteOutcome::Applied(_) | WriteOutcome::Unknown(_) => EventType::Info,
        WriteOutcome::Refused(_) => EventType::Fail,
    }
}

/// Picks the server a client talks to: mostly the leader it can see.
pub(crate) fn target(cluster: &Cluster) -> u64 {
    let ids = cluster.ids();
    match cluster.leader() {
        Some(leader) if rand_below(100) < 85 => leader,
        _ => ids[rand_below(ids.len() as u64) as usize],
    }
}

/// How long a client waits for its agent's answer (the agent holds a
/// request up to 7 s while no server answers; a paused agent never does).
const AGENT_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits for agent `agent`'s `answer` as an application does, at most
/// [`AGENT_CLIENT_TIMEOUT`]; then what it concludes is `late(why)`.
async fn patiently<T>(
    agent: u64,
    answer: impl std::future::Future<Output = T>,
    late: impl FnOnce(String) -> T,
) -> T {
    match madsim::time::timeout(AGENT_CLIENT_TIMEOUT, answer).await {
        Ok(answer) => answer,
        Err(_) => late(format!("agent {agent}: timed out")),
    }
}

/// Which way a client's requests go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// Straight to a server, in-process (mostly the leader it can see).
    Servers,
    /// Through this client agent, over the network (`io_sim::client`).
    Agent(u64),
}

impl Via {
    /// With `agent_clients`, every other client goes through an agent.
    pub(crate) fn of(params: &Params, process: u64) -> Via {
        if params.agent_clients && params.agents > 0 && process.is_multiple_of(2) {
            let k = 1 + (process / 2 - 1) % params.agents;
            Via::Agent(io_sim::gossip::agent_id(k))
        } else {
            Via::Servers
        }
    }

    pub(crate) async fn write(self, cluster: &Cluster, command: Command) -> WriteOutcome {
        match self {
            Via::Servers => cluster.write(target(cluster), command, WRITE_TIMEOUT).await,
            Via::Agent(agent) => {
                let answer = cluster.agent_write(agent, command);
                patiently(agent, answer, WriteOutcome::Unknown).await
            }
        }
    }

    /// Renews `session` (the leader resets its timer): the session, or
    /// `None` if it is gone.
    pub(crate) async fn renew(
        self,
        cluster: &Cluster,
        session: tribune_core::ids::SessionId,
    ) -> Result<Option<tribune_core::session::Session>, String> {
        match self {
            Via::Servers => {
                cluster
                    .renew_session(target(cluster), session, READ_TIMEOUT)
                    .await
            }
            Via::Agent(agent) => patiently(agent, cluster.agent_renew(agent, session), Err).await,
        }
    }

    /// `key`'s lock index and holder, read in the cluster's read mode.
    pub(crate) async fn read_lock(
        self,
        cluster: &Cluster,
        key: &'static str,
    ) -> Result<Option<(u64, Option<tribune_core::ids::SessionId>)>, String> {
        let lock = |entry: &tribune_core::kv::KvEntry| (entry.lock_index, entry.session);
        match self {
            Via::Servers => {
                cluster
                    .read_fsm(target(cluster), READ_TIMEOUT, move |fsm| {
                        fsm.kv.get(key).map(lock)
                    })
                    .await
            }
            Via::Agent(agent) => {
                let entry = patiently(agent, cluster.agent_read_entry(agent, key), Err).await;
                entry.map(|entry| entry.as_ref().map(lock))
            }
        }
    }

    pub(crate) async fn read(self, cluster: &Cluster, key: &str) -> ReadOutcome {
        match self {
            Via::Servers => cluster.read(target(cluster), key, READ_TIMEOUT).await,
            Via::Agent(agent) => {
                patiently(agent, cluster.agent_read(agent, key), ReadOutcome::Failed).await
            }
        }
    }
}

pub(crate) async fn read_op(
    cluster: &Cluster,
    via: Via,
    history: &SharedHistory,
    process: u64,
    key: &str,
) -> Option<ReadValue> {
    let invoked = now_ns();
    push(history, Event::invoke_read(process, key, invoked));
    let outcome = via.read(cluster, key).await;
    match outcome {
        ReadOutcome::Read(value) => {
            if let Some((_, index)) = &value {
                history.lock().unwrap().indexes.push(IndexObservation {
                    session: process,
                    key: key.to_owned(),
                    index: *index,
                    generation: 0,
                    invoked,
                    completed: now_ns(),
                });
            }
            let text = value_string(&value);
            push(
                history,
                Event::ok_read(process, key, text.as_deref(), now_ns()),
            );
            Some(value)
        }
        ReadOutcome::Failed(_) => {
            push(
                history,
                Event::complete(process, EventType::Fail, Function::Read, key, now_ns()),
            );
            None
        }
    }
}

/// Records `invoke`, writes `command` through a server and records its
/// completion (ok, fail, or info when the outcome is unknown).
/// A transaction over 1..=3 distinct keys, each leg a set (of a unique
/// value) or a read (`get-or-empty`). The history holds each leg as an
/// operation on its key, invoked and completed when the transaction
/// was, by a process of its own (`TXN_PROCESSES + 10 × client + leg`):
/// projecting a linearizable transaction onto one key gives a
/// linearizable single-key history, so the per-key check applies
/// (atomicity across keys: `txn_atomicity`, over the legs grouped back).
pub(crate) async fn txn_op(
    cluster: &Cluster,
    via: Via,
    params: &Params,
    history: &SharedHistory,
    process: u64,
    value: &str,
) {
    let legs_wanted = 1 + rand_below(params.keys.min(3));
    let mut keys: Vec<String> = Vec::new();
    while (keys.len() as u64) < legs_wanted {
        let key = format!("k{}", rand_below(params.keys));
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let legs: Vec<(u64, String, Option<String>)> = keys
        .into_iter()
        .enumerate()
        .map(|(leg, key)| {
            let leg_process = TXN_PROCESSES + 10 * process + leg as u64;
            let write = (rand_below(2) == 0).then(|| format!("{value}-t{leg}"));
            (leg_process, key, write)
        })
        .collect();
    let ops: Vec<KvOp> = legs
        .iter()
        .map(|(_, key, write)| match write {
            Some(v) => KvOp {
                value: v.as_bytes().to_vec(),
                ..KvOp::new(KvVerb::Set, key.as_str())
            },
            None => KvOp::new(KvVerb::GetOrEmpty, key.as_str()),
        })
        .collect();
    let invoked = now_ns();
    for (leg_process, key, write) in &legs {
        push(
            history,
            match write {
                Some(v) => Event::invoke_write(*leg_process, key, v, invoked),
                None => Event::invoke_read(*leg_process, key, invoked),
            },
        );
    }
    let outcome = via.write(cluster, Command::Txn(ops)).await;
    let done = now_ns();
    for (leg_process, key, write) in &legs {
        let f = if write.is_some() {
            Function::Write
        } else {
            Function::Read
        };
        let event = match &outcome {
            WriteOutcome::Applied(CommandResult::Txn(TxnOutcome::Committed(rows))) => {
                match write {
                    Some(_) => Event::complete(*leg_process, EventType::Ok, f, key, done),
                    None => {
                        // The leg's row: reads carry the value; an
                        // absent key echoes the request (create index 0).
                        let row = rows.iter().find(|r| &r.key == key && r.include_value);
                        match row {
                            Some(r) if r.entry.create_index == 0 => {
                                Event::ok_read(*leg_process, key, None, done)
                            }
                            Some(r) => {
                                let text = String::from_utf8_lossy(&r.entry.value).into_owned();
                                history
                                    .lock()
                                    .unwrap()
                                    .txn_read_indexes
                                    .insert((*leg_process, done), r.entry.modify_index);
                                Event::ok_read(*leg_process, key, Some(&text), done)
                            }
                            None => Event::complete(*leg_process, EventType::Fail, f, key, done),
                        }
                    }
                }
            }
            // Rolled back, refused: no leg took effect.
            WriteOutcome::Applied(CommandResult::Txn(TxnOutcome::RolledBack(_)))
            | WriteOutcome::Refused(_) => {
                Event::complete(*leg_process, EventType::Fail, f, key, done)
            }
            // A read has no effect, so an unknown outcome fails it.
            _ if write.is_none() => Event::complete(*leg_process, EventType::Fail, f, key, done),
            _ => Event::complete(*leg_process, EventType::Info, f, key, done),
        };
        push(history, event);
    }
}

/// Process ids of transaction legs start here.
pub(crate) const TXN_PROCESSES: u64 = 10_000;

pub(crate) async fn write_op(
    cluster: &Cluster,
    via: Via,
    history: &SharedHistory,
    invoke: Event,
    command: Command,
) {
    let (process, f, key) = (invoke.process, invoke.f, invoke.key.clone());
    push(history, invoke);
    let outcome = via.write(cluster, command).await;
    let kind = write_event_type(&outcome);
    push(history, Event::complete(process, kind, f, &key, now_ns()));
}

pub(crate) async fn client(
    cluster: Arc<Cluster>,
    params: Params,
    process: u64,
    history: SharedHistory,
    locks: SharedLocks,
    stop: Arc<AtomicBool>,
) {
    let mut seq = 0u64;
    let via = Via::of(&params, process);
    let mut lock = if params.lock_pct > 0 {
        create_session(&cluster, via, process, &stop).await
    } else {
        None
    };
    while !stop.load(Ordering::SeqCst) {
        let key = format!("k{}", rand_below(params.keys));
        let dice = rand_below(100);
        seq += 1;
        let value = format!("c{process}-{seq}");
        // Locks and the catalog take their share first, from a die of
        // their own (drawn only when they are on, so that earlier seeds
        // keep their draws).
        let other = if params.lock_pct + params.catalog_pct > 0 {
            rand_below(100)
        } else {
            100
        };
        if other < params.lock_pct {
            if let Some(lock) = lock.as_mut() {
                lock_op(&cluster, via, process, lock, &locks, params.careless_locks).await;
            }
        } else if other < params.lock_pct + params.catalog_pct {
            catalog_op(&cluster, via, &params, &history, process, &value).await;
        } else if dice < params.write_pct {
            let invoke = Event::invoke_write(process, &key, &value, now_ns());
            let command = kv(KvVerb::Set, &key, &value, 0);
            write_op(&cluster, via, &history, invoke, command).await;
        } else if dice < params.write_pct + params.cas_pct {
            // Consul's CAS compares the modify index; values are
            // unique, so "index i" is "the value written at i", and the
            // history records a CAS on the value read just before.
            let Some(read) = read_op(&cluster, via, &history, process, &key).await else {
                continue;
            };
            let expected = value_string(&read);
            let index = read.as_ref().map_or(0, |(_, index)| *index);
            let invoke = Event::invoke_cas(process, &key, expected.as_deref(), &value, now_ns());
            let command = kv(KvVerb::Cas, &key, &value, index);
            write_op(&cluster, via, &history, invoke, command).await;
        } else if (params.write_pct + params.cas_pct + params.delete_pct
            ..params.write_pct + params.cas_pct + params.delete_pct + params.txn_pct)
            .contains(&dice)
        {
            txn_op(&cluster, via, &params, &history, process, &value).await;
        } else if dice < params.write_pct + params.cas_pct + params.delete_pct {
            let invoke = Event::invoke_delete(process, &key, now_ns());
            let command = kv(KvVerb::Delete, &key, "", 0);
            write_op(&cluster, via, &history, invoke, command).await;
        } else {
            read_op(&cluster, via, &history, process, &key).await;
        }
        madsim::time::sleep(Duration::from_millis(rand_below(20))).await;
        // An application whose agent is down retries at a slower pace.
        if let Via::Agent(agent) = via {
            if !cluster.agent_serves(agent) {
                madsim::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    if let Some(Client {
        holding: Some((token, acquired)),
        ..
    }) = lock
    {
        locks.lock().unwrap().holds.push(LockHold {
            lock: LOCK_KEY.into(),
            holder: format!("c{process}"),
            token,
            acquired,
            released: None,
        });
    }
}

/// A service instance `s<j>` of node `sim-client` as a register named
/// `svc/s<j>` whose value is the instance's one tag: registering it
/// (`Command::Register`, what `PUT /v1/catalog/register` proposes)
/// writes, deregistering deletes, and reading the catalog's instance
/// reads, through the same linearizable barrier as KV reads.
pub(crate) async fn catalog_op(
    cluster: &Cluster,
    via: Via,
    params: &Params,
    history: &SharedHistory,
    process: u64,
    value: &str,
) {
    use tribune_core::catalog::{Service, Weights};
    let instance = format!("s{}", rand_below(params.keys));
    let key = format!("svc/{instance}");
    match rand_below(3) {
        0 => {
            let registration = client_node(Some(Service {
                node: CLIENT_NODE.into(),
                id: instance.clone(),
                name: "web".into(),
                kind: String::new(),
                tags: vec![value.to_owned()],
                address: String::new(),
                tagged_addresses: Default::default(),
                meta: Default::default(),
                port: 80,
                weights: Weights {
                    passing: 1,
                    warning: 1,
                },
                enable_tag_override: false,
                create_index: 0,
                modify_index: 0,
            }));
            let invoke = Event::invoke_write(process, &key, value, now_ns());
            write_op(
                cluster,
                via,
                history,
                invoke,
                Command::Register(Box::new(registration)),
            )
            .await;
        }
        1 => {
            let invoke = Event::invoke_delete(process, &key, now_ns());
            let command = Command::Deregister {
                node: CLIENT_NODE.into(),
                service_id: Some(instance),
                check_id: None,
            };
            write_op(cluster, via, history, invoke, command).await;
        }
        _ => {
            push(history, Event::invoke_read(process, &key, now_ns()));
            let read = cluster
                .read_fsm(target(cluster), READ_TIMEOUT, move |fsm| {
                    fsm.catalog
                        .services
                        .get(&(CLIENT_NODE.to_owned(), instance))
                        .and_then(|service| service.tags.first().cloned())
                })
                .await;
            let event = match read {
                Ok(tag) => Event::ok_read(process, &key, tag.as_deref(), now_ns()),
                Err(_) => Event::complete(process, EventType::Fail, Function::Read, &key, now_ns()),
            };
            push(history, event);
        }
    }
}

/// The lock the clients contend for (not a register key).
pub(crate) const LOCK_KEY: &str = "lock";
/// The node the lock sessions and the catalog's service instances
/// belong to.
pub(crate) const CLIENT_NODE: &str = "sim-client";

/// Registers [`CLIENT_NODE`], with `service` if any.
pub(crate) fn client_node(
    service: Option<tribune_core::catalog::Service>,
) -> tribune_core::catalog::Registration {
    tribune_core::catalog::Registration {
        node: tribune_core::catalog::Node {
            id: String::new(),
            name: CLIENT_NODE.into(),
            address: "10.0.0.100".into(),
            datacenter: "dc1".into(),
            tagged_addresses: Default::default(),
            meta: Default::default(),
            create_index: 0,
            modify_index: 0,
        },
        skip_node_update: false,
        service,
        checks: Vec::new(),
    }
}

/// What the lock workload saw: holds (from the acquire's
/// acknowledgement to the release's invoke) and anomalies.
#[derive(Default)]
pub(crate) struct Locks {
    pub(crate) holds: Vec<LockHold>,
    pub(crate) anomalies: Vec<String>,
    /// The lease clients' holds (`crate::leases`), checked as fenced.
    pub(crate) lease_holds: Vec<LockHold>,
    pub(crate) stalls: u64,
    pub(crate) node_failures: u64,
}

pub(crate) type SharedLocks = Arc<Mutex<Locks>>;

/// One client's session and what it holds. Sessions here have no TTL
/// and no health checks, so nothing but the holder's own release ends
/// a hold: the holds must never overlap
/// (`lock_exclusivity::Exclusivity::Strict`).
pub(crate) struct Client {
    pub(crate) session: tribune_core::ids::SessionId,
    /// (fencing token = the key's `LockIndex`, acknowledged at).
    pub(crate) holding: Option<(u64, u64)>,
    /// A release never got a definite answer: the client stops using
    /// the lock (it may still hold it; others then wait forever).
    pub(crate) stuck: bool,
}

/// Registers the client node (idempotent) and creates a session for
/// client `process`; `None` if the safety phase ends first.
pub(crate) async fn create_session(
    cluster: &Cluster,
    via: Via,
    process: u64,
    stop: &AtomicBool,
) -> Option<Client> {
    use tribune_core::session::{Behavior, Session};
    let node = client_node(None);
    let session = Session {
        // The leader picks the ID (`Leader::prepare`).
        id: tribune_core::ids::SessionId::UNASSIGNED,
        name: format!("c{process}"),
        node: CLIENT_NODE.into(),
        node_checks: Vec::new(),
        service_checks: Vec::new(),
        lock_delay: tribune_core::time::Duration::ZERO,
        behavior: Behavior::Release,
        ttl: tribune_core::time::Duration::ZERO,
        create_index: 0,
        modify_index: 0,
    };
    let mut registered = false;
    while !stop.load(Ordering::SeqCst) {
        if !registered {
            let command = Command::Register(Box::new(node.clone()));
            registered = matches!(
                via.write(cluster, command).await,
                WriteOutcome::Applied(CommandResult::Done)
            );
        } else {
            let command = Command::SessionCreate(Box::new(session.clone()));
            // An attempt whose answer was lost may leave a session
            // behind, holding nothing.
            if let WriteOutcome::Applied(CommandResult::SessionCreated(session)) =
                via.write(cluster, command).await
            {
                return Some(Client {
                    session,
                    holding: None,
                    stuck: false,
                });
            }
        }
        madsim::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Acquires the lock when the client holds nothing, releases it when
/// it does. A hold is recorded from the acquire's acknowledgement to
/// the release's invoke, with the `LockIndex` read right after the
/// acquire as its token; an acquire or release with an unknown outcome
/// is followed by releases until one is answered, and records nothing.
pub(crate) async fn lock_op(
    cluster: &Cluster,
    via: Via,
    process: u64,
    client: &mut Client,
    locks: &SharedLocks,
    careless: bool,
) {
    if client.stuck {
        return;
    }
    let unlock = KvOp {
        session: Some(client.session),
        ..KvOp::new(KvVerb::Unlock, LOCK_KEY)
    };
    if let Some((token, acquired)) = client.holding.take() {
        locks.lock().unwrap().holds.push(LockHold {
            lock: LOCK_KEY.into(),
            holder: format!("c{process}"),
            token,
            acquired,
            released: Some(now_ns()),
        });
        client.stuck = !release(cluster, via, unlock).await;
        return;
    }
    let acquire = KvOp {
        value: format!("c{process}").into_bytes(),
        session: Some(client.session),
        ..KvOp::new(KvVerb::Lock, LOCK_KEY)
    };
    let outcome = via.write(cluster, Command::Kv(acquire)).await;
    let refused = outcome == WriteOutcome::Applied(CommandResult::Bool(false));
    match outcome {
        WriteOutcome::Applied(CommandResult::Bool(granted)) if granted || careless => {
            let acquired = now_ns();
            for _ in 0..5 {
                match via.read_lock(cluster, LOCK_KEY).await {
                    Ok(Some((token, Some(holder))))
                        if holder == client.session || (careless && refused) =>
                    {
                        client.holding = Some((token, acquired));
                        return;
                    }
                    Ok(other) => {
                        locks.lock().unwrap().anomalies.push(format!(
                            "locks: c{process} acquired {LOCK_KEY:?} at {acquired} but a \
                             read right after shows {other:?}"
                        ));
                        break;
                    }
                    Err(_) => madsim::time::sleep(Duration::from_millis(50)).await,
                }
            }
            client.stuck = !release(cluster, via, unlock).await;
        }
        // Held by another session, or refused before it was proposed.
        WriteOutcome::Applied(_) | WriteOutcome::Refused(_) => {}
        WriteOutcome::Unknown(_) => client.stuck = !release(cluster, via, unlock).await,
    }
}

/// Releases until a server answers (true or false); false if none did.
pub(crate) async fn release(cluster: &Cluster, via: Via, unlock: KvOp) -> bool {
    for _ in 0..20 {
        let outcome = via.write(cluster, Command::Kv(unlock.clone())).await;
        if let WriteOutcome::Applied(CommandResult::Bool(_)) = outcome {
            return true;
        }
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
