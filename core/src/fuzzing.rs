//! Entry points for fuzzing the decoders of untrusted bytes.
//!
//! The cargo-fuzz targets in `fuzz/fuzz_targets/` are one-line wrappers
//! around these functions, and `core/tests/fuzz_corpus.rs` replays the
//! committed corpora (`fuzz/corpus/<target>/`) through them, so a plain
//! `cargo test` on stable Rust exercises every seed and every input a
//! fuzzer once kept.
//!
//! Each function accepts any bytes and never panics on its own account: a
//! panic means one of the properties asserted here was broken, and every
//! such property is one the decoders or the store promise:
//! - a decoded command re-encodes to bytes that decode to the same command,
//!   and applying it keeps the store's invariants; a refused write leaves
//!   the store unchanged; store indexes only grow (table indexes too,
//!   except across a restore, which replaces the store); restore commands
//!   also meet a restore under way and, for a chunk, its commit;
//! - a snapshot that restores passes `check_invariants` and survives a
//!   second snapshot/restore unchanged; a restore staged in it commits or
//!   is refused, keeping the invariants either way;
//! - query parsing respects the documented limits (`wait` capped, no
//!   `?index=0`, never both `stale` and `consistent`), and Go durations
//!   round-trip through their formatting;
//! - a server RPC frame re-encodes to the bytes it was decoded from, and
//!   a stream of frames is consumed frame by frame with no panic;
//! - a decoded JSON body satisfies the limits its decoder checks, and the
//!   registrations it turns into are accepted by the catalog;
//! - an agent config (HCL or JSON) that parses is a JSON object that
//!   re-reads from its own JSON unchanged; a JSON object parses the same as
//!   HCL; HCL errors point inside the text;
//! - a Consul user event decoded from a serf payload re-encodes to the
//!   same event, and judging its filters never panics.

use crate::agent::{AgentOutput, LocalAgent};
use crate::api::body::{
    bad_check_key, bad_service_key, decode_agent_service, decode_agent_service_value,
    decode_catalog_deregister, decode_catalog_register, decode_check_register, decode_check_update,
    decode_check_value, decode_session_create, decode_txn, AgentServiceRegistration,
};
use crate::api::query::{parse_query, percent_decode, read_options};
use crate::api::{render, ApiError};
use crate::catalog::{CheckStatus, Node};
use crate::checks::CheckSpec;
use crate::command::{Command, CommandResult, KvOp, KvVerb, TxnOutcome};
use crate::fsm::{Effects, Fsm};
use crate::ids::Uuid;
use crate::limits::{
    BLOCKING_WAIT_MAX, CONFIG_FILE_BYTES_MAX, KV_KEY_BYTES_MAX, KV_VALUE_BYTES_MAX,
    SESSION_LOCK_DELAY_MAX, SESSION_TTL_MAX, SESSION_TTL_MIN, TXN_OPS_MAX,
};
use crate::session::{Behavior, Session};
use crate::time::{format_duration, parse_duration, Duration, Instant};
use serde_json::Value;

/// The fixture's node, as a dev server registers itself (with `consul`).
pub const FIXTURE_NODE: &str = "node1";
/// The fixture's datacenter.
pub const FIXTURE_DATACENTER: &str = "dc1";
/// The fixture's session (the ID in Consul's session docs), which holds
/// `locks/leader`. Seeds that name it reach the lock paths.
pub const FIXTURE_SESSION: Uuid = Uuid::new(0xadf4238a_882b_9ddc_4a9d_5b6758e4159e);
/// The restore [`staging_fixture`] has under way.
pub const FIXTURE_RESTORE: u64 = 0x7e57_0de5;

// ---------------------------------------------------------------- fixture

/// A small store every applied input starts from: the dev agent's node with
/// `serfHealth`, service `web1` with a passing TTL check, a session holding
/// `locks/leader`, a plain key and a tombstone. Also the local agent that
/// registered the node and the service.
pub fn fixture() -> (Fsm, LocalAgent) {
    let mut fsm = Fsm::default();
    let mut agent = LocalAgent::new(
        Node {
            id: "40e4a748-2192-161a-0510-9bf59fe950b5".into(),
            name: FIXTURE_NODE.into(),
            address: "127.0.0.1".into(),
            datacenter: FIXTURE_DATACENTER.into(),
            tagged_addresses: Default::default(),
            meta: Default::default(),
            create_index: 0,
            modify_index: 0,
        },
        1,
    );
    agent.register_node(Some(8300));
    let web = decode_agent_service(
        br#"{"Name":"web","ID":"web1","Port":80,"Tags":["v1"],"Check":{"TTL":"15s","Status":"passing"}}"#,
    )
    .expect("fixture service decodes");
    agent
        .add_service(
            Instant(0),
            web.service,
            web.checks,
            crate::agent::Origin::ConfigFile,
        )
        .expect("fixture service registers");
    drain_agent(&mut fsm, &mut agent);
    let session = Session {
        id: FIXTURE_SESSION,
        name: "fixture".into(),
        node: FIXTURE_NODE.into(),
        node_checks: vec!["serfHealth".into()],
        service_checks: Vec::new(),
        lock_delay: Duration::from_secs(15),
        behavior: Behavior::Release,
        ttl: Duration::ZERO,
        create_index: 0,
        modify_index: 0,
    };
    let mut lock = KvOp::new(KvVerb::Lock, "locks/leader");
    lock.session = Some(FIXTURE_SESSION);
    let mut conn = KvOp::new(KvVerb::Set, "redis/config/conn");
    conn.value = b"10.0.0.5:6379".to_vec();
    for command in [
        Command::SessionCreate(Box::new(session)),
        Command::Kv(lock),
        Command::Kv(conn),
        Command::Kv(KvOp::new(KvVerb::Set, "gone")),
        Command::Kv(KvOp::new(KvVerb::Delete, "gone")),
    ] {
        let result = apply_next(&mut fsm, &command);
        assert!(
            !matches!(
                result,
                CommandResult::Failed(_) | CommandResult::Bool(false)
            ),
            "fixture command {command:?} failed: {result:?}"
        );
    }
    fsm.check_invariants();
    (fsm, agent)
}

