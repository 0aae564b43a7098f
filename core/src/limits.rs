//! Every bound tribune enforces, in one place, units last. Relationships
//! between them are checked at compile time.

use crate::time::Duration;

/// Largest KV value (Consul's default `kv_max_value_size`).
pub const KV_VALUE_BYTES_MAX: usize = 512 * 1024;
/// Longest KV key accepted. Consul has no explicit key limit; keys are bounded
/// here so a single request cannot make the store index huge strings.
pub const KV_KEY_BYTES_MAX: usize = 8 * 1024;
/// Operations in one `/v1/txn` (Consul's historic limit).
pub const TXN_OPS_MAX: usize = 64;
/// Largest JSON request body (`/v1/txn`, registrations, sessions). A txn of
/// base64 values may be larger than one raw value, so this leaves room for a
/// full-size value plus its encoding overhead.
pub const HTTP_JSON_BODY_BYTES_MAX: usize = 2 * KV_VALUE_BYTES_MAX;
/// Largest replicated entry a single command may encode to.
pub const COMMAND_BYTES_MAX: usize = HTTP_JSON_BODY_BYTES_MAX + 64 * 1024;

/// Session TTL bounds (Consul: 10s..86400s).
pub const SESSION_TTL_MIN: Duration = Duration::from_secs(10);
pub const SESSION_TTL_MAX: Duration = Duration::from_secs(86_400);
/// Consul reaps a session only after twice its TTL: TTL is a lower bound.
pub const SESSION_TTL_MULTIPLIER: u64 = 2;
/// How long a deleted key's tombstone is kept before the leader reaps it,
/// and the granularity of the reaping timer (Consul's `TombstoneTTL` and
/// `TombstoneTTLGranularity` defaults).
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(15 * 60);
pub const TOMBSTONE_GRANULARITY: Duration = Duration::from_secs(30);
/// Default and largest lock-delay.
pub const SESSION_LOCK_DELAY_DEFAULT: Duration = Duration::from_secs(15);
pub const SESSION_LOCK_DELAY_MAX: Duration = Duration::from_secs(60);

/// Blocking queries: default wait, cap, and the jitter divisor (wait/16).
pub const BLOCKING_WAIT_DEFAULT: Duration = Duration::from_secs(300);
pub const BLOCKING_WAIT_MAX: Duration = Duration::from_secs(600);
pub const BLOCKING_JITTER_DIVISOR: u64 = 16;
/// Waiters registered at once across all watch keys. Past this a blocking
/// query is answered immediately (as if its wait elapsed) rather than queued.
pub const BLOCKING_WAITERS_MAX: usize = 16 * 1024;

