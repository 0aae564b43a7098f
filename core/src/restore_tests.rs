use super::*;
use crate::command::{ApplyError, CommandResult, KvOp, KvVerb};
use crate::fsm::{Effects, SnapshotError};
use crate::fuzzing::{fixture, FIXTURE_SESSION};
use crate::limits::RESTORE_CHUNK_BYTES_MAX;
use crate::session::{Behavior, Session};
use crate::snapshot_archive::{encode, ArchiveMeta};
use crate::time::Duration;

fn meta(fsm: &Fsm) -> ArchiveMeta {
    ArchiveMeta {
        index: fsm.last_applied,
        term: 1,
        created_unix_ms: 1_700_000_000_000,
        datacenter: "dc1".into(),
        node: "node1".into(),
        tool_version: "test".into(),
    }
}

fn archive_of(fsm: &Fsm) -> Vec<u8> {
    encode(&meta(fsm), &fsm.snapshot())
}

fn set(key: &str, value: &[u8]) -> Command {
    Command::Kv(KvOp {
        value: value.to_vec(),
        ..KvOp::new(KvVerb::Set, key)
    })
}

/// Applies `command` at the next log index.
fn apply(fsm: &mut Fsm, command: &Command) -> (CommandResult, Effects) {
    let mut effects = Effects::default();
    let result = fsm.apply(fsm.last_applied + 1, command, &mut effects);
    fsm.check_invariants();
    (result, effects)
}

fn apply_all(fsm: &mut Fsm, commands: impl IntoIterator<Item = Command>) {
    for command in commands {
        let (result, _) = apply(fsm, &command);
        assert_eq!(result, CommandResult::Done, "{command}");
    }
}

/// The fuzzing fixture (a node, a service with a check, a session holding
/// a lock, a tombstone) plus values large enough for several chunks.
fn source() -> Fsm {
    let (mut fsm, _) = fixture();
    for i in 0..5 {
        let value = vec![b'a' + i as u8; 300 * 1024];
        apply(&mut fsm, &set(&format!("big/{i}"), &value));
    }
    fsm
}

/// Another store with history: its own node, session, lock and keys, and
/// more entries than the source, so the restore goes back in indexes.
fn target() -> Fsm {
    let mut fsm = Fsm::default();
    let reg = crate::api::body::decode_catalog_register(
        br#"{"Node":"old-node","Address":"10.0.0.9","Check":{"CheckID":"serfHealth","Name":"Serf","Status":"passing"}}"#,
        "dc1",
    )
    .expect("registration decodes");
    apply(&mut fsm, &Command::Register(Box::new(reg)));
    let session = Session {
        id: crate::ids::Uuid::new(0x01d),
        name: "old".into(),
        node: "old-node".into(),
        node_checks: vec!["serfHealth".into()],
        service_checks: Vec::new(),
        lock_delay: Duration::ZERO,
        behavior: Behavior::Release,
        ttl: Duration::from_secs(30),
        create_index: 0,
        modify_index: 0,
    };
    apply(&mut fsm, &Command::SessionCreate(Box::new(session)));
    let mut lock = KvOp::new(KvVerb::Lock, "old/lock");
    lock.session = Some(crate::ids::Uuid::new(0x01d));
    apply(&mut fsm, &Command::Kv(lock));
    for i in 0..40 {
        apply(&mut fsm, &set(&format!("old/{i}"), b"x"));
    }
    fsm
}

/// The store a one-shot restore of `archive` gives.
fn one_shot(archive: &[u8]) -> Fsm {
    snapshot_archive::restore(archive)
        .expect("archive restores")
        .1
}

/// The parts of two stores a client can see.
fn same_contents(a: &Fsm, b: &Fsm) {
    assert_eq!(a.kv, b.kv);
    assert_eq!(a.catalog, b.catalog);
    assert_eq!(a.sessions, b.sessions);
    assert_eq!(a.indexes, b.indexes);
}