fn apply_next(fsm: &mut Fsm, command: &Command) -> CommandResult {
    apply_next_with(fsm, command, &mut Effects::default())
}

fn apply_next_with(fsm: &mut Fsm, command: &Command, effects: &mut Effects) -> CommandResult {
    fsm.apply(fsm.last_applied + 1, command, effects)
}

/// The fixture's store as a snapshot archive (what `GET /v1/snapshot`
/// answers).
pub fn fixture_archive() -> Vec<u8> {
    let (fsm, _) = fixture();
    let meta = crate::snapshot_archive::ArchiveMeta {
        index: fsm.last_applied,
        term: 1,
        created_unix_ms: 1_700_000_000_000,
        datacenter: FIXTURE_DATACENTER.into(),
        node: FIXTURE_NODE.into(),
        tool_version: "0.1.0".into(),
    };
    crate::snapshot_archive::encode(&meta, &fsm.snapshot())
}

/// The fixture with a restore of [`fixture_archive`] under way (ID
/// [`FIXTURE_RESTORE`]): begun, and its first half staged. A chunk of the
/// rest at offset [`staging_fixture_offset`], then a commit, finish it.
pub fn staging_fixture() -> Fsm {
    let (mut fsm, _) = fixture();
    let archive = fixture_archive();
    let begin = Command::RestoreBegin {
        id: FIXTURE_RESTORE,
        total_len: archive.len() as u64,
        checksum: crate::checksum::checksum(&archive),
    };
    let half = Command::RestoreChunk {
        id: FIXTURE_RESTORE,
        offset: 0,
        data: archive[..staging_fixture_offset()].to_vec(),
    };
    for command in [begin, half] {
        let result = apply_next(&mut fsm, &command);
        assert_eq!(result, CommandResult::Done, "staging fixture: {command}");
    }
    fsm.check_invariants();
    fsm
}

/// Where [`staging_fixture`]'s staged bytes end.
pub fn staging_fixture_offset() -> usize {
    fixture_archive().len() / 2
}

/// Applies what the agent queued; the agent only proposes registrations the
/// catalog accepts.
fn drain_agent(fsm: &mut Fsm, agent: &mut LocalAgent) {
    while let Some(output) = agent.poll() {
        let AgentOutput::Propose(command) = output else {
            continue;
        };
        let result = apply_next(fsm, &command);
        assert!(
            !matches!(result, CommandResult::Failed(_)),
            "agent proposed a command the catalog refused: {result:?} for {command:?}"
        );
        fsm.check_invariants();
    }
}

/// Applies `command` to `fsm` and checks what every apply must keep:
/// invariants, growing indexes, an unchanged store after a refused write,
/// and a faithful snapshot.
fn apply_checked(fsm: &mut Fsm, command: &Command) -> CommandResult {
    let before = fsm.clone();
    let mut effects = Effects::default();
    let result = apply_next_with(fsm, command, &mut effects);
    fsm.check_invariants();
    assert_eq!(fsm.last_applied, before.last_applied + 1);
    assert!(
        fsm.store_index() > before.store_index(),
        "store index stood still"
    );
    let (old, new) = (before.indexes, fsm.indexes);
    // A restore may go back to older tables (as in Consul); it wakes every
    // blocking query instead.
    let forward = new.kv >= old.kv
        && new.nodes >= old.nodes
        && new.services >= old.services
        && new.checks >= old.checks
        && new.sessions >= old.sessions;
    assert!(
        forward || effects.store_replaced,
        "a table index went backwards: {old:?} -> {new:?}"
    );
    let refused = matches!(
        result,
        CommandResult::Failed(_)
            | CommandResult::Bool(false)
            | CommandResult::Txn(TxnOutcome::RolledBack(_))
    );
    if refused {
        assert!(
            fsm.kv == before.kv && fsm.catalog == before.catalog && fsm.sessions == before.sessions,
            "refused command {command:?} ({result:?}) changed the store"
        );
    }
    assert_eq!(Fsm::restore(&fsm.snapshot()).as_ref(), Ok(&*fsm));
    result
}

