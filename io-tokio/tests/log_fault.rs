//! A server whose Raft stops on a storage fault exits, so that its
//! service manager restarts it (Consul's servers stop the same way): here
//! a record of the leader's WAL is damaged on disk, a second server joins,
//! the leader reads the damaged record to replicate its log, the checksum
//! catches it, openraft stops, and the agent exits with status 1 naming
//! the fault. Started again, it refuses to start, since the damage is on
//! disk, and says which file and where.

mod support;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;
use support::cluster::{try_put, Cluster};
use support::wait_for;
use tribune_core::wal::{parse_segment_file_name, scan_segment, RECORD_HEADER_BYTES};

/// Flips one payload byte of WAL record `index` under `wal_dir`.
fn damage_record(wal_dir: &Path, index: u64) {
    for entry in std::fs::read_dir(wal_dir).expect("wal dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(first) = parse_segment_file_name(name) else {
            continue;
        };
        let bytes = std::fs::read(&path).expect("read segment");
        let scan = scan_segment(&bytes, first);
        let Some(slot) = scan.records.iter().find(|slot| slot.index == index) else {
            continue;
        };
        let at = slot.offset + RECORD_HEADER_BYTES as u64 + 1;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open segment");
        file.write_all_at(&[bytes[at as usize] ^ 0x40], at)
            .expect("damage the record");
        file.sync_all().expect("sync");
        return;
    }
    panic!("no WAL record {index} under {}", wal_dir.display());
}

#[test]
fn a_leader_exits_when_a_log_record_fails_its_checksum() {
    let mut cluster = Cluster::start(1, &[]);
    let leader = cluster.leader();
    for i in 0..20 {
        let put = try_put(&cluster.servers[leader].client, &format!("k{i}"), "v");
        assert!(put.is_some_and(|r| r.status == 200), "write {i}");
    }
    let wal_dir = cluster.servers[leader].data_dir.join("raft").join("wal");
    damage_record(&wal_dir, 5);
    // The joining server starts empty: the leader replicates its whole log
    // to it, reading every record from disk.
    cluster.add_server();
    wait_for(Duration::from_secs(30), "the leader to exit", || {
        cluster.servers[leader].exited().then_some(())
    });
    let log = cluster.servers[leader].log_contents();
    assert_eq!(cluster.servers[leader].exit_code(), Some(1), "{log}");
    assert!(log.contains("raft: stopped on a fault"), "{log}");
    assert!(log.contains("no longer decodes"), "{log}");
    // Started again, it finds the damage while recovering and stops.
    cluster.servers[leader].restart();
    wait_for(
        Duration::from_secs(30),
        "the restarted leader to stop",
        || cluster.servers[leader].exited().then_some(()),
    );
    let log = cluster.servers[leader].log_contents();
    assert_eq!(cluster.servers[leader].exit_code(), Some(1), "{log}");
    assert!(log.contains("is corrupt"), "{log}");
}
