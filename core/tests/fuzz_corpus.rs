//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/*`) through
//! the same functions the cargo-fuzz targets call, so `cargo test` on stable
//! Rust exercises every seed and every input a fuzzer kept.
//!
//! Seed names say what a seed must do: `valid-*` seeds must decode (or
//! restore, or parse), `bad-*` seeds must be refused; other names (inputs a
//! fuzzer found) only must not break a property. When the command codec or
//! the snapshot format changes, the binary seeds go stale and
//! `binary_seeds_still_decode` fails: regenerate them with
//! `cargo test -p tribune-core --test fuzz_corpus -- --ignored write_binary_seeds`.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use tribune_core::api::body::{
    decode_agent_service, decode_agent_service_value, decode_catalog_deregister,
    decode_catalog_register, decode_check_register, decode_check_update, decode_check_value,
    decode_keyring_request, decode_session_create, decode_txn,
};
use tribune_core::api::query::{parse_query, read_options};
use tribune_core::checksum::checksum;
use tribune_core::command::{Command, CommandResult, KvOp, KvVerb};
use tribune_core::fsm::{Effects, Fsm};
use tribune_core::fuzzing::{
    self, FIXTURE_DATACENTER, FIXTURE_NODE, FIXTURE_RESTORE, FIXTURE_SESSION,
};
use tribune_core::ids::Uuid;
use tribune_core::restore;
use tribune_core::rpc_frame::{self, Frame, FrameKind};
use tribune_core::wal;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// The files of one corpus, sorted; the corpus must exist and hold seeds.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| entry.expect("readable corpus entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().expect("file name");
            let data = fs::read(&path).expect("readable corpus file");
            (name.to_string_lossy().into_owned(), data)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}

/// Runs every file of `target`'s corpus through `run`, reporting all the
/// files that panic rather than only the first.
fn replay(target: &str, run: fn(&[u8])) {
    let failures: Vec<String> = corpus(target)
        .into_iter()
        .filter(|(_, data)| catch_unwind(AssertUnwindSafe(|| run(data))).is_err())
        .map(|(name, _)| name)
        .collect();
    assert!(
        failures.is_empty(),
        "{target}: these corpus files break a property (see the panics above): {failures:?}"
    );
}

#[test]
fn command_codec_corpus() {
    replay("command_codec", fuzzing::command_codec);
}

#[test]
fn snapshot_restore_corpus() {
    replay("snapshot_restore", fuzzing::snapshot_restore);
}

#[test]
fn api_query_corpus() {
    replay("api_query", fuzzing::api_query);
}

#[test]
fn json_bodies_corpus() {
    replay("json_bodies", fuzzing::json_bodies);
}

/// Checks `valid-*` / `bad-*` seeds of `target` with `accepts`.
fn check_seed_names(target: &str, accepts: impl Fn(&str, &[u8]) -> bool) {
    let mut checked = 0;
    for (name, data) in corpus(target) {
        let wanted = if name.starts_with("valid-") {
            true
        } else if name.starts_with("bad-") {
            false
        } else {
            continue;
        };
        assert_eq!(
            accepts(&name, &data),
            wanted,
            "{target}/{name}: expected {}",
            if wanted { "acceptance" } else { "refusal" }
        );
        checked += 1;
    }
    assert!(checked > 0, "{target}: no valid-/bad- seeds");
}

#[test]
fn rpc_frame_corpus() {
    replay("rpc_frame", fuzzing::rpc_frame);
}

/// True when `data` is a whole number of well-formed frames.
fn all_frames(mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match Frame::decode(data) {
            Ok((_, used)) => data = &data[used..],
            Err(_) => return false,
        }
    }
    true
}

#[test]
fn binary_seeds_still_decode() {
    check_seed_names("command_codec", |_, data| Command::decode(data).is_ok());
    check_seed_names("snapshot_restore", |_, data| Fsm::restore(data).is_ok());
    check_seed_names("rpc_frame", |_, data| !data.is_empty() && all_frames(data));
    check_seed_names("wal_recovery", |_, data| {
        let (first_index, segment) = fuzzing::wal_recovery_input(data);
        let scan = wal::scan_segment(segment, first_index);
        wal::Layout::recover(1024, vec![(first_index, scan)]).is_ok()
    });
}