#[test]
fn restore_in_pieces_equals_one_shot_and_replaces_everything() {
    let source = source();
    let archive = archive_of(&source);
    let commands: Vec<Command> = commands(7, &archive).collect();
    assert!(
        commands.len() >= 2 + 3,
        "several chunks: {}",
        commands.len()
    );
    assert!(commands
        .iter()
        .all(|c| c.encode().len() <= crate::limits::COMMAND_BYTES_MAX));
    let mut fsm = target();
    let (last, staged) = commands.split_last().expect("commit");
    for command in staged {
        let before = fsm.clone();
        let (result, effects) = apply(&mut fsm, command);
        assert_eq!(result, CommandResult::Done);
        assert!(!effects.store_replaced);
        assert!(effects.touched.is_empty(), "staging touches no table");
        same_contents(&fsm, &before);
    }
    let commit_index = fsm.last_applied + 1;
    let (result, effects) = apply(&mut fsm, last);
    assert_eq!(result, CommandResult::Done);
    assert!(effects.store_replaced);
    same_contents(&fsm, &one_shot(&archive));
    same_contents(&fsm, &source);
    assert_eq!(fsm.last_applied, commit_index);
    assert_eq!(fsm.restore, None);
    // The target's node, session and lock are gone; the source's are there.
    assert!(!fsm.catalog.nodes.contains_key("old-node"));
    assert!(fsm.kv.get("old/lock").is_none() && fsm.kv.get("old/0").is_none());
    assert!(fsm.sessions.get(crate::ids::Uuid::new(0x01d)).is_none());
    assert!(fsm
        .kv
        .get("locks/leader")
        .is_some_and(|e| e.session == Some(FIXTURE_SESSION)));
    assert_eq!(fsm.kv.get("big/4").map(|e| e.value.len()), Some(300 * 1024));
}

#[test]
fn a_raft_snapshot_between_any_two_commands_finishes_the_same() {
    let archive = archive_of(&source());
    let commands: Vec<Command> = commands(9, &archive).collect();
    let mut whole = target();
    apply_all(&mut whole, commands.clone());
    for split in 1..commands.len() {
        let mut leader = target();
        apply_all(&mut leader, commands[..split].iter().cloned());
        let snapshot = leader.snapshot();
        assert_eq!(
            snapshot[0],
            crate::fsm::SNAPSHOT_VERSION,
            "staging is written"
        );
        // A follower that installs the snapshot, then gets the rest.
        let mut follower = Fsm::restore(&snapshot).expect("a mid-restore snapshot restores");
        assert_eq!(follower, leader);
        apply_all(&mut follower, commands[split..].iter().cloned());
        apply_all(&mut leader, commands[split..].iter().cloned());
        assert_eq!(follower, leader, "split at {split}");
        assert_eq!(follower, whole, "split at {split}");
    }
}

/// Applies `commands`, expecting the last to fail with `want` and the
/// store to be as before.
fn refused(commands: Vec<Command>, want: impl Fn(&RestoreError) -> bool) {
    let mut fsm = target();
    let before = fsm.clone();
    let (last, first) = commands.split_last().expect("a command");
    for command in first {
        apply(&mut fsm, command);
    }
    let (result, effects) = apply(&mut fsm, last);
    match &result {
        CommandResult::Failed(ApplyError::Restore(e)) => assert!(want(e), "{e:?}"),
        other => panic!("{last} answered {other:?}"),
    }
    assert!(!effects.store_replaced);
    same_contents(&fsm, &before);
    assert_eq!(fsm.index_offset, before.index_offset);
    // Writes go on as before.
    let (result, _) = apply(&mut fsm, &set("after", b"1"));
    assert_eq!(result, CommandResult::Bool(true));
    assert_eq!(
        fsm.kv.get("after").map(|e| e.modify_index),
        Some(fsm.last_applied)
    );
}

