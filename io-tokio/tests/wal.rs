//! The WAL on real files: recovery from torn tails at every offset,
//! refusal of mid-file corruption (naming file and offset), truncation,
//! purging with bounded disk use, the vote file, group commit, and a crash
//! test that SIGKILLs a real appending process at random moments.
//!
//! What these cannot show: power loss. A SIGKILLed process leaves the page
//! cache intact, so they exercise the recovery of partial *writes* and the
//! acknowledgement order, not the loss of unsynced pages; the simulator's
//! fault-injecting disk (later) covers that.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tribune::storage::{Entry, Wal, WalConfig, WalError};
use tribune_core::wal::{segment_file_name, Vote};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path =
            std::env::temp_dir().join(format!("tribune-wal-{name}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn payload(index: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (index as usize * 31 + i) as u8).collect()
}

fn entries(range: std::ops::Range<u64>, len: usize) -> Vec<Entry> {
    range
        .map(|index| Entry {
            index,
            payload: payload(index, len),
        })
        .collect()
}

fn open(dir: &Path, segment_bytes: u64) -> Result<Wal, WalError> {
    Wal::open(WalConfig {
        segment_bytes,
        ..WalConfig::new(dir)
    })
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// Every entry from the first index to the last, checked for contiguity and content.
fn check_log(wal: &Wal, len: usize) -> Vec<u64> {
    let (Some(first), Some(last)) = (wal.first_index(), wal.last_index()) else {
        return Vec::new();
    };
    let all = wal.read(first..last + 1).unwrap();
    assert_eq!(all.len() as u64, last - first + 1, "log has a hole");
    for (entry, index) in all.iter().zip(first..) {
        assert_eq!(entry.index, index);
        assert_eq!(entry.payload, payload(index, len), "entry {index} content");
    }
    all.iter().map(|e| e.index).collect()
}

#[test]
fn appends_read_back_and_survive_reopen() {
    let dir = TempDir::new("basic");
    let wal = open(&dir.0, 1024).unwrap();
    assert_eq!(wal.last_index(), None);
    for start in (1..=40).step_by(5) {
        wal.append(entries(start..start + 5, 100)).wait().unwrap();
    }
    assert_eq!(wal.read(10..13).unwrap(), entries(10..13, 100));
    assert!(segments(&dir.0).len() > 2, "rolled into several segments");
    assert_eq!(
        wal.append(entries(50..51, 1)).wait(),
        Err(WalError::OutOfSequence {
            expected: 41,
            found: 50
        })
    );
    wal.append(entries(41..42, 100)).wait().unwrap(); // not poisoned
    drop(wal);
    let wal = open(&dir.0, 1024).unwrap();
    assert_eq!(check_log(&wal, 100), (1..=41).collect::<Vec<_>>());
}

#[test]
fn torn_tail_at_every_offset_of_the_last_record_is_cut() {
    let dir = TempDir::new("torn");
    let wal = open(&dir.0, 2048).unwrap();
    for index in 1..=30 {
        wal.append(entries(index..index + 1, 90)).wait().unwrap();
    }
    drop(wal);
    let last_segment = segments(&dir.0).pop().unwrap();
    let record_len = 28 + 90;
    // The segment file is preallocated: its records, then zeros.
    let first_in_segment = segment_first_index(&last_segment);
    let records_len = (30 - first_in_segment + 1) as usize * record_len;
    let file = fs::read(&last_segment).unwrap();
    assert_eq!(file.len(), 2048, "preallocated to the segment size");
    assert!(file[records_len..].iter().all(|&b| b == 0));
    let full = file[..records_len].to_vec();
    let last_start = full.len() - record_len;
    for cut in last_start..full.len() {
        fs::write(&last_segment, &full[..cut]).unwrap();
        let wal = open(&dir.0, 2048).unwrap();
        assert_eq!(wal.last_index(), Some(29), "cut at {cut}");
        let expected_cut =
            (cut > last_start).then(|| (last_start as u64, (cut - last_start) as u64));
        let reported = wal.cut_tail().map(|tail| (tail.offset, tail.bytes_cut));
        assert_eq!(reported, expected_cut);
        assert_eq!(
            fs::metadata(&last_segment).unwrap().len(),
            last_start as u64
        );
        if cut % 17 == 0 {
            wal.append(entries(30..31, 90)).wait().unwrap();
            assert_eq!(check_log(&wal, 90).len(), 30);
        }
    }
    // A zero-filled tail (preallocated space, or a file extended but
    // never written) is a clean end: nothing to cut.
    let mut zeroed = full.clone();
    zeroed.extend_from_slice(&[0; 4096]);
    fs::write(&last_segment, &zeroed).unwrap();
    let wal = open(&dir.0, 2048).unwrap();
    assert_eq!(check_log(&wal, 90).len(), 30);
    assert!(wal.cut_tail().is_none());
    assert_eq!(
        fs::metadata(&last_segment).unwrap().len(),
        zeroed.len() as u64
    );
    // Appends go right after the last record, into the zeros.
    wal.append(entries(31..32, 90)).wait().unwrap();
    drop(wal);
    let wal = open(&dir.0, 2048).unwrap();
    assert_eq!(check_log(&wal, 90).len(), 31);
    assert_eq!(
        fs::metadata(&last_segment).unwrap().len(),
        zeroed.len() as u64
    );
}

fn segment_first_index(path: &Path) -> u64 {
    let name = path.file_name().unwrap().to_str().unwrap();
    tribune_core::wal::parse_segment_file_name(name).unwrap()
}

#[test]
fn corrupted_middle_byte_refuses_to_open_naming_file_and_offset() {
    let dir = TempDir::new("corrupt");
    let wal = open(&dir.0, 1 << 20).unwrap();
    for start in (1..=20).step_by(4) {
        wal.append(entries(start..start + 4, 64)).wait().unwrap();
    }
    drop(wal);
    let segment = dir.0.join(segment_file_name(1));
    let mut bytes = fs::read(&segment).unwrap();
    let record_len = 28 + 64;
    let offset = 5 * record_len; // record 6, in the second batch
    bytes[offset + 40] ^= 0x20;
    fs::write(&segment, &bytes).unwrap();
    let error = open(&dir.0, 1 << 20).err().expect("refuses to open");
    let WalError::Corrupt {
        ref path,
        offset: at,
        ref detail,
    } = error
    else {
        panic!("{error}");
    };
    assert_eq!(
        (path.clone(), at),
        (segment.clone(), offset as u64),
        "{detail}"
    );
    let message = error.to_string();
    assert!(message.contains(&segment_file_name(1)), "{message}");
    assert!(message.contains(&format!("offset {offset}")), "{message}");
    // Nothing was "repaired": the file is unchanged.
    assert_eq!(fs::read(&segment).unwrap(), bytes);
}

#[test]
fn a_torn_record_in_an_older_segment_is_refused() {
    let dir = TempDir::new("torn-old");
    let wal = open(&dir.0, 512).unwrap();
    for index in 1..=20 {
        wal.append(entries(index..index + 1, 100)).wait().unwrap();
    }
    drop(wal);
    let all = segments(&dir.0);
    let (first, second) = (&all[0], &all[1]);
    // The first segment's records end where the second segment's first
    // index says; the rest of the file is preallocated zeros.
    let records = segment_first_index(second) - 1;
    let len = records * (28 + 100);
    OpenOptions::new()
        .write(true)
        .open(first)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let error = open(&dir.0, 512).err().expect("refuses to open");
    assert!(error.to_string().contains(&segment_file_name(1)), "{error}");
}

#[test]
fn truncate_after_then_append_keeps_the_log_contiguous() {
    let dir = TempDir::new("truncate");
    let wal = open(&dir.0, 600).unwrap();
    wal.append(entries(1..31, 50)).wait().unwrap();
    for index in 31..=60 {
        wal.append(entries(index..index + 1, 50)).wait().unwrap();
    }
    wal.truncate_after(44).wait().unwrap();
    assert_eq!(wal.last_index(), Some(44));
    assert!(wal.append(entries(46..47, 50)).wait().is_err());
    wal.append(entries(45..50, 50)).wait().unwrap();
    wal.truncate_after(3).wait().unwrap();
    wal.append(entries(4..10, 50)).wait().unwrap();
    assert_eq!(check_log(&wal, 50), (1..10).collect::<Vec<_>>());
    drop(wal);
    let wal = open(&dir.0, 600).unwrap();
    assert_eq!(check_log(&wal, 50), (1..10).collect::<Vec<_>>());
    wal.truncate_after(0).wait().unwrap();
    assert_eq!(wal.last_index(), None);
    wal.append(entries(100..102, 50)).wait().unwrap();
    assert_eq!(check_log(&wal, 50), vec![100, 101]);
}

#[test]
fn a_failed_write_fails_the_append_and_poisons_until_reopened() {
    let dir = TempDir::new("poison");
    let wal_dir = dir.0.join("wal");
    let wal = open(&wal_dir, 100).unwrap();
    wal.append(entries(1..2, 200)).wait().unwrap();
    // The next batch must roll into a new segment file; with the directory
    // gone, creating it fails.
    fs::remove_dir_all(&wal_dir).unwrap();
    let error = wal.append(entries(2..3, 200)).wait().unwrap_err();
    assert!(
        matches!(
            error,
            WalError::Io {
                kind: std::io::ErrorKind::NotFound,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(wal.last_index(), Some(1), "nothing half-applied");
    let again = wal.append(entries(2..3, 200)).wait().unwrap_err();
    assert!(matches!(again, WalError::Poisoned { .. }), "{again}");
    assert!(matches!(
        wal.truncate_after(0).wait(),
        Err(WalError::Poisoned { .. })
    ));
    drop(wal);
    let wal = open(&wal_dir, 100).unwrap();
    wal.append(entries(1..2, 200)).wait().unwrap();
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn purge_keeps_disk_use_bounded() {
    let dir = TempDir::new("purge");
    let segment_bytes = 8 * 1024;
    let wal = open(&dir.0, segment_bytes).unwrap();
    let trailing = 100u64;
    let record_bytes = 28 + 256;
    let mut peak = 0;
    for start in (1..=5000u64).step_by(10) {
        wal.append(entries(start..start + 10, 256)).wait().unwrap();
        let last = start + 9;
        if last % 200 == 0 {
            wal.purge_upto(last - trailing).wait().unwrap();
            let first = wal.first_index().unwrap();
            assert!(
                first <= last - trailing + 1,
                "purge kept every needed entry"
            );
            assert_eq!(wal.read(last - trailing + 1..last + 1).unwrap().len(), 100);
            peak = peak.max(dir_bytes(&dir.0));
        }
    }
    // Trailing entries plus at most one partly purgeable segment, the
    // batch that overshot the roll threshold, and the active segment's
    // preallocated space.
    let bound = trailing * record_bytes + 3 * segment_bytes + 10 * record_bytes;
    assert!(peak <= bound, "peak {peak} > bound {bound}");
    assert!(segments(&dir.0).len() <= 10);
    wal.purge_upto(10_000).wait().unwrap();
    assert_eq!(wal.last_index(), None);
    wal.append(entries(10_001..10_002, 256)).wait().unwrap();
    drop(wal);
    let wal = open(&dir.0, segment_bytes).unwrap();
    assert_eq!(check_log(&wal, 256), vec![10_001]);
}

#[test]
fn vote_is_durable_and_checked() {
    let dir = TempDir::new("vote");
    let wal = open(&dir.0, 1024).unwrap();
    assert_eq!(wal.read_vote().unwrap(), None);
    let vote = Vote {
        term: 7,
        voted_for: Some(3),
        committed: false,
    };
    wal.save_vote(&vote).unwrap();
    let newer = Vote {
        committed: true,
        ..vote
    };
    wal.save_vote(&newer).unwrap();
    drop(wal);
    let wal = open(&dir.0, 1024).unwrap();
    assert_eq!(wal.read_vote().unwrap(), Some(newer));
    drop(wal);
    let path = dir.0.join("vote");
    let mut bytes = fs::read(&path).unwrap();
    bytes[9] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let error = open(&dir.0, 1024).err().expect("refuses a damaged vote");
    assert!(error.to_string().contains("vote"), "{error}");
}

#[test]
fn concurrent_appends_share_fsyncs() {
    let dir = TempDir::new("group");
    let wal = open(&dir.0, 1 << 20).unwrap();
    let next = Mutex::new(1u64);
    std::thread::scope(|scope| {
        for _ in 0..32 {
            scope.spawn(|| {
                for _ in 0..20 {
                    let pending = {
                        let mut next = next.lock().unwrap();
                        let pending = wal.append(entries(*next..*next + 1, 256));
                        *next += 1;
                        pending
                    };
                    pending.wait().unwrap();
                }
            });
        }
    });
    let stats = wal.stats();
    assert_eq!(stats.records, 640);
    assert!(
        stats.batches < stats.records,
        "group commit: {} fsyncs for {} records",
        stats.batches,
        stats.records
    );
    assert_eq!(check_log(&wal, 256).len(), 640);
}

// ------------------------------------------------------------ crash test

const CHILD_DIR_VAR: &str = "TRIBUNE_WAL_CRASH_CHILD_DIR";
const CHILD_PAYLOAD_BYTES: usize = 200;

/// In child mode (the crash test re-runs this test binary with the env
/// var set), appends from 8 threads forever and prints `ack <index>` for
/// every append that returned. Without the env var it does nothing.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let wal = open(Path::new(&dir), 16 * 1024).unwrap();
    let next = Mutex::new(wal.last_index().map_or(1, |last| last + 1));
    let stdout = Mutex::new(std::io::stdout());
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| loop {
                let (index, pending) = {
                    let mut next = next.lock().unwrap();
                    let index = *next;
                    *next += 1;
                    let batch = entries(index..index + 1, CHILD_PAYLOAD_BYTES);
                    (index, wal.append(batch))
                };
                pending.wait().unwrap();
                use std::io::Write;
                let mut out = stdout.lock().unwrap();
                writeln!(out, "ack {index}").unwrap();
                out.flush().unwrap();
            });
        }
    });
}

/// A small xorshift; the delays only need to vary.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_append() {
    let dir = TempDir::new("crash");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut acknowledged_total = 0;
    for round in 0..8 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_VAR, &dir.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let acks = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let acks = acks.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(index) = line.strip_prefix("ack ") {
                        acks.lock().unwrap().push(index.parse::<u64>().unwrap());
                    }
                }
            })
        };
        let delay_ms = 150 + next_random(&mut seed) % 600;
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acks = acks.lock().unwrap().clone();
        acknowledged_total += acks.len();
        let wal = open(&dir.0, 16 * 1024).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let cut = wal.cut_tail().map_or(0, |tail| tail.bytes_cut);
        let log = check_log(&wal, CHILD_PAYLOAD_BYTES);
        let last = wal.last_index().unwrap_or(0);
        for index in &acks {
            assert!(
                *index <= last,
                "round {round}: acknowledged {index} lost (last {last})"
            );
        }
        assert_eq!(log.first().copied(), Some(1).filter(|_| !log.is_empty()));
        eprintln!(
            "round {round}: killed after {delay_ms} ms, {} acks, log 1..={last}, torn tail cut: {cut} bytes",
            acks.len()
        );
    }
    assert!(
        acknowledged_total > 0,
        "the child never acknowledged an append"
    );
}