#[test]
fn snapshot_archive_corpus() {
    replay("snapshot_archive", fuzzing::snapshot_archive);
    check_seed_names("snapshot_archive", |_, data| {
        tribune_core::snapshot_archive::restore(data).is_ok()
    });
}

/// Seeds of `snapshot_archive`: the fixture's store archived, and the ways
/// an archive is refused.
fn write_archive_seeds(write: fn(&str, String, &[u8])) {
    use tribune_core::snapshot_archive::{encode, ArchiveMeta};
    let (fsm, _) = fuzzing::fixture();
    let meta = ArchiveMeta {
        index: fsm.last_applied,
        term: 1,
        created_unix_ms: 1_700_000_000_000,
        datacenter: FIXTURE_DATACENTER.into(),
        node: FIXTURE_NODE.into(),
        tool_version: "0.1.0".into(),
    };
    let good = encode(&meta, &fsm.snapshot());
    write("snapshot_archive", "valid-fixture.bin".into(), &good);
    write(
        "snapshot_archive",
        "valid-empty-store.bin".into(),
        &encode(&meta, &Fsm::default().snapshot()),
    );
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    write("snapshot_archive", "bad-flipped-byte.bin".into(), &flipped);
    write(
        "snapshot_archive",
        "bad-truncated.bin".into(),
        &good[..good.len() - 5],
    );
    write(
        "snapshot_archive",
        "bad-magic.bin".into(),
        b"GZIP\x1f\x8b not ours",
    );
    write(
        "snapshot_archive",
        "bad-garbage-state.bin".into(),
        &encode(&meta, b"\x01garbage"),
    );
    // Taken while a restore was staged (snapshot version 2 inside).
    write(
        "snapshot_archive",
        "valid-restore-staged.bin".into(),
        &encode(&meta, &fuzzing::staging_fixture().snapshot()),
    );
}

#[test]
fn wal_recovery_corpus() {
    replay("wal_recovery", fuzzing::wal_recovery);
}

/// Segments for `wal_recovery`: the named first index (8 bytes LE), then
/// records written as batches; plus damaged variants recovery must refuse.
fn wal_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let segment = |first: u64, batches: &[&[&[u8]]]| {
        let mut bytes = first.to_le_bytes().to_vec();
        let mut index = first;
        for batch in batches {
            let batch_first = index;
            for payload in *batch {
                wal::encode_record(&mut bytes, index, batch_first, payload);
                index += 1;
            }
        }
        bytes
    };
    let two_batches = segment(7, &[&[b"first", b""], &[&[0xab; 300]]]);
    let header = 8 + wal::RECORD_HEADER_BYTES;
    let mut bad_checksum = two_batches.clone();
    bad_checksum[header] ^= 0x40; // payload of the first record; batch 2 follows
    let mut out_of_sequence = segment(3, &[&[b"a"]]);
    let mut next = Vec::new();
    wal::encode_record(&mut next, 5, 5, b"b");
    out_of_sequence.extend_from_slice(&next);
    let mut bad_batch = segment(3, &[&[b"a"]]);
    let mut next = Vec::new();
    wal::encode_record(&mut next, 4, 2, b"b");
    bad_batch.extend_from_slice(&next);
    let mut zero_tail = segment(1, &[&[b"x"]]);
    zero_tail.extend_from_slice(&[0; 512]);
    let vote = wal::Vote {
        term: 5,
        voted_for: Some(2),
        committed: true,
    };
    vec![
        ("valid-empty.bin", 1u64.to_le_bytes().to_vec()),
        ("valid-two-batches.bin", two_batches.clone()),
        (
            "valid-torn-tail.bin",
            two_batches[..two_batches.len() - 7].to_vec(),
        ),
        ("valid-torn-header.bin", two_batches[..header - 3].to_vec()),
        ("valid-zero-filled-tail.bin", zero_tail),
        ("bad-checksum-before-later-batch.bin", bad_checksum),
        ("bad-index-out-of-sequence.bin", out_of_sequence),
        ("bad-batch-out-of-sequence.bin", bad_batch),
        (
            "bad-name-promises-other-index.bin",
            segment(7, &[&[b"a"]])[..]
                .iter()
                .enumerate()
                .map(|(i, &b)| if i == 0 { 8 } else { b })
                .collect(),
        ),
        ("vote-file.bin", wal::encode_vote(&vote).to_vec()),
    ]
}

