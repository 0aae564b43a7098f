//! The WAL's writer thread: group commit, truncation and purging.
//!
//! One thread owns every mutation of the segment files, so requests apply in
//! submission order and the layout only changes here. Appends queued while
//! the previous batch synced are gathered (up to `WAL_BATCH_BYTES_MAX` and
//! `WAL_BATCH_RECORDS_MAX`) into one batch: one `pwrite`, one `fdatasync`,
//! then every waiter of the batch is acknowledged. A truncation or purge ends
//! the gathering and runs on its own, after the batch before it.
//!
//! A thread rather than a tokio task: fdatasync blocks for milliseconds, and
//! the writer must not hold a runtime worker (the machine may have two).

use super::wal::{io_error, sync_dir, Done, Entry, Request, Shared, WalError};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::Instant;
use tribune_core::limits::{WAL_BATCH_BYTES_MAX, WAL_BATCH_RECORDS_MAX};
use tribune_core::wal::{encode_record, encoded_len, AppendPlan};

pub(super) fn spawn(
    shared: Arc<Shared>,
    queue: mpsc::Receiver<Request>,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("wal-writer".into())
        .spawn(move || {
            Writer {
                shared,
                active: None,
                buffer: Vec::new(),
            }
            .run(queue)
        })
}

struct Writer {
    shared: Arc<Shared>,
    /// The last segment, open for writing: (first index, file).
    active: Option<(u64, File)>,
    /// Encoded records of the batch being written (reused).
    buffer: Vec<u8>,
}

type Batch = Vec<(Vec<Entry>, Done)>;

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Request>) {
        let mut carried = None;
        loop {
            let request = match carried.take() {
                Some(request) => request,
                None => match queue.recv() {
                    Ok(request) => request,
                    Err(mpsc::RecvError) => return,
                },
            };
            match request {
                Request::Append { entries, done } => {
                    let batch = gather(&queue, (entries, done), &mut carried);
                    self.append(batch);
                }
                Request::Truncate { after, done } => {
                    let result = self.guarded(|writer| writer.truncate(after));
                    let _ = done.send(result);
                }
                Request::Purge { upto, done } => {
                    let result = self.guarded(|writer| writer.purge(upto));
                    let _ = done.send(result);
                }
            }
        }
    }

    /// Runs a file mutation unless poisoned; a failure poisons.
    fn guarded(
        &mut self,
        mutation: impl FnOnce(&mut Self) -> Result<(), WalError>,
    ) -> Result<(), WalError> {
        if let Some(error) = self.shared.poisoned() {
            return Err(error);
        }
        let result = mutation(self);
        if let Err(error) = &result {
            self.shared.poison(error);
            self.active = None;
        }
        result
    }

    fn append(&mut self, batch: Batch) {
        if let Some(error) = self.shared.poisoned() {
            for (_, done) in batch {
                let _ = done.send(Err(error.clone()));
            }
            return;
        }
        let (accepted, first_index) = self.accept_in_sequence(batch);
        let Some(first_index) = first_index else {
            // Only empty appends: durable by definition.
            for (_, done) in accepted {
                let _ = done.send(Ok(()));
            }
            return;
        };
        let plan = self
            .shared
            .layout()
            .plan_append(first_index)
            .expect("accept_in_sequence checked the sequence");
        self.buffer.clear();
        let mut lens = Vec::new();
        for entry in accepted.iter().flat_map(|(entries, _)| entries) {
            encode_record(&mut self.buffer, entry.index, first_index, &entry.payload);
            lens.push(encoded_len(entry.payload.len()) as u32);
        }
        let result = self.guarded(|writer| writer.write_batch(&plan));
        if result.is_ok() {
            self.shared.layout().commit_append(&plan, &lens);
            let counters = &self.shared.counters;
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters
                .records
                .fetch_add(lens.len() as u64, Ordering::Relaxed);
            counters
                .bytes
                .fetch_add(self.buffer.len() as u64, Ordering::Relaxed);
        }
        for (_, done) in accepted {
            let _ = done.send(result.clone());
        }
    }

    /// Answers appends that do not continue the log with an error; returns
    /// the rest and the index of the batch's first entry.
    fn accept_in_sequence(&self, batch: Batch) -> (Batch, Option<u64>) {
        let mut next = self.shared.layout().last_index().map(|last| last + 1);
        let mut first_index = None;
        let mut accepted = Vec::with_capacity(batch.len());
        for (entries, done) in batch {
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                accepted.push((entries, done));
                continue;
            };
            if let Some(expected) = next.filter(|&expected| expected != first.index) {
                let _ = done.send(Err(WalError::OutOfSequence {
                    expected,
                    found: first.index,
                }));
                continue;
            }
            first_index.get_or_insert(first.index);
            next = Some(last.index + 1);
            accepted.push((entries, done));
        }
        (accepted, first_index)
    }

    /// Writes the encoded batch where `plan` says and makes it durable.
    fn write_batch(&mut self, plan: &AppendPlan) -> Result<(), WalError> {
        if let Some(empty) = plan.delete_empty {
            self.remove_segment(empty)?;
        }
        let path = self.shared.segment_path(plan.segment);
        if plan.create {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| io_error("create", &path, e))?;
            if self.shared.preallocate {
                preallocate(&file, self.shared.layout().segment_bytes_target());
            }
            self.active = Some((plan.segment, file));
        } else if self.active.as_ref().map(|(segment, _)| *segment) != Some(plan.segment) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_error("open", &path, e))?;
            self.active = Some((plan.segment, file));
        }
        let (_, file) = self.active.as_ref().expect("active segment");
        file.write_all_at(&self.buffer, plan.offset)
            .map_err(|e| io_error("write", &path, e))?;
        let began = Instant::now();
        file.sync_data()
            .map_err(|e| io_error("fdatasync", &path, e))?;
        let micros = began.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        (self.shared.counters.fdatasync_micros).fetch_add(micros, Ordering::Relaxed);
        if plan.create || plan.delete_empty.is_some() {
            // The new file's name must be durable before its data is acknowledged.
            sync_dir(&self.shared.dir)?;
        }
        Ok(())
    }

    /// Deletes one segment file and syncs the directory, so deletions become
    /// durable in the order made (a crash never leaves a gap behind).
    fn remove_segment(&mut self, segment: u64) -> Result<(), WalError> {
        if self.active.as_ref().map(|(active, _)| *active) == Some(segment) {
            self.active = None;
        }
        let path = self.shared.segment_path(segment);
        fs::remove_file(&path).map_err(|e| io_error("delete", &path, e))?;
        sync_dir(&self.shared.dir)
    }

    fn truncate(&mut self, after: u64) -> Result<(), WalError> {
        let plan = self.shared.layout().plan_truncate(after);
        for &segment in &plan.delete {
            self.remove_segment(segment)?;
        }
        if let Some((segment, len)) = plan.cut {
            let path = self.shared.segment_path(segment);
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io_error("open", &path, e))?;
            file.set_len(len)
                .map_err(|e| io_error("truncate", &path, e))?;
            file.sync_all().map_err(|e| io_error("fsync", &path, e))?;
        }
        self.shared.layout().commit_truncate(&plan);
        Ok(())
    }

    fn purge(&mut self, upto: u64) -> Result<(), WalError> {
        let delete = self.shared.layout().plan_purge(upto);
        for &segment in &delete {
            self.remove_segment(segment)?;
        }
        self.shared.layout().commit_purge(&delete);
        Ok(())
    }
}

