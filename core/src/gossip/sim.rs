//! A virtual network for [`Memberlist`]s: virtual time advanced
//! to the next delivery or timer, packets with seeded latency and loss,
//! streams as reliable messages that fail when an end is down. Everything
//! derives from one seed, so a run replays exactly.

use super::message::{Ack, Message, Ping, PushPull};
use super::swim::{LocalNode, MemberEvent, Memberlist, Output, StreamId};
use super::Config;
use crate::rng::Rng;
use crate::time::{Duration, Instant};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Protocol versions of a current memberlist with serf's delegate range.
pub const VSN: [u8; 6] = [1, 5, 2, 2, 5, 4];

/// Link behaviour.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub latency_min: Duration,
    pub latency_max: Duration,
    /// Packet loss in parts per million (streams are reliable).
    pub loss_ppm: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(5),
            loss_ppm: 0,
        }
    }
}

enum Delivery {
    Packet {
        from: SocketAddr,
        to: usize,
        msgs: Vec<Message>,
    },
    PushPull {
        from: usize,
        to: usize,
        id: StreamId,
        state: PushPull,
    },
    PushPullReply {
        to: usize,
        id: StreamId,
        reply: PushPull,
    },
    PingStream {
        from: usize,
        to: usize,
        id: StreamId,
        ping: Ping,
        deadline: Instant,
    },
    PingStreamAck {
        to: usize,
        id: StreamId,
        ack: Ack,
    },
    StreamFailed {
        to: usize,
        id: StreamId,
    },
}

pub struct SimNode {
    pub list: Memberlist,
    pub name: String,
    pub addr: SocketAddr,
    /// Isolated: every packet and stream to or from it is lost.
    pub down: bool,
    /// Extra delay on everything this node sends (a slow member).
    pub out_delay: Duration,
    pub events: Vec<(Instant, MemberEvent)>,
    pub user_messages: Vec<Vec<u8>>,
    pub leave_finished: Option<(Instant, bool)>,
    pub joins_ok: usize,
    /// User messages this node has seen, for serf-style re-broadcast.
    seen_user: BTreeSet<Vec<u8>>,
}

pub struct Sim {
    pub now: Instant,
    pub nodes: Vec<SimNode>,
    pub net: NetConfig,
    by_addr: BTreeMap<SocketAddr, usize>,
    queue: BTreeMap<(Instant, u64), Delivery>,
    timers: BTreeSet<(Instant, usize)>,
    deadlines: Vec<Option<Instant>>,
    next_seq: u64,
    rng: Rng,
    /// FNV-1a over every output, when `tracing`.
    pub trace: u64,
    pub tracing: bool,
    pub steps: u64,
    /// Act like serf on top: a member re-broadcasts each user message the
    /// first time it sees it (memberlist alone only relays its own).
    pub rebroadcast_user_messages: bool,
    /// Run `check_invariants` after every step (off only for benchmarks).
    pub check_invariants: bool,
}

pub fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

