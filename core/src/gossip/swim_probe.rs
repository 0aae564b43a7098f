//! Failure detection (memberlist's `probe`, `probeNode`, `handlePing`,
//! `handleIndirectPing`, `handleAck`, `handleNack`).
//!
//! One probe runs at a time. Each probe tick picks the next member of a
//! shuffled round-robin order (skipping ourselves and the dead; at the end
//! of a pass, dead members past `gossip_to_the_dead_time` are dropped and
//! the order reshuffled). The probe:
//!
//! ```text
//!  t0            ping (with a suspect attached if the target is suspect)
//!  t0+timeout    no ack: indirect pings via `indirect_checks` live peers
//!                (nack requested from protocol >= 4), stream ping in
//!                parallel (protocol >= 3)
//!  t0+interval*  (interval scaled by awareness) no ack, no stream
//!                contact: suspect the target; awareness += missed nacks
//!                (or +1 without nack peers)
//! ```
//!
//! Any ack before the end completes the probe and lowers awareness.

use super::config::INDIRECT_PROBES_MAX;
use super::message::{
    addr_bytes, socket_addr, Ack, IndirectPing, Message, Nack, NodeState, Ping, Suspect,
};
use super::swim::{shuffle, Fallback, Forward, Memberlist, Output, PendingStream, Probe, StreamId};
use crate::time::Instant;
use std::net::SocketAddr;

impl Memberlist {
    /// memberlist's `probe`: finds the next member to probe, if any.
    pub(super) fn probe_next(&mut self, now: Instant) {
        self.probe_tick_pending = false;
        let mut checked = 0;
        loop {
            if checked >= self.probe_order.len() {
                return;
            }
            if self.probe_index >= self.probe_order.len() {
                self.reset_probe_order(now);
                self.probe_index = 0;
                checked += 1;
                continue;
            }
            let name = self.probe_order[self.probe_index].clone();
            self.probe_index += 1;
            let skip = name == self.local.name
                || self.members.get(&name).is_none_or(|m| m.is_dead_or_left());
            if skip {
                checked += 1;
                continue;
            }
            self.start_probe(now, &name);
            return;
        }
    }