/// Renders every row the HTTP API could show, as the API would.
fn render_all(fsm: &Fsm) {
    let mut out = Vec::new();
    for (key, entry) in fsm.kv.list("") {
        let _ = serde_json::to_writer(&mut out, &render::kv(key, entry, true));
    }
    let _ = fsm.kv.keys("", "/");
    for node in fsm.catalog.nodes.values() {
        let _ = serde_json::to_writer(&mut out, &render::node(node));
    }
    for service in fsm.catalog.services.values() {
        let _ = serde_json::to_writer(&mut out, &render::service(service, Some("dc1")));
        if let Some(node) = fsm.catalog.nodes.get(&service.node) {
            let _ = serde_json::to_writer(&mut out, &render::catalog_service(node, service));
        }
    }
    for check in fsm.catalog.checks.values() {
        let _ = serde_json::to_writer(&mut out, &render::check(check));
    }
    for session in fsm.sessions.by_id.values() {
        let _ = serde_json::to_writer(&mut out, &render::session(session));
    }
}

// ---------------------------------------------------------------- commands

/// `Command::decode` on arbitrary bytes (a peer's or a damaged log's). A
/// decoded command must survive encode → decode, and applying it to the
/// fixture must keep the store's invariants.
pub fn command_codec(data: &[u8]) {
    let Ok(command) = Command::decode(data) else {
        return;
    };
    let encoded = command.encode();
    assert_eq!(
        Command::decode(&encoded).as_ref(),
        Ok(&command),
        "re-encoded command decodes differently"
    );
    assert_eq!(
        Command::decode(&encoded).map(|c| c.encode()),
        Ok(encoded),
        "encoding is not a fixpoint"
    );
    let (mut fsm, _) = fixture();
    apply_checked(&mut fsm, &command);
    render_all(&fsm);
    restore_command(&command);
}

/// A restore command also meets a restore under way, and a chunk is
/// followed by its commit, so the fuzzer reaches staging, validation and
/// the replacement of the store.
fn restore_command(command: &Command) {
    let chunk_id = match command {
        Command::RestoreChunk { id, .. } => Some(*id),
        Command::RestoreBegin { .. }
        | Command::RestoreCommit { .. }
        | Command::RestoreAbort { .. } => None,
        _ => return,
    };
    let mut fsm = staging_fixture();
    apply_checked(&mut fsm, command);
    if let Some(id) = chunk_id {
        apply_checked(&mut fsm, &Command::RestoreCommit { id });
    }
    render_all(&fsm);
}

// ---------------------------------------------------------------- snapshots

/// `Fsm::restore` on arbitrary bytes. A snapshot that restores must be
/// internally consistent (it may come from disk or a peer) and snapshot to
/// bytes that restore to the same store.
pub fn snapshot_restore(data: &[u8]) {
    let Ok(fsm) = Fsm::restore(data) else {
        return;
    };
    fsm.check_invariants();
    let again = fsm.snapshot();
    assert_eq!(
        Fsm::restore(&again).as_ref(),
        Ok(&fsm),
        "snapshot of a restored store restores differently"
    );
    render_all(&fsm);
    if let Some(id) = fsm.restore.as_ref().map(|staging| staging.id) {
        let mut committed = fsm;
        apply_checked(&mut committed, &Command::RestoreCommit { id });
        render_all(&committed);
    }
}

// ---------------------------------------------------------------- queries

/// Parameter names the HTTP handlers read.
const QUERY_NAMES: [&str; 18] = [
    "recurse",
    "keys",
    "separator",
    "index",
    "wait",
    "stale",
    "consistent",
    "dc",
    "tag",
    "passing",
    "cas",
    "flags",
    "acquire",
    "release",
    "raw",
    "pretty",
    "token",
    "note",
];

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decoding, query parsing and `read_options` on arbitrary UTF-8
/// (a raw query string, or a path for `percent_decode`).
pub fn api_query(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for plus_is_space in [false, true] {
        let Ok(decoded) = percent_decode(raw, plus_is_space) else {
            continue;
        };
        assert!(decoded.len() <= raw.len(), "decoding grew the text");
        if !raw.contains(['%', '+']) {
            assert_eq!(decoded, raw);
        }
        let encoded = percent_encode(&decoded);
        assert_eq!(percent_decode(&encoded, plus_is_space), Ok(decoded));
    }
    durations(raw);
    let Ok(query) = parse_query(raw) else {
        return;
    };
    for name in QUERY_NAMES {
        let all = query.all(name);
        assert_eq!(query.has(name), query.get(name).is_some());
        assert_eq!(all.last().copied(), query.get(name));
        let _ = query.flag(name);
        let _ = query.u64(name, ApiError::InvalidIndex);
        if let Some(value) = query.get(name) {
            durations(value);
        }
    }
    let Ok(options) = read_options(&query) else {
        return;
    };
    assert!(options.wait <= BLOCKING_WAIT_MAX, "wait above the cap");
    assert_ne!(options.min_index, Some(0), "?index=0 must not block");
    assert!(!(query.has("stale") && query.has("consistent")));
    assert!(options.datacenter.as_deref() != Some(""));
}

/// A parsed Go duration formats to text that parses back to it.
fn durations(text: &str) {
    if let Ok(d) = parse_duration(text) {
        let shown = format_duration(d);
        assert_eq!(parse_duration(&shown), Ok(d), "{text:?} shown as {shown:?}");
    }
}

// ---------------------------------------------------------------- bodies