#[test]
fn query_seeds_parse_as_named() {
    check_seed_names("api_query", |_, data| {
        std::str::from_utf8(data)
            .ok()
            .and_then(|raw| parse_query(raw.trim_end_matches('\n')).ok())
            .is_some_and(|query| read_options(&query).is_ok())
    });
}

/// `valid-<endpoint>-*.json` seeds must decode with that endpoint's decoder.
#[test]
fn json_seeds_decode_as_named() {
    check_seed_names("json_bodies", |name, data| {
        let rest = name
            .strip_prefix("valid-")
            .or_else(|| name.strip_prefix("bad-"))
            .expect("named seed");
        let endpoint = rest.split_once("--").map_or(rest, |(e, _)| e);
        match endpoint {
            "txn" => decode_txn(data).is_ok(),
            "session-create" => decode_session_create(data, FIXTURE_NODE).is_ok(),
            "check-register" => decode_check_register(data).is_ok(),
            "check-update" => decode_check_update(data).is_ok(),
            "service-register" => decode_agent_service(data).is_ok(),
            "catalog-register" => decode_catalog_register(data, FIXTURE_DATACENTER).is_ok(),
            "catalog-deregister" => decode_catalog_deregister(data).is_ok(),
            "keyring" => decode_keyring_request(data).is_ok(),
            other => panic!("{name}: unknown endpoint {other:?} (name seeds <endpoint>--<what>)"),
        }
    });
}

// ---------------------------------------------------------------- seeds

fn kv(verb: KvVerb, key: &str, value: &[u8]) -> KvOp {
    KvOp {
        value: value.to_vec(),
        ..KvOp::new(verb, key)
    }
}

fn locked(verb: KvVerb, key: &str) -> KvOp {
    KvOp {
        session: Some(FIXTURE_SESSION),
        ..KvOp::new(verb, key)
    }
}

/// Commands a dev agent really proposes, plus a few the store refuses.
fn seed_commands() -> Vec<(&'static str, Command)> {
    let register = decode_catalog_register(
        include_bytes!("../../fuzz/corpus/json_bodies/valid-catalog-register--docs-example.json"),
        FIXTURE_DATACENTER,
    )
    .expect("docs example decodes");
    let session = decode_session_create(
        br#"{"Name":"lock-holder","TTL":"30s","LockDelay":"5s","Behavior":"delete"}"#,
        FIXTURE_NODE,
    )
    .expect("session body decodes");
    let session = tribune_core::session::Session {
        id: Uuid::new(0x1c3f_0e05),
        ..session
    };
    let cas = KvOp {
        index: 7,
        ..kv(KvVerb::Cas, "redis/config/conn", b"10.0.0.6:6379")
    };
    let delete_cas = KvOp {
        index: 7,
        ..KvOp::new(KvVerb::DeleteCas, "redis/config/conn")
    };
    let check_index = KvOp {
        index: 7,
        ..KvOp::new(KvVerb::CheckIndex, "redis/config/conn")
    };
    vec![
        (
            "kv-set",
            Command::Kv(kv(KvVerb::Set, "redis/config/conn", b"10.0.0.5:6379")),
        ),
        (
            "kv-set-flags",
            Command::Kv(KvOp {
                flags: 42,
                ..kv(KvVerb::Set, "web/key1", b"test")
            }),
        ),
        ("kv-cas", Command::Kv(cas)),
        ("kv-lock", Command::Kv(locked(KvVerb::Lock, "locks/leader"))),
        (
            "kv-lock-other-key",
            Command::Kv(locked(KvVerb::Lock, "service/mw/leader")),
        ),
        (
            "kv-unlock",
            Command::Kv(locked(KvVerb::Unlock, "locks/leader")),
        ),
        (
            "kv-delete",
            Command::Kv(KvOp::new(KvVerb::Delete, "redis/config/conn")),
        ),
        ("kv-delete-cas", Command::Kv(delete_cas)),
        (
            "kv-delete-tree",
            Command::Kv(KvOp::new(KvVerb::DeleteTree, "redis/")),
        ),
        (
            "kv-read-verb-refused",
            Command::Kv(KvOp::new(KvVerb::Get, "redis/config/conn")),
        ),
        (
            "txn-mixed",
            Command::Txn(vec![
                kv(KvVerb::Set, "txn/a", b"1"),
                check_index,
                locked(KvVerb::Lock, "txn/lock"),
                KvOp::new(KvVerb::GetTree, "txn/"),
            ]),
        ),
        (
            "txn-rolled-back",
            Command::Txn(vec![
                kv(KvVerb::Set, "txn/a", b"1"),
                KvOp::new(KvVerb::Get, "does/not/exist"),
            ]),
        ),
        ("catalog-register", Command::Register(Box::new(register))),
        (
            "catalog-deregister-node",
            Command::Deregister {
                node: FIXTURE_NODE.into(),
                service_id: None,
                check_id: None,
            },
        ),
        (
            "catalog-deregister-service",
            Command::Deregister {
                node: FIXTURE_NODE.into(),
                service_id: Some("web1".into()),
                check_id: None,
            },
        ),
        (
            "catalog-deregister-check",
            Command::Deregister {
                node: FIXTURE_NODE.into(),
                service_id: None,
                check_id: Some("serfHealth".into()),
            },
        ),
        ("session-create", Command::SessionCreate(Box::new(session))),
        (
            "session-destroy",
            Command::SessionDestroy {
                id: FIXTURE_SESSION,
            },
        ),
    ]
}