#[test]
fn bad_restores_are_refused_and_change_nothing() {
    let archive = archive_of(&source());
    let good: Vec<Command> = commands(3, &archive).collect();
    let n = good.len();

    // The announced checksum does not match the bytes.
    let mut bad = good.clone();
    if let Command::RestoreBegin { checksum, .. } = &mut bad[0] {
        *checksum ^= 1;
    }
    refused(bad, |e| matches!(e, RestoreError::Checksum { .. }));

    // A chunk's byte flipped on the way (the begin's checksum catches it).
    let mut bad = good.clone();
    if let Command::RestoreChunk { data, .. } = &mut bad[2] {
        data[10] ^= 0x40;
    }
    refused(bad, |e| matches!(e, RestoreError::Checksum { .. }));

    // Committed before the last chunk.
    let mut short = good.clone();
    short.remove(n - 2);
    refused(short, |e| matches!(e, RestoreError::Incomplete { .. }));

    // Intact bytes that are not an archive, and an archive whose store is
    // inconsistent (a key held by a session it lacks).
    let garbage = b"TRIBSNAP but not really".to_vec();
    refused(commands(4, &garbage).collect(), |e| {
        matches!(e, RestoreError::Archive(_))
    });
    let mut orphan = source();
    orphan.sessions.by_id.remove(&FIXTURE_SESSION);
    refused(commands(5, &archive_of(&orphan)).collect(), |e| {
        matches!(
            e,
            RestoreError::Archive(snapshot_archive::ArchiveError::State(
                SnapshotError::Inconsistent(_)
            ))
        )
    });

    // Chunks out of order, past the end, too large, of another restore.
    let mut swapped = good.clone();
    swapped.swap(1, 2);
    swapped.truncate(2);
    refused(swapped, |e| matches!(e, RestoreError::OutOfOrder { .. }));
    let mut overrun = good[..n - 1].to_vec();
    overrun.push(Command::RestoreChunk {
        id: 3,
        offset: archive.len() as u64,
        data: vec![0],
    });
    refused(overrun, |e| matches!(e, RestoreError::Overrun { .. }));
    let huge = Command::RestoreChunk {
        id: 3,
        offset: 0,
        data: vec![0; RESTORE_CHUNK_BYTES_MAX + 1],
    };
    refused(vec![good[0].clone(), huge], |e| {
        matches!(e, RestoreError::ChunkTooLarge { .. })
    });
    let stranger = Command::RestoreChunk {
        id: 99,
        offset: 0,
        data: vec![0],
    };
    refused(vec![good[0].clone(), stranger], |e| {
        *e == RestoreError::NotStaged { id: 99 }
    });
    refused(vec![Command::RestoreCommit { id: 3 }], |e| {
        *e == RestoreError::NotStaged { id: 3 }
    });
    // An aborted restore cannot be committed.
    let mut aborted = good[..n - 1].to_vec();
    aborted.push(Command::RestoreAbort { id: 3 });
    aborted.push(Command::RestoreCommit { id: 3 });
    refused(aborted, |e| *e == RestoreError::NotStaged { id: 3 });
    let too_large = Command::RestoreBegin {
        id: 1,
        total_len: crate::limits::RESTORE_ARCHIVE_BYTES_MAX as u64 + 1,
        checksum: 0,
    };
    refused(vec![too_large], |e| {
        matches!(e, RestoreError::TooLarge { .. })
    });
}

#[test]
fn a_new_begin_abandons_the_unfinished_restore() {
    let archive = archive_of(&source());
    let first: Vec<Command> = commands(1, &archive).collect();
    let second: Vec<Command> = commands(2, &archive).collect();
    let mut fsm = target();
    apply_all(&mut fsm, first[..2].iter().cloned());
    apply_all(&mut fsm, second[..2].iter().cloned());
    assert_eq!(fsm.restore.as_ref().map(|s| s.id), Some(2));
    // The first restore's next chunk and its commit find nothing staged,
    // and do not disturb the second.
    let (result, _) = apply(&mut fsm, &first[2]);
    assert_eq!(
        result,
        CommandResult::Failed(ApplyError::Restore(RestoreError::NotStaged { id: 1 }))
    );
    let (result, _) = apply(&mut fsm, first.last().expect("commit"));
    assert_eq!(
        result,
        CommandResult::Failed(ApplyError::Restore(RestoreError::NotStaged { id: 1 }))
    );
    assert_eq!(fsm.restore.as_ref().map(|s| s.id), Some(2));
    // Nor does its abort.
    let (result, _) = apply(&mut fsm, &Command::RestoreAbort { id: 1 });
    assert_eq!(
        result,
        CommandResult::Failed(ApplyError::Restore(RestoreError::NotStaged { id: 1 }))
    );
    assert_eq!(fsm.restore.as_ref().map(|s| s.id), Some(2));
    apply_all(&mut fsm, second[2..].iter().cloned());
    same_contents(&fsm, &one_shot(&archive));
}