/// Feeds the bytes to every JSON body decoder of the HTTP API and carries
/// what decodes through core as the handlers would.
pub fn json_bodies(data: &[u8]) {
    txn_body(data);
    session_body(data);
    check_bodies(data);
    service_body(data);
    catalog_bodies(data);
    keyring_body(data);
}

/// A keyring request's key is a key memberlist accepts, and serf's key
/// request carrying it round-trips.
fn keyring_body(data: &[u8]) {
    use crate::gossip::crypto::{validate_key, Keyring};
    use crate::gossip::serf::{decode_serf, encode_serf, KeyRequest, SerfMessage};
    let Ok(key) = crate::api::body::decode_keyring_request(data) else {
        return;
    };
    assert_eq!(validate_key(&key), Ok(()));
    let request = SerfMessage::KeyRequest(KeyRequest { key: key.clone() });
    assert_eq!(decode_serf(&encode_serf(&request)), Ok(request));
    let mut ring = Keyring::new(vec![0; 32]).expect("valid key");
    ring.install(key.clone()).expect("valid key");
    ring.use_key(&key).expect("installed");
}

/// `PUT /v1/txn`.
fn txn_body(data: &[u8]) {
    let Ok(ops) = decode_txn(data) else {
        return;
    };
    assert!(ops.len() <= TXN_OPS_MAX);
    for op in &ops {
        assert!(op.value.len() <= KV_VALUE_BYTES_MAX);
        // Tree verbs take any prefix, even the empty one.
        if !matches!(op.verb, KvVerb::GetTree | KvVerb::DeleteTree) {
            assert!(!op.key.is_empty() && op.key.len() <= KV_KEY_BYTES_MAX);
        }
    }
    let (mut fsm, _) = fixture();
    if ops.iter().all(|op| op.verb.is_read()) {
        let _ = fsm.read_txn(&ops);
        return;
    }
    let command = Command::Txn(ops);
    command_codec(&command.encode());
    apply_checked(&mut fsm, &command);
    render_all(&fsm);
}

/// `PUT /v1/session/create`, then destroy.
fn session_body(data: &[u8]) {
    let Ok(mut session) = decode_session_create(data, FIXTURE_NODE) else {
        return;
    };
    let ttl = session.ttl;
    assert!(ttl == Duration::ZERO || (SESSION_TTL_MIN..=SESSION_TTL_MAX).contains(&ttl));
    assert!(session.lock_delay <= SESSION_LOCK_DELAY_MAX);
    assert!(!session.node.is_empty());
    session.id = Uuid::new(0x5e55_1011);
    let (mut fsm, _) = fixture();
    let created = apply_checked(&mut fsm, &Command::SessionCreate(Box::new(session)));
    render_all(&fsm);
    if let CommandResult::SessionCreated(id) = created {
        apply_checked(&mut fsm, &Command::SessionDestroy { id });
    }
}

/// `PUT /v1/agent/check/register` and `/v1/agent/check/update/<id>`, then
/// the TTL timer firing.
fn check_bodies(data: &[u8]) {
    let (mut fsm, mut agent) = fixture();
    if let Ok(spec) = decode_check_register(data) {
        assert!(!spec.check.check_id.is_empty());
        assert!(spec.ttl().is_none_or(|t| t > Duration::ZERO));
        let _ = agent.add_check(
            Instant(1),
            spec,
            crate::agent::Origin::Api { loopback: true },
        );
        drain_agent(&mut fsm, &mut agent);
    }
    if let Ok((status, output)) = decode_check_update(data) {
        assert_ne!(status, CheckStatus::Maintenance, "only the agent sets it");
        // The body above may have replaced the fixture's TTL check.
        let _ = agent.update_ttl(Instant(2), "service:web1", status, output);
        drain_agent(&mut fsm, &mut agent);
    }
    if let Some(deadline) = agent.poll_timeout() {
        agent.handle_timeout(deadline);
        drain_agent(&mut fsm, &mut agent);
    }
    render_all(&fsm);
}

/// `PUT /v1/agent/service/register`, then deregister.
fn service_body(data: &[u8]) {
    if let Ok(reg) = decode_agent_service(data) {
        register_service(reg);
    }
}

/// A decoded service registration is well-formed and goes through the
/// agent (added, shown, removed) without breaking the store.
fn register_service(reg: AgentServiceRegistration) {
    assert!(!reg.service.id.is_empty() && !reg.service.name.is_empty());
    for spec in &reg.checks {
        assert_eq!(spec.check.service_id, reg.service.id);
        assert!(!spec.check.check_id.is_empty());
    }
    let id = reg.service.id.clone();
    let (mut fsm, mut agent) = fixture();
    let _ = agent.add_service(
        Instant(1),
        reg.service,
        reg.checks,
        crate::agent::Origin::Api { loopback: true },
    );
    drain_agent(&mut fsm, &mut agent);
    render_all(&fsm);
    let _ = agent.remove_service(&id);
    drain_agent(&mut fsm, &mut agent);
}