/// The restore commands (`PUT /v1/snapshot` on a server), which
/// `fuzzing::command_codec` also applies to the staging fixture: a begin, a
/// chunk that completes the staged archive (its commit then replaces the
/// store), one out of order, a commit of the staging fixture's restore
/// (refused: half of it is missing), one of no restore, and an abort.
fn seed_restore_commands() -> Vec<(&'static str, Command)> {
    let archive = fuzzing::fixture_archive();
    let half = fuzzing::staging_fixture_offset();
    vec![
        (
            "restore-begin",
            Command::RestoreBegin {
                id: FIXTURE_RESTORE + 1,
                total_len: archive.len() as u64,
                checksum: checksum(&archive),
            },
        ),
        (
            "restore-chunk-completes",
            Command::RestoreChunk {
                id: FIXTURE_RESTORE,
                offset: half as u64,
                data: archive[half..].to_vec(),
            },
        ),
        (
            "restore-chunk-out-of-order",
            Command::RestoreChunk {
                id: FIXTURE_RESTORE,
                offset: 1,
                data: archive[1..half].to_vec(),
            },
        ),
        (
            "restore-commit-incomplete",
            Command::RestoreCommit {
                id: FIXTURE_RESTORE,
            },
        ),
        (
            "restore-commit-unknown",
            Command::RestoreCommit {
                id: FIXTURE_RESTORE + 2,
            },
        ),
        (
            "restore-abort",
            Command::RestoreAbort {
                id: FIXTURE_RESTORE,
            },
        ),
    ]
}

/// Stores with a restore's state (snapshot version 2): one staging an
/// archive, and one restored from a store with a longer history than its
/// own log (so its store indexes run ahead of its log indexes).
fn seed_restore_snapshots() -> Vec<(&'static str, Vec<u8>)> {
    let staging = fuzzing::staging_fixture();
    let mut ahead = Fsm::default();
    let mut effects = Effects::default();
    for command in restore::commands(1, &fuzzing::fixture_archive()) {
        effects.clear();
        let result = ahead.apply(ahead.last_applied + 1, &command, &mut effects);
        assert_eq!(result, CommandResult::Done, "{command}");
    }
    assert!(ahead.index_offset > 0, "the fixture's history is longer");
    ahead.check_invariants();
    vec![
        ("restore-staged", staging.snapshot()),
        ("restored-ahead-of-its-log", ahead.snapshot()),
    ]
}

/// Stores worth restoring: empty, the fuzzing fixture, and the fixture after
/// every seed command (locks released, tombstones, a second session).
fn seed_snapshots() -> Vec<(&'static str, Vec<u8>)> {
    let (fixture, _) = fuzzing::fixture();
    let mut busy = fixture.clone();
    let mut effects = Effects::default();
    for (_, command) in seed_commands() {
        effects.clear();
        busy.apply(busy.last_applied + 1, &command, &mut effects);
    }
    busy.check_invariants();
    vec![
        ("empty", Fsm::default().snapshot()),
        ("fixture", fixture.snapshot()),
        ("after-seed-commands", busy.snapshot()),
    ]
}

