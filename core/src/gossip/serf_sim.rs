//! An in-test virtual network for [`Serf`] nodes, the serf-level twin of
//! `sim.rs` (same link model, same seeded replay): packets with latency
//! and loss, streams as reliable messages that fail when an end is down,
//! virtual time advanced to the next delivery or timer. Each node's serf
//! events are recorded for the tests, and every output feeds a trace hash.

use super::message::{Ack, Message, Ping, PushPull};
use super::serf_state::{Serf, SerfConfig, SerfEvent, SerfOutput};
use super::sim::{node_addr, node_name, NetConfig};
use super::swim::{Output, StreamId};
use crate::rng::Rng;
use crate::time::{Duration, Instant};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

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

pub struct SerfNode {
    pub serf: Serf,
    pub name: String,
    pub addr: SocketAddr,
    /// Crashed or isolated: nothing in or out.
    pub down: bool,
    pub events: Vec<(Instant, SerfEvent)>,
}

pub struct SerfSim {
    pub now: Instant,
    pub nodes: Vec<SerfNode>,
    pub net: NetConfig,
    by_addr: BTreeMap<SocketAddr, usize>,
    queue: BTreeMap<(Instant, u64), Delivery>,
    timers: BTreeSet<(Instant, usize)>,
    deadlines: Vec<Option<Instant>>,
    next_seq: u64,
    rng: Rng,
    /// FNV-1a over every output of every node.
    pub trace: u64,
}

impl SerfSim {
    /// `n` serf nodes with `config`, each tagged `{"id": i}` plus the
    /// config's tags; none joined yet.
    pub fn new(n: usize, config: &SerfConfig, net: NetConfig, seed: u64) -> SerfSim {
        let mut sim = SerfSim {
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
        };
        for _ in 0..n {
            sim.add_node(config);
        }
        sim
    }

    /// Adds one more (unjoined) node; returns its index.
    pub fn add_node(&mut self, config: &SerfConfig) -> usize {
        let i = self.nodes.len();
        let mut config = config.clone();
        config.tags.insert("id".to_owned(), i.to_string());
        let seed = self.rng.next_u64();
        let serf = Serf::new(self.now, config, node_name(i), node_addr(i), seed)
            .expect("valid serf config");
        let node = SerfNode {
            serf,
            name: node_name(i),
            addr: node_addr(i),
            down: false,
            events: Vec::new(),
        };
        self.by_addr.insert(node.addr, i);
        self.nodes.push(node);
        self.deadlines.push(None);
        self.drain(i);
        i
    }

    /// Node `i` joins through node `seed`.
    pub fn join(&mut self, i: usize, seed: usize, ignore_old: bool) {
        let addr = self.nodes[seed].addr;
        self.with_node(i, |s, now| {
            s.join(now, &[addr], ignore_old).expect("alive node joins")
        });
    }

    pub fn with_node<T>(&mut self, i: usize, f: impl FnOnce(&mut Serf, Instant) -> T) -> T {
        let now = self.now;
        let out = f(&mut self.nodes[i].serf, now);
        self.drain(i);
        out
    }

    pub fn run_until(&mut self, end: Instant) {
        loop {
            let next_delivery = self.queue.keys().next().map(|k| k.0);
            let next_timer = self.timers.iter().next().map(|t| t.0);
            let Some(next) = [next_delivery, next_timer].into_iter().flatten().min() else {
                break;
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            if next_delivery == Some(next) {
                let key = *self.queue.keys().next().expect("nonempty");
                let delivery = self.queue.remove(&key).expect("present");
                self.deliver(delivery);
            } else {
                let (_, i) = *self.timers.iter().next().expect("nonempty");
                let now = self.now;
                self.nodes[i].serf.handle_timeout(now);
                self.drain(i);
            }
        }
        self.now = self.now.max(end);
    }

    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }

    /// Runs in steps of `step` until `done(self)` or `limit` passes.
    pub fn run_until_true(
        &mut self,
        step: Duration,
        limit: Duration,
        mut done: impl FnMut(&SerfSim) -> bool,
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

    fn latency(&mut self) -> Duration {
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
        Duration(self.net.latency_min.0 + jitter)
    }

    fn schedule(&mut self, at: Instant, delivery: Delivery) {
        self.next_seq += 1;
        self.queue.insert((at, self.next_seq), delivery);
    }

    fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].serf.poll() {
            self.hash_trace(i, &out);
            self.route(i, out);
        }
        self.nodes[i].serf.check_invariants();
        if let Some(old) = self.deadlines[i] {
            self.timers.remove(&(old, i));
        }
        let next = self.nodes[i].serf.poll_timeout().map(|t| t.max(self.now));
        if let Some(t) = next {
            self.timers.insert((t, i));
        }
        self.deadlines[i] = next;
    }

    fn hash_trace(&mut self, i: usize, out: &SerfOutput) {
        let text = format!("{}|{i}|{out:?}", self.now.0);
        for b in text.bytes() {
            self.trace ^= u64::from(b);
            self.trace = self.trace.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn route(&mut self, i: usize, out: SerfOutput) {
        let now = self.now;
        let out = match out {
            SerfOutput::Event(e) => {
                self.nodes[i].events.push((now, e));
                return;
            }
            SerfOutput::Memberlist(out) => out,
        };
        let at = now + self.latency();
        match out {
            Output::Packet { to, msgs } => {
                let Some(&dest) = self.by_addr.get(&to) else {
                    return;
                };
                let lost = self.net.loss_ppm > 0 && self.rng.below(1_000_000) < self.net.loss_ppm;
                if !self.nodes[i].down && !lost {
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
            }
            Output::OpenPushPull { id, to, state, .. } => match self.by_addr.get(&to).copied() {
                Some(dest) if !self.nodes[i].down => {
                    let from = i;
                    self.schedule(
                        at,
                        Delivery::PushPull {
                            from,
                            to: dest,
                            id,
                            state,
                        },
                    );
                }
                _ => self.schedule(at, Delivery::StreamFailed { to: i, id }),
            },
            Output::OpenPingStream {
                id,
                to,
                ping,
                deadline,
            } => match self.by_addr.get(&to).copied() {
                Some(dest) if !self.nodes[i].down => {
                    let from = i;
                    let d = Delivery::PingStream {
                        from,
                        to: dest,
                        id,
                        ping,
                        deadline,
                    };
                    self.schedule(at, d);
                }
                _ => self.schedule(deadline, Delivery::StreamFailed { to: i, id }),
            },
            // Serf consumes the rest; PingComplete needs no transport.
            _ => {}
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
                    self.nodes[to].serf.handle_packet(now, from, msg);
                }
                self.drain(to);
            }
            Delivery::PushPull {
                from,
                to,
                id,
                state,
            } => {
                let at = now + self.latency();
                if self.nodes[to].down {
                    self.schedule(at, Delivery::StreamFailed { to: from, id });
                    return;
                }
                let from_addr = self.nodes[from].addr;
                let reply = self.nodes[to].serf.handle_push_pull(now, from_addr, state);
                self.drain(to);
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
                    self.nodes[to].serf.handle_stream_failed(now, id);
                } else {
                    self.nodes[to].serf.handle_push_pull_reply(now, id, reply);
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
                    self.nodes[to].serf.handle_ping_stream(now, from_addr, ping)
                };
                let at = now + self.latency();
                match ack {
                    Some(ack) if at <= deadline => {
                        self.schedule(at, Delivery::PingStreamAck { to: from, id, ack });
                    }
                    _ => self.schedule(deadline.max(now), Delivery::StreamFailed { to: from, id }),
                }
            }
            Delivery::PingStreamAck { to, id, ack } => {
                self.nodes[to].serf.handle_ping_stream_ack(now, id, ack);
                self.drain(to);
            }
            Delivery::StreamFailed { to, id } => {
                self.nodes[to].serf.handle_stream_failed(now, id);
                self.drain(to);
            }
        }
    }

    /// Every node in `observers` sees every node in `subjects` with
    /// `status`.
    pub fn all_see(
        &self,
        observers: &[usize],
        subjects: &[usize],
        status: super::serf_state::MemberStatus,
    ) -> bool {
        observers.iter().all(|&i| {
            subjects.iter().all(|&j| {
                self.nodes[i]
                    .serf
                    .member(&self.nodes[j].name)
                    .is_some_and(|m| m.status == status)
            })
        })
    }
}