/// `PUT /v1/catalog/register` and `/v1/catalog/deregister`.
fn catalog_bodies(data: &[u8]) {
    if let Ok(reg) = decode_catalog_register(data, FIXTURE_DATACENTER) {
        assert!(!reg.node.name.is_empty() && !reg.node.datacenter.is_empty());
        if let Some(service) = &reg.service {
            assert!(!service.id.is_empty() && !service.name.is_empty());
        }
        assert!(reg.checks.iter().all(|c| !c.check_id.is_empty()));
        let (mut fsm, _) = fixture();
        let command = Command::Register(Box::new(reg));
        command_codec(&command.encode());
        apply_checked(&mut fsm, &command);
        render_all(&fsm);
    }
    if let Ok((node, service_id, check_id)) = decode_catalog_deregister(data) {
        assert!(!node.is_empty());
        let (mut fsm, _) = fixture();
        let command = Command::Deregister {
            node,
            service_id,
            check_id,
        };
        apply_checked(&mut fsm, &command);
        render_all(&fsm);
    }
}

// ---------------------------------------------------------------- config

/// An agent config file: the bytes as HCL and as JSON, and the service and
/// check definitions of whatever parses through the agent API's decoders
/// and into the agent, as the agent does at startup.
pub fn config_parser(data: &[u8]) {
    for value in config_values(data) {
        let (services, checks) = config_definitions(&value);
        for service in services {
            match decode_agent_service_value(service.clone()) {
                Ok(reg) => register_service(reg),
                Err(_) => drop(bad_service_key(&service)),
            }
        }
        for check in checks {
            match decode_check_value(check.clone()) {
                Ok(spec) => add_check(spec),
                Err(_) => drop(bad_check_key(&check)),
            }
        }
    }
}

/// What `data` parses to as HCL and as JSON (none, one or both), each
/// checked to come back unchanged from its own JSON. The fuzz target also
/// feeds their `watches` to the agent's watch decoder (in io-tokio).
pub fn config_values(data: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(data);
    let mut values = Vec::new();
    match crate::hcl::parse(&text) {
        Ok(value) => {
            assert!(value.is_object(), "a config is an object: {value}");
            values.push(value);
        }
        Err(e) => {
            let lines = text.matches('\n').count() + 1;
            assert!(
                (1..=lines).contains(&e.pos.line) && e.pos.column >= 1,
                "{e} points outside a text of {lines} lines"
            );
        }
    }
    if let Ok(json) = serde_json::from_slice::<Value>(data) {
        if json.is_object() && data.len() <= CONFIG_FILE_BYTES_MAX {
            assert_eq!(values.first(), Some(&json), "JSON parses the same as HCL");
        } else {
            values.push(json);
        }
    }
    for value in &values {
        let again: Value = serde_json::from_str(&value.to_string()).expect("re-reads");
        assert_eq!(&again, value, "a config survives its own JSON");
    }
    values
}

/// The `service`/`services` and `check`/`checks` entries of a config
/// value, in the order the agent loads them (either spelling of the key).
pub fn config_definitions(config: &Value) -> (Vec<Value>, Vec<Value>) {
    let entries = |single: &[&str], plural: &[&str]| {
        let mut out = Vec::new();
        for key in single {
            out.extend(config.get(*key).cloned());
        }
        for key in plural {
            if let Some(Value::Array(items)) = config.get(*key) {
                out.extend(items.iter().cloned());
            }
        }
        out
    };
    (
        entries(&["service", "Service"], &["services", "Services"]),
        entries(&["check", "Check"], &["checks", "Checks"]),
    )
}

/// A decoded check is well-formed and the agent takes or refuses it
/// without breaking the store.
fn add_check(spec: CheckSpec) {
    assert!(!spec.check.check_id.is_empty());
    let (mut fsm, mut agent) = fixture();
    let _ = agent.add_check(Instant(1), spec, crate::agent::Origin::ConfigFile);
    drain_agent(&mut fsm, &mut agent);
    render_all(&fsm);
}

// ---------------------------------------------------------------- coord

/// A semaphore's coordination key holding arbitrary bytes (anyone can write
/// that key): every step either refuses it or keeps the invariants: a claim
/// adds exactly us and stays within the limit, a release removes us.
pub fn coord_holders(data: &[u8]) {
    use crate::coord::{
        contender_key, semaphore_cleanup, semaphore_release, semaphore_step, semaphore_view,
        Holders, KvPair, SemaphoreStep, SEMAPHORE_FLAG_VALUE,
    };
    let limit = u64::from(data.first().copied().unwrap_or(2) % 4 + 1);
    let me = "11111111-2222-4333-8444-555555555555";
    let other = "66666666-7777-4888-9999-aaaaaaaaaaaa";
    let lock = KvPair {
        key: "p/.lock".into(),
        flags: SEMAPHORE_FLAG_VALUE,
        value: data.to_vec(),
        modify_index: 9,
        ..KvPair::default()
    };
    let contender = |session: &str| KvPair {
        key: contender_key("p", session),
        flags: SEMAPHORE_FLAG_VALUE,
        session: session.into(),
        ..KvPair::default()
    };
    let pairs = vec![contender(me), contender(other), lock.clone()];
    if let Ok(view) = semaphore_view("p", &pairs, limit) {
        assert_eq!(view.holders.limit, limit);
        assert!(view.holders.holders.keys().all(|h| h == me || h == other));
        if let SemaphoreStep::Claim {
            document,
            cas_index,
        } = semaphore_step(&view, me)
        {
            assert_eq!(cas_index, 9);
            let claimed: Holders = serde_json::from_slice(&document).expect("claims decode");
            assert!(claimed.holders.contains_key(me));
            assert!(claimed.holders.len() as u64 <= limit);
        }
    }
    if let Ok(Some((document, _))) = semaphore_release(Some(&lock), me) {
        let left: Holders = serde_json::from_slice(&document).expect("releases decode");
        assert!(!left.holders.contains_key(me));
    }
    let _ = semaphore_cleanup("p", &pairs, limit);
    let text = String::from_utf8_lossy(data);
    let _ = crate::event::id_index(&text);
}