/// Writes the binary seeds of `command_codec` and `snapshot_restore`.
#[test]
#[ignore = "writes into fuzz/corpus; run with --ignored to regenerate the seeds"]
fn write_binary_seeds() {
    fn write(target: &str, name: String, data: &[u8]) {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).expect("corpus dir");
        fs::write(dir.join(name), data).expect("seed written");
    }
    for (name, command) in seed_commands().into_iter().chain(seed_restore_commands()) {
        write(
            "command_codec",
            format!("valid-{name}.bin"),
            &command.encode(),
        );
    }
    let set = Command::Kv(kv(KvVerb::Set, "k", b"v")).encode();
    let mut wrong_version = set.clone();
    wrong_version[0] = 2;
    write("command_codec", "bad-empty.bin".into(), b"");
    write("command_codec", "bad-version.bin".into(), &wrong_version);
    write(
        "command_codec",
        "bad-truncated.bin".into(),
        &set[..set.len() - 1],
    );
    write(
        "command_codec",
        "bad-trailing-byte.bin".into(),
        &[&set[..], &[0]].concat(),
    );
    for (name, data) in wal_seeds() {
        write("wal_recovery", name.into(), &data);
    }
    write_archive_seeds(write);
    for (name, snapshot) in seed_snapshots().into_iter().chain(seed_restore_snapshots()) {
        write("snapshot_restore", format!("valid-{name}.bin"), &snapshot);
    }
    // A staging area holding more than its begin announced.
    let mut overfull = fuzzing::staging_fixture();
    if let Some(staging) = &mut overfull.restore {
        staging.total_len = 1;
    }
    write(
        "snapshot_restore",
        "bad-restore-staged-past-its-length.bin".into(),
        &overfull.snapshot(),
    );
    let (fixture, _) = fuzzing::fixture();
    let snapshot = fixture.snapshot();
    write("snapshot_restore", "bad-empty.bin".into(), b"");
    write(
        "snapshot_restore",
        "bad-truncated.bin".into(),
        &snapshot[..snapshot.len() / 2],
    );
    // Well-formed but inconsistent: a key held by a session that is not
    // in the snapshot. Restore must refuse it.
    let mut orphan = fixture.clone();
    orphan.sessions.by_id.remove(&FIXTURE_SESSION);
    write(
        "snapshot_restore",
        "bad-orphan-lock.bin".into(),
        &orphan.snapshot(),
    );
    write_rpc_frame_seeds(write);
    let mut effects = Effects::default();
    let mut destroyed = fixture;
    let destroy = Command::SessionDestroy {
        id: FIXTURE_SESSION,
    };
    destroyed.apply(destroyed.last_applied + 1, &destroy, &mut effects);
    write(
        "snapshot_restore",
        "valid-session-destroyed.bin".into(),
        &destroyed.snapshot(),
    );
}

#[test]
fn coord_holders_corpus() {
    replay("coord_holders", fuzzing::coord_holders);
}

#[test]
fn config_parser_corpus() {
    replay("config_parser", fuzzing::config_parser);
}

/// `*.hcl` seeds are read as HCL, `*.json` as JSON; a seed is accepted when
/// it parses and every service and check definition in it decodes.
#[test]
fn config_seeds_load_as_named() {
    check_seed_names("config_parser", |name, data| {
        let parsed = if name.ends_with(".hcl") {
            std::str::from_utf8(data)
                .ok()
                .and_then(|text| tribune_core::hcl::parse(text).ok())
        } else {
            serde_json::from_slice::<serde_json::Value>(data).ok()
        };
        let Some(config) = parsed else {
            return false;
        };
        let (services, checks) = fuzzing::config_definitions(&config);
        services
            .into_iter()
            .all(|s| decode_agent_service_value(s).is_ok())
            && checks.into_iter().all(|c| decode_check_value(c).is_ok())
    });
}

