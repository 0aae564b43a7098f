//! A server whose disk fills up (a real tmpfs mounted by the test, so it
//! needs root, as CI has): writes are refused with a clear error before
//! they reach the Raft log, nothing is half-applied, the server keeps
//! leading and serving reads, writes resume once space is freed, and
//! everything acknowledged survives a restart.

mod support;

use std::path::PathBuf;
use std::process::Command;
use support::cluster::Cluster;

/// A tmpfs mounted for the test; unmounted on drop (after the cluster,
/// which is declared later and so dropped first).
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: PathBuf, size: &str) -> Mount {
        std::fs::create_dir_all(&dir).expect("create the mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs at {} failed: this test needs root",
            dir.display()
        );
        Mount(dir)
    }

    fn free_bytes(&self) -> u64 {
        let stats = nix::sys::statvfs::statvfs(&self.0).expect("statvfs");
        stats.blocks_available() * stats.fragment_size()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

const MIB: u64 = 1024 * 1024;

#[test]
fn a_full_disk_refuses_writes_keeps_serving_and_recovers() {
    let mount = Mount::tmpfs(
        std::env::temp_dir().join(format!("tribune-disk-full-{}", std::process::id())),
        "160m",
    );
    let mut cluster = Cluster::start_in(mount.0.join("cluster"), 1, &[]);
    let client = cluster.servers[cluster.leader()].client.clone();
    for i in 0..20 {
        let resp = client.put(&format!("/v1/kv/before/{i}"), format!("v{i}"));
        assert_eq!(resp.text(), "true", "{}", resp.status);
    }

    // Leave 32 MiB free: less than the 64 MiB reserve.
    let filler = mount.0.join("filler");
    let fill = mount.free_bytes().saturating_sub(32 * MIB);
    std::fs::write(&filler, vec![0u8; fill as usize]).expect("write the filler file");
    let refused = client.put("/v1/kv/refused", "x");
    assert_eq!(refused.status, 500, "{}", refused.text());
    let why = refused.text();
    assert!(why.starts_with("disk full: "), "{why}");
    assert!(why.contains("MiB free under "), "{why}");

    // Nothing was half-applied, and the server still leads and serves.
    assert_eq!(client.get("/v1/kv/refused").status, 404);
    assert_eq!(
        client
            .get("/v1/kv/before/7?raw&consistent")
            .expect(200)
            .text(),
        "v7"
    );
    let leader = client.get("/v1/status/leader").expect(200).json();
    assert_ne!(leader, "", "the server stopped leading");

    // Space is freed: writes are accepted again.
    std::fs::remove_file(&filler).expect("remove the filler file");
    assert_eq!(client.put("/v1/kv/after", "yes").expect(200).text(), "true");

    // Every acknowledged write survives a restart; the refused one does not
    // appear.
    cluster.servers[0].kill();
    cluster.servers[0].restart();
    let client = cluster.servers[cluster.leader()].client.clone();
    for (key, value) in [("before/0", "v0"), ("before/19", "v19"), ("after", "yes")] {
        let got = client.get(&format!("/v1/kv/{key}?raw&consistent"));
        assert_eq!(got.expect(200).text(), value, "{key}");
    }
    assert_eq!(client.get("/v1/kv/refused").status, 404);
    drop(cluster);
}
