//! A Jepsen-style run against real processes: clients write, compare-and-
//! set, delete and read (`?consistent`) three keys through any of three
//! `tribune agent -server` processes while a nemesis SIGSTOPs the leader
//! and SIGKILLs (then restarts) servers. Every operation is recorded in
//! sim-tests' history format, with unknown outcomes (timeouts, broken
//! forwarding, "leadership lost") as `info`, and the history is checked for
//! linearizability with the same checker `lincheck` runs. A second run
//! does the same with Consul locks and checks their fencing tokens.

mod support;

use sim_tests::history::{Event, EventType, Function, History};
use sim_tests::linearizability;
use sim_tests::lock_exclusivity::{self, Exclusivity, FencedWrite, LockHold};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::cluster::Cluster;
use support::{unb64, Client, Resp};

const CLIENTS: u64 = 4;
const KEYS: u64 = 3;
/// Nemesis rounds (each about 4 s): pauses of the leader and kills
/// alternate.
const ROUNDS: usize = 6;
/// A client gives up on one request after this (then its outcome is
/// unknown for a mutation).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// xorshift64*: the test's own seeded generator (no OS randomness, so a
/// printed seed replays the same choices, if not the same timing).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The history, shared by the clients; times are µs since the start.
struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn record(&self, event: Event) {
        self.events.lock().expect("history lock").push(event);
    }
}

/// What a finished request means for the operation.
enum Outcome {
    Ok,
    /// Definitely not applied.
    Fail,
    /// May or may not have been applied.
    Unknown,
}

/// Classifies a mutation's answer. "No cluster leader" is definite: it is
/// only answered when no attempt reached a leader's log.
fn mutation_outcome(answer: &std::io::Result<Resp>) -> Outcome {
    match answer {
        Ok(resp) if resp.status == 200 && resp.text() == "true" => Outcome::Ok,
        Ok(resp) if resp.status == 200 && resp.text() == "false" => Outcome::Fail,
        Ok(resp) if resp.status == 500 && resp.text().trim() == "No cluster leader" => {
            Outcome::Fail
        }
        // Nothing was sent.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Outcome::Fail,
        _ => Outcome::Unknown,
    }
}

/// A consistent read: `Some((value, modify_index))`, `Some((None, 0))` for
/// an absent key, `None` when the read failed.
fn read(client: &Client, key: &str) -> Option<(Option<String>, u64)> {
    let resp = client
        .try_request_within(
            "GET",
            &format!("/v1/kv/{key}?consistent"),
            None,
            REQUEST_TIMEOUT,
        )
        .ok()?;
    match resp.status {
        404 => Some((None, 0)),
        200 => {
            let entry = &resp.json()[0];
            let value = String::from_utf8(unb64(&entry["Value"])).expect("values are text");
            let index = entry["ModifyIndex"].as_u64().expect("ModifyIndex");
            Some((Some(value), index))
        }
        _ => None,
    }
}

