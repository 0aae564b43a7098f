//! What a seed decides (`Params`) and what a run produced (`Run`).

use io_sim::{DiskConfig, DiskMode, NodeClock, ReadMode};
use sim_tests::generate;
use sim_tests::history::Event;
use std::collections::BTreeMap;
use std::time::Duration;

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
    /// Lease clients (`crate::leases`, each a task of its own): sessions
    /// with this TTL and lock-delay, bound to their node's `serfHealth`.
    pub leases: u64,
    pub lease_ttl_ms: u64,
    pub lease_lock_delay_ms: u64,
    /// Broken on purpose (the teeth test): new leaders do not re-arm the
    /// TTL timers of sessions created under earlier leaders.
    pub forget_sessions_on_takeover: bool,
    /// Broken on purpose (the teeth test): transactions apply their first
    /// operation only.
    pub partial_txns: bool,
    /// Broken on purpose (the teeth test): client agents resend
    /// unanswered writes.
    pub resend_unanswered_writes: bool,
    /// Servers run gossip too; after healing, their member lists must
    /// converge.
    pub gossip: bool,
    /// Client agents (with gossip): gossip-only nodes the leader
    /// registers in the catalog, to whose nodes the lease clients bind
    /// their sessions.
    pub agents: u64,
    /// Nemesis steps (out of 100, drawn apart from the server faults)
    /// that kill, isolate, pause or gracefully remove a client agent.
    pub agent_fault_pct: u64,
    /// Nemesis steps (out of 100, drawn apart) that lose a server for
    /// good (at once, or by bit rot on its disk) and bring the spare server
    /// in for it (one spare per seed; none in seeds with voter changes).
    pub replace_pct: u64,
    /// KV and transaction clients that go through a client agent (every
    /// other client, when there are agents): the agent picks a server and
    /// sends over the network, the server forwards to the leader.
    pub agent_clients: bool,
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
    /// Added to the safety phase of gossip seeds, so that gossip has
    /// time to declare members failed under the faults.
    pub gossip_time: Duration,
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
        // A third stream for the leases.
        let mut third = generate::Rng::new(seed ^ 0x1ea5_e5e5_7711_0c0c);
        let leases = [0, 0, 2, 3][third.below(4) as usize];
        let lease_ttl_ms = 150 + third.below(500);
        let lease_lock_delay_ms = [0, 0, 50, 250][third.below(4) as usize];
        let gossip = third.percent(50);
        // Client agents: a fourth stream, so that the third keeps its
        // draws.
        let mut fourth = generate::Rng::new(seed ^ 0x00a9_e275_c11e_2275);
        let agents = if gossip { 1 + fourth.below(3) } else { 0 };
        let agent_fault_pct = [0, 15, 30][fourth.below(3) as usize];
        // Losing a server for good is safe only while every voter set in
        // use keeps a quorum without it: with voter changes (a subset of
        // two voters, say) one loss can leave a configuration that never
        // commits again, which only an operator's recovery undoes (Consul's
        // peers.json). So seeds with voter changes lose no server for good.
        let replace_pct = [0, 0, 5, 10][fourth.below(4) as usize];
        let replace_pct = if membership_pct == 0 { replace_pct } else { 0 };
        // Gossip declares a dead member failed after 1..4 s (probe every
        // second, then suspicion): give gossip seeds time for it.
        let gossip_time = if gossip {
            Duration::from_millis(2_000 + fourth.below(3_000))
        } else {
            Duration::ZERO
        };
        let agent_clients = agents > 0 && fourth.below(3) > 0;
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
            leases,
            lease_ttl_ms,
            lease_lock_delay_ms,
            forget_sessions_on_takeover: false,
            partial_txns: false,
            resend_unanswered_writes: false,
            gossip,
            agents,
            agent_fault_pct,
            replace_pct,
            agent_clients,
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
            gossip_time,
            liveness_bound: Duration::from_secs(20),
        }
    }
}

/// Each server's clock: its own origin, and a rate within
/// `±drift_ppm` of virtual time.
pub(crate) fn clocks(rng: &mut generate::Rng, drift_ppm: u64) -> BTreeMap<u64, NodeClock> {
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
        self.leases = 0;
        self.gossip = false;
        self.agents = 0;
        self.agent_fault_pct = 0;
        self.replace_pct = 0;
        self.agent_clients = false;
        self.gossip_time = Duration::ZERO;
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
             catalog {}%, read corruption {}ppm, {} lease clients (TTL {} ms), gossip {} ({} agents, {}% agent faults, clients through agents {}), server replacement {}%, \
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
            self.params.leases,
            self.params.lease_ttl_ms,
            self.params.gossip,
            self.params.agents,
            self.params.agent_fault_pct,
            self.params.agent_clients,
            self.params.replace_pct,
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
