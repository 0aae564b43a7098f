//! Queries this node starts (serf's `Query`, `QueryResponse`,
//! `handleQueryResponse`): the query is stamped with the query clock and a
//! random id, handled locally like any received query, and gossiped; each
//! member that passes the filters answers straight to us (and through
//! `relay_factor` others). Acks and answers are collected, one per node,
//! until the deadline, when [`SerfEvent::QueryFinished`] closes the query.
//!
//! Key operations ([`Serf::key_operation`]) ride on the same machinery but
//! fold their answers into a [`KeySummary`] instead of surfacing them one
//! by one.

use super::message::addr_bytes;
use super::serf::{self, encode_filter, encode_serf, Filter, SerfMessage};
use super::serf_keys::KeySummary;
use super::serf_state::Serf;
use super::serf_types::{QueryId, QueryParams, SerfError, SerfEvent, SerfState};
use crate::time::{Duration, Instant};
use std::collections::BTreeSet;

/// A query we started, open until `deadline`.
#[derive(Clone, Debug)]
pub(super) struct OutgoingQuery {
    pub(super) deadline: Instant,
    /// Nodes whose ack arrived.
    pub(super) acks: BTreeSet<String>,
    /// Nodes whose answer arrived.
    pub(super) responses: BTreeSet<String>,
    /// For a key operation: the answers folded so far.
    pub(super) keys: Option<KeySummary>,
}

impl Serf {
    /// serf's `DefaultQueryTimeout`: `gossip_interval × query_timeout_mult
    /// × ⌈log10(n + 1)⌉` for `n` live members. `⌈log10(n + 1)⌉` is the
    /// number of decimal digits of `n`, computed without floats.
    pub fn default_query_timeout(&self) -> Duration {
        let mut digits = 0u64;
        let mut n = self.list.num_alive();
        while n > 0 {
            digits += 1;
            n /= 10;
        }
        self.config
            .memberlist
            .gossip_interval
            .saturating_mul(u64::from(self.config.query_timeout_mult))
            .saturating_mul(digits)
    }

    /// Starts a query (serf's `Query`): handled here as if received, then
    /// gossiped. Acks and answers arrive as [`SerfEvent::QueryAck`] and
    /// [`SerfEvent::QueryResponse`] until [`SerfEvent::QueryFinished`].
    pub fn query(
        &mut self,
        now: Instant,
        name: &str,
        payload: Vec<u8>,
        params: &QueryParams,
    ) -> Result<QueryId, SerfError> {
        let id = self.start_query(now, name, payload, params, None)?;
        self.pump(now);
        Ok(id)
    }

    /// Builds, registers, handles and gossips a query; `keys` makes it a
    /// key operation whose answers are folded rather than emitted.
    pub(super) fn start_query(
        &mut self,
        now: Instant,
        name: &str,
        payload: Vec<u8>,
        params: &QueryParams,
        keys: Option<KeySummary>,
    ) -> Result<QueryId, SerfError> {
        if self.state == SerfState::Left {
            return Err(SerfError::NotAlive);
        }
        let timeout = params
            .timeout
            .filter(|t| *t > Duration::ZERO)
            .unwrap_or_else(|| self.default_query_timeout());
        let mut filters = Vec::new();
        if !params.filter_nodes.is_empty() {
            filters.push(encode_filter(&Filter::Node(params.filter_nodes.clone())));
        }
        for (tag, expr) in &params.filter_tags {
            filters.push(encode_filter(&Filter::Tag {
                tag: tag.clone(),
                expr: expr.clone(),
            }));
        }
        let local = self.local_member().addr;
        // serf draws ids with `rand.Int31`: never negative as an int32.
        let id = (self.rng.next_u64() as u32) & 0x7fff_ffff;
        let query = serf::Query {
            ltime: self.query_clock.time(),
            id,
            addr: addr_bytes(local.ip()),
            port: local.port(),
            source_node: self.local_name.clone(),
            filters,
            flags: if params.request_ack {
                serf::QUERY_FLAG_ACK
            } else {
                0
            },
            relay_factor: params.relay_factor,
            timeout_ns: i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX),
            name: name.to_owned(),
            payload,
        };
        let raw = encode_serf(&SerfMessage::Query(query.clone()));
        let limit = self.config.query_size_limit;
        if raw.len() > limit {
            return Err(SerfError::QueryTooLarge {
                len: raw.len(),
                limit,
            });
        }
        let key = QueryId {
            ltime: query.ltime,
            id,
        };
        self.outgoing_queries.insert(
            key,
            OutgoingQuery {
                deadline: now + timeout,
                acks: BTreeSet::new(),
                responses: BTreeSet::new(),
                keys,
            },
        );
        // Handling it witnesses the query time, so the next query gets a
        // later one (serf's clock is per query, not per message).
        self.handle_query(now, query);
        self.broadcast(raw);
        Ok(key)
    }

    /// `handleQueryResponse`: an ack or answer to one of our queries.
    /// Unknown, finished and duplicate ones are counted and dropped.
    pub(super) fn handle_query_response(&mut self, now: Instant, resp: serf::QueryResponse) {
        let key = QueryId {
            ltime: resp.ltime,
            id: resp.id,
        };
        let Some(query) = self.outgoing_queries.get_mut(&key) else {
            self.stats.unknown_query_responses += 1;
            return;
        };
        if now >= query.deadline {
            self.stats.unknown_query_responses += 1;
            return;
        }
        if resp.flags & serf::QUERY_FLAG_ACK != 0 {
            if !query.acks.insert(resp.from.clone()) {
                self.stats.duplicate_query_responses += 1;
                return;
            }
            self.emit(SerfEvent::QueryAck {
                query: key,
                from: resp.from,
            });
            return;
        }
        if !query.responses.insert(resp.from.clone()) {
            self.stats.duplicate_query_responses += 1;
            return;
        }
        let Some(summary) = query.keys.as_mut() else {
            self.emit(SerfEvent::QueryResponse {
                query: key,
                from: resp.from,
                payload: resp.payload,
            });
            return;
        };
        summary.add(&resp.from, &resp.payload);
        // serf stops waiting once every member has answered.
        if summary.num_resp >= summary.num_nodes {
            self.finish_query(key);
        }
    }

    /// Closes every query whose deadline has come.
    pub(super) fn finish_due_queries(&mut self, now: Instant) {
        let due: Vec<QueryId> = self
            .outgoing_queries
            .iter()
            .filter(|(_, q)| now >= q.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.finish_query(id);
        }
    }

    fn finish_query(&mut self, id: QueryId) {
        let Some(query) = self.outgoing_queries.remove(&id) else {
            return;
        };
        match query.keys {
            Some(summary) => self.emit(SerfEvent::KeyOperationFinished { query: id, summary }),
            None => self.emit(SerfEvent::QueryFinished(id)),
        }
    }

    /// The queries we started that are still open.
    pub fn open_queries(&self) -> impl Iterator<Item = &QueryId> {
        self.outgoing_queries.keys()
    }
}