#[test]
fn writes_after_a_restore_continue_above_every_index_seen() {
    // Going back: the restored store's indexes are below the commit's.
    let small = source();
    let mut fsm = target();
    for i in 0..100 {
        apply(&mut fsm, &set(&format!("churn/{i}"), b"x"));
    }
    apply_all(&mut fsm, commands(1, &archive_of(&small)));
    let commit = fsm.last_applied;
    assert!(small.store_index() < commit);
    assert_eq!(fsm.index_offset, 0);
    assert_eq!(fsm.indexes, small.indexes, "restored indexes are kept");
    apply(&mut fsm, &set("next", b"1"));
    assert_eq!(fsm.kv.get("next").map(|e| e.modify_index), Some(commit + 1));

    // Going forward: a store with a longer history than this log.
    let mut long = Fsm::default();
    let mut effects = Effects::default();
    long.apply(5_000, &set("far", b"ahead"), &mut effects);
    let mut fsm = Fsm::default();
    apply_all(&mut fsm, commands(2, &archive_of(&long)));
    assert_eq!(fsm.last_applied, 3, "begin, one chunk, commit");
    assert_eq!(fsm.store_index(), 5_000);
    assert_eq!(fsm.kv.get("far").map(|e| e.modify_index), Some(5_000));
    apply(&mut fsm, &set("next", b"1"));
    assert_eq!(fsm.last_applied, 4);
    assert_eq!(fsm.kv.get("next").map(|e| e.modify_index), Some(5_001));
    assert_eq!(fsm.indexes.kv, 5_001);
    // The offset is replicated state: it survives a snapshot.
    let back = Fsm::restore(&fsm.snapshot()).expect("restores");
    assert_eq!(back, fsm);

    // Back to a small store: later writes stay above 5,001 all the same.
    apply_all(&mut fsm, commands(3, &archive_of(&small)));
    assert_eq!(fsm.indexes, small.indexes);
    apply(&mut fsm, &set("later", b"1"));
    let later = fsm.kv.get("later").map_or(0, |e| e.modify_index);
    assert!(later > 5_001, "{later}");
    // An archive of a store that was itself restored keeps its offset.
    let mut again = Fsm::default();
    apply_all(&mut again, commands(4, &archive_of(&fsm)));
    apply(&mut again, &set("again", b"1"));
    assert!(again.kv.get("again").map_or(0, |e| e.modify_index) > later);
}

#[test]
fn snapshots_stay_version_1_until_a_restore_needs_more() {
    let (fixture, _) = fixture();
    let v1 = fixture.snapshot();
    assert_eq!(v1[0], 1);
    assert_eq!(Fsm::restore(&v1).as_ref(), Ok(&fixture));
    let mut with_trailing = v1.clone();
    with_trailing.push(0);
    assert_eq!(Fsm::restore(&with_trailing), Err(SnapshotError::Malformed));

    let mut staging = fixture.clone();
    apply(
        &mut staging,
        &Command::RestoreBegin {
            id: 1,
            total_len: 10,
            checksum: 0,
        },
    );
    let v2 = staging.snapshot();
    assert_eq!(v2[0], 2);
    assert_eq!(Fsm::restore(&v2).as_ref(), Ok(&staging));
    // Version 2 without its tail, or version 1 with one, is refused.
    let cut = &v2[..v1.len()];
    assert_eq!(Fsm::restore(cut), Err(SnapshotError::Malformed));
    let mut relabeled = v2.clone();
    relabeled[0] = 1;
    assert_eq!(Fsm::restore(&relabeled), Err(SnapshotError::Malformed));

    // Staged bytes past the announced length are damage.
    let mut overfull = staging.clone();
    if let Some(s) = &mut overfull.restore {
        s.bytes = vec![0; 11];
    }
    assert!(matches!(
        Fsm::restore(&overfull.snapshot()),
        Err(SnapshotError::Inconsistent(_))
    ));
    // So is a store index beyond what clients can read.
    let mut far = fixture;
    far.index_offset = crate::limits::STORE_INDEX_MAX;
    assert!(matches!(
        Fsm::restore(&far.snapshot()),
        Err(SnapshotError::Inconsistent(_))
    ));
}

#[test]
fn byte_strings_encode_as_postcard_encodes_a_list_of_bytes() {
    let data = vec![0, 1, 0x80, 0xff, 7];
    let chunk = Command::RestoreChunk {
        id: 1,
        offset: 2,
        data: data.clone(),
    };
    // The same fields with a plain Vec<u8>, as serde derives it.
    #[derive(serde::Serialize)]
    enum Plain {
        RestoreChunk { id: u64, offset: u64, data: Vec<u8> },
    }
    let tag = postcard::to_allocvec(&chunk).expect("encodes");
    let plain = postcard::to_allocvec(&Plain::RestoreChunk {
        id: 1,
        offset: 2,
        data,
    })
    .expect("encodes");
    // Only the variant index differs (the real enum has more variants).
    assert_eq!(tag[1..], plain[1..]);
    assert_eq!(Command::decode(&chunk.encode()), Ok(chunk));
}