    /// memberlist's `resetNodes`: forget members dead for longer than
    /// `gossip_to_the_dead_time` (never ourselves), reshuffle the rest.
    fn reset_probe_order(&mut self, now: Instant) {
        let window = self.config.gossip_to_the_dead_time;
        let local = &self.local.name;
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                &m.name != local
                    && m.is_dead_or_left()
                    && now.saturating_duration_since(m.state_change) > window
            })
            .map(|m| m.name.clone())
            .collect();
        for name in &expired {
            self.members.remove(name);
        }
        if !expired.is_empty() {
            self.probe_order.retain(|n| self.members.contains_key(n));
        }
        shuffle(&mut self.rng, &mut self.probe_order);
    }

    fn start_probe(&mut self, now: Instant, name: &str) {
        // Present: the caller just looked it up.
        let target = self.members[name].clone();
        let interval = self.awareness.scale(self.config.probe_interval);
        let ping = Ping {
            seq_no: self.next_seq_no(),
            node: target.name.clone(),
            source_addr: addr_bytes(self.local.addr.ip()),
            source_port: self.local.addr.port(),
            source_node: self.local.name.clone(),
        };
        if target.state == NodeState::Alive {
            self.send_with_piggyback(target.addr, Message::Ping(ping.clone()));
        } else {
            // Lifeguard's buddy system: tell a suspect it is suspected so it
            // can refute at once.
            let suspect = Suspect {
                incarnation: target.incarnation,
                node: target.name.clone(),
                from: self.local.name.clone(),
            };
            self.outputs.push_back(Output::Packet {
                to: target.addr,
                msgs: vec![Message::Ping(ping.clone()), Message::Suspect(suspect)],
            });
        }
        self.stats.probes_sent += 1;
        let direct_end = now + self.config.probe_timeout.min(interval);
        self.probe = Some(Probe {
            ping,
            node: target.name.clone(),
            addr: target.addr,
            incarnation: target.incarnation,
            protocol_max: target.protocol_max(),
            sent: now,
            indirect_at: Some(direct_end),
            deadline: now + interval,
            expected_nacks: 0,
            nacks: 0,
            fallback: Fallback::NotTried,
        });
    }

    /// Advances the probe in flight: direct phase over → indirect; probe
    /// interval over → verdict.
    pub(super) fn expire_probe(&mut self, now: Instant) {
        let Some(probe) = &self.probe else {
            return;
        };
        if probe.indirect_at.is_some_and(|at| now >= at) {
            self.start_indirect_probes();
        }
        if self.probe.as_ref().is_some_and(|p| now >= p.deadline) {
            self.finish_failed_probe(now);
        }
    }

    fn start_indirect_probes(&mut self) {
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        probe.indirect_at = None;
        let (target, seq_no, ping) = (probe.node.clone(), probe.ping.seq_no, probe.ping.clone());
        let (addr, protocol_max, deadline) = (probe.addr, probe.protocol_max, probe.deadline);
        let local = self.local.name.clone();
        let peers = self.k_random_names(self.config.indirect_checks, |m| {
            m.name == local || m.name == target || m.state != NodeState::Alive
        });
        let mut expected_nacks = 0;
        for peer in peers {
            // Present: just chosen from the table.
            let peer = self.members[&peer].clone();
            let nack = peer.protocol_max() >= 4;
            expected_nacks += u32::from(nack);
            let request = IndirectPing {
                seq_no,
                target: addr_bytes(addr.ip()),
                port: addr.port(),
                node: target.clone(),
                nack,
                source_addr: addr_bytes(self.local.addr.ip()),
                source_port: self.local.addr.port(),
                source_node: local.clone(),
            };
            self.stats.indirect_probes_requested += 1;
            self.send_with_piggyback(peer.addr, Message::IndirectPing(request));
        }
        // Try a stream too: a member cut off from UDP but reachable over
        // TCP is misconfigured, not dead, and must not flap.
        let fallback = if !self.config.disable_tcp_pings && protocol_max >= 3 {
            let id = self.new_stream_id();
            self.streams
                .insert(id, PendingStream::FallbackPing { seq_no });
            self.outputs.push_back(Output::OpenPingStream {
                id,
                to: addr,
                ping,
                deadline,
            });
            Fallback::Pending(id)
        } else {
            Fallback::NotTried
        };
        if let Some(probe) = self.probe.as_mut() {
            probe.expected_nacks = expected_nacks;
            probe.fallback = fallback;
        }
    }

    fn finish_failed_probe(&mut self, now: Instant) {
        let Some(probe) = self.probe.take() else {
            return;
        };
        if let Fallback::Pending(id) = probe.fallback {
            // Too late to count; a late answer is ignored.
            self.streams.remove(&id);
        }
        if probe.fallback == Fallback::Contacted {
            self.stats.tcp_fallback_successes += 1;
            self.awareness.apply_delta(-1);
        } else {
            // Peers that promised a nack and sent none suggest we are the
            // ones with the problem (Lifeguard); without such peers any
            // failed probe counts against us.
            let delta = if probe.expected_nacks > 0 {
                probe.expected_nacks.saturating_sub(probe.nacks)
            } else {
                1
            };
            self.awareness.apply_delta(i64::from(delta));
            self.stats.probes_failed += 1;
            let suspect = Suspect {
                incarnation: probe.incarnation,
                node: probe.node,
                from: self.local.name.clone(),
            };
            self.suspect_node(now, &suspect);
        }
        self.after_probe(now);
    }

    fn after_probe(&mut self, now: Instant) {
        if self.probe_tick_pending {
            self.probe_next(now);
        }
    }

    /// Records the stream ping's outcome for the probe in flight.
    pub(super) fn settle_fallback(&mut self, id: StreamId, contacted: bool) {
        if let Some(probe) = self.probe.as_mut() {
            if probe.fallback == Fallback::Pending(id) {
                probe.fallback = if contacted {
                    Fallback::Contacted
                } else {
                    Fallback::Failed
                };
            }
        }
    }

    pub(super) fn on_ping(&mut self, from: SocketAddr, ping: Ping) {
        if !ping.node.is_empty() && ping.node != self.local.name {
            self.stats.pings_for_other_node += 1;
            return;
        }
        let reply_to = reply_address(&ping.source_addr, ping.source_port, from);
        let ack = Ack {
            seq_no: ping.seq_no,
            payload: self.ack_payload.clone(),
        };
        self.send_with_piggyback(reply_to, Message::Ack(ack));
    }

    /// Probes `ind.node` for a peer; forwards the ack, or a nack after the
    /// probe timeout if the peer asked for one.
    pub(super) fn on_indirect_ping(&mut self, now: Instant, from: SocketAddr, ind: IndirectPing) {
        if self.forwards.len() >= INDIRECT_PROBES_MAX {
            self.stats.indirect_probes_refused += 1;
            return;
        }
        let port = if ind.port == 0 {
            self.local.addr.port()
        } else {
            ind.port
        };
        let Some(target) = socket_addr(&ind.target, port) else {
            self.stats.bad_addresses += 1;
            return;
        };
        let seq_no = self.next_seq_no();
        let ping = Ping {
            seq_no,
            node: ind.node,
            source_addr: addr_bytes(self.local.addr.ip()),
            source_port: self.local.addr.port(),
            source_node: self.local.name.clone(),
        };
        self.forwards.insert(
            seq_no,
            Forward {
                origin_seq: ind.seq_no,
                reply_to: reply_address(&ind.source_addr, ind.source_port, from),
                expires: now + self.config.probe_timeout,
                send_nack: ind.nack,
            },
        );
        self.stats.indirect_probes_forwarded += 1;
        self.send_with_piggyback(target, Message::Ping(ping));
    }

    pub(super) fn on_ack(&mut self, now: Instant, ack: Ack) {
        if self
            .probe
            .as_ref()
            .is_some_and(|p| p.ping.seq_no == ack.seq_no)
        {
            // Checked just above.
            let probe = self.probe.take().expect("probe in flight");
            if let Fallback::Pending(id) = probe.fallback {
                self.streams.remove(&id);
            }
            self.awareness.apply_delta(-1);
            self.outputs.push_back(Output::PingComplete {
                node: probe.node,
                rtt: now.saturating_duration_since(probe.sent),
                payload: ack.payload,
            });
            self.after_probe(now);
        } else if let Some(forward) = self.forwards.remove(&ack.seq_no) {
            let relayed = Ack {
                seq_no: forward.origin_seq,
                payload: Vec::new(),
            };
            self.send_with_piggyback(forward.reply_to, Message::Ack(relayed));
        } else {
            self.stats.unknown_ack_seq += 1;
        }
    }

    pub(super) fn on_nack(&mut self, nack: Nack) {
        match self.probe.as_mut() {
            Some(probe) if probe.ping.seq_no == nack.seq_no => {
                // memberlist buffers at most IndirectChecks + 1 nacks.
                let cap = self.config.indirect_checks as u32 + 1;
                probe.nacks = (probe.nacks + 1).min(cap);
            }
            _ => self.stats.unknown_nack_seq += 1,
        }
    }

    /// Indirect probes that got no ack in time: nack if asked, then forget.
    pub(super) fn expire_forwards(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .forwards
            .iter()
            .filter(|(_, f)| f.expires <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in due {
            // Collected from the map above.
            let forward = self.forwards.remove(&seq).expect("due forward");
            if forward.send_nack {
                let nack = Nack {
                    seq_no: forward.origin_seq,
                };
                self.send_with_piggyback(forward.reply_to, Message::Nack(nack));
            }
        }
    }
}

/// Where to answer: the source the sender advertised (protocol >= 4), or
/// the packet's source address.
fn reply_address(source_addr: &[u8], source_port: u16, from: SocketAddr) -> SocketAddr {
    if source_port == 0 {
        return from;
    }
    socket_addr(source_addr, source_port).unwrap_or(from)
}
