//! The deterministic simulation (book/src/simulation.md): a VOPR-style
//! runner over io-sim.
//!
//! Each seed picks a cluster size (3 or 5), network faults (loss, latency),
//! disk latency, fault rates and a workload mix, then runs
//!
//! 1. a **safety phase**: clients write, CAS, delete and read a few keys
//!    while a nemesis partitions (random halves, the leader, one node, one
//!    direction of a link), kills and restarts servers (the disk keeps what
//!    it had flushed, an in-flight append may be torn), and pauses them;
//! 2. a **liveness phase**: every fault healed, the cluster must elect a
//!    leader, accept a write, converge (every server applied the same log,
//!    identical stores) and serve final reads within a bound of virtual
//!    time;
//!
//! and checks the run: linearizability of the history, Raft safety (one
//! leader per term, the same entry applied at each index everywhere),
//! replica state (equal stores at equal applied index), and every
//! acknowledged write in every server's log.
//!
//! - `cargo test -p sim-tests --test sim`: the CI budget of seeds;
//! - `TRIBUNE_SIM_SEED=n cargo test -p sim-tests --test sim`: one seed,
//!   with its trace summary;
//! - `TRIBUNE_SIM_SEEDS=N`: N seeds (a soak), starting at
//!   `TRIBUNE_SIM_FIRST_SEED` (default 0).

/// Without `--cfg madsim` this binary would pass with nothing run.
#[cfg(not(madsim))]
#[test]
fn requires_cfg_madsim() {
    panic!(
        "the simulation needs `--cfg madsim`: the workspace's .cargo/config.toml sets it; \
         do not override RUSTFLAGS when running `cargo test -p sim-tests`"
    );
}

#[cfg(madsim)]
mod sim {
    use io_sim::cluster::{ReadValue, StoreSample};
    use io_sim::{
        Cluster, ClusterConfig, DiskConfig, DiskMode, NodeClock, ReadMode, ReadOutcome, Trace,
        WriteOutcome,
    };
    use madsim::rand::Rng;
    use sim_tests::history::{Event, EventType, Function, History};
    use sim_tests::lock_exclusivity::{self, Exclusivity, LockHold};
    use sim_tests::raft_safety::{self, AppliedEntry, VoteSeen};
    use sim_tests::replica_state::{self, ReplicaSample};
    use sim_tests::{generate, linearizability};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    use tribune_core::command::{Command, CommandResult, KvOp, KvVerb, TxnOutcome};

    /// Seeds CI runs (`cargo test -p sim-tests`).
    const CI_SEEDS: u64 = 200;

    /// Everything a seed decides.
    #[derive(Clone, Debug)]
    pub struct Params {
        pub seed: u64,
        pub size: u64,
        pub clients: u64,
        pub keys: u64,
        pub loss_rate: f64,
        pub net_latency_max_ms: u64,
        /// The probability that a server-to-server request is delivered
        /// twice.
        pub duplicate_rate: f64,
        /// The largest clock drift, in parts per million either way; each
        /// server's clock runs at a rate drawn within it, from its own
        /// origin.
        pub drift_ppm: u64,
        pub clocks: BTreeMap<u64, NodeClock>,
        /// Snapshot every this many entries (`None`: never), keeping this
        /// many entries behind it.
        pub snapshot_every: Option<u64>,
        pub logs_kept_after_snapshot: u64,
        /// Nemesis steps (out of 100, after the other faults' weights) that
        /// change the voting members to a random subset of the servers.
        pub membership_pct: u64,
        /// Client operations (out of 100, after write, CAS and delete) that
        /// are multi-key transactions (`Command::Txn`: sets and reads).
        pub txn_pct: u64,
        /// Client operations (out of 100, before the others) on a lock:
        /// acquire with the client's session, or release the lock it holds.
        pub lock_pct: u64,
        /// Client operations (out of 100, after the locks) on the catalog:
        /// register, deregister or read a service instance.
        pub catalog_pct: u64,
        /// Broken on purpose (the teeth test): lock clients take a refused
        /// acquire for a granted one and whatever `LockIndex` they read
        /// for their token.
        pub careless_locks: bool,
        pub disk: DiskConfig,
        pub read_mode: ReadMode,
        pub allow_log_reversion: bool,
        /// Workload mix in percent: write, cas, delete (the rest reads).
        pub write_pct: u64,
        pub cas_pct: u64,
        pub delete_pct: u64,
        /// Nemesis step and fault weights (out of 100 per step).
        pub step_ms: (u64, u64),
        pub partition_pct: u64,
        pub kill_pct: u64,
        pub pause_pct: u64,
        pub safety: Duration,
        pub liveness_bound: Duration,
    }

    impl Params {
        pub fn from_seed(seed: u64) -> Params {
            let mut rng = generate::Rng::new(seed ^ 0x5eed_7269_6275_6e65);
            let size = if rng.percent(50) { 3 } else { 5 };
            let write_pct = 20 + rng.below(30);
            let cas_pct = rng.below(25);
            let delete_pct = rng.below(8);
            let disk_min = rng.below(2);
            // Faults added later draw from their own stream, so that a
            // seed keeps the cluster, workload and nemesis it had before.
            let mut more = generate::Rng::new(seed ^ 0x00c1_0c4d_d0b1_e5ed);
            let duplicate_rate = [0.0, 0.0, 0.02, 0.1][more.below(4) as usize];
            let drift_ppm = [0, 100, 10_000, 50_000][more.below(4) as usize];
            let clocks = clocks(&mut more, drift_ppm);
            let snapshot_every = more.percent(60).then(|| 3 + more.below(30));
            let logs_kept_after_snapshot = more.below(10);
            let membership_pct = [0, 0, 5, 12][more.below(4) as usize];
            let txn_pct = [0, 10, 25][more.below(3) as usize];
            let lock_pct = [0, 10, 20][more.below(3) as usize];
            let catalog_pct = [0, 10, 20][more.below(3) as usize];
            let read_corruption_ppm = [0, 0, 0, 200, 2_000][more.below(5) as usize];
            Params {
                seed,
                size,
                clients: 2 + rng.below(4),
                keys: 1 + rng.below(4),
                loss_rate: [0.0, 0.01, 0.05, 0.15][rng.below(4) as usize],
                net_latency_max_ms: 2 + rng.below(30),
                duplicate_rate,
                drift_ppm,
                clocks,
                snapshot_every,
                logs_kept_after_snapshot,
                membership_pct,
                txn_pct,
                lock_pct,
                catalog_pct,
                careless_locks: false,
                disk: DiskConfig {
                    latency_min: Duration::from_millis(disk_min),
                    latency_max: Duration::from_millis(disk_min + 1 + rng.below(10)),
                    mode: DiskMode::Durable,
                    read_corruption_ppm,
                    skip_read_checksums: false,
                },
                read_mode: ReadMode::Linearizable,
                allow_log_reversion: false,
                write_pct,
                cas_pct,
                delete_pct,
                step_ms: (100, 200 + rng.below(800)),
                partition_pct: 10 + rng.below(40),
                kill_pct: rng.below(25),
                pause_pct: rng.below(15),
                safety: Duration::from_millis(2_000 + rng.below(2_000)),
                liveness_bound: Duration::from_secs(20),
            }
        }
    }