/// Concurrent HTTP connections one client IP may hold (Consul's
/// `limits.http_max_conns_per_client`); past it the connection is answered
/// with 429 and closed.
pub const HTTP_CONNS_PER_CLIENT_MAX: usize = 200;
/// Time a client gets to send a request's headers (slow-client protection).
pub const HTTP_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Check output kept per check (Consul's `check_output_max_size`).
pub const CHECK_OUTPUT_BYTES_MAX: usize = 4 * 1024;
/// Shortest interval between two runs of a check (Consul's `MinInterval`;
/// shorter intervals are raised to it).
pub const CHECK_INTERVAL_MIN: Duration = Duration::from_secs(1);
/// Default timeouts of HTTP/TCP probes and of script checks (Consul's).
pub const CHECK_NETWORK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
pub const CHECK_SCRIPT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Largest gRPC health response body (frame header included) a check reads.
/// A `HealthCheckResponse` is a few bytes; anything near this is not a
/// health server, and the check fails instead of buffering it.
pub const GRPC_HEALTH_RESPONSE_BYTES_MAX: usize = 16 * 1024;
/// Shortest `deregister_critical_service_after` (Consul's
/// `check_deregister_interval_min`); shorter values are raised to it.
pub const CHECK_DEREGISTER_AFTER_MIN: Duration = Duration::from_secs(60);
/// Services or checks one agent may hold.
pub const AGENT_SERVICES_MAX: usize = 16 * 1024;

/// Largest agent config file (JSON or HCL) or `-hcl` fragment. Real configs
/// are a few KiB; the bound keeps a stray huge file from being parsed.
pub const CONFIG_FILE_BYTES_MAX: usize = 1024 * 1024;
/// Deepest nesting of objects and lists in an HCL config. Consul's deepest
/// keys (`services.connect.sidecar_service.proxy.upstreams`) need about 8;
/// the bound keeps the recursive-descent parser far from the stack's end.
pub const CONFIG_NESTING_MAX: usize = 64;

/// Largest body of one server RPC frame. A peer that announces more is
/// refused from the frame header alone, before anything is allocated.
pub const RPC_FRAME_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Entries in one AppendEntries (openraft's `max_payload_entries`, lowered
/// from its default of 300 so that a batch of full-size commands always fits
/// in one frame; see the assertion below).
pub const RAFT_APPEND_ENTRIES_MAX: usize = 32;
/// What one entry adds to its command on the wire (log id, enum tags) and
/// what an AppendEntries adds around its entries (vote, prev log id), with
/// room to spare.
pub const RAFT_ENTRY_OVERHEAD_BYTES: usize = 256;
/// Snapshot bytes sent per frame when a snapshot streams to a follower.
pub const RPC_SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Largest snapshot a follower assembles. The whole store lives in memory,
/// so this bounds what one leader can make a follower buffer.
pub const RAFT_SNAPSHOT_BYTES_MAX: usize = 1024 * 1024 * 1024;
/// Largest snapshot archive a restore (`PUT /v1/snapshot`) takes. The
/// archive is staged in the replicated store until its commit, so a Raft
/// snapshot taken meanwhile holds the store and the staged archive: each
/// gets half of what a follower assembles.
pub const RESTORE_ARCHIVE_BYTES_MAX: usize = RAFT_SNAPSHOT_BYTES_MAX / 2;
/// Archive bytes carried by one `RestoreChunk` command.
pub const RESTORE_CHUNK_BYTES_MAX: usize = 512 * 1024;
/// Highest index a store may hold (2^53 - 1). Indexes reach clients as JSON
/// numbers, which JavaScript clients read as doubles; a restored store that
/// claims more is damaged, and refusing it keeps `index + 1` from ever
/// overflowing.
pub const STORE_INDEX_MAX: u64 = (1 << 53) - 1;
/// Every server RPC call has a deadline; this is the default for calls
/// openraft does not give one (a forwarded write waits for commit).
pub const RPC_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept per peer by the RPC client.
pub const RPC_IDLE_CONNS_PER_PEER_MAX: usize = 4;
/// A server closes an RPC connection that sends no complete frame for this
/// long (a stalled or abandoned peer; clients notice before reusing one).
pub const RPC_SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Connections a server serves at once on its RPC port; more are closed
/// at once (file descriptors are finite; servers, client agents and their
/// pools stay far below).
pub const RPC_SERVER_CONNS_MAX: usize = 8192;

const _: () = assert!(
    RAFT_APPEND_ENTRIES_MAX * (COMMAND_BYTES_MAX + RAFT_ENTRY_OVERHEAD_BYTES)
        + RAFT_ENTRY_OVERHEAD_BYTES
        < RPC_FRAME_BODY_BYTES_MAX
);
const _: () =
    assert!(RPC_SNAPSHOT_CHUNK_BYTES + RAFT_ENTRY_OVERHEAD_BYTES < RPC_FRAME_BODY_BYTES_MAX);
const _: () = assert!(RPC_FRAME_BODY_BYTES_MAX <= u32::MAX as usize);
/// Largest payload of one write-ahead-log record. A record holds one Raft
/// entry: an encoded command (at most `COMMAND_BYTES_MAX`) plus the entry's
/// envelope (log id, membership). The decoder refuses longer length fields, so
/// a damaged length can never make recovery allocate or skip gigabytes.
pub const WAL_RECORD_PAYLOAD_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Records in one group-commit batch (one write and one fdatasync). The
/// record header stores the distance to its batch's first record, bounded by
/// this; the writer stops gathering appends at it.
pub const WAL_BATCH_RECORDS_MAX: u32 = 64 * 1024;
/// Bytes the writer gathers into one batch before it writes and syncs; a
/// single append larger than this still goes out whole, as one batch.
pub const WAL_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Segment size at which the WAL starts a new file (etcd and raft-wal use
/// 64 MiB too): small enough that purging after a snapshot frees disk
/// promptly, large enough that file creation (and its directory fsync) is rare.
pub const WAL_SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

// ---------------------------------------------------------------- gossip

/// Largest gossip packet accepted (the largest UDP datagram, rounded).
/// memberlist sends at most `GOSSIP_UDP_BUFFER_BYTES` per packet.
pub const GOSSIP_PACKET_BYTES_MAX: usize = 65_536;
/// memberlist's default `UDPBufferSize`: the budget a sender packs
/// piggybacked broadcasts into.
pub const GOSSIP_UDP_BUFFER_BYTES: usize = 1400;
/// Largest decompressed packet. memberlist only compresses what it would
/// have sent anyway, so a real packet expands to a few KiB; LZW can expand
/// ~300-fold, and this caps what a hostile 64 KiB packet makes us hold.
pub const GOSSIP_PACKET_DECOMPRESSED_BYTES_MAX: usize = 1024 * 1024;
/// Largest encrypted stream payload (push/pull, user message, ping over
/// TCP): memberlist's `maxPushStateBytes`.
pub const GOSSIP_STREAM_BYTES_MAX: usize = 20 * 1024 * 1024;
/// Largest decompressed stream, and the most a shell buffers of a plain
/// one: memberlist's `maxDecompressedBytes` (user state plus an equal node
/// budget).
pub const GOSSIP_STREAM_DECOMPRESSED_BYTES_MAX: usize = 2 * GOSSIP_STREAM_BYTES_MAX;
/// Largest push/pull user state (serf's state) and user message on a
/// stream: memberlist's `maxPushStateBytes` / `maxUserMsgBytes`.
pub const GOSSIP_USER_STATE_BYTES_MAX: usize = 20 * 1024 * 1024;
/// Most nodes in one push/pull: memberlist's `maxPushStateNodes`. Each node
/// is at least ~20 bytes on the wire, so the stream limit binds first.
pub const GOSSIP_PUSH_PULL_NODES_MAX: usize = 1024 * 1024;
/// Parts in one compound message (its count is one byte).
pub const GOSSIP_COMPOUND_PARTS_MAX: usize = 255;
/// Deepest nesting of compound and compress messages inside one packet
/// (memberlist sends compress(compound(...)): depth 2).
pub const GOSSIP_NESTING_MAX: usize = 4;
/// Largest node meta (memberlist's `MetaMaxSize`; serf's tags live here).
pub const GOSSIP_META_BYTES_MAX: usize = 512;
/// Longest gossip label (memberlist's `LabelMaxSize`: its length is a byte).
pub const GOSSIP_LABEL_BYTES_MAX: usize = 255;

const _: () = assert!(GOSSIP_UDP_BUFFER_BYTES < GOSSIP_PACKET_BYTES_MAX);
const _: () = assert!(GOSSIP_PACKET_BYTES_MAX < GOSSIP_PACKET_DECOMPRESSED_BYTES_MAX);
const _: () = assert!(GOSSIP_STREAM_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(GOSSIP_USER_STATE_BYTES_MAX <= GOSSIP_STREAM_DECOMPRESSED_BYTES_MAX);

const _: () = assert!(KV_VALUE_BYTES_MAX < COMMAND_BYTES_MAX);
// A chunk command is its data plus an enum tag and three varints.
const _: () = assert!(RESTORE_CHUNK_BYTES_MAX + 64 * 1024 <= COMMAND_BYTES_MAX);
const _: () = assert!(2 * RESTORE_ARCHIVE_BYTES_MAX <= RAFT_SNAPSHOT_BYTES_MAX);
const _: () = assert!(HTTP_JSON_BODY_BYTES_MAX < COMMAND_BYTES_MAX);
const _: () = assert!(SESSION_TTL_MIN.as_nanos() < SESSION_TTL_MAX.as_nanos());
const _: () = assert!(SESSION_LOCK_DELAY_DEFAULT.as_nanos() <= SESSION_LOCK_DELAY_MAX.as_nanos());
const _: () = assert!(BLOCKING_WAIT_DEFAULT.as_nanos() <= BLOCKING_WAIT_MAX.as_nanos());
const _: () = assert!(COMMAND_BYTES_MAX + 64 * 1024 <= WAL_RECORD_PAYLOAD_BYTES_MAX);
const _: () = assert!(WAL_RECORD_PAYLOAD_BYTES_MAX <= WAL_BATCH_BYTES_MAX);
const _: () = assert!((WAL_BATCH_BYTES_MAX as u64) < WAL_SEGMENT_BYTES_DEFAULT);
const _: () = assert!(WAL_RECORD_PAYLOAD_BYTES_MAX < u32::MAX as usize);
