//! Admission control for a filling disk: the leader refuses a write before
//! proposing it when the file system under `data-dir/raft` has less free
//! space than a reserve plus what the next snapshot needs.
//!
//! Why: a Raft log append that fails (ENOSPC) is a fatal storage error for
//! openraft, which then shuts the server's Raft down until a restart. A
//! refused proposal costs nothing: the client gets an error naming the
//! directory and the space, nothing is half-applied, the server keeps
//! leading, reads keep working, and writes resume once space is freed. The
//! reserve leaves room for what Raft writes on its own (no-op entries,
//! membership changes, session invalidations) and for the next snapshot,
//! which is written beside the previous one before that one is deleted.
//!
//! What it cannot prevent: another process filling the disk between the
//! check and the append, or a follower whose disk is fuller than the
//! leader's; those still end in a fatal storage error on that server.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Free space kept for Raft's own entries and one largest command (a KV
/// value is at most 512 KiB; a transaction at most 64 operations).
pub const DISK_RESERVE_BYTES: u64 = 64 * 1024 * 1024;

/// How long a measured snapshot size is reused.
const SNAPSHOT_SIZE_TTL: Duration = Duration::from_secs(1);

/// Watches the file system a server's Raft state lives on.
pub struct DiskSpace {
    raft_dir: PathBuf,
    snapshot_dir: PathBuf,
    reserve: u64,
    /// The newest snapshot's size and when it was measured.
    snapshot_size: Mutex<Option<(Instant, u64)>>,
}

impl DiskSpace {
    pub fn new(raft_dir: &Path, snapshot_dir: &Path) -> DiskSpace {
        DiskSpace {
            raft_dir: raft_dir.to_path_buf(),
            snapshot_dir: snapshot_dir.to_path_buf(),
            reserve: DISK_RESERVE_BYTES,
            snapshot_size: Mutex::new(None),
        }
    }

    /// `Err` with a message for the client when a write must be refused.
    /// A file system that cannot be measured does not refuse writes.
    pub fn check(&self) -> Result<(), String> {
        let Ok(stats) = nix::sys::statvfs::statvfs(&self.raft_dir) else {
            return Ok(());
        };
        let free = stats
            .blocks_available()
            .saturating_mul(stats.fragment_size());
        let needed = self.reserve.saturating_add(self.snapshot_size());
        match free >= needed {
            true => Ok(()),
            false => Err(format!(
                "disk full: {} MiB free under {}, writes need {} MiB (a reserve for Raft's \
                 own entries and the next snapshot); free space to accept writes again",
                free / (1024 * 1024),
                self.raft_dir.display(),
                needed.div_ceil(1024 * 1024)
            )),
        }
    }

    /// The size of the largest file in the snapshot directory (the newest
    /// snapshot; a leftover temporary file only makes the estimate safer).
    fn snapshot_size(&self) -> u64 {
        let mut cached = self
            .snapshot_size
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, size)) = *cached {
            if at.elapsed() < SNAPSHOT_SIZE_TTL {
                return size;
            }
        }
        let size = std::fs::read_dir(&self.snapshot_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|entry| entry.metadata().ok())
                    .filter(|meta| meta.is_file())
                    .map(|meta| meta.len())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        *cached = Some((Instant::now(), size));
        size
    }
}

#[cfg(test)]
mod tests {
    use super::DiskSpace;

    #[test]
    fn refuses_when_the_reserve_does_not_fit_and_names_the_directory() {
        let dir = std::env::temp_dir().join(format!("tribune-disk-space-{}", std::process::id()));
        let snapshots = dir.join("snapshots");
        std::fs::create_dir_all(&snapshots).expect("create dirs");
        let mut disk = DiskSpace::new(&dir, &snapshots);
        assert_eq!(disk.check(), Ok(()), "a small reserve fits on /tmp");
        disk.reserve = u64::MAX / 2;
        let refused = disk.check().expect_err("no file system has that much free");
        assert!(refused.starts_with("disk full: "), "{refused}");
        assert!(refused.contains(&dir.display().to_string()), "{refused}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