    /// Each server's clock: its own origin, and a rate within
    /// `±drift_ppm` of virtual time.
    fn clocks(rng: &mut generate::Rng, drift_ppm: u64) -> BTreeMap<u64, NodeClock> {
        (1..=5)
            .map(|id| {
                let clock = NodeClock {
                    offset_ns: rng.below(1 << 45),
                    rate_ppm: rng.below(2 * drift_ppm + 1) as i64 - drift_ppm as i64,
                };
                (id, clock)
            })
            .collect()
    }

    impl Params {
        /// The seed as it ran before request duplication, clock drift and
        /// snapshots joined the fault model: what the regressions recorded
        /// before then replay.
        pub fn without_later_faults(mut self) -> Params {
            self.duplicate_rate = 0.0;
            self.drift_ppm = 0;
            self.clocks.clear();
            self.snapshot_every = None;
            self.membership_pct = 0;
            self.txn_pct = 0;
            self.lock_pct = 0;
            self.catalog_pct = 0;
            self.disk.read_corruption_ppm = 0;
            self
        }
    }

    /// What one seed produced.
    pub struct Run {
        pub params: Params,
        pub trace_hash: u64,
        pub trace_events: u64,
        pub trace_lines: Vec<String>,
        pub virtual_time: Duration,
        pub wall_time: Duration,
        pub operations: usize,
        pub acked_writes: usize,
        pub faults: BTreeMap<&'static str, u64>,
        pub history: Vec<Event>,
        pub violations: Vec<String>,
    }

    impl Run {
        pub fn summary(&self) -> String {
            format!(
                "seed {}: {} servers, {} clients, {} keys, loss {}, duplicates {}, drift {}ppm, \
                 snapshots every {:?} entries, voter changes {}%, txns {}%, locks {}%, \
                 catalog {}%, read corruption {}ppm, \
                 {} ops ({} acked writes), \
                 faults {:?}, {:.1}s virtual in {:.2}s wall, trace {:016x} ({} events)",
                self.params.seed,
                self.params.size,
                self.params.clients,
                self.params.keys,
                self.params.loss_rate,
                self.params.duplicate_rate,
                self.params.drift_ppm,
                self.params.snapshot_every,
                self.params.membership_pct,
                self.params.txn_pct,
                self.params.lock_pct,
                self.params.catalog_pct,
                self.params.disk.read_corruption_ppm,
                self.operations,
                self.acked_writes,
                self.faults,
                self.virtual_time.as_secs_f64(),
                self.wall_time.as_secs_f64(),
                self.trace_hash,
                self.trace_events
            )
        }
    }

    pub fn reproduce(seed: u64) -> String {
        format!("TRIBUNE_SIM_SEED={seed} cargo test -p sim-tests --test sim")
    }

    fn now_ns() -> u64 {
        madsim::time::TimeHandle::current().elapsed().as_nanos() as u64
    }

    fn rand_below(bound: u64) -> u64 {
        madsim::rand::thread_rng().gen_range(0..bound.max(1))
    }

    type SharedHistory = Arc<Mutex<Vec<Event>>>;

    fn push(history: &SharedHistory, event: Event) {
        history.lock().unwrap().push(event);
    }

    fn value_string(value: &ReadValue) -> Option<String> {
        value
            .as_ref()
            .map(|(bytes, _)| String::from_utf8_lossy(bytes).into_owned())
    }

    const WRITE_TIMEOUT: Duration = Duration::from_millis(1_500);
    const READ_TIMEOUT: Duration = Duration::from_millis(1_500);

    fn kv(verb: KvVerb, key: &str, value: &str, index: u64) -> Command {
        Command::Kv(KvOp {
            value: value.as_bytes().to_vec(),
            index,
            ..KvOp::new(verb, key)
        })
    }