/// Seeds of `rpc_frame`: one frame of each kind (bodies are opaque to the
/// framing, except a forwarded command), two frames back to back, and each
/// way a header can be wrong.
fn write_rpc_frame_seeds(write: fn(&str, String, &[u8])) {
    let frame = |kind: FrameKind, id: u64, body: &[u8]| {
        let mut out = Vec::new();
        rpc_frame::encode(kind, id, body, &mut out).expect("small body");
        out
    };
    let set = Command::Kv(kv(KvVerb::Set, "redis/config/conn", b"10.0.0.5:6379")).encode();
    let forward = frame(FrameKind::Forward, 1, &set);
    write("rpc_frame", "valid-forward-kv-set.bin".into(), &forward);
    write(
        "rpc_frame",
        "valid-vote-opaque-body.bin".into(),
        &frame(FrameKind::Vote, 2, b"\x01\x02\x03"),
    );
    write(
        "rpc_frame",
        "valid-error-reply.bin".into(),
        &frame(FrameKind::Error, u64::MAX, b"no leader"),
    );
    let two = [
        frame(FrameKind::AppendEntries, 3, b""),
        frame(FrameKind::Reply, 3, b"ok"),
    ]
    .concat();
    write("rpc_frame", "valid-two-frames.bin".into(), &two);
    write("rpc_frame", "bad-empty.bin".into(), b"");
    write(
        "rpc_frame",
        "bad-truncated-header.bin".into(),
        &forward[..9],
    );
    write(
        "rpc_frame",
        "bad-truncated-body.bin".into(),
        &forward[..forward.len() - 1],
    );
    let mut bad = forward.clone();
    bad[0] = b'G';
    write(
        "rpc_frame",
        "bad-magic-http.bin".into(),
        b"GET / HTTP/1.1\r\n\r\n",
    );
    write("rpc_frame", "bad-magic.bin".into(), &bad);
    let mut bad = forward.clone();
    bad[2] = 2;
    write("rpc_frame", "bad-version.bin".into(), &bad);
    let mut bad = forward.clone();
    bad[3] = 0x7f;
    write("rpc_frame", "bad-kind.bin".into(), &bad);
    let mut bad = forward;
    bad[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    write("rpc_frame", "bad-oversize.bin".into(), &bad);
}

// ---------------------------------------------------------------- user events

#[test]
fn user_event_corpus() {
    replay("user_event", fuzzing::user_event);
    check_seed_names("user_event", |_, data| {
        tribune_core::event_wire::decode_user_event(data, 0).is_ok()
    });
}

/// Seeds of `user_event`: Consul's encoding (WriteExt: str8 ID, bin
/// payload, sorted keys) as tribune writes it, the older raw encoding a
/// Go reader also takes, and the ways a payload is refused.
#[test]
#[ignore = "writes into fuzz/corpus; run with --ignored to regenerate the seeds"]
fn write_user_event_seeds() {
    use tribune_core::event::UserEvent;
    use tribune_core::event_wire::encode_user_event;
    fn write(name: &str, data: &[u8]) {
        let dir = corpus_dir("user_event");
        fs::create_dir_all(&dir).expect("corpus dir");
        fs::write(dir.join(name), data).expect("seed written");
    }
    let id = "b54fe110-7af5-cafc-d1fb-afc8ba432b1c";
    let deploy = UserEvent {
        id: id.parse().expect("uuid"),
        name: "deploy".into(),
        payload: b"v1.2".to_vec(),
        node_filter: String::new(),
        service_filter: String::new(),
        tag_filter: String::new(),
        version: 1,
        ltime: 0,
    };
    let filtered = UserEvent {
        node_filter: "^s[12]$".into(),
        service_filter: "web".into(),
        tag_filter: "v1|primary".into(),
        payload: vec![0xab; 300],
        ..deploy.clone()
    };
    let bare = UserEvent {
        payload: Vec::new(),
        ..deploy.clone()
    };
    write("valid-deploy.bin", &encode_user_event(&deploy));
    write("valid-all-filters.bin", &encode_user_event(&filtered));
    write("valid-bare.bin", &encode_user_event(&bare));
    let exec = UserEvent {
        name: "_rexec".into(),
        ..deploy.clone()
    };
    write("valid-remote-exec.bin", &encode_user_event(&exec));
    let bad_regex = UserEvent {
        node_filter: "(".into(),
        service_filter: "a{1000}{1000}".into(),
        ..deploy.clone()
    };
    write("valid-bad-filters.bin", &encode_user_event(&bad_regex));
    let mut raw = vec![0x84];
    raw.extend(b"\xa2ID\xda\x00\x24");
    raw.extend(id.as_bytes());
    raw.extend(b"\xa1n\xa3old\xa1p\xa2hi\xa1v\xd1\x00\x02");
    write("valid-raw-encoding.bin", &raw);
    let good = encode_user_event(&deploy);
    write("bad-empty.bin", b"");
    write("bad-nil.bin", b"\xc0");
    write("bad-array.bin", b"\x92\x01\x02");
    write("bad-truncated.bin", &good[..good.len() - 1]);
    write("bad-id-not-uuid.bin", b"\x82\xa2ID\xa3abc\xa1n\xa1x");
    let mut version_string = good.clone();
    let last = version_string.len() - 1;
    version_string[last] = 0xa1;
    version_string.push(b'1');
    write("bad-version-string.bin", &version_string);
}

// ---------------------------------------------------------------- gossip

mod gossip_seeds {
    use super::*;
    use tribune_core::gossip::codec::{
        compress_payload, decode_packet_with, encode_compound, encode_message, encode_packet,
        label_header, Inbound, Outbound,
    };
    use tribune_core::gossip::crypto::Keyring;
    use tribune_core::gossip::message::{
        Ack, Alive, ErrResp, Message, NodeState, Ping, PushNodeState, PushPull,
    };
    use tribune_core::gossip::serf::{encode_serf, encode_tags, Join, SerfMessage};
    use tribune_core::gossip::stream::{
        encode_stream, encode_stream_plain, stream_need, StreamNeed,
    };
    use tribune_core::rng::Rng;

    fn inbounds(ring: &Keyring) -> [Inbound<'_>; 2] {
        [Inbound::new("", None), Inbound::new("", Some(ring))]
    }

    /// A packet is accepted when a pool (with or without the fuzz key)
    /// reads every part of it.
    fn packet_accepted(data: &[u8]) -> bool {
        let ring = fuzzing::gossip_keyring();
        inbounds(&ring).iter().any(|inbound| {
            decode_packet_with(data, inbound)
                .is_ok_and(|p| p.part_errors.is_empty() && p.truncated_parts == 0)
        })
    }

    fn stream_accepted(data: &[u8]) -> bool {
        let ring = fuzzing::gossip_keyring();
        inbounds(&ring)
            .iter()
            .any(|inbound| matches!(stream_need(data, inbound), Ok(StreamNeed::Complete(_))))
    }

    #[test]
    fn gossip_packet_corpus() {
        replay("gossip_packet", fuzzing::gossip_packet);
        check_seed_names("gossip_packet", |_, data| packet_accepted(data));
    }

    #[test]
    fn gossip_stream_corpus() {
        replay("gossip_stream", fuzzing::gossip_stream);
        check_seed_names("gossip_stream", |_, data| stream_accepted(data));
    }

    /// Every plaintext packet two real serf 0.9.4 agents exchanged
    /// re-encodes to the same bytes: the same message framing, msgpack,
    /// LZW (compression kept only when it shrinks the packet) and CRC.
    #[test]
    fn real_serf_packets_reencode_byte_identical() {
        let mut checked = 0;
        for (name, data) in corpus("gossip_packet") {
            if !name.starts_with("valid-serf094-plain-") {
                continue;
            }
            let packet = decode_packet_with(&data, &Inbound::new("", None)).unwrap();
            let crc = data[0] == 12;
            let out = Outbound {
                crc,
                ..Outbound::new("", None)
            };
            let again = encode_packet(&packet.messages, &out, &mut Rng::from_seed(0)).unwrap();
            assert_eq!(again, data, "{name} re-encodes differently");
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} captured packets");
    }

    fn ping() -> Message {
        Message::Ping(Ping {
            seq_no: 1,
            node: "a".into(),
            ..Ping::default()
        })
    }

    fn push_pull() -> Message {
        let tags = std::collections::BTreeMap::from([("role".to_owned(), "web".to_owned())]);
        Message::PushPull(PushPull {
            join: true,
            nodes: vec![PushNodeState {
                name: "a".into(),
                addr: vec![127, 0, 0, 1],
                port: 7946,
                meta: encode_tags(&tags).unwrap(),
                incarnation: 1,
                state: NodeState::Alive,
                vsn: [1, 5, 2, 2, 5, 4],
            }],
            user_state: encode_serf(&SerfMessage::Join(Join {
                ltime: 1,
                node: "a".into(),
            })),
        })
    }

    /// Writes the synthetic gossip seeds (the `valid-serf094-*` ones are
    /// real captures and are not rewritten).
    #[test]
    #[ignore = "writes into fuzz/corpus; run with --ignored to regenerate the seeds"]
    fn write_gossip_seeds() {
        fn write(target: &str, name: &str, data: &[u8]) {
            let dir = corpus_dir(target);
            fs::create_dir_all(&dir).expect("corpus dir");
            fs::write(dir.join(name), data).expect("seed written");
        }
        let ring = fuzzing::gossip_keyring();
        let other = Keyring::new(vec![7; 16]).unwrap();
        let mut rng = Rng::from_seed(1);
        let alive = Message::Alive(Alive {
            incarnation: 1,
            node: "a".into(),
            addr: vec![127, 0, 0, 1],
            port: 7946,
            meta: vec![255, 0x80],
            vsn: [1, 5, 2, 2, 5, 4],
        });
        let ack = Message::Ack(Ack {
            seq_no: 1,
            payload: vec![],
        });
        let user = Message::User(encode_serf(&SerfMessage::Join(Join {
            ltime: 2,
            node: "b".into(),
        })));
        let p = "gossip_packet";
        write(p, "valid-ping.bin", &encode_message(&ping()));
        let compound = encode_compound(&[
            encode_message(&ping()),
            encode_message(&alive),
            encode_message(&ack),
            encode_message(&user),
        ])
        .unwrap();
        write(p, "valid-compound.bin", &compound);
        write(
            p,
            "valid-compressed-compound.bin",
            &compress_payload(&compound),
        );
        let all = [ping(), alive.clone(), ack, user];
        let crc = Outbound {
            compress: false,
            ..Outbound::new("", None)
        };
        write(
            p,
            "valid-crc.bin",
            &encode_packet(&all, &crc, &mut rng).unwrap(),
        );
        let sealed = Outbound::new("", Some(&ring));
        write(
            p,
            "valid-encrypted.bin",
            &encode_packet(&all, &sealed, &mut rng).unwrap(),
        );
        write(p, "bad-empty.bin", b"");
        write(p, "bad-unknown-type.bin", &[0x63, 0x80]);
        let mut bad_crc = encode_packet(&all, &crc, &mut rng).unwrap();
        *bad_crc.last_mut().unwrap() ^= 1;
        write(p, "bad-crc.bin", &bad_crc);
        let mut labelled = label_header("dc9").unwrap();
        labelled.extend(encode_message(&ping()));
        write(p, "bad-label-mismatch.bin", &labelled);
        write(p, "bad-empty-label.bin", &[244, 0, 0]);
        write(p, "bad-truncated-compound-header.bin", &[7, 3, 0, 1]);
        write(
            p,
            "bad-push-pull-in-packet.bin",
            &encode_message(&push_pull()),
        );
        let wrong_key = Outbound::new("", Some(&other));
        write(
            p,
            "bad-wrong-key.bin",
            &encode_packet(&[ping()], &wrong_key, &mut rng).unwrap(),
        );
        let mut lzw_cut = compress_payload(&compound);
        lzw_cut.truncate(lzw_cut.len() - 3);
        write(p, "bad-compressed-truncated.bin", &lzw_cut);

        let s = "gossip_stream";
        let pp = push_pull();
        write(s, "valid-push-pull.bin", &encode_stream_plain(&pp).unwrap());
        write(
            s,
            "valid-push-pull-compressed.bin",
            &encode_stream(&pp, &Outbound::new("", None), &mut rng).unwrap(),
        );
        write(
            s,
            "valid-push-pull-encrypted.bin",
            &encode_stream(&pp, &Outbound::new("", Some(&ring)), &mut rng).unwrap(),
        );
        write(s, "valid-ping.bin", &encode_stream_plain(&ping()).unwrap());
        write(
            s,
            "valid-user.bin",
            &encode_stream_plain(&Message::User(b"\x03payload".to_vec())).unwrap(),
        );
        write(
            s,
            "valid-err.bin",
            &encode_stream_plain(&Message::Err(ErrResp {
                error: "remote state is encrypted and encryption is not configured".into(),
            }))
            .unwrap(),
        );
        write(s, "bad-empty.bin", b"");
        write(s, "bad-alive-on-stream.bin", &encode_message(&alive));
        let full = encode_stream_plain(&pp).unwrap();
        write(s, "bad-truncated-push-pull.bin", &full[..full.len() - 1]);
        let mut huge = vec![8, 0x81];
        huge.extend(b"\xaaUserMsgLen\xce\x01\xe0\x00\x00");
        write(s, "bad-oversized-user.bin", &huge);
        write(
            s,
            "bad-wrong-key.bin",
            &encode_stream(&pp, &Outbound::new("", Some(&other)), &mut rng).unwrap(),
        );
        write(
            s,
            "bad-huge-encrypted-length.bin",
            &[10, 0xff, 0xff, 0xff, 0xff],
        );
    }
}