/// The tags a Consul client agent announces (`role`, `dc`, `segment`,
/// `id`, protocol versions, `build`), with a node id made from `i`: alive
/// messages of a real datacenter's size, for tests and benchmarks.
pub fn consul_client_tags(i: usize) -> BTreeMap<String, String> {
    [
        ("role", "node".to_string()),
        ("dc", "dc1".to_string()),
        ("segment", String::new()),
        (
            "id",
            format!("{:08x}-5f3a-4c1e-9d2b-{:012x}", i * 7919, i * 104_729),
        ),
        ("vsn", "2".to_string()),
        ("vsn_min", "2".to_string()),
        ("vsn_max", "3".to_string()),
        ("build", "0.1.0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub fn node_addr(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::new(IpAddr::V4(ip), 7946)
}

impl Sim {
    /// `n` members, none joined yet.
    pub fn new(n: usize, config: &Config, net: NetConfig, seed: u64) -> Sim {
        let mut sim = Sim {
            now: Instant(0),
            nodes: Vec::new(),
            net,
            by_addr: BTreeMap::new(),
            queue: BTreeMap::new(),
            timers: BTreeSet::new(),
            deadlines: Vec::new(),
            next_seq: 0,
            rng: Rng::from_seed(seed),
            trace: 0xcbf2_9ce4_8422_2325,
            tracing: false,
            steps: 0,
            rebroadcast_user_messages: false,
            check_invariants: true,
        };
        for i in 0..n {
            sim.add_node(i, config);
        }
        sim
    }

    fn add_node(&mut self, i: usize, config: &Config) {
        let list = self.start_list(i, config);
        let node = SimNode {
            list,
            name: node_name(i),
            addr: node_addr(i),
            down: false,
            out_delay: Duration::ZERO,
            events: Vec::new(),
            user_messages: Vec::new(),
            leave_finished: None,
            joins_ok: 0,
            seen_user: BTreeSet::new(),
        };
        self.by_addr.insert(node.addr, i);
        self.nodes.push(node);
        self.deadlines.push(None);
        self.drain(i);
    }

    fn start_list(&mut self, i: usize, config: &Config) -> Memberlist {
        let local = LocalNode {
            name: node_name(i),
            addr: node_addr(i),
            meta: format!("meta-{i}").into_bytes(),
            vsn: VSN,
        };
        let seed = self.rng.next_u64();
        Memberlist::new(self.now, config.clone(), local, seed).expect("valid local node")
    }

    /// Replaces node `i` with a fresh process (same name and address).
    pub fn restart(&mut self, i: usize, config: &Config) {
        let list = self.start_list(i, config);
        let node = &mut self.nodes[i];
        node.list = list;
        node.down = false;
        node.events.clear();
        node.user_messages.clear();
        node.leave_finished = None;
        self.drain(i);
    }

    /// Node `i` joins through node `seed`.
    pub fn join(&mut self, i: usize, seed: usize) {
        let addr = self.nodes[seed].addr;
        let now = self.now;
        self.nodes[i].list.join(now, &[addr]);
        self.drain(i);
    }

    pub fn with_node(&mut self, i: usize, f: impl FnOnce(&mut Memberlist, Instant)) {
        let now = self.now;
        f(&mut self.nodes[i].list, now);
        self.drain(i);
    }

    /// Runs until virtual time `end`.
    pub fn run_until(&mut self, end: Instant) {
        loop {
            let next_delivery = self.queue.keys().next().map(|k| k.0);
            let next_timer = self.timers.iter().next().map(|t| t.0);
            let next = match (next_delivery, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            self.steps += 1;
            if next_delivery == Some(next) {
                let key = *self.queue.keys().next().expect("nonempty");
                let delivery = self.queue.remove(&key).expect("present");
                self.deliver(delivery);
            } else {
                let (_, i) = *self.timers.iter().next().expect("nonempty");
                let now = self.now;
                self.nodes[i].list.handle_timeout(now);
                self.drain(i);
            }
        }
        self.now = self.now.max(end);
    }

    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }

    /// Runs in steps of `step` until `done(self)` or `limit` passes;
    /// returns the virtual time it took.
    pub fn run_until_true(
        &mut self,
        step: Duration,
        limit: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now.saturating_duration_since(start) <= limit {
            if done(self) {
                return Some(self.now.saturating_duration_since(start));
            }
            self.run_for(step);
        }
        None
    }

    fn latency(&mut self, from: usize) -> Duration {
        let span = self
            .net
            .latency_max
            .0
            .saturating_sub(self.net.latency_min.0);
        let jitter = if span == 0 {
            0
        } else {
            self.rng.below(span + 1)
        };
        Duration(self.net.latency_min.0 + jitter + self.nodes[from].out_delay.0)
    }

    fn schedule(&mut self, at: Instant, delivery: Delivery) {
        self.next_seq += 1;
        self.queue.insert((at, self.next_seq), delivery);
    }

    fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].list.poll() {
            if self.tracing {
                self.hash_trace(i, &out);
            }
            self.route(i, out);
        }
        if self.check_invariants {
            self.nodes[i].list.check_invariants();
        }
        let next = self.nodes[i].list.poll_timeout();
        if let Some(old) = self.deadlines[i] {
            self.timers.remove(&(old, i));
        }
        // Never schedule in the past: a due timer runs now.
        let next = next.map(|t| t.max(self.now));
        if let Some(t) = next {
            self.timers.insert((t, i));
        }
        self.deadlines[i] = next;
    }

    fn hash_trace(&mut self, i: usize, out: &Output) {
        let text = format!("{}|{i}|{out:?}", self.now.0);
        for b in text.bytes() {
            self.trace ^= u64::from(b);
            self.trace = self.trace.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn route(&mut self, i: usize, out: Output) {
        let now = self.now;
        match out {
            Output::Packet { to, msgs } => {
                let Some(&dest) = self.by_addr.get(&to) else {
                    return;
                };
                let lost = self.net.loss_ppm > 0 && self.rng.below(1_000_000) < self.net.loss_ppm;
                if self.nodes[i].down || lost {
                    return;
                }
                let at = now + self.latency(i);
                let from = self.nodes[i].addr;
                self.schedule(
                    at,
                    Delivery::Packet {
                        from,
                        to: dest,
                        msgs,
                    },
                );
            }
            Output::OpenPushPull { id, to, state, .. } => match self.by_addr.get(&to).copied() {
                Some(dest) if !self.nodes[i].down => {
                    let at = now + self.latency(i);
                    self.schedule(
                        at,
                        Delivery::PushPull {
                            from: i,
                            to: dest,
                            id,
                            state,
                        },
                    );
                }
                _ => {
                    let at = now + self.latency(i);
                    self.schedule(at, Delivery::StreamFailed { to: i, id });
                }
            },
            Output::OpenPingStream {
                id,
                to,
                ping,
                deadline,
            } => match self.by_addr.get(&to).copied() {
                Some(dest) if !self.nodes[i].down => {
                    let at = now + self.latency(i);
                    self.schedule(
                        at,
                        Delivery::PingStream {
                            from: i,
                            to: dest,
                            id,
                            ping,
                            deadline,
                        },
                    );
                }
                _ => self.schedule(deadline, Delivery::StreamFailed { to: i, id }),
            },
            Output::Event(e) => self.nodes[i].events.push((now, e)),
            Output::UserMessage(bytes) => {
                let node = &mut self.nodes[i];
                if self.rebroadcast_user_messages && node.seen_user.insert(bytes.clone()) {
                    node.list
                        .send_user_broadcast(bytes.clone())
                        .expect("a received message fits a packet");
                }
                node.user_messages.push(bytes);
            }
            Output::LeaveFinished { broadcast_sent } => {
                self.nodes[i].leave_finished = Some((now, broadcast_sent));
            }
            Output::JoinResult { ok, .. } => self.nodes[i].joins_ok += usize::from(ok),
            Output::RemoteUserState { .. } | Output::PingComplete { .. } => {}
        }
    }

    fn deliver(&mut self, delivery: Delivery) {
        let now = self.now;
        match delivery {
            Delivery::Packet { from, to, msgs } => {
                if self.nodes[to].down {
                    return;
                }
                for msg in msgs {
                    self.nodes[to].list.handle_packet(now, from, msg);
                }
                self.drain(to);
            }
            Delivery::PushPull {
                from,
                to,
                id,
                state,
            } => {
                if self.nodes[to].down {
                    let at = now + self.latency(to);
                    self.schedule(at, Delivery::StreamFailed { to: from, id });
                    return;
                }
                let from_addr = self.nodes[from].addr;
                let reply = self.nodes[to].list.handle_push_pull(now, from_addr, state);
                self.drain(to);
                let at = now + self.latency(to);
                self.schedule(
                    at,
                    Delivery::PushPullReply {
                        to: from,
                        id,
                        reply,
                    },
                );
            }
            Delivery::PushPullReply { to, id, reply } => {
                if self.nodes[to].down {
                    self.nodes[to].list.handle_stream_failed(now, id);
                } else {
                    self.nodes[to].list.handle_push_pull_reply(now, id, reply);
                }
                self.drain(to);
            }
            Delivery::PingStream {
                from,
                to,
                id,
                ping,
                deadline,
            } => {
                let from_addr = self.nodes[from].addr;
                let ack = if self.nodes[to].down {
                    None
                } else {
                    self.nodes[to].list.handle_ping_stream(now, from_addr, ping)
                };
                let at = now + self.latency(to);
                match ack {
                    Some(ack) if at <= deadline => {
                        self.schedule(at, Delivery::PingStreamAck { to: from, id, ack });
                    }
                    _ => self.schedule(deadline.max(now), Delivery::StreamFailed { to: from, id }),
                }
            }
            Delivery::PingStreamAck { to, id, ack } => {
                self.nodes[to].list.handle_ping_stream_ack(now, id, ack);
                self.drain(to);
            }
            Delivery::StreamFailed { to, id } => {
                self.nodes[to].list.handle_stream_failed(now, id);
                self.drain(to);
            }
        }
    }

    /// Node `i` originated `payload`: it must not re-broadcast it.
    pub fn mark_seen(&mut self, i: usize, payload: &[u8]) {
        self.nodes[i].seen_user.insert(payload.to_vec());
    }

    /// Every node in `live` sees every node in `live` alive.
    pub fn all_see_alive(&self, live: &[usize]) -> bool {
        live.iter().all(|&i| {
            live.iter().all(|&j| {
                self.nodes[i]
                    .list
                    .member(&self.nodes[j].name)
                    .is_some_and(|m| m.state == super::message::NodeState::Alive)
            })
        })
    }
}