    /// The history type of a write's outcome.
    fn write_event_type(outcome: &WriteOutcome) -> EventType {
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
    fn target(cluster: &Cluster) -> u64 {
        let ids = cluster.ids();
        match cluster.leader() {
            Some(leader) if rand_below(100) < 85 => leader,
            _ => ids[rand_below(ids.len() as u64) as usize],
        }
    }

    async fn read_op(
        cluster: &Cluster,
        history: &SharedHistory,
        process: u64,
        key: &str,
    ) -> Option<ReadValue> {
        push(history, Event::invoke_read(process, key, now_ns()));
        let outcome = cluster.read(target(cluster), key, READ_TIMEOUT).await;
        match outcome {
            ReadOutcome::Read(value) => {
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
    /// (atomicity across keys is not checked).
    async fn txn_op(
        cluster: &Cluster,
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
        let outcome = cluster
            .write(target(cluster), Command::Txn(ops), WRITE_TIMEOUT)
            .await;
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
                                    Event::ok_read(*leg_process, key, Some(&text), done)
                                }
                                None => {
                                    Event::complete(*leg_process, EventType::Fail, f, key, done)
                                }
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
                _ if write.is_none() => {
                    Event::complete(*leg_process, EventType::Fail, f, key, done)
                }
                _ => Event::complete(*leg_process, EventType::Info, f, key, done),
            };
            push(history, event);
        }
    }

    /// Process ids of transaction legs start here.
    const TXN_PROCESSES: u64 = 10_000;

    async fn write_op(cluster: &Cluster, history: &SharedHistory, invoke: Event, command: Command) {
        let (process, f, key) = (invoke.process, invoke.f, invoke.key.clone());
        push(history, invoke);
        let outcome = cluster.write(target(cluster), command, WRITE_TIMEOUT).await;
        let kind = write_event_type(&outcome);
        push(history, Event::complete(process, kind, f, &key, now_ns()));
    }

    async fn client(
        cluster: Arc<Cluster>,
        params: Params,
        process: u64,
        history: SharedHistory,
        locks: SharedLocks,
        stop: Arc<AtomicBool>,
    ) {
        let mut seq = 0u64;
        let mut lock = if params.lock_pct > 0 {
            create_session(&cluster, process, &stop).await
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
                    lock_op(&cluster, process, lock, &locks, params.careless_locks).await;
                }
            } else if other < params.lock_pct + params.catalog_pct {
                catalog_op(&cluster, &params, &history, process, &value).await;
            } else if dice < params.write_pct {
                let invoke = Event::invoke_write(process, &key, &value, now_ns());
                let command = kv(KvVerb::Set, &key, &value, 0);
                write_op(&cluster, &history, invoke, command).await;
            } else if dice < params.write_pct + params.cas_pct {
                // Consul's CAS compares the modify index; values are
                // unique, so "index i" is "the value written at i", and the
                // history records a CAS on the value read just before.
                let Some(read) = read_op(&cluster, &history, process, &key).await else {
                    continue;
                };
                let expected = value_string(&read);
                let index = read.as_ref().map_or(0, |(_, index)| *index);
                let invoke =
                    Event::invoke_cas(process, &key, expected.as_deref(), &value, now_ns());
                let command = kv(KvVerb::Cas, &key, &value, index);
                write_op(&cluster, &history, invoke, command).await;
            } else if (params.write_pct + params.cas_pct + params.delete_pct
                ..params.write_pct + params.cas_pct + params.delete_pct + params.txn_pct)
                .contains(&dice)
            {
                txn_op(&cluster, &params, &history, process, &value).await;
            } else if dice < params.write_pct + params.cas_pct + params.delete_pct {
                let invoke = Event::invoke_delete(process, &key, now_ns());
                let command = kv(KvVerb::Delete, &key, "", 0);
                write_op(&cluster, &history, invoke, command).await;
            } else {
                read_op(&cluster, &history, process, &key).await;
            }
            madsim::time::sleep(Duration::from_millis(rand_below(20))).await;
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
    async fn catalog_op(
        cluster: &Cluster,
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
                write_op(cluster, history, invoke, command).await;
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
                    Err(_) => {
                        Event::complete(process, EventType::Fail, Function::Read, &key, now_ns())
                    }
                };
                push(history, event);
            }
        }
    }

    /// The lock the clients contend for (not a register key).
    const LOCK_KEY: &str = "lock";
    /// The node the lock sessions and the catalog's service instances
    /// belong to.
    const CLIENT_NODE: &str = "sim-client";

    /// Registers [`CLIENT_NODE`], with `service` if any.
    fn client_node(
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
    struct Locks {
        holds: Vec<LockHold>,
        anomalies: Vec<String>,
    }

    type SharedLocks = Arc<Mutex<Locks>>;

    /// One client's session and what it holds. Sessions here have no TTL
    /// and no health checks, so nothing but the holder's own release ends
    /// a hold: the holds must never overlap
    /// (`lock_exclusivity::Exclusivity::Strict`).
    struct Client {
        session: tribune_core::ids::SessionId,
        /// (fencing token = the key's `LockIndex`, acknowledged at).
        holding: Option<(u64, u64)>,
        /// A release never got a definite answer: the client stops using
        /// the lock (it may still hold it; others then wait forever).
        stuck: bool,
    }

    /// Registers the client node (idempotent) and creates a session for
    /// client `process`; `None` if the safety phase ends first.
    async fn create_session(cluster: &Cluster, process: u64, stop: &AtomicBool) -> Option<Client> {
        use tribune_core::session::{Behavior, Session};
        let id = tribune_core::ids::SessionId::new(
            (u128::from(madsim::rand::thread_rng().gen::<u64>()) << 64) | u128::from(process),
        );
        let node = client_node(None);
        let session = Session {
            id,
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
                    cluster.write(target(cluster), command, WRITE_TIMEOUT).await,
                    WriteOutcome::Applied(CommandResult::Done)
                );
            } else {
                let command = Command::SessionCreate(Box::new(session.clone()));
                let created = match cluster.write(target(cluster), command, WRITE_TIMEOUT).await {
                    WriteOutcome::Applied(CommandResult::SessionCreated(created)) => Some(created),
                    // Created by an earlier attempt whose answer was lost.
                    WriteOutcome::Applied(CommandResult::Failed(
                        tribune_core::command::ApplyError::SessionExists(_),
                    )) => Some(id),
                    _ => None,
                };
                if let Some(session) = created {
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
    async fn lock_op(
        cluster: &Cluster,
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
            client.stuck = !release(cluster, unlock).await;
            return;
        }
        let acquire = KvOp {
            value: format!("c{process}").into_bytes(),
            session: Some(client.session),
            ..KvOp::new(KvVerb::Lock, LOCK_KEY)
        };
        let outcome = cluster
            .write(target(cluster), Command::Kv(acquire), WRITE_TIMEOUT)
            .await;
        let refused = outcome == WriteOutcome::Applied(CommandResult::Bool(false));
        match outcome {
            WriteOutcome::Applied(CommandResult::Bool(granted)) if granted || careless => {
                let acquired = now_ns();
                for _ in 0..5 {
                    let read = cluster.read_fsm(target(cluster), READ_TIMEOUT, |fsm| {
                        fsm.kv
                            .get(LOCK_KEY)
                            .map(|entry| (entry.lock_index, entry.session))
                    });
                    match read.await {
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
                client.stuck = !release(cluster, unlock).await;
            }
            // Held by another session, or refused before it was proposed.
            WriteOutcome::Applied(_) | WriteOutcome::Refused(_) => {}
            WriteOutcome::Unknown(_) => client.stuck = !release(cluster, unlock).await,
        }
    }

    /// Releases until a server answers (true or false); false if none did.
    async fn release(cluster: &Cluster, unlock: KvOp) -> bool {
        for _ in 0..20 {
            let outcome = cluster
                .write(target(cluster), Command::Kv(unlock.clone()), WRITE_TIMEOUT)
                .await;
            if let WriteOutcome::Applied(CommandResult::Bool(_)) = outcome {
                return true;
            }
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Seeds that once failed, kept as named regressions.
    fn regression(seed: u64) {
        let run = run(&Params::from_seed(seed).without_later_faults(), false);
        assert!(
            run.violations.is_empty(),
            "{}\n{:#?}\nreproduce: {}",
            run.summary(),
            run.violations,
            reproduce(seed)
        );
    }

    /// The simulated network once matched answers to calls by port only:
    /// a late AppendEntries answer reached a later call on the reused
    /// ephemeral port, and openraft's leader saw a follower's log "revert"
    /// (its assertion panicked). Calls now carry ids.
    #[test]
    fn regression_seed_171_late_answer_on_a_reused_port() {
        regression(171);
    }

    /// Two leaders in one term: legal with openraft's advanced leader ids,
    /// once reported as an election-safety violation by a checker that
    /// assumed Raft's one leader per term.
    #[test]
    fn regression_seed_1510_two_leaders_in_one_term() {
        regression(1510);
    }

    /// A real finding, kept failing on purpose (ignored so CI stays
    /// green; run with `cargo test -p sim-tests --test sim -- --ignored`):
    /// openraft 0.10.0-alpha.37's `ReadPolicy::ReadIndex` serves stale
    /// reads after a leader restarts and resumes its term from its
    /// persisted vote. It reuses its old no-op log id, and its read log id
    /// is max(no-op, local committed), where the committed index is lost on
    /// a crash (the WAL keeps it in memory) and is re-learned from the
    /// first quorum of answers, below what was committed and acknowledged
    /// before. Seed 59: server 1 restarts at 1.549 s as leader of term 1
    /// with 14 entries, commits up to 7 by 1.567 s, and a read answered at
    /// 1.573 s returns the value of entry 7 although entries up to 12 had
    /// been acknowledged. The daemon does not use this read path
    /// (io-tokio's `read_index.rs`, and `state.rs` raises the lease read
    /// to the last log index); `TRIBUNE_SIM_READS=openraft-read-index`
    /// or `openraft-lease-read` fail about 5% of seeds, all with kills.
    #[test]
    #[ignore = "openraft's ReadIndex after a leader restart: a known finding, see the comment"]
    fn openraft_read_index_after_a_leader_restart_seed_59() {
        let mut params = Params::from_seed(59).without_later_faults();
        params.read_mode = ReadMode::OpenraftReadIndex;
        let run = run(&params, false);
        assert!(
            run.violations.is_empty(),
            "{}\n{:#?}\nreproduce: TRIBUNE_SIM_READS=openraft-read-index {}",
            run.summary(),
            run.violations,
            reproduce(59)
        );
    }

    /// A finding in openraft 0.10.0-alpha.37, kept failing on purpose
    /// (ignored so CI stays green; in the seed budget, seed 142 now also
    /// runs the lock and catalog workloads, which change its run, and
    /// passes). Seed 142 as found (duplicated requests, disk latency, a
    /// snapshot every 16 entries, transactions):
    /// follower n3 has entries through 198, has committed and applied 195,
    /// and receives a full snapshot through 197 (a duplicated request). Its
    /// Raft core then moves the state machine's apply cursor from submitted
    /// 198 back to 197, and openraft's own debug assertion stops the run
    /// (`expect submitted: … 198 < new_submitted: … 197`, in
    /// `IOProgress::submit` from `run_state_machine`): its commands to the
    /// state machine ran out of order. The assertion is compiled out of
    /// release builds (the daemon's), and the same seed built with
    /// `--release` passes every check (linearizability, state-machine
    /// safety, replica state, durability). 0 of 400 further seeds
    /// (200..600) tripped it.
    #[test]
    #[ignore = "openraft's apply-order debug assertion after a late snapshot: a known finding, see the comment"]
    fn openraft_apply_order_assertion_seed_142() {
        // As found: before the lock and catalog workloads existed.
        let mut params = params_for(142);
        params.lock_pct = 0;
        params.catalog_pct = 0;
        let run = run(&params, false);
        assert!(
            run.violations.is_empty(),
            "{}\n{:#?}\nreproduce: {}",
            run.summary(),
            run.violations,
            reproduce(142)
        );
    }

    /// The first line where two traces differ, for a determinism failure.
    fn first_difference(a: &[String], b: &[String]) -> String {
        let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        format!(
            "traces differ at event {at}:\n  first:  {}\n  second: {}",
            a.get(at).map_or("(end)", String::as_str),
            b.get(at).map_or("(end)", String::as_str)
        )
    }

    /// One seed run twice in this process gives the same trace. (Rerunning
    /// in a new process is weaker: tokio's watch channel passed that and
    /// still failed this, see shared/OPENRAFT-MADSIM.md.)
    #[test]
    fn a_seed_replays_identically() {
        for seed in [1, 2] {
            let params = Params::from_seed(seed);
            let first = run(&params, true);
            let second = run(&params, true);
            assert!(first.trace_events > 100, "{}", first.summary());
            assert!(
                first.trace_hash == second.trace_hash && first.trace_events == second.trace_events,
                "seed {seed} is not deterministic: {}\n{}",
                first_difference(&first.trace_lines, &second.trace_lines),
                reproduce(seed)
            );
        }
    }

    /// madsim's own check: the same seed run twice draws the same random
    /// numbers in the same order (it fails at the first divergence).
    #[test]
    fn madsim_sees_the_same_random_draws() {
        async fn one_run() -> usize {
            let outcome = scenario(Params::from_seed(7), Trace::default()).await;
            outcome.history.len()
        }
        let params = Params::from_seed(7);
        let mut config = madsim::Config::default();
        config.net.packet_loss_rate = params.loss_rate;
        config.net.send_latency =
            Duration::from_millis(1)..Duration::from_millis(params.net_latency_max_ms);
        let operations = madsim::runtime::Runtime::check_determinism(7, config, one_run);
        assert!(operations > 0);
    }

    /// Seeds a teeth test tries before giving up.
    const TEETH_SEEDS: u64 = 40;

    /// Runs broken variants of the first seeds until one of the
    /// simulator's checkers (not a panic inside openraft) catches one;
    /// returns the seed and what was found.
    fn first_caught(broken: impl Fn(&mut Params)) -> Option<(u64, Vec<String>)> {
        (0..TEETH_SEEDS).find_map(|seed| {
            let mut params = Params::from_seed(seed);
            broken(&mut params);
            let run = run(&params, false);
            let by_checker = run.violations.iter().any(|v| !v.starts_with("panic"));
            by_checker.then_some((seed, run.violations))
        })
    }

    /// Reads served from any server's local store, with no leadership
    /// check, are not linearizable under partitions: the checker must say
    /// so.
    #[test]
    fn teeth_stale_local_reads_are_caught() {
        let caught = first_caught(|params| params.read_mode = ReadMode::LocalStale);
        let (seed, violations) = caught.expect("stale reads went unnoticed");
        eprintln!("stale reads caught at seed {seed}: {}", violations[0]);
        assert!(
            violations.iter().any(|v| v.starts_with("linearizability")),
            "{violations:?}"
        );
    }

    /// Clients that take a refused lock acquire for a granted one hold the
    /// lock together with its real holder: the lock check must say so.
    #[test]
    fn teeth_careless_lock_clients_are_caught() {
        let caught = first_caught(|params| {
            params.lock_pct = 30;
            params.careless_locks = true;
        });
        let (seed, violations) = caught.expect("overlapping lock holds went unnoticed");
        eprintln!(
            "careless lock clients caught at seed {seed}: {}",
            violations[0]
        );
        assert!(
            violations.iter().any(|v| v.starts_with("locks:")),
            "{violations:?}"
        );
    }

    /// A disk that acknowledges appends and votes before they are durable
    /// loses them on a crash: some check must fail.
    #[test]
    fn teeth_acknowledging_before_fsync_is_caught() {
        let caught = first_caught(|params| {
            params.disk.mode = DiskMode::AckBeforeSync {
                sync_delay: Duration::from_millis(500),
            };
            params.kill_pct = params.kill_pct.max(30);
            // Else openraft's own assertion stops the run first.
            params.allow_log_reversion = true;
        });
        let (seed, violations) = caught.expect("lost acknowledged appends went unnoticed");
        eprintln!("unsynced acks caught at seed {seed}: {violations:?}");
    }

    /// A disk whose reads skip the records' checksums hands corrupted
    /// entries to Raft (applied on one server, or sent to the others):
    /// some check must fail.
    #[test]
    fn teeth_unchecked_disk_reads_are_caught() {
        let caught = first_caught(|params| {
            params.disk.read_corruption_ppm = 50_000;
            params.disk.skip_read_checksums = true;
        });
        let (seed, violations) = caught.expect("corrupted reads went unnoticed");
        eprintln!("unchecked reads caught at seed {seed}: {violations:?}");
    }

    /// Faults the nemesis has in place.
    #[derive(Default)]
    struct Nemesis {
        clogged: BTreeSet<(u64, u64)>,
        paused_until: BTreeMap<u64, u64>,
        down_until: BTreeMap<u64, u64>,
        counts: BTreeMap<&'static str, u64>,
    }

    impl Nemesis {
        fn clog(&mut self, cluster: &Cluster, a: u64, b: u64) {
            if a != b && self.clogged.insert((a, b)) {
                madsim::net::NetSim::current()
                    .clog_link(cluster.madsim_id(a), cluster.madsim_id(b));
            }
        }

        fn heal_network(&mut self, cluster: &Cluster) {
            let net = madsim::net::NetSim::current();
            for (a, b) in std::mem::take(&mut self.clogged) {
                net.unclog_link(cluster.madsim_id(a), cluster.madsim_id(b));
            }
        }

        fn count(&mut self, what: &'static str) {
            *self.counts.entry(what).or_default() += 1;
        }

        fn step(&mut self, cluster: &Arc<Cluster>, params: &Params) {
            let now = now_ns();
            let ids = cluster.ids();
            self.supervise(cluster, now);
            for (id, until) in self.paused_until.clone() {
                if until <= now {
                    cluster.resume(id);
                    self.paused_until.remove(&id);
                }
            }
            for (id, until) in self.down_until.clone() {
                if until <= now {
                    cluster.restart(id);
                    self.down_until.remove(&id);
                }
            }
            let dice = rand_below(100);
            let minority = (params.size - 1) / 2;
            let impaired = (self.paused_until.len() + self.down_until.len()) as u64;
            if dice < params.partition_pct {
                self.heal_network(cluster);
                match rand_below(5) {
                    0 => {
                        // Random halves.
                        let mut shuffled = ids.clone();
                        for i in (1..shuffled.len()).rev() {
                            shuffled.swap(i, rand_below(i as u64 + 1) as usize);
                        }
                        let cut = 1 + rand_below(params.size / 2) as usize;
                        let (left, right) = shuffled.split_at(cut);
                        for &a in left {
                            for &b in right {
                                self.clog(cluster, a, b);
                                self.clog(cluster, b, a);
                            }
                        }
                        self.count("partition-halves");
                    }
                    1 | 2 => {
                        // Isolate the leader (or any node without one).
                        let victim = cluster
                            .leader()
                            .unwrap_or_else(|| ids[rand_below(ids.len() as u64) as usize]);
                        for &other in &ids {
                            self.clog(cluster, victim, other);
                            self.clog(cluster, other, victim);
                        }
                        self.count("isolate-leader");
                    }
                    3 => {
                        let victim = ids[rand_below(ids.len() as u64) as usize];
                        for &other in &ids {
                            self.clog(cluster, victim, other);
                            self.clog(cluster, other, victim);
                        }
                        self.count("isolate-one");
                    }
                    _ => {
                        let a = ids[rand_below(ids.len() as u64) as usize];
                        let b = ids[rand_below(ids.len() as u64) as usize];
                        self.clog(cluster, a, b);
                        self.count("one-way-link");
                    }
                }
            } else if dice < params.partition_pct + 15 {
                self.heal_network(cluster);
                self.count("heal");
            } else if dice < params.partition_pct + 15 + params.kill_pct {
                if impaired < minority.max(1) {
                    let victim = if rand_below(2) == 0 {
                        cluster.leader()
                    } else {
                        None
                    }
                    .unwrap_or_else(|| ids[rand_below(ids.len() as u64) as usize]);
                    if cluster.is_up(victim) && !self.paused_until.contains_key(&victim) {
                        cluster.kill(victim);
                        let down = 50 + rand_below(1_500);
                        self.down_until.insert(victim, now + down * 1_000_000);
                        self.count("kill");
                    }
                }
            } else if dice < params.partition_pct + 15 + params.kill_pct + params.pause_pct {
                if impaired < minority.max(1) {
                    let victim = ids[rand_below(ids.len() as u64) as usize];
                    if cluster.is_up(victim) && !self.paused_until.contains_key(&victim) {
                        cluster.pause(victim);
                        let pause = 100 + rand_below(2_000);
                        self.paused_until.insert(victim, now + pause * 1_000_000);
                        self.count("pause");
                    }
                }
            } else if dice
                < params.partition_pct
                    + 15
                    + params.kill_pct
                    + params.pause_pct
                    + params.membership_pct
            {
                // A random non-empty subset of the servers votes from now
                // on; the rest stay as learners. Proposed in the background
                // (it may wait on partitions); openraft refuses a change
                // while another is in progress.
                if let Some(leader) = cluster.leader() {
                    let voters: BTreeSet<u64> = loop {
                        let subset: BTreeSet<u64> =
                            ids.iter().copied().filter(|_| rand_below(2) == 0).collect();
                        if !subset.is_empty() {
                            break subset;
                        }
                    };
                    let cluster = Arc::clone(cluster);
                    madsim::task::spawn(async move {
                        let _ = cluster.change_voters(leader, voters, WRITE_TIMEOUT).await;
                    });
                    self.count("change-voters");
                }
            }
        }

        /// The service manager: a server whose Raft stopped on a fault
        /// exits (the daemon's policy), and is started again from its disk
        /// a moment later.
        fn supervise(&mut self, cluster: &Cluster, now: u64) {
            for id in cluster.ids() {
                if self.down_until.contains_key(&id) || cluster.stopped_by_fault(id).is_none() {
                    continue;
                }
                cluster.kill(id);
                self.paused_until.remove(&id);
                let down = 100 + rand_below(900);
                self.down_until.insert(id, now + down * 1_000_000);
                self.count("restart-after-fault");
            }
        }

        fn heal_all(&mut self, cluster: &Cluster) {
            for id in cluster.ids() {
                cluster.disk(id).stop_read_corruption();
            }
            self.supervise(cluster, now_ns());
            self.heal_network(cluster);
            for id in std::mem::take(&mut self.paused_until).into_keys() {
                cluster.resume(id);
            }
            for id in std::mem::take(&mut self.down_until).into_keys() {
                cluster.restart(id);
            }
        }
    }

    /// What the simulated run hands to the checkers.
    struct Outcome {
        history: Vec<Event>,
        votes: Vec<VoteSeen>,
        applied: Vec<AppliedEntry>,
        samples: Vec<StoreSample>,
        faults: BTreeMap<&'static str, u64>,
        violations: Vec<String>,
    }

    async fn scenario(params: Params, trace: Trace) -> Outcome {
        let mut violations = Vec::new();
        let config = ClusterConfig {
            size: params.size,
            disk: params.disk.clone(),
            read_mode: params.read_mode,
            heartbeat_ms: 50,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            allow_log_reversion: params.allow_log_reversion,
            clocks: params.clocks.clone(),
            duplicate_rate: params.duplicate_rate,
            snapshot_every: params.snapshot_every,
            logs_kept_after_snapshot: params.logs_kept_after_snapshot,
        };
        let cluster = Arc::new(Cluster::new(config, trace.clone()));
        cluster.initialize().await;

        let history: SharedHistory = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let locks: SharedLocks = Arc::default();
        let clients: Vec<_> = (1..=params.clients)
            .map(|process| {
                madsim::task::spawn(client(
                    Arc::clone(&cluster),
                    params.clone(),
                    process,
                    Arc::clone(&history),
                    Arc::clone(&locks),
                    Arc::clone(&stop),
                ))
            })
            .collect();

        // Safety phase.
        let mut nemesis = Nemesis::default();
        let safety_end = now_ns() + params.safety.as_nanos() as u64;
        let mut step = 0;
        while now_ns() < safety_end {
            let (lo, hi) = params.step_ms;
            madsim::time::sleep(Duration::from_millis(lo + rand_below(hi - lo))).await;
            nemesis.step(&cluster, &params);
            step += 1;
            // The state invariants after every step, so that a failure
            // names when it first showed (the end of the run checks again).
            let (votes, applied, samples) = observed(&cluster);
            let found = state_invariants(&votes, &applied, &samples);
            if !found.is_empty() {
                violations.push(format!(
                    "first seen after nemesis step {step}, at {:.3}s virtual: {}",
                    now_ns() as f64 / 1e9,
                    found.join("; ")
                ));
                break;
            }
        }

        // Liveness phase: heal everything, stop the clients.
        nemesis.heal_all(&cluster);
        madsim::net::NetSim::current().update_config(|net| net.packet_loss_rate = 0.0);
        trace.record(0, "heal");
        stop.store(true, Ordering::SeqCst);
        for handle in clients {
            let _ = handle.await;
        }
        let healed_at = now_ns();
        let deadline = healed_at + params.liveness_bound.as_nanos() as u64;
        let final_process = 1_000;
        let mut converged = false;
        let mut wrote = false;
        // Every server votes again (the nemesis may have left a subset).
        let mut all_voters = params.membership_pct == 0;
        while now_ns() < deadline {
            madsim::time::sleep(Duration::from_millis(50)).await;
            let Some(leader) = cluster.leader() else {
                continue;
            };
            if !all_voters {
                let all: BTreeSet<u64> = cluster.ids().into_iter().collect();
                all_voters = cluster
                    .change_voters(leader, all, WRITE_TIMEOUT)
                    .await
                    .is_ok();
                continue;
            }
            if !wrote {
                let command = kv(KvVerb::Set, "liveness", "done", 0);
                let outcome = cluster.write(leader, command, WRITE_TIMEOUT).await;
                wrote = outcome == WriteOutcome::Applied(CommandResult::Bool(true));
                continue;
            }
            let ids = cluster.ids();
            let progress: Vec<_> = ids.iter().map(|id| cluster.progress(*id)).collect();
            let states: Vec<_> = ids.iter().map(|id| cluster.store_state(*id)).collect();
            let target = progress[0].map(|(_, last)| last);
            let all_applied = progress.iter().all(|p| {
                p.is_some_and(|(applied, last)| Some(applied) == target && Some(last) == target)
            });
            let same_store = states.windows(2).all(
                |w| matches!((w[0], w[1]), (Some(a), Some(b)) if a.state_hash == b.state_hash),
            );
            if all_applied && same_store {
                converged = true;
                break;
            }
        }
        if !wrote || !converged {
            violations.push(format!(
                "liveness: {} within {:?} of virtual time after healing",
                if !all_voters {
                    "no leader made every server a voter again"
                } else if wrote {
                    "servers did not converge (same log applied, same store)"
                } else {
                    "no leader accepted a write"
                },
                params.liveness_bound
            ));
        } else {
            trace.record(0, "converged");
            // Final reads through the leader: what every key holds now.
            for k in 0..params.keys {
                let key = format!("k{k}");
                let mut done = false;
                for _ in 0..20 {
                    if read_op(&cluster, &history, final_process, &key)
                        .await
                        .is_some()
                    {
                        done = true;
                        break;
                    }
                    madsim::time::sleep(Duration::from_millis(100)).await;
                }
                if !done {
                    violations.push(format!("liveness: no final read of {key} succeeded"));
                }
            }
            violations.extend(durability(
                &cluster,
                &acked_values(&history.lock().unwrap()),
            ));
        }
        let (votes, applied, mut samples) = observed(&cluster);
        for id in cluster.ids() {
            samples.extend(cluster.store_state(id));
        }
        let history = history.lock().unwrap().clone();
        let mut faults = nemesis.counts;
        let snapshots: u64 = cluster
            .ids()
            .iter()
            .map(|id| cluster.disk(*id).snapshots_saved())
            .sum();
        if snapshots > 0 {
            faults.insert("snapshots saved", snapshots);
        }
        let corrupted: u64 = cluster
            .ids()
            .iter()
            .map(|id| cluster.disk(*id).reads_corrupted())
            .sum();
        if corrupted > 0 {
            faults.insert("corrupted reads caught", corrupted);
        }
        {
            let locks = locks.lock().unwrap();
            violations.extend(locks.anomalies.iter().cloned());
            if let Err(e) = lock_exclusivity::check(&locks.holds, &[], Exclusivity::Strict) {
                violations.push(format!("locks: {e}"));
            }
            if !locks.holds.is_empty() {
                faults.insert("lock holds", locks.holds.len() as u64);
            }
        }
        Outcome {
            history,
            votes,
            applied,
            samples,
            faults,
            violations,
        }
    }

    /// Values of writes and CASes that were acknowledged.
    fn acked_values(history: &[Event]) -> Vec<String> {
        let mut pending: BTreeMap<u64, Option<String>> = BTreeMap::new();
        let mut acked = Vec::new();
        for event in history {
            match event.event_type {
                EventType::Invoke => {
                    let carries = matches!(event.f, Function::Write | Function::Cas);
                    pending.insert(event.process, event.value.clone().filter(|_| carries));
                }
                EventType::Ok => {
                    if let Some(Some(value)) = pending.remove(&event.process) {
                        acked.push(value);
                    }
                }
                _ => {
                    pending.remove(&event.process);
                }
            }
        }
        acked
    }

    /// What the servers did so far, for the state invariants.
    fn observed(cluster: &Cluster) -> (Vec<VoteSeen>, Vec<AppliedEntry>, Vec<StoreSample>) {
        let observations = cluster.observations();
        let votes = observations
            .votes
            .iter()
            .map(
                |&(node, incarnation, term, voted_for, committed)| VoteSeen {
                    node,
                    incarnation,
                    term,
                    voted_for,
                    committed,
                },
            )
            .collect();
        let applied = observations
            .applied
            .iter()
            .map(|(node, log_id)| AppliedEntry {
                node: *node,
                index: log_id.index(),
                term: log_id.leader_id.term,
                leader: log_id.leader_id.node_id,
            })
            .collect();
        (votes, applied, observations.samples.clone())
    }

    /// The invariants over what the servers did (the history is judged
    /// separately): votes never go back within a run, the same entry is
    /// applied at each index everywhere, stores are equal at equal applied
    /// index. No per-term election check: tribune's openraft uses advanced
    /// leader ids, under which a term may have several leaders (see
    /// raft_safety); state-machine safety is what must hold.
    fn state_invariants(
        votes: &[VoteSeen],
        applied: &[AppliedEntry],
        samples: &[StoreSample],
    ) -> Vec<String> {
        let mut violations = Vec::new();
        if let Err(e) = raft_safety::check_votes(votes) {
            violations.push(e.to_string());
        }
        if let Err(e) = raft_safety::check_applied(applied) {
            violations.push(e.to_string());
        }
        let samples: Vec<ReplicaSample> = samples
            .iter()
            .map(|s| ReplicaSample {
                replica: s.node,
                applied_index: s.applied_index,
                state_hash: s.state_hash,
            })
            .collect();
        if let Err(e) = replica_state::check(&samples) {
            violations.push(format!("replica state: {e}"));
        }
        violations
    }

    /// Every acknowledged write is in every server's log (or among the
    /// entries it purged after a snapshot), or behind the snapshot that
    /// replaced that part of its log. Written values are unique, so a value
    /// names one log entry.
    /// The values a log entry writes, as the history records them: KV
    /// values (alone or in a transaction) and the tag of a registered
    /// service instance.
    fn written_values(entry: &io_sim::types::Entry) -> Vec<String> {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match &entry.payload {
            openraft::EntryPayload::Normal(Command::Kv(op)) => vec![text(&op.value)],
            openraft::EntryPayload::Normal(Command::Txn(ops)) => {
                ops.iter().map(|op| text(&op.value)).collect()
            }
            openraft::EntryPayload::Normal(Command::Register(registration)) => registration
                .service
                .iter()
                .flat_map(|service| service.tags.first().cloned())
                .collect(),
            _ => Vec::new(),
        }
    }

    fn durability(cluster: &Cluster, acked: &[String]) -> Vec<String> {
        let logs: BTreeMap<u64, BTreeMap<String, u64>> = cluster
            .ids()
            .into_iter()
            .map(|id| {
                let values = cluster
                    .disk(id)
                    .history()
                    .iter()
                    .flat_map(|entry| {
                        let index = entry.log_id.index;
                        written_values(entry)
                            .into_iter()
                            .map(move |value| (value, index))
                    })
                    .collect();
                (id, values)
            })
            .collect();
        let mut violations = Vec::new();
        for value in acked {
            let Some(index) = logs.values().find_map(|values| values.get(value).copied()) else {
                violations.push(format!(
                    "durability: acknowledged write of {value:?} is in no server's log"
                ));
                continue;
            };
            for (id, values) in &logs {
                let behind_snapshot = cluster
                    .disk(*id)
                    .purged_through()
                    .is_some_and(|purged| index <= purged);
                if !values.contains_key(value) && !behind_snapshot {
                    violations.push(format!(
                        "durability: acknowledged write of {value:?} (index {index}) is not in \
                         server {id}'s log nor behind its snapshot"
                    ));
                }
            }
        }
        violations
    }

    /// Runs one seed in its own madsim runtime and checks it.
    pub fn run(params: &Params, keep_lines: bool) -> Run {
        let wall = std::time::Instant::now();
        let mut config = madsim::Config::default();
        config.net.packet_loss_rate = params.loss_rate;
        config.net.send_latency =
            Duration::from_millis(1)..Duration::from_millis(params.net_latency_max_ms);
        let runtime = madsim::runtime::Runtime::with_seed_and_config(params.seed, config);
        let trace = if keep_lines {
            Trace::keeping_lines()
        } else {
            Trace::default()
        };
        let ran = {
            let (params, trace) = (params.clone(), trace.clone());
            // A panic anywhere in the simulation (an assertion in openraft
            // or in the adapters) is a failed seed, not a failed process.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                runtime.block_on(async move {
                    let start = Instant::now();
                    let outcome = scenario(params, trace).await;
                    (outcome, start.elapsed())
                })
            }))
        };
        let wall_time = wall.elapsed();
        let (outcome, virtual_time) = match ran {
            Ok(ran) => ran,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(no message)".into());
                return Run {
                    params: params.clone(),
                    trace_hash: trace.hash(),
                    trace_events: trace.events(),
                    trace_lines: trace.lines(),
                    virtual_time: Duration::ZERO,
                    wall_time,
                    operations: 0,
                    acked_writes: 0,
                    faults: BTreeMap::new(),
                    history: Vec::new(),
                    violations: vec![format!("panic in the simulation: {message}")],
                };
            }
        };
        let mut violations = outcome.violations;
        match History::from_events(&outcome.history) {
            Err(e) => violations.push(format!("history does not pair: {e}")),
            Ok(history) => {
                let report = linearizability::check(&history);
                for violation in &report.violations {
                    violations.push(format!(
                        "linearizability: key {}: no linearization past {} operations; \
                         cannot place next: {}",
                        violation.key,
                        violation.prefix.len(),
                        violation
                            .unplaced
                            .iter()
                            .map(|u| linearizability::describe(&u.operation))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ));
                }
            }
        }
        violations.extend(state_invariants(
            &outcome.votes,
            &outcome.applied,
            &outcome.samples,
        ));
        let operations = outcome
            .history
            .iter()
            .filter(|e| e.event_type == EventType::Invoke)
            .count();
        Run {
            params: params.clone(),
            trace_hash: trace.hash(),
            trace_events: trace.events(),
            trace_lines: trace.lines(),
            virtual_time,
            wall_time,
            operations,
            acked_writes: acked_values(&outcome.history).len(),
            faults: outcome.faults,
            history: outcome.history,
            violations,
        }
    }

    fn env_u64(name: &str) -> Option<u64> {
        let text = std::env::var(name).ok()?;
        Some(
            text.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        )
    }

    /// The seeds to run: one (`TRIBUNE_SIM_SEED`), a soak
    /// (`TRIBUNE_SIM_SEEDS`), or CI's budget.
    fn seeds() -> Vec<u64> {
        if let Some(seed) = env_u64("TRIBUNE_SIM_SEED") {
            return vec![seed];
        }
        let first = env_u64("TRIBUNE_SIM_FIRST_SEED").unwrap_or(0);
        let count = env_u64("TRIBUNE_SIM_SEEDS").unwrap_or(CI_SEEDS);
        (first..first + count).collect()
    }

    /// The seed's parameters, with `TRIBUNE_SIM_SERVERS` (3 or 5)
    /// overriding the cluster size (for measurements),
    /// `TRIBUNE_SIM_NO_KILLS` turning crashes off,
    /// `TRIBUNE_SIM_DRIFT_PPM` setting every seed's largest clock drift, and
    /// `TRIBUNE_SIM_READS` the read path (`read-index`, the daemon's, by
    /// default; `daemon-default` for the daemon's lease-based `default` mode;
    /// `openraft-read-index` or `openraft-lease-read` to judge openraft's
    /// own).
    fn params_for(seed: u64) -> Params {
        let mut params = Params::from_seed(seed);
        if let Some(size) = env_u64("TRIBUNE_SIM_SERVERS") {
            params.size = size;
        }
        if std::env::var("TRIBUNE_SIM_NO_KILLS").is_ok() {
            params.kill_pct = 0;
        }
        if let Some(drift_ppm) = env_u64("TRIBUNE_SIM_DRIFT_PPM") {
            assert!(
                drift_ppm < 1_000_000,
                "TRIBUNE_SIM_DRIFT_PPM must be below 1,000,000"
            );
            params.drift_ppm = drift_ppm;
            params.clocks = clocks(&mut generate::Rng::new(seed ^ 0xd21f7), drift_ppm);
        }
        if let Ok(reads) = std::env::var("TRIBUNE_SIM_READS") {
            params.read_mode = match reads.as_str() {
                "read-index" => ReadMode::Linearizable,
                "openraft-read-index" => ReadMode::OpenraftReadIndex,
                "openraft-lease-read" => ReadMode::OpenraftLeaseRead,
                "daemon-default" => ReadMode::DaemonDefault,
                other => panic!(
                    "TRIBUNE_SIM_READS={other:?}: read-index, daemon-default, \
                     openraft-read-index or openraft-lease-read"
                ),
            };
        }
        params
    }

    /// One seed's trace lines (`TRIBUNE_SIM_TRACE=FILE`) and history
    /// (`TRIBUNE_SIM_HISTORY=FILE`, JSON lines for `lincheck`).
    fn save_artifacts(run: &Run) {
        if let Ok(path) = std::env::var("TRIBUNE_SIM_TRACE") {
            let mut text = run.trace_lines.join("\n");
            text.push('\n');
            std::fs::write(&path, text).expect("trace file written");
            eprintln!("trace: {path}");
        }
        if let Ok(path) = std::env::var("TRIBUNE_SIM_HISTORY") {
            let file = std::fs::File::create(&path).expect("history file created");
            sim_tests::write_jsonl(&run.history, std::io::BufWriter::new(file))
                .expect("history written");
            eprintln!("history: {path}");
        }
    }

    #[test]
    fn seeds_pass() {
        let seeds = seeds();
        let single = seeds.len() == 1;
        let wall = std::time::Instant::now();
        let mut failed = Vec::new();
        let mut virtual_total = Duration::ZERO;
        let mut fault_totals: BTreeMap<&'static str, u64> = BTreeMap::new();
        for &seed in &seeds {
            let run = run(&params_for(seed), single);
            virtual_total += run.virtual_time;
            for (fault, n) in &run.faults {
                *fault_totals.entry(fault).or_default() += n;
            }
            if single {
                eprintln!("{}", run.summary());
                save_artifacts(&run);
            }
            if !run.violations.is_empty() {
                eprintln!("FAILED {}", run.summary());
                for violation in &run.violations {
                    eprintln!("  {violation}");
                }
                eprintln!("  reproduce: {}", reproduce(seed));
                failed.push(seed);
            }
        }
        let wall = wall.elapsed();
        eprintln!(
            "{} seeds, {} failed; {:.1}s virtual in {:.1}s wall ({:.0}x)",
            seeds.len(),
            failed.len(),
            virtual_total.as_secs_f64(),
            wall.as_secs_f64(),
            virtual_total.as_secs_f64() / wall.as_secs_f64()
        );
        let totals: Vec<String> = fault_totals
            .iter()
            .map(|(fault, n)| format!("{fault} {n}"))
            .collect();
        eprintln!("faults over all seeds: {}", totals.join(", "));
        assert!(
            failed.is_empty(),
            "seeds failed: {failed:?}; reproduce one with e.g. `{}`",
            reproduce(failed[0])
        );
    }
}