fn client_loop(
    process: u64,
    servers: Vec<Client>,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> (u64, u64) {
    let mut rng = Rng(seed ^ (process + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (mut ok_writes, mut ok_reads) = (0, 0);
    let mut serial = 0;
    while !stop.load(Ordering::Relaxed) {
        let server = &servers[rng.below(servers.len() as u64) as usize];
        let key = format!("j/{}", rng.below(KEYS));
        serial += 1;
        let value = format!("{process}-{serial}");
        let choice = rng.below(10);
        if choice < 4 {
            recorder.record(Event::invoke_read(process, &key, recorder.now()));
            match read(server, &key) {
                Some((got, _)) => {
                    ok_reads += 1;
                    recorder.record(Event::ok_read(
                        process,
                        &key,
                        got.as_deref(),
                        recorder.now(),
                    ))
                }
                None => recorder.record(Event::complete(
                    process,
                    EventType::Fail,
                    Function::Read,
                    &key,
                    recorder.now(),
                )),
            }
            continue;
        }
        let (f, answer) = if choice < 7 {
            recorder.record(Event::invoke_write(process, &key, &value, recorder.now()));
            let path = format!("/v1/kv/{key}");
            let answer =
                server.try_request_within("PUT", &path, Some(value.as_bytes()), REQUEST_TIMEOUT);
            (Function::Write, answer)
        } else if choice < 9 {
            // Consul's CAS compares ModifyIndex; values are unique, so
            // "the index read is still current" is "the value read is
            // still there", which is what the history's cas states.
            let Some((expected, index)) = read(server, &key) else {
                continue;
            };
            recorder.record(Event::invoke_cas(
                process,
                &key,
                expected.as_deref(),
                &value,
                recorder.now(),
            ));
            let path = format!("/v1/kv/{key}?cas={index}");
            let answer =
                server.try_request_within("PUT", &path, Some(value.as_bytes()), REQUEST_TIMEOUT);
            (Function::Cas, answer)
        } else {
            recorder.record(Event::invoke_delete(process, &key, recorder.now()));
            let path = format!("/v1/kv/{key}");
            let answer = server.try_request_within("DELETE", &path, None, REQUEST_TIMEOUT);
            (Function::Delete, answer)
        };
        let event_type = match mutation_outcome(&answer) {
            Outcome::Ok => {
                ok_writes += 1;
                EventType::Ok
            }
            Outcome::Fail => EventType::Fail,
            Outcome::Unknown => EventType::Info,
        };
        recorder.record(Event::complete(
            process,
            event_type,
            f,
            &key,
            recorder.now(),
        ));
    }
    (ok_writes, ok_reads)
}

/// The nemesis: [`ROUNDS`] rounds that alternately pause the leader and
/// kill (then restart) a server chosen by `seed`. Returns what it did.
fn nemesis(cluster: &mut Cluster, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let mut faults = Vec::new();
    for round in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(1500));
        let leader = cluster.leader();
        if round % 2 == 0 {
            faults.push(format!("SIGSTOP leader {}", cluster.servers[leader].name));
            cluster.servers[leader].stop_signal();
            std::thread::sleep(Duration::from_millis(2500));
            cluster.servers[leader].cont_signal();
        } else {
            let victim = rng.below(cluster.servers.len() as u64) as usize;
            faults.push(format!("SIGKILL {}", cluster.servers[victim].name));
            cluster.servers[victim].kill();
            std::thread::sleep(Duration::from_millis(2000));
            cluster.servers[victim].restart();
        }
    }
    faults
}

/// The seed of a run: `TRIBUNE_JEPSEN_SEED`, else the process ID.
fn seed() -> u64 {
    let seed = std::env::var("TRIBUNE_JEPSEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) | 1);
    eprintln!("jepsen: seed {seed} (replay the choices with TRIBUNE_JEPSEN_SEED={seed})");
    seed
}

#[test]
fn kv_stays_linearizable_while_leaders_are_paused_and_servers_killed() {
    let seed = seed();
    let mut cluster = Cluster::start(3, &[]);
    cluster.leader();
    let servers: Vec<Client> = cluster.servers.iter().map(|s| s.client.clone()).collect();
    let recorder = Arc::new(Recorder {
        start: Instant::now(),
        events: Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|process| {
            let (servers, recorder, stop) = (servers.clone(), recorder.clone(), stop.clone());
            std::thread::spawn(move || client_loop(process, servers, recorder, stop, seed))
        })
        .collect();

    let faults = nemesis(&mut cluster, seed);
    stop.store(true, Ordering::Relaxed);
    let (mut ok_writes, mut ok_reads) = (0, 0);
    for client in clients {
        let (writes, reads) = client.join().expect("client thread");
        ok_writes += writes;
        ok_reads += reads;
    }
    eprintln!("jepsen: faults {faults:?}; {ok_writes} mutations and {ok_reads} reads succeeded");

    // After the faults heal, every key reads back consistently too.
    cluster.leader();
    for k in 0..KEYS {
        let key = format!("j/{k}");
        let process = CLIENTS + k;
        recorder.record(Event::invoke_read(process, &key, recorder.now()));
        let (got, _) = support::wait_for(Duration::from_secs(30), "a final read", || {
            read(&servers[0], &key)
        });
        recorder.record(Event::ok_read(
            process,
            &key,
            got.as_deref(),
            recorder.now(),
        ));
    }

    let events = recorder.events.lock().expect("history lock").clone();
    let history = History::from_events(&events).expect("a well-formed history");
    let report = linearizability::check(&history);
    if !report.is_linearizable() {
        let path = std::env::temp_dir().join(format!("tribune-jepsen-{seed}.jsonl"));
        let lines: Vec<String> = events.iter().map(Event::to_json_line).collect();
        std::fs::write(&path, lines.join("\n") + "\n").expect("write the history");
        cluster.dump_logs();
        panic!(
            "not linearizable (history in {}; check it with `cargo run -p sim-tests --bin \
             lincheck -- {}`): {:#?}",
            path.display(),
            path.display(),
            report.violations
        );
    }
    // The run exercised the cluster: faults happened and operations of
    // every kind completed around them.
    assert!(faults.len() >= 4, "{faults:?}");
    assert!(
        ok_writes >= 50 && ok_reads >= 50,
        "{ok_writes} / {ok_reads}"
    );
    eprintln!(
        "jepsen: {} operations on {} keys, linearizable",
        report.operations, report.keys
    );
}

/// A resource guarded by the lock: it accepts a write only with a token at
/// least as large as any it accepted before (Kleppmann's fencing).
#[derive(Default)]
struct Resource {
    highest: u64,
    accepted: Vec<FencedWrite>,
}

/// Recorded by the lock clients.
#[derive(Default)]
struct LockLog {
    holds: Vec<LockHold>,
    resource: Resource,
}

/// A session bound to no health check (so only its TTL or a destroy ends
/// it), or `None` when no server answered.
fn create_session(client: &Client) -> Option<String> {
    let body = br#"{"TTL": "10s", "LockDelay": "0s", "Checks": []}"#;
    let resp = client
        .try_request_within("PUT", "/v1/session/create", Some(body), REQUEST_TIMEOUT)
        .ok()?;
    (resp.status == 200).then(|| resp.json()["ID"].as_str().expect("ID").to_string())
}

/// Gives a session up: destroys it if a server answers (releasing what it
/// may hold sooner than its TTL would); the client makes a new one.
fn abandon(client: &Client, session: Option<String>) {
    if let Some(id) = session {
        let path = format!("/v1/session/destroy/{id}");
        let _ = client.try_request_within("PUT", &path, None, REQUEST_TIMEOUT);
    }
}

/// One lock client: acquire, read its `LockIndex` as the fencing token,
/// write to the resource with it, release; any unknown outcome abandons
/// the session (it may still hold the lock) for a new one.
fn lock_loop(
    name: String,
    servers: Vec<Client>,
    log: Arc<Mutex<LockLog>>,
    start: Instant,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> u64 {
    let mut rng = Rng(seed);
    let now = || start.elapsed().as_micros() as u64;
    let mut session: Option<String> = None;
    let mut holds = 0;
    while !stop.load(Ordering::Relaxed) {
        let server = &servers[rng.below(servers.len() as u64) as usize];
        let Some(id) = session.clone().or_else(|| create_session(server)) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        session = Some(id.clone());
        let acquire = server.try_request_within(
            "PUT",
            &format!("/v1/kv/lock?acquire={id}"),
            Some(name.as_bytes()),
            REQUEST_TIMEOUT,
        );
        let acquired_at = now();
        match mutation_outcome(&acquire) {
            Outcome::Ok => {}
            Outcome::Fail => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Outcome::Unknown => {
                abandon(server, session.take());
                continue;
            }
        }
        // The token: the key's LockIndex while this session holds it.
        let Ok(entry) =
            server.try_request_within("GET", "/v1/kv/lock?consistent", None, REQUEST_TIMEOUT)
        else {
            session = None;
            continue;
        };
        let entry = entry.json();
        if entry[0]["Session"].as_str() != Some(id.as_str()) {
            // Lost already (session invalidated): it never used the lock.
            session = None;
            continue;
        }
        let token = entry[0]["LockIndex"].as_u64().expect("LockIndex");
        {
            let mut log = log.lock().expect("lock log");
            let time = now();
            let resource = &mut log.resource;
            if token >= resource.highest {
                resource.highest = token;
                resource.accepted.push(FencedWrite {
                    lock: "lock".into(),
                    token,
                    time,
                });
            }
        }
        std::thread::sleep(Duration::from_millis(rng.below(30)));
        let release = server.try_request_within(
            "PUT",
            &format!("/v1/kv/lock?release={id}"),
            None,
            REQUEST_TIMEOUT,
        );
        let release_failed = !matches!(mutation_outcome(&release), Outcome::Ok);
        log.lock().expect("lock log").holds.push(LockHold {
            lock: "lock".into(),
            holder: format!("{name} {id}"),
            token,
            acquired: acquired_at,
            released: Some(now()),
        });
        holds += 1;
        // The lock may still be held: a new session, so the next acquire
        // cannot succeed on the old hold without a new token.
        if release_failed {
            abandon(server, session.take());
        }
    }
    holds
}

/// Consul locks under the same nemesis: every acquisition gets a fresh
/// fencing token (`LockIndex`), tokens follow the order of acquisition,
/// and a resource that refuses stale tokens only ever sees them grow.
#[test]
fn lock_tokens_stay_unique_and_ordered_while_leaders_are_paused_and_servers_killed() {
    let seed = seed();
    let mut cluster = Cluster::start(3, &[]);
    cluster.leader();
    let servers: Vec<Client> = cluster.servers.iter().map(|s| s.client.clone()).collect();
    let log = Arc::new(Mutex::new(LockLog::default()));
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (servers, log, stop) = (servers.clone(), log.clone(), stop.clone());
            let seed = seed ^ (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            std::thread::spawn(move || lock_loop(format!("c{i}"), servers, log, start, stop, seed))
        })
        .collect();
    let faults = nemesis(&mut cluster, seed);
    stop.store(true, Ordering::Relaxed);
    let holds: u64 = clients
        .into_iter()
        .map(|c| c.join().expect("lock client"))
        .sum();
    let log = log.lock().expect("lock log");
    eprintln!(
        "jepsen: faults {faults:?}; {holds} lock holds, {} fenced writes accepted",
        log.resource.accepted.len()
    );
    if let Err(violation) =
        lock_exclusivity::check(&log.holds, &log.resource.accepted, Exclusivity::Fenced)
    {
        cluster.dump_logs();
        panic!("lock violation: {violation:#?}");
    }
    assert!(holds >= 20, "only {holds} holds");
}
