//! Membership timings and the formulas memberlist derives from them.
//!
//! The presets mirror memberlist's `DefaultLANConfig`, `DefaultWANConfig`
//! and `DefaultLocalConfig` field for field (only the fields that shape the
//! protocol; transport knobs such as bind ports live in the shell). The
//! scaling helpers (`retransmit_limit`, `suspicion_timeout`,
//! `push_pull_scale`) are memberlist's `util.go` formulas, so a tribune
//! cluster detects failures and spreads news on the same schedule as a
//! serf/Consul one.

use crate::time::Duration;

/// memberlist's `MetaMaxSize`: node metadata larger than this is refused.
pub const META_BYTES_MAX: usize = 512;

/// Cluster size above which periodic push/pull slows down
/// (memberlist's `pushPullScaleThreshold`).
pub const PUSH_PULL_SCALE_THRESHOLD: usize = 32;

/// memberlist's `compoundHeaderOverhead`: type byte and part count of a
/// compound packet.
pub const COMPOUND_HEADER_BYTES: usize = 2;

/// memberlist's `compoundOverhead`: the length prefix of each part.
pub const COMPOUND_PART_BYTES: usize = 2;

/// With compression on, broadcasts are drawn for up to this many times
/// the packet's room and then cut to what fits compressed. LZW shrinks a
/// packet of Consul-tagged alive messages to about 0.45 of its size, and
/// nothing real below 0.25.
pub const COMPRESSED_FILL_FACTOR: usize = 4;

/// Bound on user broadcasts waiting in the queue. Overflow policy: the
/// most-transmitted entries are dropped first (memberlist's `Prune`), so
/// fresh news always gets its turn.
pub const USER_BROADCASTS_QUEUED_MAX: usize = 4096;

/// Bound on indirect probes we run for others at once. Overflow policy:
/// further requests are refused and counted; the requester falls back on
/// its other helpers.
pub const INDIRECT_PROBES_MAX: usize = 1024;

/// Protocol timings and fan-outs, memberlist's `Config` subset that the
/// state machine reads. All durations are core's data durations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Time between failure probes (scaled up by Lifeguard awareness).
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking for indirect probes.
    pub probe_timeout: Duration,
    /// Peers asked to probe a target that missed its direct ack.
    pub indirect_checks: usize,
    /// Broadcasts are retransmitted `retransmit_mult * ceil(log10(n+1))` times.
    pub retransmit_mult: usize,
    /// Suspicion lasts at least `suspicion_mult * log10(max(1, n)) * probe_interval`.
    pub suspicion_mult: usize,
    /// Upper bound of the suspicion timeout, as a multiple of its minimum.
    pub suspicion_max_timeout_mult: usize,
    /// Time between full state exchanges with one random member (0 = never).
    pub push_pull_interval: Duration,
    /// Time between gossip rounds (0 = never).
    pub gossip_interval: Duration,
    /// Members gossiped to per round.
    pub gossip_nodes: usize,
    /// A dead member is still gossiped to this long, to give it a chance to
    /// refute, and stays in the table at least this long.
    pub gossip_to_the_dead_time: Duration,
    /// Lifeguard's health score ranges over `0..awareness_max_multiplier`.
    pub awareness_max_multiplier: u32,
    /// After this long dead, a member's name may be taken by another
    /// address (0 = never, memberlist's default).
    pub dead_node_reclaim_time: Duration,
    /// Packet budget (memberlist's `UDPBufferSize`).
    pub udp_buffer_size: usize,
    /// Bytes of each packet the shell needs for its own framing (label,
    /// CRC, encryption); subtracted from the budget before packing.
    pub udp_reserved_bytes: usize,
    /// memberlist's `DisableTcpPings`: skip the stream probe that runs
    /// beside the indirect probes.
    pub disable_tcp_pings: bool,
    /// How long a stream exchange may take before the shell gives up
    /// (memberlist's `TCPTimeout`); the shell reads it, core documents it.
    pub tcp_timeout: Duration,
    /// memberlist's `EnableCompression`: packets are LZW-compressed when
    /// that makes them smaller, and filled by their compressed size.
    pub enable_compression: bool,
}

impl Config {
    /// memberlist's `DefaultLANConfig`: tuned for a LAN, ~1 s failure checks.
    pub fn lan() -> Config {
        Config {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            retransmit_mult: 4,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            push_pull_interval: Duration::from_secs(30),
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            gossip_to_the_dead_time: Duration::from_secs(30),
            awareness_max_multiplier: 8,
            dead_node_reclaim_time: Duration::ZERO,
            udp_buffer_size: 1400,
            udp_reserved_bytes: 0,
            disable_tcp_pings: false,
            tcp_timeout: Duration::from_secs(10),
            enable_compression: true,
        }
    }

    /// memberlist's `DefaultWANConfig`: slower probes, more patience.
    pub fn wan() -> Config {
        Config {
            tcp_timeout: Duration::from_secs(30),
            suspicion_mult: 6,
            push_pull_interval: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(3),
            probe_interval: Duration::from_secs(5),
            gossip_nodes: 4,
            gossip_interval: Duration::from_millis(500),
            gossip_to_the_dead_time: Duration::from_secs(60),
            ..Config::lan()
        }
    }