/// Reserves a new segment's full size, so that the fdatasync after each
/// batch only has to write data and not also journal the file's growth
/// (measured on this machine's ext4: a 300-byte append + fdatasync takes
/// about 250 µs into a growing file and 160 µs into preallocated space; etcd
/// preallocates its WAL segments for the same reason). The space reads as
/// zeros, which recovery takes for a clean end (`SegmentEnd::Padded`).
/// Best effort: where the filesystem cannot (`EOPNOTSUPP`) or the disk is
/// too full, the segment grows as it is written, as before.
fn preallocate(file: &File, len: u64) {
    use nix::fcntl::{fallocate, FallocateFlags};
    let Ok(len) = i64::try_from(len) else {
        return;
    };
    let _ = fallocate(file, FallocateFlags::empty(), 0, len);
}

/// Takes every append already queued behind `first`, within the batch
/// bounds; a non-append request (or an append past the bounds) is carried
/// over to run after this batch.
fn gather(
    queue: &mpsc::Receiver<Request>,
    first: (Vec<Entry>, Done),
    carried: &mut Option<Request>,
) -> Batch {
    let size = |entries: &[Entry]| -> usize {
        entries
            .iter()
            .map(|entry| encoded_len(entry.payload.len()))
            .sum()
    };
    let mut bytes = size(&first.0);
    let mut records = first.0.len();
    let mut batch = vec![first];
    while bytes < WAL_BATCH_BYTES_MAX {
        match queue.try_recv() {
            Ok(Request::Append { entries, done })
                if records + entries.len() <= WAL_BATCH_RECORDS_MAX as usize
                    && bytes + size(&entries) <= WAL_BATCH_BYTES_MAX =>
            {
                bytes += size(&entries);
                records += entries.len();
                batch.push((entries, done));
            }
            Ok(other) => {
                *carried = Some(other);
                break;
            }
            Err(_) => break,
        }
    }
    batch
}