// ---------------------------------------------------------------- rpc frames

/// Server RPC frame decoding on arbitrary bytes, read as a stream of
/// frames. A decoded frame re-encodes to exactly the bytes it came from, its
/// body is within the limit, and each frame consumes at least a header, so a
/// reader always makes progress; a forwarded command decodes without panic
/// and round-trips. Errors are fine; panics are not.
pub fn rpc_frame(data: &[u8]) {
    use crate::limits::RPC_FRAME_BODY_BYTES_MAX;
    use crate::rpc_frame::RPC_FRAME_HEADER_BYTES;
    use crate::rpc_frame::{encode, Frame, FrameError, FrameHeader, FrameKind};

    let mut rest = data;
    loop {
        match Frame::decode(rest) {
            Ok((frame, used)) => {
                assert!(used >= RPC_FRAME_HEADER_BYTES && used <= rest.len());
                assert!(frame.body.len() <= RPC_FRAME_BODY_BYTES_MAX);
                assert_eq!(FrameHeader::decode(rest), Ok(frame.header));
                let mut again = Vec::new();
                encode(
                    frame.header.kind,
                    frame.header.request_id,
                    frame.body,
                    &mut again,
                )
                .expect("a decoded body is within the limit");
                assert_eq!(again, &rest[..used], "frame re-encodes to its bytes");
                if frame.header.kind == FrameKind::Forward {
                    if let Ok(command) = Command::decode(frame.body) {
                        assert_eq!(Command::decode(&command.encode()), Ok(command));
                    }
                }
                rest = &rest[used..];
            }
            Err(FrameError::Truncated { have, need }) => {
                assert_eq!(have, rest.len());
                assert!(have < need && need <= RPC_FRAME_HEADER_BYTES + RPC_FRAME_BODY_BYTES_MAX);
                return;
            }
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------- wal

/// Splits a `wal_recovery` input: the first 8 bytes (little-endian) are the
/// index the segment's file name promises, the rest is the segment.
pub fn wal_recovery_input(data: &[u8]) -> (u64, &[u8]) {
    let (head, segment) = data.split_at(data.len().min(8));
    let mut index = [0u8; 8];
    index[..head.len()].copy_from_slice(head);
    (u64::from_le_bytes(index).max(1), segment)
}

/// A WAL segment of arbitrary bytes (what a damaged disk or a crash can
/// leave): the scan reports only records that re-encode to exactly the bytes
/// they came from, contiguous from the named index, and stops where it says
/// (a clean end covers every byte; a padded one leaves only zeros after the
/// records). Recovery then either refuses with a
/// location inside the file or yields a layout that locates every record.
/// The same bytes as a vote file decode only if they re-encode identically.
pub fn wal_recovery(data: &[u8]) {
    use crate::wal::{
        decode_record, decode_vote, encode_record, encode_vote, scan_segment, Layout, SegmentEnd,
    };
    let (first_index, segment) = wal_recovery_input(data);
    let scan = scan_segment(segment, first_index);
    let valid_len = scan.valid_len();
    let mut reencoded = Vec::new();
    for (position, slot) in scan.records.iter().enumerate() {
        assert_eq!(slot.index, first_index + position as u64);
        assert_eq!(slot.offset, reencoded.len() as u64);
        let record =
            decode_record(&segment[slot.offset as usize..]).expect("scanned record decodes");
        assert_eq!(record.encoded_len(), slot.len as usize);
        encode_record(
            &mut reencoded,
            record.index,
            record.batch_first_index,
            record.payload,
        );
    }
    assert_eq!(&reencoded[..], &segment[..valid_len as usize]);
    match scan.end {
        SegmentEnd::Clean => assert_eq!(valid_len, segment.len() as u64),
        SegmentEnd::Padded { offset } => {
            assert_eq!(offset, valid_len);
            assert!(segment[offset as usize..].iter().all(|&b| b == 0));
            assert!(offset < segment.len() as u64);
        }
        SegmentEnd::TornTail { offset, .. } | SegmentEnd::Corrupt { offset, .. } => {
            assert_eq!(offset, valid_len);
            assert!(offset < segment.len() as u64);
        }
    }
    let corrupt = matches!(scan.end, SegmentEnd::Corrupt { .. });
    let padded = matches!(scan.end, SegmentEnd::Padded { .. });
    let records = scan.records.clone();
    match Layout::recover(64 * 1024, vec![(first_index, scan)]) {
        Ok(recovered) => {
            assert!(!corrupt);
            recovered.layout.check_invariants();
            for slot in &records {
                assert_eq!(
                    recovered.layout.locate(slot.index),
                    Some((first_index, *slot))
                );
            }
            let truncate = recovered.truncate.map(|(_, len)| len);
            // Cut only a torn tail: preallocated zeros stay.
            assert_eq!(
                truncate.is_some(),
                valid_len < segment.len() as u64 && !padded
            );
        }
        Err(error) => {
            assert!(corrupt);
            assert_eq!(error.location(), (first_index, valid_len));
        }
    }
    if let Ok(vote) = decode_vote(data) {
        assert_eq!(&encode_vote(&vote)[..], data);
    }
}

// ---------------------------------------------------------------- snapshot archive

/// `PUT /v1/snapshot` bodies and `tribune snapshot restore|inspect` files:
/// whatever decodes restores to a valid store or is refused, and a store
/// that restores archives back to bytes that restore to the same store.
pub fn snapshot_archive(data: &[u8]) {
    use crate::snapshot_archive::{decode, encode, restore};
    let decoded = decode(data);
    match restore(data) {
        Ok((meta, fsm)) => {
            assert!(decoded.is_ok());
            fsm.check_invariants();
            let again = encode(&meta, &fsm.snapshot());
            let (meta2, fsm2) = restore(&again).expect("a re-archived store restores");
            assert_eq!(meta2, meta);
            assert_eq!(fsm2.snapshot(), fsm.snapshot());
        }
        Err(_) => {
            if let Ok((_, state)) = decoded {
                assert!(crate::fsm::Fsm::restore(state).is_err());
            }
        }
    }
}

// ---------------------------------------------------------------- gossip

/// The key of the serf agents whose traffic seeds the gossip corpora
/// (`valid-serf094-enc-*`), installed so the fuzzer reaches the paths
/// behind decryption.
pub const GOSSIP_FUZZ_KEY: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";

/// The keyring the gossip entry points decrypt with.
pub fn gossip_keyring() -> crate::gossip::crypto::Keyring {
    use crate::gossip::crypto::{decode_key, Keyring};
    Keyring::new(decode_key(GOSSIP_FUZZ_KEY).expect("valid key")).expect("valid key")
}

/// Messages whose full seal (compression, CRC, encryption, label) is
/// round-tripped per input; the rest are round-tripped in plaintext only.
const GOSSIP_SEALED_CHECKS_MAX: usize = 16;

/// memberlist packet decoding on arbitrary bytes, as a pool without and
/// with encryption. A decoded packet's messages re-encode (plain, and
/// sealed with every option) to packets that decode to the same messages;
/// serf messages and tags inside re-encode the same way.
pub fn gossip_packet(data: &[u8]) {
    use crate::gossip::codec::{decode_packet_with, encode_packet, Inbound, Outbound};
    use crate::rng::Rng;

    let ring = gossip_keyring();
    let mut rng = Rng::from_seed(data.len() as u64);
    for inbound in [Inbound::new("", None), Inbound::new("", Some(&ring))] {
        let Ok(packet) = decode_packet_with(data, &inbound) else {
            continue;
        };
        let plain = Outbound {
            compress: false,
            crc: false,
            ..Outbound::new("", None)
        };
        for (i, msg) in packet.messages.iter().enumerate() {
            gossip_message_payloads(msg);
            let one = std::slice::from_ref(msg);
            let bytes = encode_packet(one, &plain, &mut rng).expect("a decoded message encodes");
            let again = decode_packet_with(&bytes, &Inbound::new("", None))
                .expect("a re-encoded message decodes");
            assert_eq!(again.messages, one, "message changed in a plain round trip");
            if i < GOSSIP_SEALED_CHECKS_MAX {
                let sealed = Outbound::new("fuzz", Some(&ring));
                let bytes = encode_packet(one, &sealed, &mut rng).expect("sealed encode");
                let again = decode_packet_with(&bytes, &Inbound::new("fuzz", Some(&ring)))
                    .expect("a sealed message decodes");
                assert_eq!(
                    again.messages, one,
                    "message changed in a sealed round trip"
                );
            }
        }
    }
}

/// memberlist stream decoding on arbitrary bytes: the label header, the
/// completeness answer (`stream_need`) and the message, which re-encodes
/// plain and sealed to the same message.
pub fn gossip_stream(data: &[u8]) {
    use crate::gossip::codec::{Inbound, Outbound};
    use crate::gossip::stream::{
        decode_stream, encode_stream, encode_stream_plain, stream_need, stream_start, StreamNeed,
        StreamStart,
    };
    use crate::rng::Rng;

    let ring = gossip_keyring();
    let mut rng = Rng::from_seed(data.len() as u64);
    if let Ok(StreamStart::More(n)) = stream_start(data, &Inbound::new("x", None)) {
        assert!(n > data.len(), "a label header asks for bytes it has");
    }
    for inbound in [Inbound::new("", None), Inbound::new("", Some(&ring))] {
        match stream_need(data, &inbound) {
            Ok(StreamNeed::More(n)) => assert!(n > data.len(), "asks for bytes it has"),
            Err(_) => {}
            Ok(StreamNeed::Complete(n)) => {
                assert!(n <= data.len());
                let (msg, used) = decode_stream(data, &inbound).expect("complete decodes");
                assert_eq!(used, n);
                assert_eq!(
                    decode_stream(&data[..n], &inbound).map(|(m, _)| m).as_ref(),
                    Ok(&msg),
                    "the message does not depend on bytes after it"
                );
                gossip_message_payloads(&msg);
                let plain = encode_stream_plain(&msg).expect("a stream message encodes");
                assert_eq!(
                    decode_stream(&plain, &Inbound::new("", None)),
                    Ok((msg.clone(), plain.len()))
                );
                let sealed = encode_stream(&msg, &Outbound::new("fuzz", Some(&ring)), &mut rng)
                    .expect("sealed encode");
                assert_eq!(
                    decode_stream(&sealed, &Inbound::new("fuzz", Some(&ring))),
                    Ok((msg, sealed.len()))
                );
            }
        }
    }
}

/// serf messages (user messages, push/pull user state) and serf tags
/// (alive and push/pull node meta) inside a memberlist message.
fn gossip_message_payloads(msg: &crate::gossip::message::Message) {
    use crate::gossip::message::Message;
    match msg {
        Message::User(bytes) => serf_round_trip(bytes),
        Message::PushPull(pp) => {
            serf_round_trip(&pp.user_state);
            for node in &pp.nodes {
                tags_round_trip(&node.meta);
            }
        }
        Message::Alive(alive) => tags_round_trip(&alive.meta),
        _ => {}
    }
}

fn serf_round_trip(bytes: &[u8]) {
    use crate::gossip::serf::{
        decode_filter, decode_serf, encode_filter, encode_serf, SerfMessage,
    };
    let Ok(msg) = decode_serf(bytes) else {
        return;
    };
    assert_eq!(
        decode_serf(&encode_serf(&msg)).as_ref(),
        Ok(&msg),
        "serf message changed"
    );
    match &msg {
        SerfMessage::Query(q) => {
            for f in &q.filters {
                if let Ok(filter) = decode_filter(f) {
                    assert_eq!(decode_filter(&encode_filter(&filter)), Ok(filter));
                }
            }
            // Key requests travel in query payloads, key and conflict
            // answers in responses.
            serf_round_trip(&q.payload);
        }
        SerfMessage::Relay(r) => serf_round_trip(&r.message),
        SerfMessage::QueryResponse(r) => serf_round_trip(&r.payload),
        _ => {}
    }
}

fn tags_round_trip(meta: &[u8]) {
    use crate::gossip::serf::{decode_tags, encode_tags};
    let Ok(tags) = decode_tags(meta) else {
        return;
    };
    if let Ok(encoded) = encode_tags(&tags) {
        assert_eq!(decode_tags(&encoded), Ok(tags), "tags changed");
    }
}

// ---------------------------------------------------------------- events

/// A Consul user event's payload (a serf user event named
/// `consul:event:*`) of arbitrary bytes: a decoded event re-encodes to
/// bytes that decode to the same event, its filters are judged against
/// the fixture agent without panicking (even filters that do not compile
/// or compile big), and the agent's ring takes it keeping its invariants.
pub fn user_event(data: &[u8]) {
    use crate::event::{EventBuffer, Ingested};
    use crate::event_wire::{decode_user_event, encode_user_event};

    let Ok(event) = decode_user_event(data, data.len() as u64) else {
        return;
    };
    let again = decode_user_event(&encode_user_event(&event), event.ltime);
    assert_eq!(again.as_ref(), Ok(&event), "user event changed");
    let (_, agent) = fixture();
    let services = agent
        .services()
        .map(|(id, s)| (id.as_str(), s.tags.as_slice()));
    let _ = event.targets(FIXTURE_NODE, services);
    let mut ring = EventBuffer::default();
    let first = ring.ingest(event.clone());
    assert_ne!(first, Ingested::Duplicate);
    assert_eq!(ring.ingest(event), Ingested::Duplicate);
    ring.check_invariants();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_is_consistent() {
        let (fsm, agent) = fixture();
        assert!(fsm
            .kv
            .get("locks/leader")
            .is_some_and(|e| e.session == Some(FIXTURE_SESSION)));
        assert!(fsm.kv.get("gone").is_none());
        assert_eq!(fsm.catalog.services.len(), 2, "consul and web1");
        assert_eq!(agent.checks().len(), 1);
    }

    #[test]
    fn staging_fixture_finishes_into_the_fixture() {
        let (fixture, _) = fixture();
        let archive = fixture_archive();
        let mut fsm = staging_fixture();
        let rest = Command::RestoreChunk {
            id: FIXTURE_RESTORE,
            offset: staging_fixture_offset() as u64,
            data: archive[staging_fixture_offset()..].to_vec(),
        };
        assert_eq!(apply_checked(&mut fsm, &rest), CommandResult::Done);
        let commit = Command::RestoreCommit {
            id: FIXTURE_RESTORE,
        };
        assert_eq!(apply_checked(&mut fsm, &commit), CommandResult::Done);
        assert_eq!(fsm.kv, fixture.kv);
        assert_eq!(fsm.catalog, fixture.catalog);
        assert_eq!(fsm.sessions, fixture.sessions);
        assert_eq!(fsm.restore, None);
    }

    #[test]
    fn entry_points_take_garbage() {
        for data in [
            &b""[..],
            b"\x00",
            b"\x01\x00",
            b"{}",
            b"[]",
            b"%",
            b"\xff\xfe",
        ] {
            command_codec(data);
            snapshot_restore(data);
            api_query(data);
            json_bodies(data);
            wal_recovery(data);
            gossip_packet(data);
            gossip_stream(data);
            user_event(data);
        }
    }
}