    /// memberlist's `DefaultLocalConfig`: loopback, fast and small.
    pub fn local() -> Config {
        Config {
            tcp_timeout: Duration::from_secs(1),
            indirect_checks: 1,
            retransmit_mult: 2,
            suspicion_mult: 3,
            push_pull_interval: Duration::from_secs(15),
            probe_timeout: Duration::from_millis(200),
            probe_interval: Duration::from_secs(1),
            gossip_interval: Duration::from_millis(100),
            gossip_to_the_dead_time: Duration::from_secs(15),
            ..Config::lan()
        }
    }

    /// Bytes left for messages in one packet after compound framing and
    /// the shell's reserve.
    pub fn packet_budget_bytes(&self) -> usize {
        self.udp_buffer_size
            .saturating_sub(COMPOUND_HEADER_BYTES + self.udp_reserved_bytes)
    }

    /// How long until every member has declared a failed member dead, as
    /// implied by these timings: the failure is probed within one pass of
    /// the round-robin order, that probe lasts at most one probe interval
    /// stretched by the awareness ceiling, the prober's suspicion lasts at
    /// most its max timeout, and the dead message then spreads within its
    /// retransmissions, one gossip interval each.
    pub fn detection_bound(&self, cluster_size: usize) -> Duration {
        let n = cluster_size.max(1) as u64;
        let pass = self.probe_interval.saturating_mul(n);
        let probe = self
            .probe_interval
            .saturating_mul(u64::from(self.awareness_max_multiplier.max(1)));
        let min = suspicion_timeout(self.suspicion_mult, cluster_size, self.probe_interval);
        let max = min.saturating_mul(self.suspicion_max_timeout_mult as u64);
        let spread = self
            .gossip_interval
            .saturating_mul(retransmit_limit(self.retransmit_mult, cluster_size) as u64);
        Duration(pass.0 + probe.0 + max.0 + spread.0)
    }
}

/// memberlist's `retransmitLimit`: `mult * ceil(log10(n + 1))`.
pub fn retransmit_limit(retransmit_mult: usize, cluster_size: usize) -> usize {
    let scale = ((cluster_size as f64) + 1.0).log10().ceil() as usize;
    retransmit_mult * scale
}

/// memberlist's `suspicionTimeout`: `mult * max(1, log10(max(1, n))) *
/// interval`, with the log kept to three decimals as memberlist does.
pub fn suspicion_timeout(
    suspicion_mult: usize,
    cluster_size: usize,
    interval: Duration,
) -> Duration {
    let node_scale = (cluster_size.max(1) as f64).log10().max(1.0);
    let scale_milli = (node_scale * 1000.0) as u64;
    let ns =
        u128::from(interval.as_nanos()) * suspicion_mult as u128 * u128::from(scale_milli) / 1000;
    Duration(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// memberlist's `pushPullScale`: above 32 members the interval grows by
/// one step per doubling so the total push/pull load stays flat.
pub fn push_pull_scale(interval: Duration, cluster_size: usize) -> Duration {
    if cluster_size <= PUSH_PULL_SCALE_THRESHOLD {
        return interval;
    }
    let steps = ((cluster_size as f64).log2() - (PUSH_PULL_SCALE_THRESHOLD as f64).log2()).ceil();
    interval.saturating_mul(steps as u64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_memberlist() {
        let lan = Config::lan();
        assert_eq!(lan.probe_interval, Duration::from_secs(1));
        assert_eq!(lan.probe_timeout, Duration::from_millis(500));
        assert_eq!((lan.indirect_checks, lan.retransmit_mult), (3, 4));
        assert_eq!((lan.suspicion_mult, lan.suspicion_max_timeout_mult), (4, 6));
        assert_eq!(lan.udp_buffer_size, 1400);
        let wan = Config::wan();
        assert_eq!(wan.probe_interval, Duration::from_secs(5));
        assert_eq!(wan.probe_timeout, Duration::from_secs(3));
        assert_eq!((wan.suspicion_mult, wan.gossip_nodes), (6, 4));
        assert_eq!(wan.indirect_checks, 3);
        let local = Config::local();
        assert_eq!((local.indirect_checks, local.retransmit_mult), (1, 2));
        assert_eq!(local.gossip_interval, Duration::from_millis(100));
        assert_eq!(local.awareness_max_multiplier, 8);
    }

    #[test]
    fn formulas_match_memberlist_util() {
        // util_test.go's table: retransmitLimit(3, n).
        assert_eq!(retransmit_limit(3, 0), 0);
        assert_eq!(retransmit_limit(3, 1), 3);
        assert_eq!(retransmit_limit(3, 99), 6);
        assert_eq!(retransmit_limit(3, 100), 9);
        // util_test.go's table: suspicionTimeout(3, n, 1s) / 3.
        let s = Duration::from_secs(1);
        for (n, ms) in [
            (5, 1000),
            (10, 1000),
            (50, 1698),
            (100, 2000),
            (500, 2698),
            (1000, 3000),
        ] {
            assert_eq!(
                suspicion_timeout(3, n, s).as_nanos() / 3,
                Duration::from_millis(ms).as_nanos()
            );
        }
        // pushPullScale(1s, n): flat to 32, then +1 step per doubling.
        assert_eq!(push_pull_scale(s, 32), s);
        assert_eq!(push_pull_scale(s, 33), Duration::from_secs(2));
        assert_eq!(push_pull_scale(s, 64), Duration::from_secs(2));
        assert_eq!(push_pull_scale(s, 65), Duration::from_secs(3));
        assert_eq!(push_pull_scale(s, 1024), Duration::from_secs(6));
    }
}
